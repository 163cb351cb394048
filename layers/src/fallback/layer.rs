//! [`FallbackLayer`].

use std::fmt;
use std::sync::Arc;

use agentgraph_engine::{BoxError, Layer};

use super::{Fallback, NoResultCheck, NodeFallback};

pub(super) type OnError = dyn Fn(&BoxError) -> bool + Send + Sync;

/// Calls another node when the node it wraps fails (or, with
/// [`on_result`](FallbackLayer::on_result), returns a result it rejects): a second model
/// provider, a cached answer, a canned reply.
///
/// The fallback is any [`Node`](agentgraph_engine::Node) ([`new`](FallbackLayer::new)),
/// called with the task's state and context as the wrapped node was, or a closure that is
/// given the [`FallbackCause`](crate::FallbackCause) too
/// ([`from_fallback`](FallbackLayer::from_fallback) of [`with_cause`](crate::with_cause)). Its result
/// stands for the wrapped node's: its update is merged as the task's update and its go-to
/// followed as the task's (so it may only name targets the wrapped node may go to), and its
/// error fails the task. The engine sees one node: one task, one attempt, one pending write.
///
/// Every error falls back but an interrupt
/// ([`InterruptSignal`](agentgraph_engine::InterruptSignal), which must reach the engine);
/// [`on_error`](FallbackLayer::on_error) chooses which do. A panic is not an error: it
/// propagates. Retries sit outside every layer: with a [`RetryPolicy`](agentgraph_engine::RetryPolicy)
/// on the node, an attempt fails only when its fallback fails too.
///
/// Compared with an error edge ([`GraphBuilder::on_error`](agentgraph_engine::GraphBuilder::on_error)),
/// which routes a failed task to a handler node in the next step (checkpointed, visible in
/// the graph), a fallback answers within the same task.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Answer { text: String }
/// use agentgraph_layers::FallbackLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let primary = async_node(|_: Arc<Answer>, _| async {
///     Err::<AnswerUpdate, BoxError>("provider A is down".into())
/// });
/// let backup = async_node(|_: Arc<Answer>, _| async {
///     Ok(AnswerUpdate::new().text("from provider B".into()))
/// });
/// let mut b = GraphBuilder::<Answer>::new();
/// b.add_node_with("answer", NodeBuilder::new().layer(FallbackLayer::new(backup)).node(primary))
///     .add_edge(START, "answer")
///     .add_edge("answer", END);
/// assert_eq!(b.compile()?.invoke(Answer::default()).await?.text, "from provider B");
/// # Ok(()) }
/// ```
pub struct FallbackLayer<F, R = NoResultCheck> {
    fallback: Arc<F>,
    on_error: Option<Arc<OnError>>,
    on_result: Arc<R>,
}

impl<N> FallbackLayer<NodeFallback<N>> {
    /// Falls back to the node `fallback` whenever the wrapped node fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// use agentgraph_layers::FallbackLayer;
    ///
    /// let zero = cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new()));
    /// let node = NodeBuilder::new()
    ///     .layer(FallbackLayer::new(zero))
    ///     .node(cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new().n(1))));
    /// GraphBuilder::<Count>::new().add_node_with("count", node);
    /// ```
    pub fn new(fallback: N) -> Self {
        FallbackLayer::from_fallback(NodeFallback::new(fallback))
    }
}

impl<F> FallbackLayer<F> {
    /// Falls back to `fallback`, a [`FallbackNode`](crate::FallbackNode): one that is given
    /// the cause, such as [`with_cause`](crate::with_cause)'s closure.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Answer { text: String }
    /// use agentgraph_layers::{FallbackCause, FallbackLayer, with_cause};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let failing = async_node(|_: Arc<Answer>, _| async { Err::<AnswerUpdate, BoxError>("quota".into()) });
    /// let explain = with_cause(|_: Arc<Answer>, _: Context, cause: FallbackCause<Answer>| async move {
    ///     Ok(AnswerUpdate::new().text(format!("unavailable: {}", cause.error().unwrap())))
    /// });
    /// let mut b = GraphBuilder::<Answer>::new();
    /// b.add_node_with("answer", NodeBuilder::new().layer(FallbackLayer::from_fallback(explain)).node(failing))
    ///     .add_edge(START, "answer")
    ///     .add_edge("answer", END);
    /// assert_eq!(b.compile()?.invoke(Answer::default()).await?.text, "unavailable: quota");
    /// # Ok(()) }
    /// ```
    pub fn from_fallback(fallback: F) -> Self {
        FallbackLayer {
            fallback: Arc::new(fallback),
            on_error: None,
            on_result: Arc::new(NoResultCheck),
        }
    }
}

impl<F, R> FallbackLayer<F, R> {
    /// Falls back only on the errors for which `falls_back` returns true; the others fail the
    /// task as they are. Interrupts never fall back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// use agentgraph_layers::{CircuitOpen, FallbackLayer, TimedOut};
    ///
    /// let cached = cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new()));
    /// // Only when the service is known to be down or slow.
    /// let layer = FallbackLayer::new(cached).on_error(|e| e.is::<CircuitOpen>() || e.is::<TimedOut>());
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn on_error(
        mut self,
        falls_back: impl Fn(&BoxError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(falls_back));
        self
    }

    /// Falls back also when the wrapped node succeeds with a result `rejects` returns true for
    /// (a closure `Fn(&Command<S>) -> bool`, its argument's type written out); the fallback
    /// gets the result as [`FallbackCause::Rejected`](crate::FallbackCause::Rejected).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Answer { text: String }
    /// use agentgraph_layers::FallbackLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let empty = async_node(|_: Arc<Answer>, _| async { Ok(AnswerUpdate::new().text(String::new())) });
    /// let canned = async_node(|_: Arc<Answer>, _| async { Ok(AnswerUpdate::new().text("no answer".into())) });
    /// let layer = FallbackLayer::new(canned)
    ///     .on_result(|c: &Command<Answer>| c.update().text.as_deref().is_none_or(str::is_empty));
    /// let mut b = GraphBuilder::<Answer>::new();
    /// b.add_node_with("answer", NodeBuilder::new().layer(layer).node(empty))
    ///     .add_edge(START, "answer")
    ///     .add_edge("answer", END);
    /// assert_eq!(b.compile()?.invoke(Answer::default()).await?.text, "no answer");
    /// # Ok(()) }
    /// ```
    pub fn on_result<R2>(self, rejects: R2) -> FallbackLayer<F, R2> {
        FallbackLayer {
            fallback: self.fallback,
            on_error: self.on_error,
            on_result: Arc::new(rejects),
        }
    }
}

impl<F, R> Clone for FallbackLayer<F, R> {
    fn clone(&self) -> Self {
        FallbackLayer {
            fallback: self.fallback.clone(),
            on_error: self.on_error.clone(),
            on_result: self.on_result.clone(),
        }
    }
}

impl<F, R> fmt::Debug for FallbackLayer<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("on_error", &self.on_error.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

impl<N, F, R> Layer<N> for FallbackLayer<F, R> {
    type Node = Fallback<N, F, R>;

    fn layer(&self, inner: N) -> Self::Node {
        Fallback::new(
            inner,
            self.fallback.clone(),
            self.on_error.clone(),
            self.on_result.clone(),
        )
    }
}
