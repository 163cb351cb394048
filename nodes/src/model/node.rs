//! A model call as a graph node: [`model_node`].

use std::sync::Arc;

use agentgraph_engine::{BoxError, BudgetExceeded, BudgetKind, Context};
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
/// **Budgets.** Before the call, the node checks that the run (its thread, its tenant) has not
/// used its limit on tokens or cost already
/// ([`Context::check_budget`](agentgraph_engine::Context::check_budget)): if it has, the call
/// is not made, the task is refused and the run stops with
/// [`Error::BudgetExceeded`](agentgraph_engine::Error::BudgetExceeded) at this step, the
/// step's other tasks keeping their writes; a resume with a higher budget makes the call. The
/// answer's usage, when it has one, is reported after the call
/// ([`Context::record_model_usage`](agentgraph_engine::Context::record_model_usage)).
///
/// # Errors
///
/// The node fails with the call's [`ModelError`](crate::model::ModelError) (a history with an
/// unanswered tool call, the server's errors, a cut stream), or is refused with the
/// [`BudgetExceeded`](agentgraph_engine::BudgetExceeded) of a budget used up.
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
            check_model_budget(&ctx)?;
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

/// Refuses a model call when the run, its thread or its tenant has used its limit on tokens
/// or on cost already (what a call uses is only known after it).
pub(crate) fn check_model_budget(ctx: &Context) -> Result<(), BudgetExceeded> {
    ctx.check_budget(BudgetKind::Tokens)?;
    ctx.check_budget(BudgetKind::Cost)
}
