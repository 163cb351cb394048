//! A model call as a graph node: [`model_node`].

use std::sync::Arc;

use agentgraph_engine::{BoxError, Context};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::model::{ChatModel, ChatRequest, ChatResponse};

/// The name of the events a [`model_node`] emits for its streamed text
/// ([`EventKind::Custom`](agentgraph_engine::EventKind::Custom), payload [`TokenEvent`]).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::EventKind;
/// use agentgraph_nodes::model::{TOKEN_EVENT, TokenEvent};
///
/// fn token(kind: &EventKind) -> Option<TokenEvent> {
///     match kind {
///         EventKind::Custom { name, payload, .. } if name == TOKEN_EVENT => {
///             serde_json::from_value(payload.clone()).ok()
///         }
///         _ => None,
///     }
/// }
/// assert_eq!(TOKEN_EVENT, "model.token");
/// # let _ = token;
/// ```
pub const TOKEN_EVENT: &str = "model.token";

/// The payload of a [`TOKEN_EVENT`]: a piece of streamed text, where it comes from, and its
/// place in the answer.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::TokenEvent;
/// let e: TokenEvent = serde_json::from_value(serde_json::json!({
///     "node": "model", "task": "00ff", "attempt": 1, "index": 0, "text": "Hel"
/// })).unwrap();
/// assert_eq!(e.text, "Hel");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenEvent {
    /// The node calling the model.
    pub node: String,
    /// Its task's id.
    pub task: String,
    /// The task's attempt (from 1): a retried call streams its text again, from index 0.
    pub attempt: u32,
    /// The piece's place in the answer of this attempt, from 0.
    pub index: u64,
    /// The text.
    pub text: String,
}

#[derive(Serialize)]
struct TokenPayload<'a> {
    node: &'a str,
    task: &'a str,
    attempt: u32,
    index: u64,
    text: &'a str,
}

/// A node that calls a model: `request` makes the call from the state, `update` makes the
/// node's update from the state and the answer. Add it with
/// [`GraphBuilder::add_node`](agentgraph_engine::GraphBuilder::add_node).
///
/// The call is the node's task: it gets the engine's retries and timeouts (a timed out call
/// is dropped, and its connection closed), and its answer is checkpointed with the update.
/// The answer is streamed: each piece of text is published while the call runs as an event
/// of the run named [`TOKEN_EVENT`], its payload a [`TokenEvent`] (node, task, attempt, index,
/// text). Events cost nothing when no one subscribes.
///
/// # Errors
///
/// The node fails with the call's [`ModelError`](crate::model::ModelError) (a history with an
/// unanswered tool call, the server's errors, a cut stream).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::{END, GraphBuilder, START};
/// use agentgraph_nodes::{Message, add_messages};
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse, model_node};
///
/// # #[derive(Debug)] struct Hello;
/// # impl ChatModel for Hello {
/// #     fn model(&self) -> &str { "hello" }
/// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
/// #         Box::pin(async { Ok(ChatResponse::new(Message::assistant("Hello!"))) })
/// #     }
/// # }
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// #[state(crate = agentgraph_engine)]
/// struct Chat {
///     #[reducer(with = agentgraph_nodes::add_messages)]
///     messages: Vec<Message>,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let model: Arc<dyn ChatModel> = Arc::new(Hello); // e.g. an OpenAiModel
/// let mut b = GraphBuilder::<Chat>::new();
/// b.add_node(
///     "model",
///     model_node(
///         model,
///         |s: &Chat| ChatRequest::new(s.messages.clone()),
///         |_, r: ChatResponse| ChatUpdate::new().messages(vec![r.message]),
///     ),
/// )
/// .add_edge(START, "model")
/// .add_edge("model", END);
/// let done = b.compile()?.invoke(Chat { messages: vec![Message::user("Hi")] }).await?;
/// assert_eq!(done.messages[1].text(), Some("Hello!"));
/// # Ok(()) }
/// ```
pub fn model_node<S, R, U, O>(
    model: Arc<dyn ChatModel>,
    request: R,
    update: U,
) -> impl Fn(Arc<S>, Context) -> BoxFuture<'static, Result<O, BoxError>> + Send + Sync + 'static
where
    S: Send + Sync + 'static,
    R: Fn(&S) -> ChatRequest + Send + Sync + 'static,
    U: Fn(&S, ChatResponse) -> O + Send + Sync + 'static,
    O: Send + 'static,
{
    let parts = Arc::new((model, request, update));
    move |state: Arc<S>, ctx: Context| {
        let parts = parts.clone();
        Box::pin(async move {
            let (model, request, update) = &*parts;
            let stream = model.stream(request(&state)).await?;
            let task = ctx.task_id().to_string();
            let attempt = ctx.attempt();
            let mut index = 0;
            let response = stream
                .response_with(|chunk| {
                    if let Some(text) = chunk.text() {
                        ctx.emit(
                            TOKEN_EVENT,
                            &TokenPayload {
                                node: ctx.node(),
                                task: &task,
                                attempt,
                                index,
                                text,
                            },
                        );
                        index += 1;
                    }
                })
                .await?;
            Ok(update(&state, response))
        })
    }
}
