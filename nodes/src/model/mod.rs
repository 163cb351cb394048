//! Chat models: the [`ChatModel`] trait, what a call asks ([`ChatRequest`]) and gets back
//! ([`ChatResponse`], or a [`ChatStream`] of [`ChatChunk`]s), and the pieces built on it:
//! [`model_node`] (a model call as a graph node, its streamed text published as events of the
//! run) and [`structured`] (a typed answer checked against its JSON Schema, repaired a bounded
//! number of times).
//!
//! The trait is provider-neutral: [`OpenAiModel`](crate::model::openai::OpenAiModel) (feature
//! `openai`) speaks OpenAI's chat completions format, which OpenAI, llama.cpp's server, vLLM
//! and Ollama share; other providers (Anthropic, Gemini) implement the same trait.
//!
//! A request whose history holds a tool call without a result is refused before anything is
//! sent, as [`ModelError::UnansweredToolCall`] naming the call ([`ChatRequest::check`]).
//!
//! # Examples
//!
//! ```
//! use agentgraph_nodes::Message;
//! use agentgraph_nodes::model::{ChatModel, ChatRequest, ChatResponse, ChatFuture, FinishReason};
//!
//! /// A model that repeats the last message.
//! #[derive(Debug)]
//! struct Echo;
//!
//! impl ChatModel for Echo {
//!     fn model(&self) -> &str {
//!         "echo"
//!     }
//!     fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
//!         Box::pin(async move {
//!             request.check()?;
//!             let last = request.messages.last().map(|m| m.content.to_text().into_owned());
//!             Ok(ChatResponse::new(Message::assistant(last.unwrap_or_default()))
//!                 .with_finish_reason(FinishReason::Stop))
//!         })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), agentgraph_nodes::model::ModelError> {
//! let model: std::sync::Arc<dyn ChatModel> = std::sync::Arc::new(Echo);
//! let answer = model.chat(ChatRequest::new([Message::user("hello")])).await?;
//! assert_eq!(answer.text(), "hello");
//! // The default stream: the whole answer as one text chunk, then the response.
//! let streamed = model.stream(ChatRequest::new([Message::user("hi")])).await?.response().await?;
//! assert_eq!(streamed.text(), "hi");
//! # Ok(()) }
//! ```

mod error;
mod node;
mod observe;
mod request;
mod response;
mod stream;
mod structured;

#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub mod openai;
mod price;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use error::ModelError;
#[cfg(feature = "patterns")]
pub(crate) use node::check_model_budget;
pub use node::model_node;
pub use observe::{ObservedCall, observe_call};
pub use price::Price;
pub use request::{ChatRequest, ResponseFormat, ToolChoice, ToolSpec};
pub use response::{ChatResponse, FinishReason, Usage};
pub use stream::{ChatChunk, ChatStream, StreamAssembler};
pub use structured::{StructuredError, structured, structured_format};

/// What [`ChatModel::chat`] returns: a boxed future, so that `ChatModel` is object safe.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::{Message, model::{ChatFuture, ChatResponse}};
/// let answer: ChatFuture<'static> = Box::pin(async { Ok(ChatResponse::new(Message::assistant("hi"))) });
/// # drop(answer);
/// ```
pub type ChatFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ChatResponse, ModelError>> + Send + 'a>>;

/// What [`ChatModel::stream`] returns: a boxed future of the stream.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::{Message, model::{ChatResponse, ChatStream, StreamFuture}};
/// let s: StreamFuture<'static> =
///     Box::pin(async { Ok(ChatStream::from_response(ChatResponse::new(Message::assistant("hi")))) });
/// # drop(s);
/// ```
pub type StreamFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ChatStream, ModelError>> + Send + 'a>>;

/// A chat model: messages (and tools) in, an assistant message out.
///
/// Object safe: hold one as `Arc<dyn ChatModel>`. An implementation checks the request first
/// ([`ChatRequest::check`]: a tool call without a result is an error naming the call), and
/// records each call with [`observe_call`] (the `gen_ai.*` span attributes and the token
/// metrics).
///
/// [`stream`](ChatModel::stream) has a default for providers that cannot stream: the whole
/// answer as one [`ChatChunk::Text`], then [`ChatChunk::Done`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::Message;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse, ModelError};
///
/// #[derive(Debug)]
/// struct Mute;
/// impl ChatModel for Mute {
///     fn model(&self) -> &str { "mute" }
///     fn provider(&self) -> &str { "local" }
///     fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
///         Box::pin(async move {
///             request.check()?;
///             Ok(ChatResponse::new(Message::assistant("")))
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ModelError> {
/// let model: Arc<dyn ChatModel> = Arc::new(Mute);
/// assert_eq!((model.model(), model.provider()), ("mute", "local"));
/// assert_eq!(model.chat(ChatRequest::new([Message::user("?")])).await?.text(), "");
/// # Ok(()) }
/// ```
pub trait ChatModel: Send + Sync + fmt::Debug {
    /// The model's name, as sent to the provider and used in metrics and spans.
    ///
    /// # Examples
    ///
    /// See [`ChatModel`].
    fn model(&self) -> &str;

    /// The provider's name for spans (`gen_ai.provider.name`): `openai` unless overridden.
    ///
    /// # Examples
    ///
    /// See [`ChatModel`].
    fn provider(&self) -> &str {
        "openai"
    }

    /// Calls the model and waits for its whole answer.
    ///
    /// # Examples
    ///
    /// See [`ChatModel`].
    fn chat(&self, request: ChatRequest) -> ChatFuture<'_>;

    /// Calls the model and streams its answer as it comes: text and tool call deltas, then
    /// the whole response ([`ChatChunk::Done`]).
    ///
    /// # Examples
    ///
    /// See [the module](self).
    fn stream(&self, request: ChatRequest) -> StreamFuture<'_> {
        Box::pin(async move {
            let response = self.chat(request).await?;
            Ok(ChatStream::from_response(response))
        })
    }
}

impl<M: ChatModel + ?Sized> ChatModel for std::sync::Arc<M> {
    fn model(&self) -> &str {
        (**self).model()
    }

    fn provider(&self) -> &str {
        (**self).provider()
    }

    fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
        (**self).chat(request)
    }

    fn stream(&self, request: ChatRequest) -> StreamFuture<'_> {
        (**self).stream(request)
    }
}
