//! Streamed answers: [`ChatChunk`], [`ChatStream`], and [`StreamAssembler`], which builds the
//! whole response from the deltas.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt, stream};

use crate::message::{Message, ToolCall};
use crate::model::{ChatResponse, FinishReason, ModelError, Usage};

/// A piece of a streamed answer.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::ChatChunk;
/// let c = ChatChunk::Text("Hel".into());
/// assert_eq!(c.text(), Some("Hel"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChatChunk {
    /// More text of the answer.
    Text(String),
    /// A piece of a tool call; pieces with the same `index` make one call.
    ToolCall {
        /// Which call of the answer (from 0).
        index: u32,
        /// The call's id, in the piece that carries it.
        id: Option<String>,
        /// The tool's name, in the piece that carries it (it may come after arguments).
        name: Option<String>,
        /// More of the arguments' JSON text.
        arguments: String,
    },
    /// The whole answer: the last chunk of a stream that completed.
    Done(Box<ChatResponse>),
}

impl ChatChunk {
    /// The text of a [`ChatChunk::Text`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ChatChunk;
    /// let c = ChatChunk::ToolCall { index: 0, id: None, name: None, arguments: "{".into() };
    /// assert_eq!(c.text(), None);
    /// ```
    pub fn text(&self) -> Option<&str> {
        match self {
            ChatChunk::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// A streamed answer: [`ChatChunk`]s, the last one [`ChatChunk::Done`] with the whole
/// response. A stream that ends without it failed ([`ModelError::StreamCut`]), and its
/// partial text is not an answer.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::Message;
/// use agentgraph_nodes::model::{ChatChunk, ChatResponse, ChatStream};
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), agentgraph_nodes::model::ModelError> {
/// let mut s = ChatStream::from_response(ChatResponse::new(Message::assistant("hi")));
/// assert_eq!(s.next().await.unwrap()?, ChatChunk::Text("hi".into()));
/// assert!(matches!(s.next().await.unwrap()?, ChatChunk::Done(_)));
/// assert!(s.next().await.is_none());
/// # Ok(()) }
/// ```
pub struct ChatStream {
    inner: Pin<Box<dyn Stream<Item = Result<ChatChunk, ModelError>> + Send>>,
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatStream").finish_non_exhaustive()
    }
}

impl ChatStream {
    /// A stream of chunks (a provider's).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::{ChatChunk, ChatStream};
    /// let s = ChatStream::new(futures_util::stream::iter([Ok(ChatChunk::Text("a".into()))]));
    /// # let _ = s;
    /// ```
    pub fn new(chunks: impl Stream<Item = Result<ChatChunk, ModelError>> + Send + 'static) -> Self {
        ChatStream {
            inner: Box::pin(chunks),
        }
    }

    /// A whole response as a stream: its text as one chunk, its tool calls one chunk each,
    /// then [`ChatChunk::Done`].
    ///
    /// # Examples
    ///
    /// See [`ChatStream`].
    pub fn from_response(response: ChatResponse) -> Self {
        let mut chunks = Vec::new();
        let text = response.text();
        if !text.is_empty() {
            chunks.push(Ok(ChatChunk::Text(text.into_owned())));
        }
        for (index, call) in response.tool_calls().iter().enumerate() {
            chunks.push(Ok(ChatChunk::ToolCall {
                index: index as u32,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: call.arguments.to_json_text().into_owned(),
            }));
        }
        chunks.push(Ok(ChatChunk::Done(Box::new(response))));
        ChatStream::new(stream::iter(chunks))
    }

    /// Reads the stream to its end and returns the whole response, calling `on_chunk` with
    /// every chunk before it.
    ///
    /// # Errors
    ///
    /// The stream's error, or [`ModelError::StreamCut`] when it ends without the response.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::Message;
    /// use agentgraph_nodes::model::{ChatResponse, ChatStream};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), agentgraph_nodes::model::ModelError> {
    /// let s = ChatStream::from_response(ChatResponse::new(Message::assistant("hello")));
    /// let mut texts = Vec::new();
    /// let r = s.response_with(|c| texts.extend(c.text().map(str::to_owned))).await?;
    /// assert_eq!(texts, ["hello"]);
    /// assert_eq!(r.text(), "hello");
    /// # Ok(()) }
    /// ```
    pub async fn response_with(
        mut self,
        mut on_chunk: impl FnMut(&ChatChunk),
    ) -> Result<ChatResponse, ModelError> {
        let mut chunks = 0;
        let mut text_len = 0;
        while let Some(chunk) = self.next().await {
            match chunk? {
                ChatChunk::Done(response) => return Ok(*response),
                chunk => {
                    chunks += 1;
                    text_len += chunk.text().map_or(0, str::len);
                    on_chunk(&chunk);
                }
            }
        }
        Err(ModelError::StreamCut {
            chunks,
            text_len,
            reason: "the stream ended without its response".into(),
        })
    }

    /// Reads the stream to its end and returns the whole response.
    ///
    /// # Errors
    ///
    /// As [`response_with`](ChatStream::response_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ChatStream;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let empty = ChatStream::new(futures_util::stream::empty());
    /// assert!(empty.response().await.is_err()); // no response: cut
    /// # }
    /// ```
    pub async fn response(self) -> Result<ChatResponse, ModelError> {
        self.response_with(|_| {}).await
    }
}

impl Stream for ChatStream {
    type Item = Result<ChatChunk, ModelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Builds a whole [`ChatResponse`] from streamed deltas, for providers' streams: text is
/// appended, tool call pieces are gathered by index (ids and names kept from whichever piece
/// carries them, arguments appended in order), and the arguments are parsed at the end.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::ToolArguments;
/// use agentgraph_nodes::model::{FinishReason, StreamAssembler};
///
/// let mut a = StreamAssembler::new();
/// a.tool_call(0, Some("call_1"), None, r#"{"city":"#);
/// a.tool_call(0, None, None, r#""Paris"}"#);
/// a.tool_call(0, None, Some("get_weather"), ""); // the name, after the arguments
/// a.finish_reason(FinishReason::ToolCalls);
/// let r = a.finish();
/// assert_eq!(r.tool_calls()[0].name, "get_weather");
/// assert_eq!(r.tool_calls()[0].arguments, ToolArguments::Json(serde_json::json!({ "city": "Paris" })));
/// ```
#[derive(Debug, Default)]
pub struct StreamAssembler {
    text: String,
    calls: BTreeMap<u32, PartialCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    model: Option<String>,
    id: Option<String>,
}

impl StreamAssembler {
    /// An empty answer.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::model::StreamAssembler::new().finish().text(), "");
    /// ```
    pub fn new() -> Self {
        StreamAssembler::default()
    }

    /// Appends text.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = agentgraph_nodes::model::StreamAssembler::new();
    /// a.text("Hel");
    /// a.text("lo");
    /// assert_eq!(a.text_so_far(), "Hello");
    /// ```
    pub fn text(&mut self, delta: &str) {
        self.text.push_str(delta);
    }

    /// The text received so far.
    ///
    /// # Examples
    ///
    /// See [`text`](StreamAssembler::text).
    pub fn text_so_far(&self) -> &str {
        &self.text
    }

    /// Adds a piece of the tool call at `index`.
    ///
    /// # Examples
    ///
    /// See [`StreamAssembler`].
    pub fn tool_call(&mut self, index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) {
        let call = self.calls.entry(index).or_default();
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            id.clone_into(&mut call.id);
        }
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            name.clone_into(&mut call.name);
        }
        call.arguments.push_str(arguments);
    }

    /// Whether a piece of a tool call arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = agentgraph_nodes::model::StreamAssembler::new();
    /// assert!(!a.has_tool_calls());
    /// a.tool_call(0, Some("c1"), Some("now"), "");
    /// assert!(a.has_tool_calls());
    /// ```
    pub fn has_tool_calls(&self) -> bool {
        !self.calls.is_empty()
    }

    /// Sets the finish reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::{FinishReason, StreamAssembler};
    /// let mut a = StreamAssembler::new();
    /// a.finish_reason(FinishReason::Stop);
    /// assert!(a.has_finish_reason());
    /// ```
    pub fn finish_reason(&mut self, reason: FinishReason) {
        self.finish_reason = Some(reason);
    }

    /// Whether a finish reason arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!agentgraph_nodes::model::StreamAssembler::new().has_finish_reason());
    /// ```
    pub fn has_finish_reason(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// Sets the usage.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::{StreamAssembler, Usage};
    /// let mut a = StreamAssembler::new();
    /// a.usage(Usage::new(3, 4));
    /// assert_eq!(a.finish().usage, Some(Usage::new(3, 4)));
    /// ```
    pub fn usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// Sets the answering model's name and the answer's id, when given.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = agentgraph_nodes::model::StreamAssembler::new();
    /// a.identity(Some("gpt-x"), Some("chatcmpl-1"));
    /// assert_eq!(a.finish().model.as_deref(), Some("gpt-x"));
    /// ```
    pub fn identity(&mut self, model: Option<&str>, id: Option<&str>) {
        if let Some(model) = model {
            self.model.get_or_insert_with(|| model.to_owned());
        }
        if let Some(id) = id {
            self.id.get_or_insert_with(|| id.to_owned());
        }
    }

    /// The whole response. A call whose id never came gets `call_{index}`.
    ///
    /// # Examples
    ///
    /// See [`StreamAssembler`].
    pub fn finish(self) -> ChatResponse {
        let calls = self.calls.into_iter().map(|(index, call)| {
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            ToolCall::from_raw(id, call.name, call.arguments)
        });
        let mut response = ChatResponse::new(Message::assistant(self.text).with_tool_calls(calls));
        response.finish_reason = self.finish_reason;
        response.usage = self.usage;
        response.model = self.model;
        response.id = self.id;
        response
    }
}
