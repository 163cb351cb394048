//! Property tests of the breaker's state machine against a plain model of its rules: random
//! calls, outcomes (in any order, including calls that end after the state changed) and
//! clock moves, for both kinds of threshold.

use proptest::prelude::*;

use super::*;

/// The rules, written as plainly as possible: every call of the closed state is kept in a
/// list, and the window is a filter over it.
#[derive(Debug)]
struct Model {
    trip: Trip,
    recovery: Duration,
    probes: u32,
    origin: Instant,
    phase: ModelPhase,
    generation: u64,
}

#[derive(Debug)]
enum ModelPhase {
    /// The outcomes counted since the breaker closed: (when, failed).
    Closed(Vec<(Instant, bool)>),
    Open(Instant),
    HalfOpen {
        in_flight: u32,
        succeeded: u32,
    },
}

impl Model {
    fn new(trip: Trip, recovery: Duration, probes: u32, origin: Instant) -> Self {
        Model {
            trip,
            recovery,
            probes: probes.max(1),
            origin,
            phase: ModelPhase::Closed(Vec::new()),
            generation: 0,
        }
    }

    fn go(&mut self, phase: ModelPhase) {
        self.phase = phase;
        self.generation += 1;
    }

    /// `Ok((generation, probe))` or the refusal.
    fn acquire(&mut self, now: Instant) -> Result<(u64, bool), Refused> {
        if let ModelPhase::Open(until) = self.phase {
            if now < until {
                return Err(Refused {
                    state: CircuitState::Open,
                    retry_after: Some(until - now),
                });
            }
            self.go(ModelPhase::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            });
        }
        match &mut self.phase {
            ModelPhase::Closed(_) => Ok((self.generation, false)),
            ModelPhase::HalfOpen { in_flight, .. } => {
                if *in_flight < self.probes {
                    *in_flight += 1;
                    Ok((self.generation, true))
                } else {
                    Err(Refused {
                        state: CircuitState::HalfOpen,
                        retry_after: None,
                    })
                }
            }
            ModelPhase::Open(_) => unreachable!(),
        }
    }

    /// Whether the closed state's outcomes trip the breaker at `now`.
    fn tripped(&self, outcomes: &[(Instant, bool)], now: Instant) -> bool {
        match self.trip {
            Trip::Consecutive(max) => {
                let in_a_row = outcomes
                    .iter()
                    .rev()
                    .take_while(|(_, failed)| *failed)
                    .count();
                in_a_row as u32 >= max
            }
            Trip::Rate {
                rate,
                window,
                min_calls,
            } => {
                // The window: the calls of the current bucket and of the 9 before it.
                let bucket_len = (window.as_nanos() / BUCKETS as u128).max(1);
                let bucket = |t: Instant| t.duration_since(self.origin).as_nanos() / bucket_len;
                let first = bucket(now).saturating_sub(BUCKETS as u128 - 1);
                let counted: Vec<bool> = outcomes
                    .iter()
                    .filter(|(t, _)| bucket(*t) >= first)
                    .map(|(_, failed)| *failed)
                    .collect();
                let failures = counted.iter().filter(|f| **f).count() as f64;
                counted.len() as u32 >= min_calls && failures >= rate * counted.len() as f64
            }
        }
    }

    fn record(&mut self, generation: u64, outcome: Outcome, now: Instant) {
        if generation != self.generation {
            return;
        }
        let phase = std::mem::replace(&mut self.phase, ModelPhase::Closed(Vec::new()));
        self.phase = match phase {
            ModelPhase::Closed(mut outcomes) => {
                if outcome == Outcome::Ignored {
                    self.phase = ModelPhase::Closed(outcomes);
                    return;
                }
                outcomes.push((now, outcome == Outcome::Failure));
                if self.tripped(&outcomes, now) {
                    self.go(ModelPhase::Open(now + self.recovery));
                    return;
                }
                ModelPhase::Closed(outcomes)
            }
            ModelPhase::HalfOpen {
                in_flight,
                succeeded,
            } => match outcome {
                Outcome::Failure => {
                    self.go(ModelPhase::Open(now + self.recovery));
                    return;
                }
                Outcome::Success if succeeded + 1 >= self.probes => {
                    self.go(ModelPhase::Closed(Vec::new()));
                    return;
                }
                Outcome::Success => ModelPhase::HalfOpen {
                    in_flight: in_flight - 1,
                    succeeded: succeeded + 1,
                },
                Outcome::Ignored => ModelPhase::HalfOpen {
                    in_flight: in_flight - 1,
                    succeeded,
                },
            },
            open @ ModelPhase::Open(_) => open,
        };
    }

    fn state(&self, now: Instant) -> CircuitState {
        match self.phase {
            ModelPhase::Closed(_) => CircuitState::Closed,
            ModelPhase::Open(until) if now < until => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    /// Ends the outstanding call at this index (modulo their number) with this outcome.
    Finish(usize, Outcome),
    /// Moves the clock on, in milliseconds.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        4 => (any::<usize>(), prop_oneof![
            3 => Just(Outcome::Failure),
            3 => Just(Outcome::Success),
            1 => Just(Outcome::Ignored),
        ])
            .prop_map(|(i, o)| Op::Finish(i, o)),
        2 => (0u64..400).prop_map(Op::Advance),
    ]
}

