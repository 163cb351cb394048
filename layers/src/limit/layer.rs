//! [`ConcurrencyLimitLayer`].

use std::sync::Arc;

use agentgraph_engine::Layer;
use tokio::sync::Semaphore;

use super::ConcurrencyLimit;

/// Lets at most `max` calls of the nodes it wraps run at once; the others wait for a permit,
/// in the order they asked for one.
///
/// The limit belongs to the layer value: every node wrapped by one value, or by its clones,
/// shares it (for a quota of an API several nodes call). Make a layer per node with
/// [`new`](ConcurrencyLimitLayer::new) for a limit of its own.
///
/// A call holds its permit until the node's future completes, also for a
/// [`cpu_node`](agentgraph_engine::cpu_node), whose future waits for the closure's result. A
/// call whose future is dropped (the engine drops a task that times out or is cancelled) frees
/// its permit then, even if a CPU-bound closure it started is still running on its thread. A
/// call still waiting for a permit when its [`Context`](agentgraph_engine::Context) is
/// cancelled (one polled by a task of its own) stops waiting and returns
/// [`Error::Cancelled`](crate::Error::Cancelled) without calling the node.
///
/// # Examples
///
/// Two nodes that share a limit of one call at a time:
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::ConcurrencyLimitLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let one_at_a_time = ConcurrencyLimitLayer::new(1);
/// let add = |_: Arc<Count>, _| async { Ok(CountUpdate::new().n(1)) };
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("a", NodeBuilder::new().layer(one_at_a_time.clone()).node(async_node(add)))
///     .add_node_with("b", NodeBuilder::new().layer(one_at_a_time.clone()).node(async_node(add)))
///     .add_edges(START, ["a", "b"])
///     .add_edge("a", END)
///     .add_edge("b", END);
/// assert_eq!(b.compile()?.invoke(Count::default()).await?.n, 2);
/// assert_eq!(one_at_a_time.available(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl ConcurrencyLimitLayer {
    /// A limit of `max` calls in flight.
    ///
    /// # Panics
    ///
    /// If `max` is 0 (no call could ever run) or more than
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::ConcurrencyLimitLayer;
    /// let limit = ConcurrencyLimitLayer::new(4);
    /// assert_eq!(limit.max(), 4);
    /// ```
    pub fn new(max: usize) -> Self {
        assert!(
            max > 0,
            "ConcurrencyLimitLayer::new(0): a limit of 0 calls would never let the node run"
        );
        ConcurrencyLimitLayer {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The most calls in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::ConcurrencyLimitLayer;
    /// assert_eq!(ConcurrencyLimitLayer::new(2).max(), 2);
    /// ```
    pub fn max(&self) -> usize {
        self.max
    }

    /// How many more calls could start now: [`max`](ConcurrencyLimitLayer::max) less the calls
    /// in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::ConcurrencyLimitLayer;
    /// assert_eq!(ConcurrencyLimitLayer::new(2).available(), 2);
    /// ```
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

impl<N> Layer<N> for ConcurrencyLimitLayer {
    type Node = ConcurrencyLimit<N>;

    fn layer(&self, inner: N) -> ConcurrencyLimit<N> {
        ConcurrencyLimit::new(inner, self.semaphore.clone())
    }
}
