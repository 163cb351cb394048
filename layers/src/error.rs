//! The errors the layers add to a node's own.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    /// The batch function of a [`Batcher`](crate::Batcher) failed as a whole: every call of
    /// the batch gets this error, sharing the function's.
    #[error(
        "the batch of {calls} calls this call was part of failed as a whole: {source}; every \
         call of the batch got this error"
    )]
    BatchFailed {
        /// How many calls the batch held.
        calls: usize,
        /// The batch function's error, shared by the calls of the batch.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The batch function of a [`Batcher`](crate::Batcher) returned another number of results
    /// than it was given items: nothing says which result belongs to which call, so every
    /// call of the batch fails.
    #[error(
        "the batch function was given {expected} items and returned {returned} results; it \
         must return one result per item, in the order of the items"
    )]
    BatchSize {
        /// The items of the batch.
        expected: usize,
        /// The results returned.
        returned: usize,
    },
    /// The batch this call was part of never answered: its batch function panicked, or the
    /// runtime shut down while it ran.
    #[error(
        "the batch this call was part of ended without an answer: its batch function \
         panicked or its task was dropped"
    )]
    BatchLost,
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

/// The error of a call that a [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) refused
/// without calling the node: its breaker is open, or half-open with every probe taken.
///
/// A [`RetryPolicy`](agentgraph_engine::RetryPolicy) sees it like any other error: recognise
/// it with `e.is::<CircuitOpen>()` (see the layer's docs for how retries and an open breaker
/// go together).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_engine::{BoxError, RetryPolicy};
/// use agentgraph_layers::{CircuitOpen, CircuitState};
///
/// let e = CircuitOpen::new("search", Some("search-api".into()), CircuitState::Open, Some(Duration::from_secs(5)));
/// assert!(e.to_string().contains("is open"));
/// // Fail at once while the breaker is open, retry everything else.
/// let retry = RetryPolicy::new(3).retry_if(|e| !e.is::<CircuitOpen>());
/// assert!(!retry.should_retry(&BoxError::from(e)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct CircuitOpen {
    /// The node whose call was refused.
    pub node: String,
    /// The breaker's name, if it was given one
    /// ([`CircuitBreakerLayer::name`](crate::CircuitBreakerLayer::name)).
    pub breaker: Option<String>,
    /// [`CircuitState::Open`], or [`CircuitState::HalfOpen`] when every probe was taken.
    pub state: CircuitState,
    /// How long until the breaker lets a probe through (open breakers only).
    pub retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// The error for a call of `node` refused by a breaker (named `breaker`) in `state`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::{CircuitOpen, CircuitState};
    /// let e = CircuitOpen::new("search", None, CircuitState::HalfOpen, None);
    /// assert_eq!(e.state, CircuitState::HalfOpen);
    /// ```
    pub fn new(
        node: impl Into<String>,
        breaker: Option<String>,
        state: CircuitState,
        retry_after: Option<Duration>,
    ) -> Self {
        CircuitOpen {
            node: node.into(),
            breaker,
            state,
            retry_after,
        }
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the circuit breaker")?;
        if let Some(name) = &self.breaker {
            write!(f, " `{name}`")?;
        }
        write!(f, " of node `{}` is {}", self.node, self.state)?;
        match (self.state, self.retry_after) {
            (CircuitState::HalfOpen, _) => f.write_str(
                " and its probes are taken, so the node was not called; it closes once the \
                 probes succeed",
            ),
            (_, Some(after)) => write!(
                f,
                ", so the node was not called; it lets a probe through in {after:?}"
            ),
            (_, None) => f.write_str(", so the node was not called"),
        }
    }
}

/// The state of a circuit breaker.
///
/// # Examples
///
/// ```
/// use agentgraph_layers::CircuitState;
/// assert_eq!(CircuitState::HalfOpen.to_string(), "half-open");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through; their outcomes are counted.
    Closed,
    /// Calls fail fast with [`CircuitOpen`] until the recovery timeout has passed.
    Open,
    /// A limited number of probe calls go through: the breaker closes when they succeed and
    /// opens again when one fails.
    HalfOpen,
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        })
    }
}

/// The error of a call that a [`TimeoutLayer`](crate::TimeoutLayer) stopped: the node took
/// longer than the layer's timeout, and its call was dropped.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_engine::{BoxError, RetryPolicy};
/// use agentgraph_layers::TimedOut;
///
/// let e = TimedOut::new("search", Duration::from_secs(2));
/// assert_eq!(e.to_string(), "node `search` timed out after 2s (its timeout layer's limit); its call was dropped");
/// let retry = RetryPolicy::new(3).retry_if(|e| e.is::<TimedOut>());
/// assert!(retry.should_retry(&BoxError::from(e)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node `{node}` timed out after {after:?} (its timeout layer's limit); its call was dropped"
)]
#[non_exhaustive]
pub struct TimedOut {
    /// The node.
    pub node: String,
    /// The timeout.
    pub after: Duration,
}

impl TimedOut {
    /// The error for a call of `node` stopped after `after`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::TimedOut;
    /// assert_eq!(TimedOut::new("n", Duration::from_millis(5)).after, Duration::from_millis(5));
    /// ```
    pub fn new(node: impl Into<String>, after: Duration) -> Self {
        TimedOut {
            node: node.into(),
            after,
        }
    }
}
