//! The workload graphs of `BENCHMARKS.md`, shared by the harness binary and the criterion
//! benches.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agentgraph_engine::{BoxError, CompiledGraph, END, GraphBuilder, Mode, RunConfig, START};

use crate::states::{Big, BigUpdate, Counter, CounterUpdate, Items, ItemsUpdate};

/// The seed of every benchmark run, so that runs are reproducible.
pub const SEED: u64 = 0x5EED_A6E7;

/// The run settings of the benchmarks: `mode`, the fixed [`SEED`], and a recursion limit of
/// `max_steps`.
pub fn config(mode: Mode, max_steps: u64) -> RunConfig {
    RunConfig::new()
        .mode(mode)
        .seed(SEED)
        .recursion_limit(max_steps)
}

/// The builder of a linear chain of `nodes` trivial async nodes (each adds 1 to
/// [`Counter::n`]): `START -> n0 -> n1 -> ... -> END`. Not yet compiled, so that compilation
/// can be timed with the building.
///
/// # Panics
///
/// If `nodes` is 0.
pub fn chain_builder(nodes: usize) -> GraphBuilder<Counter> {
    assert!(nodes > 0, "a chain needs at least one node");
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    let mut b = GraphBuilder::new();
    for name in &names {
        b.add_node(name.as_str(), |_, _| async { Ok(CounterUpdate::add(1)) });
    }
    b.add_edge(START, &names[0]);
    for pair in names.windows(2) {
        b.add_edge(&pair[0], &pair[1]);
    }
    b.add_edge(&names[nodes - 1], END);
    b
}

/// The compiled chain of [`chain_builder`]. A run on `Counter::default()` ends with
/// `n == nodes` after `nodes` steps.
///
/// # Panics
///
/// If `nodes` is 0, or the engine rejects the graph.
pub fn chain(nodes: usize) -> CompiledGraph<Counter> {
    chain_builder(nodes).compile().expect("the chain compiles")
}

/// A fan-out: `START -> fan`, static edges from `fan` to `branches` trivial branches that each
/// append their index to [`Items::items`], a join of every branch into `join`, `join -> END`.
/// A run takes 3 steps and ends with `branches` items (in branch order) and `n == 2`.
///
/// # Panics
///
/// If `branches` is 0, or the engine rejects the graph.
pub fn fanout(branches: u64) -> CompiledGraph<Items> {
    assert!(branches > 0, "a fan-out needs at least one branch");
    let names: Vec<String> = (0..branches).map(|i| format!("b{i}")).collect();
    let mut b = GraphBuilder::new();
    b.add_node("fan", |_, _| async { Ok(ItemsUpdate::add(1)) })
        .add_node("join", |_, _| async { Ok(ItemsUpdate::add(1)) });
    for (i, name) in (0..branches).zip(&names) {
        b.add_node(name.as_str(), move |_, _| async move {
            Ok(ItemsUpdate::push(i))
        });
    }
    b.add_edge(START, "fan")
        .add_edges("fan", names.iter().map(String::as_str))
        .add_join(names.iter().map(String::as_str), "join")
        .add_edge("join", END);
    b.compile().expect("the fan-out compiles")
}

/// A 2-node cycle: `START -> a -> b`, then a conditional edge from `b` back to `a` or to
/// `END`, taken to `END` after `iterations` passes. Both nodes add 1 to [`Counter::n`], so a
/// run ends with `n == 2 * iterations` after `2 * iterations` steps.
///
/// # Panics
///
/// If `iterations` is 0, or the engine rejects the graph.
pub fn two_node_loop(iterations: u64) -> CompiledGraph<Counter> {
    assert!(iterations > 0, "a loop runs at least once");
    let mut b = GraphBuilder::new();
    b.add_node("a", |_, _| async { Ok(CounterUpdate::add(1)) })
        .add_node("b", |_, _| async { Ok(CounterUpdate::add(1)) })
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_conditional_edges("b", ["a", END], move |s: &Counter| {
            if s.n < 2 * iterations { "a" } else { END }
        });
    b.compile().expect("the loop compiles")
}

