//! Node middleware for agentgraph: [`Layer`](agentgraph_engine::Layer)s that wrap a
//! [`Node`](agentgraph_engine::Node), stacked with
//! [`NodeBuilder`](agentgraph_engine::NodeBuilder) as tower stacks services.
//!
//! | layer | what it does | built on |
//! |---|---|---|
//! | [`ConcurrencyLimitLayer`] | at most N calls in flight, shared by every node it wraps | tokio's `Semaphore` |
//! | [`RateLimitLayer`] | at most N calls per period, in bursts of at most M | governor (GCRA) |
//! | [`CacheLayer`] | returns a stored result for an input seen within a time to live | moka |
//! | [`CircuitBreakerLayer`] | fails calls fast with [`CircuitOpen`] while a service fails, then probes it | its own state machine, on tokio's clock |
//! | [`FallbackLayer`] | calls another node when the node fails, or when its result is rejected | |
//! | [`TimeoutLayer`] | drops a call that takes too long, failing with [`TimedOut`] | tokio's `timeout` |
//! | [`Batcher`] (a handle nodes call) | combines concurrent calls into one call of a batch function | a tokio task per batch |
//!
//! Retries are not layers, and neither is a graph node's own timeout: the engine runs them,
//! because they must survive a crash. [`TimeoutLayer`] is for a node used where the graph's
//! timeout does not reach.
//!
//! # Quick start
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use agentgraph_engine::*;
//! use agentgraph_layers::{CacheLayer, ConcurrencyLimitLayer, RateLimitLayer};
//! # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
//! # #[state(crate = agentgraph_engine)]
//! # struct Search { query: String, #[reducer(append)] hits: Vec<String> }
//!
//! async fn call_api(s: Arc<Search>, _ctx: Context) -> Result<SearchUpdate, BoxError> {
//!     Ok(SearchUpdate::new().hits(vec![format!("result for {}", s.query)]))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Outermost first: a hit returns at once; a miss waits for the rate limit, then a permit.
//! let node = NodeBuilder::new()
//!     .layer(CacheLayer::new(1_000, Duration::from_secs(600)))
//!     .layer(RateLimitLayer::per_second(5))
//!     .layer(ConcurrencyLimitLayer::new(2))
//!     .node(async_node(call_api));
//!
//! let mut graph = GraphBuilder::<Search>::new();
//! graph.add_node_with("search", node).add_edge(START, "search").add_edge("search", END);
//! let done = graph.compile()?.invoke(Search { query: "rust".into(), ..Default::default() }).await?;
//! assert_eq!(done.hits, ["result for rust"]);
//! # Ok(()) }
//! ```

mod batch;
mod breaker;
mod cache;
mod error;
mod fallback;
mod limit;
mod rate;
mod timeout;

pub use batch::Batcher;
pub use breaker::{CircuitBreaker, CircuitBreakerLayer};
pub use cache::{CacheKey, CacheLayer, Cached, DefaultKey};
pub use error::{CircuitOpen, CircuitState, Error, Limit, Result, TimedOut};
pub use fallback::{
    Fallback, FallbackCause, FallbackLayer, FallbackNode, FallbackOnResult, NoResultCheck,
    NodeFallback, WithCause, with_cause,
};
pub use governor::Quota;
pub use limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use rate::{RateLimit, RateLimitLayer};
pub use timeout::{Timeout, TimeoutLayer};

/// The layers and their nodes can be shared between threads (checked at compile time).
const _: fn() = || {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<ConcurrencyLimitLayer>();
    send_sync::<ConcurrencyLimit<()>>();
    send_sync::<RateLimitLayer>();
    send_sync::<RateLimit<()>>();
    send_sync::<CacheLayer>();
    send_sync::<Cached<(), DefaultKey>>();
    send_sync::<CircuitBreakerLayer>();
    send_sync::<CircuitBreaker<()>>();
    send_sync::<FallbackLayer<NodeFallback<()>>>();
    send_sync::<Fallback<(), (), NoResultCheck>>();
    send_sync::<TimeoutLayer>();
    send_sync::<Timeout<()>>();
    send_sync::<Batcher<(), ()>>();
};
