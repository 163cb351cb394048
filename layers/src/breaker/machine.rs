//! The breaker's state machine, with the time passed in: what the layer's node consults before
//! and after each call, and what the property tests drive directly.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::CircuitState;

/// When a closed breaker opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Trip {
    /// After this many failures in a row (at least 1).
    Consecutive(u32),
    /// When, among the calls of the last `window`, at least `min_calls` were made and at
    /// least `rate` of them failed.
    Rate {
        rate: f64,
        window: Duration,
        min_calls: u32,
    },
}

/// The buckets a failure-rate window is counted in.
pub(crate) const BUCKETS: usize = 10;

/// A permission to call, to be given back with the call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The phase it was given in: an outcome from an earlier phase is not counted.
    generation: u64,
    /// Given in the half-open state.
    probe: bool,
}

/// How a call ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    /// Not counted either way (an interrupt, an error the breaker's predicate leaves out, a
    /// call dropped before it ended); a probe's slot is given back.
    Ignored,
}

/// A refused call: the state, and how long until a probe is let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) state: CircuitState,
    pub(crate) retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The bucket's index since the machine's origin.
    index: u64,
    calls: u32,
    failures: u32,
}

/// The outcomes of the closed state.
#[derive(Debug, Clone)]
enum Counts {
    Consecutive(u32),
    Window([Bucket; BUCKETS]),
}

impl Counts {
    fn fresh(trip: Trip) -> Self {
        match trip {
            Trip::Consecutive(_) => Counts::Consecutive(0),
            // Index u64::MAX is never counted: no bucket starts filled.
            Trip::Rate { .. } => Counts::Window(
                [Bucket {
                    index: u64::MAX,
                    calls: 0,
                    failures: 0,
                }; BUCKETS],
            ),
        }
    }
}

#[derive(Debug, Clone)]
enum Phase {
    Closed(Counts),
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

/// The state machine of one breaker (shared, behind a mutex, by the nodes it wraps).
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    trip: Trip,
    recovery: Duration,
    probes: u32,
    origin: Instant,
    phase: Phase,
    generation: u64,
}

impl Machine {
    pub(crate) fn new(trip: Trip, recovery: Duration, probes: u32, origin: Instant) -> Self {
        Machine {
            trip,
            recovery,
            probes: probes.max(1),
            origin,
            phase: Phase::Closed(Counts::fresh(trip)),
            generation: 0,
        }
    }

    pub(crate) fn trip(&self) -> Trip {
        self.trip
    }

    pub(crate) fn recovery(&self) -> Duration {
        self.recovery
    }

    pub(crate) fn probes(&self) -> u32 {
        self.probes
    }

    /// The state a call made at `now` would find.
    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        match self.phase {
            Phase::Closed(_) => CircuitState::Closed,
            Phase::Open { until } if now < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Asks to call at `now`.
    pub(crate) fn acquire(&mut self, now: Instant) -> Result<Ticket, Refused> {
        if let Phase::Open { until } = self.phase {
            if now < until {
                return Err(Refused {
                    state: CircuitState::Open,
                    retry_after: Some(until - now),
                });
            }
            self.enter(Phase::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            });
        }
        let generation = self.generation;
        match &mut self.phase {
            Phase::Closed(_) => Ok(Ticket {
                generation,
                probe: false,
            }),
            Phase::HalfOpen { in_flight, .. } if *in_flight < self.probes => {
                *in_flight += 1;
                Ok(Ticket {
                    generation,
                    probe: true,
                })
            }
            Phase::HalfOpen { .. } => Err(Refused {
                state: CircuitState::HalfOpen,
                retry_after: None,
            }),
            Phase::Open { .. } => unreachable!("an open breaker was moved to half-open above"),
        }
    }

    /// Gives a ticket back with its call's outcome, at `now`.
    pub(crate) fn record(&mut self, ticket: Ticket, outcome: Outcome, now: Instant) {
        if ticket.generation != self.generation {
            // A call of an earlier phase (made while closed, ended after the breaker opened):
            // the phase it would count in is over.
            return;
        }
        let bucket = self.bucket_index(now);
        match &mut self.phase {
            Phase::Closed(counts) => {
                let tripped = match (counts, self.trip, outcome) {
                    (_, _, Outcome::Ignored) => false,
                    (Counts::Consecutive(n), Trip::Consecutive(max), _) => {
                        if outcome == Outcome::Failure {
                            *n += 1;
                            *n >= max
                        } else {
                            *n = 0;
                            false
                        }
                    }
                    (
                        Counts::Window(buckets),
                        Trip::Rate {
                            rate, min_calls, ..
                        },
                        _,
                    ) => {
                        let b = &mut buckets[(bucket % BUCKETS as u64) as usize];
                        if b.index != bucket {
                            *b = Bucket {
                                index: bucket,
                                ..Bucket::default()
                            };
                        }
                        b.calls += 1;
                        b.failures += u32::from(outcome == Outcome::Failure);
                        let (calls, failures) = buckets
                            .iter()
                            .filter(|b| b.index <= bucket && bucket - b.index < BUCKETS as u64)
                            .fold((0u32, 0u32), |(c, f), b| (c + b.calls, f + b.failures));
                        calls >= min_calls
                            && calls > 0
                            && f64::from(failures) >= rate * f64::from(calls)
                    }
                    _ => unreachable!("the counts match the trip"),
                };
                if tripped {
                    self.open(now);
                }
            }
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } => {
                debug_assert!(ticket.probe, "a half-open ticket is a probe");
                *in_flight -= 1;
                match outcome {
                    Outcome::Failure => self.open(now),
                    Outcome::Success => {
                        *succeeded += 1;
                        if *succeeded >= self.probes {
                            self.close();
                        }
                    }
                    Outcome::Ignored => {}
                }
            }
            Phase::Open { .. } => {}
        }
    }

    /// The index of the failure-rate bucket `now` falls in.
    pub(crate) fn bucket_index(&self, now: Instant) -> u64 {
        match self.trip {
            Trip::Rate { window, .. } => {
                let len = (window.as_nanos() / BUCKETS as u128).max(1);
                (now.saturating_duration_since(self.origin).as_nanos() / len) as u64
            }
            Trip::Consecutive(_) => 0,
        }
    }

    fn open(&mut self, now: Instant) {
        self.enter(Phase::Open {
            until: now + self.recovery,
        });
    }

    fn close(&mut self) {
        self.enter(Phase::Closed(Counts::fresh(self.trip)));
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