fn trip() -> impl Strategy<Value = Trip> {
    prop_oneof![
        (1u32..5).prop_map(Trip::Consecutive),
        (1u32..=10, 1u64..2_000, 1u32..8).prop_map(|(tenths, window_ms, min_calls)| Trip::Rate {
            rate: f64::from(tenths) / 10.0,
            window: Duration::from_millis(window_ms),
            min_calls,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_machine_follows_the_rules(
        trip in trip(),
        recovery_ms in 1u64..1_000,
        probes in 1u32..4,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let origin = Instant::now();
        let recovery = Duration::from_millis(recovery_ms);
        let mut machine = Machine::new(trip, recovery, probes, origin);
        let mut model = Model::new(trip, recovery, probes, origin);
        let mut now = origin;
        // Outstanding calls: the machine's ticket and the model's (generation, probe).
        let mut calls: Vec<(Ticket, (u64, bool))> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => {
                    let got = machine.acquire(now);
                    let want = model.acquire(now);
                    match (got, want) {
                        (Ok(ticket), Ok(m)) => {
                            prop_assert_eq!(ticket.probe, m.1);
                            calls.push((ticket, m));
                        }
                        (Err(a), Err(b)) => prop_assert_eq!(a, b),
                        (a, b) => prop_assert!(false, "machine {:?}, model {:?}", a, b),
                    }
                }
                Op::Finish(i, outcome) if !calls.is_empty() => {
                    let (ticket, (generation, _)) = calls.remove(i % calls.len());
                    machine.record(ticket, outcome, now);
                    model.record(generation, outcome, now);
                }
                Op::Finish(..) => {}
                Op::Advance(ms) => now += Duration::from_millis(ms),
            }
            prop_assert_eq!(machine.state(now), model.state(now));
            // Never more probes in flight than allowed.
            if let Phase::HalfOpen { in_flight, succeeded } = machine.phase {
                let current = calls
                    .iter()
                    .filter(|(t, _)| t.generation == machine.generation && t.probe)
                    .count() as u32;
                prop_assert_eq!(in_flight, current);
                prop_assert!(in_flight <= probes);
                prop_assert!(succeeded < probes);
            }
        }
    }
}

#[test]
fn a_closed_call_that_fails_after_the_breaker_opened_is_not_counted() {
    let t0 = Instant::now();
    let mut m = Machine::new(Trip::Consecutive(1), Duration::from_secs(1), 1, t0);
    let slow = m.acquire(t0).unwrap();
    let fast = m.acquire(t0).unwrap();
    m.record(fast, Outcome::Failure, t0);
    assert_eq!(m.state(t0), CircuitState::Open);
    let t1 = t0 + Duration::from_secs(1);
    let probe = m.acquire(t1).unwrap();
    m.record(slow, Outcome::Failure, t1); // of the closed phase: ignored
    assert_eq!(m.state(t1), CircuitState::HalfOpen);
    m.record(probe, Outcome::Success, t1);
    assert_eq!(m.state(t1), CircuitState::Closed);
}

#[test]
fn the_rate_window_forgets_old_failures() {
    let t0 = Instant::now();
    let trip = Trip::Rate {
        rate: 0.5,
        window: Duration::from_secs(10),
        min_calls: 4,
    };
    let mut m = Machine::new(trip, Duration::from_secs(1), 1, t0);
    for _ in 0..3 {
        let t = m.acquire(t0).unwrap();
        m.record(t, Outcome::Failure, t0);
    }
    assert_eq!(
        m.state(t0),
        CircuitState::Closed,
        "3 calls: under the minimum"
    );
    // 11 s later the three failures have left the window.
    let t1 = t0 + Duration::from_secs(11);
    let t = m.acquire(t1).unwrap();
    m.record(t, Outcome::Failure, t1);
    assert_eq!(m.state(t1), CircuitState::Closed);
    for _ in 0..2 {
        let t = m.acquire(t1).unwrap();
        m.record(t, Outcome::Success, t1);
    }
    assert_eq!(m.state(t1), CircuitState::Closed, "1 of 3 failed");
    let t = m.acquire(t1).unwrap();
    m.record(t, Outcome::Failure, t1);
    assert_eq!(m.state(t1), CircuitState::Open, "2 of 4 failed");
}
