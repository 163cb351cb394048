//! Node middleware for agentgraph: [`Layer`](agentgraph_engine::Layer)s that wrap a
//! [`Node`](agentgraph_engine::Node), stacked with
//! [`NodeBuilder`](agentgraph_engine::NodeBuilder) as tower stacks services.
//!
//! | layer | what it does | built on |
//! |---|---|---|
//! | [`ConcurrencyLimitLayer`] | at most N calls in flight, shared by every node it wraps | tokio's `Semaphore` |
//! | [`RateLimitLayer`] | at most N calls per period, in bursts of at most M | governor (GCRA) |
//! | [`CacheLayer`] | returns a stored result for an input seen within a time to live | moka |
//!
//! Retries and timeouts are not layers: the engine runs them, because they must survive a
//! crash.
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

mod cache;
mod error;
mod limit;
mod rate;

pub use cache::{CacheKey, CacheLayer, Cached, DefaultKey};
pub use error::{Error, Limit, Result};
pub use governor::Quota;
pub use limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use rate::{RateLimit, RateLimitLayer};

/// The layers and their nodes can be shared between threads (checked at compile time).
const _: fn() = || {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<ConcurrencyLimitLayer>();
    send_sync::<ConcurrencyLimit<()>>();
    send_sync::<RateLimitLayer>();
    send_sync::<RateLimit<()>>();
    send_sync::<CacheLayer>();
    send_sync::<Cached<(), DefaultKey>>();
};