/// A fan-out of `branches` CPU-bound nodes (`add_cpu_node`) straight from `START`, each doing
/// [`cpu_work`] of `iterations` and adding 1 to [`Counter::n`], then `END`. One step.
///
/// # Panics
///
/// If `branches` is 0, or the engine rejects the graph.
pub fn cpu_fanout(branches: u64, iterations: u64) -> CompiledGraph<Counter> {
    assert!(branches > 0, "a fan-out needs at least one branch");
    let names: Vec<String> = (0..branches).map(|i| format!("cpu{i}")).collect();
    let mut b = GraphBuilder::new();
    for (i, name) in (0..branches).zip(&names) {
        b.add_cpu_node(name.as_str(), move |_, _| {
            black_box(cpu_work(iterations, SEED ^ i));
            Ok(CounterUpdate::add(1))
        })
        .add_edge(name, END);
    }
    b.add_edges(START, names.iter().map(String::as_str));
    b.compile().expect("the CPU fan-out compiles")
}

/// Deterministic CPU work: `iterations` rounds of a xorshift generator, each round fed an
/// opaque value so that the loop cannot be folded or vectorised away. Returns the final word.
///
/// # Examples
///
/// ```
/// use agentgraph_benches::cpu_work;
/// assert_eq!(cpu_work(1_000, 7), cpu_work(1_000, 7));
/// assert_ne!(cpu_work(1_000, 7), cpu_work(1_000, 8));
/// ```
pub fn cpu_work(iterations: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for i in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(black_box(i));
    }
    x
}

/// The number of [`cpu_work`] iterations that take about `target` on this machine, on one
/// thread: the best of three timings of a probe long enough to measure, scaled.
pub fn calibrate_cpu_work(target: Duration) -> u64 {
    let mut probe: u64 = 1 << 16;
    loop {
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                black_box(cpu_work(probe, SEED));
                t.elapsed()
            })
            .min()
            .expect("three timings");
        if best >= Duration::from_millis(20) {
            let scaled = probe as f64 * target.as_secs_f64() / best.as_secs_f64();
            return (scaled as u64).max(1);
        }
        probe *= 2;
    }
}

/// The number of strings in the input of the `big_state_*` workloads.
pub const BIG_ITEMS: usize = 10_000;

/// The length of each string of the `big_state_*` workloads.
pub const BIG_ITEM_LEN: usize = 20;

/// The `i`-th string of the `big_state_*` workloads: `i` in decimal, zero-padded to
/// [`BIG_ITEM_LEN`] characters.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_benches::big_item(42), "00000000000000000042");
/// ```
pub fn big_item(i: u64) -> String {
    format!("{i:0width$}", width = BIG_ITEM_LEN)
}

/// The input of the `big_state_*` workloads: [`BIG_ITEMS`] strings of [`BIG_ITEM_LEN`]
/// characters, `n == 0`.
pub fn big_input() -> Big {
    Big {
        items: (0..BIG_ITEMS as u64).map(big_item).collect(),
        n: 0,
    }
}

/// The number of strings in [`small_input`].
pub const SMALL_ITEMS: usize = 100;

/// The control input of the `big_state_*` workloads: [`SMALL_ITEMS`] strings of
/// [`BIG_ITEM_LEN`] characters (2 KB), `n == 0`: the same runs without the large input.
pub fn small_input() -> Big {
    Big {
        items: (0..SMALL_ITEMS as u64).map(big_item).collect(),
        n: 0,
    }
}

