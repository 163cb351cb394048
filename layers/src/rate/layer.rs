//! [`RateLimitLayer`].

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use agentgraph_engine::Layer;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::RateLimit;

/// Lets the nodes it wraps start at most as many calls as a [`Quota`] allows: a burst, then
/// one call per replenish interval. A call over the quota waits for its turn (governor's
/// GCRA limiter, whose state is one atomic word).
///
/// The limiter belongs to the layer value: every node wrapped by one value, or by its clones,
/// shares it (for an API's rate limit that several nodes call).
///
/// The wait is part of the call: a node's timeout counts it, and the engine drops a task that
/// times out or is cancelled while it waits. A call still waiting when its
/// [`Context`](agentgraph_engine::Context) is cancelled (one polled by a task of its own)
/// stops waiting and returns [`Error::Cancelled`](crate::Error::Cancelled) without calling
/// the node.
///
/// Waiters poll the limiter when their computed turn comes; they are not queued, so under
/// contention the order in which waiting calls start is not guaranteed.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use std::num::NonZeroU32;
///
/// use agentgraph_layers::{Quota, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 10 calls a second, in bursts of up to 5.
/// let quota = Quota::per_second(NonZeroU32::new(10).unwrap())
///     .allow_burst(NonZeroU32::new(5).unwrap());
/// let node = NodeBuilder::new()
///     .layer(RateLimitLayer::new(quota))
///     .node(async_node(|_: Arc<Count>, _| async { Ok(CountUpdate::new().n(1)) }));
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("call_api", node).add_edge(START, "call_api").add_edge("call_api", END);
/// assert_eq!(b.compile()?.invoke(Count::default()).await?.n, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
    quota: Quota,
}

impl RateLimitLayer {
    /// A limiter of `quota`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    ///
    /// use agentgraph_layers::{Quota, RateLimitLayer};
    ///
    /// let quota = Quota::with_period(Duration::from_millis(250)).unwrap();
    /// let layer = RateLimitLayer::new(quota);
    /// assert_eq!(layer.quota().replenish_interval(), Duration::from_millis(250));
    /// ```
    pub fn new(quota: Quota) -> Self {
        RateLimitLayer {
            limiter: Arc::new(RateLimiter::direct(quota)),
            quota,
        }
    }

    /// `calls` calls a second, all of which may come in one burst.
    ///
    /// # Panics
    ///
    /// If `calls` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::RateLimitLayer;
    /// let layer = RateLimitLayer::per_second(20);
    /// assert_eq!(layer.quota().burst_size().get(), 20);
    /// ```
    pub fn per_second(calls: u32) -> Self {
        RateLimitLayer::new(Quota::per_second(nonzero(calls, "per_second")))
    }

    /// `calls` calls a minute, all of which may come in one burst.
    ///
    /// # Panics
    ///
    /// If `calls` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::RateLimitLayer;
    /// let layer = RateLimitLayer::per_minute(60);
    /// assert_eq!(layer.quota().replenish_interval(), Duration::from_secs(1));
    /// ```
    pub fn per_minute(calls: u32) -> Self {
        RateLimitLayer::new(Quota::per_minute(nonzero(calls, "per_minute")))
    }

    /// The quota.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::RateLimitLayer;
    /// assert_eq!(RateLimitLayer::per_minute(3).quota().burst_size().get(), 3);
    /// ```
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

fn nonzero(calls: u32, constructor: &str) -> NonZeroU32 {
    NonZeroU32::new(calls).unwrap_or_else(|| {
        panic!("RateLimitLayer::{constructor}(0): a quota of 0 calls would never let the node run")
    })
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl<N> Layer<N> for RateLimitLayer {
    type Node = RateLimit<N>;

    fn layer(&self, inner: N) -> RateLimit<N> {
        RateLimit::new(inner, self.limiter.clone())
    }
}
