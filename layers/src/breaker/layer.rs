//! [`CircuitBreakerLayer`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_engine::{BoxError, Layer};
use tokio::time::Instant;

use super::machine::{Machine, Trip};
use super::{CircuitBreaker, Shared};
use crate::error::CircuitState;

/// A circuit breaker: while the service the nodes it wraps call is failing, it stops calling
/// them and fails their calls at once with [`CircuitOpen`](crate::CircuitOpen), then lets a
/// few probe calls through to find out whether the service is back.
///
/// - **Closed** (at first): calls go through and their outcomes are counted. The breaker
///   opens after [`consecutive_failures`](CircuitBreakerLayer::consecutive_failures) failures
///   in a row, or when the [`failure_rate`](CircuitBreakerLayer::failure_rate) of the calls of
///   a sliding window (counted in 10 buckets of a tenth of the window) reaches a threshold,
///   once the window holds a minimum number of calls.
/// - **Open**: every call fails fast with [`CircuitOpen`](crate::CircuitOpen), without calling
///   the node, until the [`recovery_timeout`](CircuitBreakerLayer::recovery_timeout) has passed.
/// - **Half-open**: at most [`half_open_probes`](CircuitBreakerLayer::half_open_probes) calls
///   at a time go through (the others fail fast). The breaker closes when that many probes
///   have succeeded, and opens again (for another recovery timeout) when one fails.
///
/// The breaker belongs to the layer value: every node wrapped by one value, or by its clones,
/// shares its state; wrap every node that calls one service with clones of one layer. Only
/// outcomes of calls made in the current state count: a call started while the breaker was
/// closed that fails after it opened changes nothing. Errors count as failures unless they are
/// interrupts ([`InterruptSignal`](agentgraph_engine::InterruptSignal)) or a layer's
/// [`Cancelled`](crate::Error::Cancelled); [`failure_if`](CircuitBreakerLayer::failure_if)
/// chooses otherwise. A call dropped before it ends (a timeout, a cancelled run) counts
/// neither way, and gives its probe back. The time is tokio's (`tokio::time::Instant`), so
/// tests run it with paused time.
///
/// **Retries.** The engine's [`RetryPolicy`](agentgraph_engine::RetryPolicy) sits outside
/// every layer: each attempt asks the breaker again. While it is open, an attempt fails at
/// once with `CircuitOpen`, and a retry spends an attempt and its backoff delay to fail again,
/// unless the delay outlasts the recovery timeout, in which case the retry may be one of the
/// half-open probes. Either leave the error out of the retries
/// (`retry_if(|e| !e.is::<CircuitOpen>())`, then handle it with a
/// [`FallbackLayer`](crate::FallbackLayer) or an error edge), or give the policy a backoff
/// longer than the recovery timeout; `CircuitOpen::retry_after` says how long is left.
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
/// use agentgraph_layers::{CircuitBreakerLayer, CircuitOpen, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreakerLayer::consecutive_failures(2)
///     .recovery_timeout(Duration::from_secs(30))
///     .name("flaky-api");
/// let down = async_node(|_: Arc<Count>, _| async { Err::<CountUpdate, BoxError>("503".into()) });
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("call", NodeBuilder::new().layer(breaker.clone()).node(down))
///     .add_edge(START, "call")
///     .add_edge("call", END);
/// let graph = b.compile()?;
///
/// for _ in 0..2 {
///     assert!(graph.invoke(Count::default()).await.is_err()); // the service's own error
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// match graph.invoke(Count::default()).await {
///     Err(Error::NodeFailed { source, .. }) => assert!(source.is::<CircuitOpen>()),
///     other => panic!("{:?}", other.map(|c| c.n)),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl CircuitBreakerLayer {
    /// A breaker that opens after `failures` failed calls in a row (a success resets the
    /// count; 0 is taken as 1), with a recovery timeout of 30 s and one half-open probe.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::{CircuitBreakerLayer, CircuitState};
    /// let breaker = CircuitBreakerLayer::consecutive_failures(5);
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// ```
    pub fn consecutive_failures(failures: u32) -> Self {
        Self::with_trip(Trip::Consecutive(failures.max(1)))
    }

    /// A breaker that opens when at least `rate` (from 0 to 1) of the calls that ended within
    /// the last `window` failed, once that window holds at least `min_calls` calls (0 is taken
    /// as 1); with a recovery timeout of 30 s and one half-open probe. The window slides in
    /// steps of a tenth of its length.
    ///
    /// # Panics
    ///
    /// If `rate` is not between 0 (excluded) and 1 (included), or `window` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// // Half the calls of the last minute failed, out of at least 20.
    /// let breaker = CircuitBreakerLayer::failure_rate(0.5, Duration::from_secs(60), 20);
    /// # let _ = breaker;
    /// ```
    pub fn failure_rate(rate: f64, window: Duration, min_calls: u32) -> Self {
        assert!(
            rate > 0.0 && rate <= 1.0,
            "CircuitBreakerLayer::failure_rate({rate}, ..): the rate is a fraction of the calls, \
             above 0 and at most 1"
        );
        assert!(
            !window.is_zero(),
            "CircuitBreakerLayer::failure_rate(.., 0s, ..): the window must be longer than zero"
        );
        Self::with_trip(Trip::Rate {
            rate,
            window,
            min_calls: min_calls.max(1),
        })
    }

    fn with_trip(trip: Trip) -> Self {
        CircuitBreakerLayer {
            shared: Arc::new(Shared {
                name: None,
                machine: Mutex::new(Machine::new(
                    trip,
                    Duration::from_secs(30),
                    1,
                    Instant::now(),
                )),
                failure_if: None,
            }),
        }
    }

    /// Rebuilds the shared part with one setting changed: setters are for a new layer, before
    /// it is cloned onto nodes (a clone made before keeps the old breaker).
    fn rebuild(self, f: impl FnOnce(&mut Shared)) -> Self {
        let machine = self.shared.machine().clone();
        let mut shared = Shared {
            name: self.shared.name.clone(),
            machine: Mutex::new(machine),
            failure_if: self.shared.failure_if.clone(),
        };
        f(&mut shared);
        CircuitBreakerLayer {
            shared: Arc::new(shared),
        }
    }

    /// How long an open breaker fails calls before it lets probes through (default 30 s).
    ///
    /// Setters make a new breaker: set everything before cloning the layer onto nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// let breaker = CircuitBreakerLayer::consecutive_failures(3)
    ///     .recovery_timeout(Duration::from_secs(10));
    /// assert_eq!(breaker.get_recovery_timeout(), Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn recovery_timeout(self, timeout: Duration) -> Self {
        self.rebuild(|s| {
            let m = s.machine.get_mut().unwrap_or_else(|e| e.into_inner());
            *m = Machine::new(m.trip(), timeout, m.probes(), Instant::now());
        })
    }

    /// How many probe calls a half-open breaker lets through at a time, and how many must
    /// succeed for it to close (default 1; 0 is taken as 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// let breaker = CircuitBreakerLayer::consecutive_failures(3).half_open_probes(2);
    /// assert_eq!(breaker.get_half_open_probes(), 2);
    /// ```
    #[must_use]
    pub fn half_open_probes(self, probes: u32) -> Self {
        self.rebuild(|s| {
            let m = s.machine.get_mut().unwrap_or_else(|e| e.into_inner());
            *m = Machine::new(m.trip(), m.recovery(), probes, Instant::now());
        })
    }

    /// Counts only the errors for which `is_failure` returns true as failures; the others
    /// count neither way (a bad request says nothing about the service's health). Interrupts
    /// are never failures.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::CircuitBreakerLayer;
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("bad request")]
    /// struct BadRequest;
    ///
    /// let breaker = CircuitBreakerLayer::consecutive_failures(5)
    ///     .failure_if(|e| !e.is::<BadRequest>());
    /// # let _ = breaker;
    /// ```
    #[must_use]
    pub fn failure_if(
        self,
        is_failure: impl Fn(&BoxError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rebuild(|s| s.failure_if = Some(Arc::new(is_failure)))
    }

    /// Names the breaker (the service it guards): [`CircuitOpen`](crate::CircuitOpen) errors
    /// carry the name.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// let breaker = CircuitBreakerLayer::consecutive_failures(5).name("openai");
    /// assert_eq!(breaker.get_name(), Some("openai"));
    /// ```
    #[must_use]
    pub fn name(self, name: impl Into<String>) -> Self {
        let name: Arc<str> = name.into().into();
        self.rebuild(|s| s.name = Some(name))
    }

    /// The breaker's name, if it was given one.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// assert_eq!(CircuitBreakerLayer::consecutive_failures(5).get_name(), None);
    /// ```
    pub fn get_name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// The recovery timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// let breaker = CircuitBreakerLayer::consecutive_failures(5);
    /// assert_eq!(breaker.get_recovery_timeout(), Duration::from_secs(30));
    /// ```
    pub fn get_recovery_timeout(&self) -> Duration {
        self.shared.machine().recovery()
    }

    /// The probes of the half-open state.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// assert_eq!(CircuitBreakerLayer::consecutive_failures(5).get_half_open_probes(), 1);
    /// ```
    pub fn get_half_open_probes(&self) -> u32 {
        self.shared.machine().probes()
    }

    /// The state the next call would find: an open breaker whose recovery timeout has passed
    /// is reported half-open.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::{CircuitBreakerLayer, CircuitState};
    /// assert_eq!(CircuitBreakerLayer::consecutive_failures(1).state(), CircuitState::Closed);
    /// ```
    pub fn state(&self) -> CircuitState {
        self.shared.machine().state(Instant::now())
    }
}

impl fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<N> Layer<N> for CircuitBreakerLayer {
    type Node = CircuitBreaker<N>;

    fn layer(&self, inner: N) -> CircuitBreaker<N> {
        CircuitBreaker::new(inner, self.shared.clone())
    }
}