/// A chain of `nodes` nodes over [`Big`]: `START -> n0 -> ... -> END`. With `append`, each
/// node appends one string of [`BIG_ITEM_LEN`] characters to [`Big::items`]
/// (`big_state_append`); without, each adds 1 to [`Big::n`] and leaves the list alone
/// (`big_state_untouched`). `nodes` steps.
///
/// # Panics
///
/// If `nodes` is 0, or the engine rejects the graph.
pub fn big_chain(nodes: usize, append: bool) -> CompiledGraph<Big> {
    assert!(nodes > 0, "a chain needs at least one node");
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    let mut b = GraphBuilder::new();
    for (i, name) in names.iter().enumerate() {
        let item = (BIG_ITEMS + i) as u64;
        if append {
            b.add_node(name.as_str(), move |_, _| async move {
                Ok(BigUpdate::push(big_item(item)))
            });
        } else {
            b.add_node(name.as_str(), |_, _| async { Ok(BigUpdate::add(1)) });
        }
    }
    b.add_edge(START, &names[0]);
    for pair in names.windows(2) {
        b.add_edge(&pair[0], &pair[1]);
    }
    b.add_edge(&names[nodes - 1], END);
    b.compile().expect("the big-state chain compiles")
}

/// The switch, counters and clock shared by the nodes of a [`flaky_chain`] and the benchmark
/// that runs it. Clones share them.
#[derive(Debug, Clone)]
pub struct Flaky {
    /// While set, the failing node fails.
    pub fail: Arc<AtomicBool>,
    /// How many times each node ran: node `n{i}` at index `i - 1`.
    pub calls: Arc<[AtomicU32]>,
    /// When the failing node last started.
    pub started: Arc<Mutex<Option<Instant>>>,
}

impl Flaky {
    /// The shared cells of a chain of `nodes` nodes: failing, no call counted, no start seen.
    pub fn new(nodes: usize) -> Self {
        Flaky {
            fail: Arc::new(AtomicBool::new(true)),
            calls: (0..nodes).map(|_| AtomicU32::new(0)).collect(),
            started: Arc::default(),
        }
    }

    /// Sets whether the failing node fails.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Forgets the calls counted and the start seen.
    pub fn reset(&self) {
        for c in self.calls.iter() {
            c.store(0, Ordering::SeqCst);
        }
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// How many times each node ran, in chain order.
    pub fn calls(&self) -> Vec<u32> {
        self.calls
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }

    /// When the failing node last started.
    pub fn started(&self) -> Option<Instant> {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A chain of `nodes` trivial nodes named `n1` to `n{nodes}` (each adds 1 to
/// [`Counter::n`] and counts its call in `flaky`), in which node `n{fail_at}` records when it
/// starts in `flaky` and fails while `flaky` says so: the `resume_100` workload.
///
/// # Panics
///
/// If `fail_at` is not in `1..=nodes`, `flaky` counts another number of nodes, or the engine
/// rejects the graph.
pub fn flaky_chain(nodes: usize, fail_at: usize, flaky: &Flaky) -> CompiledGraph<Counter> {
    assert!(
        (1..=nodes).contains(&fail_at),
        "the failing node is in the chain"
    );
    assert_eq!(flaky.calls.len(), nodes, "one call counter per node");
    let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let mut b = GraphBuilder::new();
    for (i, name) in (1..=nodes).zip(&names) {
        let flaky = flaky.clone();
        b.add_node(name.as_str(), move |_, _| {
            let failing = i == fail_at;
            if failing {
                *flaky.started.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Instant::now());
            }
            flaky.calls[i - 1].fetch_add(1, Ordering::SeqCst);
            let fail = failing && flaky.fail.load(Ordering::SeqCst);
            async move {
                if fail {
                    return Err::<CounterUpdate, BoxError>("the flaky node failed".into());
                }
                Ok(CounterUpdate::add(1))
            }
        });
    }
    b.add_edge(START, &names[0]);
    for pair in names.windows(2) {
        b.add_edge(&pair[0], &pair[1]);
    }
    b.add_edge(&names[nodes - 1], END);
    b.compile().expect("the flaky chain compiles")
}
