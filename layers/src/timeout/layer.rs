//! [`TimeoutLayer`].

use std::time::Duration;

use agentgraph_engine::Layer;

use super::Timeout;

/// Stops a call of the nodes it wraps that takes longer than a time limit: the call is
/// dropped, and the node fails with [`TimedOut`](crate::TimedOut).
///
/// A graph's own timeout ([`GraphBuilder::timeout`](agentgraph_engine::GraphBuilder::timeout))
/// limits a task's attempts and is what a graph node should use. This layer is for a node
/// used where that limit does not reach: a node another node calls (a fallback, a pattern's
/// member), or a part of a stack that must be limited on its own, such as the call behind a
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) (put the timeout inside the breaker, so
/// that a hanging service counts as failing).
///
/// Dropping the call cancels an async node at its next `.await`: its future and everything it
/// owns (connections, permits of inner layers) are dropped before the error is returned. A
/// [`cpu_node`](agentgraph_engine::cpu_node)'s closure cannot be stopped on its thread; its
/// result is discarded when it comes. The clock is tokio's: tests run it with paused time.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{TimedOut, TimeoutLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hangs = async_node(|_: Arc<Count>, _| async {
///     std::future::pending::<()>().await;
///     Ok(CountUpdate::new())
/// });
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("hang", NodeBuilder::new().layer(TimeoutLayer::new(Duration::from_secs(5))).node(hangs))
///     .add_edge(START, "hang")
///     .add_edge("hang", END);
/// match b.compile()?.invoke(Count::default()).await {
///     Err(Error::NodeFailed { source, .. }) => {
///         assert_eq!(source.downcast_ref::<TimedOut>().unwrap().after, Duration::from_secs(5));
///     }
///     other => panic!("{:?}", other.map(|c| c.n)),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    /// Calls time out after `after`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::TimeoutLayer;
    /// assert_eq!(TimeoutLayer::new(Duration::from_secs(3)).after(), Duration::from_secs(3));
    /// ```
    pub fn new(after: Duration) -> Self {
        TimeoutLayer { after }
    }

    /// The time limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::TimeoutLayer;
    /// assert_eq!(TimeoutLayer::new(Duration::from_millis(10)).after(), Duration::from_millis(10));
    /// ```
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl<N> Layer<N> for TimeoutLayer {
    type Node = Timeout<N>;

    fn layer(&self, inner: N) -> Timeout<N> {
        Timeout::new(inner, self.after)
    }
}
