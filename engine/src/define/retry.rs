//! [`RetryPolicy`]: how often a failed node runs again, and how long it waits first.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::BoxError;

type Predicate = dyn Fn(&BoxError) -> bool + Send + Sync;

/// How a node's failed attempts are retried: at most `max_attempts` attempts, waiting an
/// exponentially growing delay (with jitter, up to a cap) between them, for the errors a
/// predicate accepts.
///
/// Set one per node with [`GraphBuilder::retry`](crate::GraphBuilder::retry), or for every
/// node with [`GraphBuilder::default_retry`](crate::GraphBuilder::default_retry). Every attempt
/// is an [`EventKind::NodeStarted`](crate::EventKind::NodeStarted) and every scheduled retry an
/// [`EventKind::RetryScheduled`](crate::EventKind::RetryScheduled). With a checkpoint store, a
/// scheduled retry is persisted before its delay starts: a crashed run resumes at the next
/// attempt, not the first. A delay longer than
/// [`RunConfig::max_inline_backoff`](crate::RunConfig::max_inline_backoff) is not slept
/// through: the run stops until the retry is due ([`RetryAt`](crate::RetryAt)), and its
/// continuation goes on with the same attempt count and delays. A panic is never retried (it
/// is a bug, not a flake); a timed-out attempt is, if the predicate accepts
/// [`NodeTimedOut`](crate::NodeTimedOut).
///
/// The delay of retry `n` (from 1) is `initial * factor^(n-1)`, capped at `max_delay`; with
/// jitter, a random part of the delay is added. The schedule comes from the `backon` crate.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_engine::RetryPolicy;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("bad request")]
/// struct BadRequest;
///
/// let policy = RetryPolicy::new(5)
///     .backoff(Duration::from_millis(100), Duration::from_secs(10))
///     .factor(3.0)
///     .retry_if(|e| !e.is::<BadRequest>()); // a bad request fails at once
/// assert_eq!(policy.max_attempts(), 5);
/// // Jitter adds up to one more delay: 100 ms, then 300 ms, then 900 ms, plus jitter.
/// assert!(policy.delay(1, 0) >= Duration::from_millis(99));
/// assert!(policy.delay(3, 0) >= Duration::from_millis(899));
/// assert!(policy.should_retry(&"timeout".into()));
/// assert!(!policy.should_retry(&BadRequest.into()));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial: Duration,
    max_delay: Duration,
    factor: f32,
    jitter: bool,
    retry_if: Option<Arc<Predicate>>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial", &self.initial)
            .field("max_delay", &self.max_delay)
            .field("factor", &self.factor)
            .field("jitter", &self.jitter)
            .field("retry_if", &self.retry_if.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Default for RetryPolicy {
    /// Three attempts, 500 ms then 1 s, with jitter, every error retried.
    fn default() -> Self {
        RetryPolicy::new(3)
    }
}

impl RetryPolicy {
    /// At most `max_attempts` attempts (1 means no retry; 0 is taken as 1), starting at a
    /// 500 ms delay, doubling, capped at 30 s, with jitter, every error retried.
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
            retry_if: None,
        }
    }

    /// No retries: one attempt.
    pub fn never() -> Self {
        RetryPolicy::new(1)
    }

    /// Sets the first delay and the cap of every delay.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max_delay: Duration) -> Self {
        self.initial = initial;
        self.max_delay = max_delay.max(initial);
        self
    }

    /// Sets the growth factor of the delay (default 2; values below 1 are taken as 1).
    #[must_use]
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Turns jitter on or off (on by default). Jitter spreads retries of many tasks so they
    /// do not hit a service at once; it is drawn from the task's id and attempt, so a run's
    /// delays do not depend on the process.
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Retries only the errors for which `retryable` returns true; the others fail the task
    /// at once. Downcast to tell errors apart (`e.is::<MyError>()`,
    /// `e.downcast_ref::<MyError>()`).
    #[must_use]
    pub fn retry_if(
        mut self,
        retryable: impl Fn(&BoxError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::new(retryable));
        self
    }

    /// The most attempts.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether `error` may be retried.
    pub fn should_retry(&self, error: &BoxError) -> bool {
        self.retry_if.as_ref().is_none_or(|p| p(error))
    }

    /// The delay before retry `retry` (from 1: the delay after the first attempt failed).
    /// `seed` draws the jitter; the engine passes one derived from the task id.
    pub fn delay(&self, retry: u32, seed: u64) -> Duration {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_max_times(retry as usize);
        if self.jitter {
            builder = builder.with_jitter().with_jitter_seed(seed);
        }
        builder
            .build()
            .nth(retry.saturating_sub(1) as usize)
            .unwrap_or(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::new(10)
            .backoff(Duration::from_millis(10), Duration::from_millis(50))
            .jitter(false);
        // backon computes in f32: allow a millisecond of rounding.
        let delays: Vec<_> = (1..=5).map(|n| p.delay(n, 0).as_secs_f64() * 1e3).collect();
        for (got, want) in delays.iter().zip([10.0, 20.0, 40.0, 50.0, 50.0]) {
            assert!((got - want).abs() <= 1.0, "{delays:?}");
        }
    }

    #[test]
    fn jitter_is_drawn_from_the_seed() {
        let p = RetryPolicy::new(5).backoff(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(p.delay(2, 7), p.delay(2, 7));
        let d = p.delay(2, 7);
        assert!(
            d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
            "{d:?}"
        );
    }

    #[test]
    fn zero_attempts_means_one() {
        assert_eq!(RetryPolicy::new(0).max_attempts(), 1);
        assert_eq!(RetryPolicy::never().max_attempts(), 1);
    }
}
