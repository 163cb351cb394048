//! A model call as a graph node: [`model_node`].

use std::sync::Arc;

use agentgraph_engine::{BoxError, Context};
use futures_util::future::BoxFuture;

use crate::model::{ChatModel, ChatRequest, ChatResponse};

/// A node that calls a model: `request` makes the call from the state, `update` makes the
/// node's update from the state and the answer. Add it with
/// [`GraphBuilder::add_node`](agentgraph_engine::GraphBuilder::add_node).
///
/// The call is the node's task: it gets the engine's retries and timeouts (a timed out call
/// is dropped, and its connection closed), and its answer is checkpointed with the update.
/// The answer is streamed: each piece of text is published while the call runs as an
/// [`EventKind::Token`](agentgraph_engine::EventKind::Token) of the run (step, node, task,
/// attempt, index, text), through
/// [`Context::emit_token`](agentgraph_engine::Context::emit_token). Events cost nothing when
/// no one subscribes; a run that stores its events stores them coalesced.
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
            let mut index = 0;
            let response = stream
                .response_with(|chunk| {
                    if let Some(text) = chunk.text() {
                        ctx.emit_token(index, text);
                        index += 1;
                    }
                })
                .await?;
            if let Some(usage) = response.usage {
                ctx.record_model_usage(model.model(), usage.input_tokens, usage.output_tokens);
            }
            Ok(update(&state, response))
        })
    }
}
