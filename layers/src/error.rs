//! The errors the layers add to a node's own.

use agentgraph_engine::CodecError;

/// What a layer of this crate failed at. Nodes return it boxed, as a
/// [`BoxError`](agentgraph_engine::BoxError): downcast to tell it from the node's own errors.
///
/// # Examples
///
/// ```
/// use agentgraph_layers::{Error, Limit};
///
/// let e = Error::Cancelled { node: "fetch".into(), limit: Limit::Rate };
/// assert!(e.to_string().starts_with("node `fetch` was cancelled"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task was cancelled (it timed out, or its run was cancelled) before the limit let it
    /// call the node.
    #[error(
        "node `{node}` was cancelled while it waited for {limit}, so it was not called; \
         if the wait is longer than expected, raise the limit or the node's timeout"
    )]
    Cancelled {
        /// The node.
        node: String,
        /// The limit it waited for.
        limit: Limit,
    },
    /// The cache could not encode the state to make the default key.
    #[error(
        "the cache of node `{node}` could not encode the state to make its key: {source}; \
         give the layer a key of your own with `CacheLayer::with_key`"
    )]
    Key {
        /// The node.
        node: String,
        /// The codec's error.
        source: CodecError,
    },
    /// The cache could not encode the node's update to keep it.
    #[error(
        "the cache of node `{node}` could not encode the node's update: {source}; a cached \
         update must encode with the engine's codec, as a checkpointed one must"
    )]
    Encode {
        /// The node.
        node: String,
        /// The codec's error.
        source: CodecError,
    },
    /// A cached update did not decode.
    #[error(
        "the cache of node `{node}` holds an update that does not decode: {source}; the update \
         type's `Serialize` and `Deserialize` disagree (`skip_serializing_if` does, with \
         bincode)"
    )]
    Decode {
        /// The node.
        node: String,
        /// The codec's error.
        source: CodecError,
    },
    /// Another task with the same cache key called the node while this one waited for its
    /// result, and the node failed. Nothing was cached: the next call runs the node again.
    #[error(
        "node `{node}` failed in the call this task waited for (a call with the same cache \
         key): {message}; nothing was cached, so the next call runs the node again"
    )]
    Shared {
        /// The node.
        node: String,
        /// The node's error, as text.
        message: String,
    },
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which limit a cancelled task waited for.
///
/// # Examples
///
/// ```
/// use agentgraph_layers::Limit;
/// assert_eq!(Limit::Concurrency.to_string(), "a concurrency-limit permit");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// A [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer).
    Concurrency,
    /// A [`RateLimitLayer`](crate::RateLimitLayer).
    Rate,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Concurrency => "a concurrency-limit permit",
            Limit::Rate => "its rate limit",
        })
    }
}
