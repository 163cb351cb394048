//! The benchmark harness: runs the workloads of `BENCHMARKS.md` and prints one JSON object per
//! workload and mode.
//!
//! ```text
//! cargo run --release -p agentgraph-benches -- [WORKLOAD ...] [--reps N]
//! ```
//!
//! Every workload runs when none is named. Each figure is the median of several repetitions
//! after a warm-up; graphs are compiled outside the timed part, except by the `compile_*`
//! workloads, which time exactly that.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentgraph_benches::{
    BIG_ITEMS, BaselineSamples, BenchStore, Big, CheckpointedRun, Counter, Flaky,
    GROUP_CHAT_AGENTS, Items, PostgresBaseline, PostgresServer, RedbBaseline, RedbSamples,
    SMALL_ITEMS, SledBaseline, Turn, WORKER_CONCURRENCIES, big_chain, big_input,
    calibrate_cpu_work, chain, chain_builder, config, cpu_fanout, fanout, fill_store, flaky_chain,
    median, run_checkpointed, run_counting_steps, run_thread, runtime, small_input, thread_graph,
    time_agent_turns, time_group_chats, time_resume, time_runs, time_runs_each, time_workers,
    two_node_loop,
};
use agentgraph_engine::encryption::{Key, StaticKeys};
use agentgraph_engine::{
    CompiledGraph, Compression, Durability, Encryption, Mode, RunConfig, RunStatus, State,
};
use serde::Serialize;
use tokio::runtime::Runtime;

/// The workloads, in the order they run.
const WORKLOADS: &[&str] = &[
    "chain_1000",
    "fanout_100",
    "loop_1000",
    "compile_1000",
    "compile_100000",
    "chain_100000",
    "cpu_fanout_2",
    "big_state_append",
    "big_state_untouched",
    "resume_100",
    "thread_100_turns",
    "agent_turn",
    "group_chat_100",
    "workers",
    "layers_breaker",
    "layers_batch",
    "chaos",
    "memory_search_100k",
    "memory_put",
    "file_compile_1000",
    "file_chain_1000",
];

/// The raw baseline samples taken before each timed `durable_sync` run.
const BASELINE_SAMPLES_PER_REP: usize = 20;

/// The nodes of the `big_state_*` and `resume_100` chains.
const SHORT_CHAIN: u64 = 100;

/// The node of `resume_100` that fails on its first attempt (nodes are `n1` to `n100`).
const FAIL_AT: u64 = 50;

/// The other runs the store of `resume_100` holds.
const OTHER_RUNS: u64 = 1_000;

/// The invocations of `thread_100_turns`, and how many of the first and last are compared.
const TURNS: usize = 100;
const TURNS_COMPARED: usize = 10;

/// The tokens of the long final answer of `agent_turn` (its short one has one).
const LONG_ANSWER: usize = 1_001;

/// The wall time of each CPU-bound branch of `cpu_fanout_2`.
const CPU_BRANCH_TIME: Duration = Duration::from_millis(200);

/// One output line. `None` fields are left out.
#[derive(Debug, Default, Serialize)]
struct Line {
    workload: &'static str,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_step_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    branches: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iterations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    durability: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step0_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_raw: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_durable_async: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_plain: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plain_per_step_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume_to_first_node_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    other_runs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turns: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_turn_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_turn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_bytes_per_turn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_bytes_per_turn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_turn_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_turn_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_to_first_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_token_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turn_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_turn_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    long_turn_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_long_turn_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rounds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agents: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_round_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dims: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filtered_median_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_search_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fill_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    puts_per_step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    puts_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_step_us_without_puts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_rust: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reps: Option<usize>,
    /// `agent_turn` on sled: the median raw sled insert + `flush_async` of the same process run.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_flush_us: Option<f64>,
    /// `agent_turn` on sled: the median `SledStore` commit + flush of the same process run.
    #[serde(skip_serializing_if = "Option::is_none")]
    store_commit_flush_us: Option<f64>,
}

impl Line {
    fn print(&self) {
        println!(
            "{}",
            serde_json::to_string(self).expect("a line serialises")
        );
    }
}

/// How many untimed and timed repetitions a workload gets.
#[derive(Debug, Clone, Copy)]
struct Reps {
    warmup: usize,
    timed: usize,
}

impl Reps {
    /// Small workloads (milliseconds) get more repetitions than large ones (up to a second).
    fn for_size(large: bool, forced: Option<usize>) -> Self {
        let (warmup, timed) = if large { (1, 5) } else { (10, 51) };
        Reps {
            warmup,
            timed: forced.unwrap_or(timed),
        }
    }
}

fn main() -> ExitCode {
    let (workloads, reps) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let rt = runtime();
    // The per-step time of `chain_1000` durable_async, once measured: what the big-state
    // lines are compared with.
    let mut durable_async_us = None;
    for workload in workloads {
        match workload {
            "chain_1000" => {
                run_chain(&rt, "chain_1000", 1_000, Reps::for_size(false, reps));
                durable_async_us = Some(run_chain_durable(&rt, 1_000, Reps::for_size(false, reps)));
                run_chain_postgres(&rt, 1_000, Reps::for_size(true, reps));
            }
            "big_state_append" => {
                run_big_state(&rt, true, durable_async_us, Reps::for_size(false, reps))
            }
            "big_state_untouched" => {
                run_big_state(&rt, false, durable_async_us, Reps::for_size(false, reps))
            }
            "resume_100" => run_resume(&rt, Reps::for_size(false, reps)),
            "thread_100_turns" => run_thread_turns(&rt, Reps::for_size(true, reps)),
            "agent_turn" => run_agent_turn(&rt, Reps::for_size(false, reps)),
            "group_chat_100" => run_group_chat(&rt, 100, Reps::for_size(false, reps)),
            "workers" => run_workers(&rt, reps),
            "layers_breaker" => {
                let r = Reps::for_size(false, reps);
                agentgraph_benches::run_layers_breaker(&rt, 1_000, r.warmup, r.timed);
            }
            "layers_batch" => {
                let r = Reps::for_size(false, reps);
                agentgraph_benches::run_layers_batch(&rt, 1_000, 100, r.warmup, r.timed);
            }
            "chaos" => {
                let r = Reps::for_size(true, reps);
                agentgraph_benches::run_chaos(&rt, r.warmup, r.timed);
            }
            "memory_search_100k" => run_memory_search(&rt, reps),
            "memory_put" => run_memory_put(&rt, Reps::for_size(false, reps)),
            "fanout_100" => run_fanout(&rt, 100, Reps::for_size(false, reps)),
            "loop_1000" => run_loop(&rt, 1_000, Reps::for_size(false, reps)),
            "compile_1000" => run_compile("compile_1000", 1_000, Reps::for_size(false, reps)),
            "compile_100000" => run_compile("compile_100000", 100_000, Reps::for_size(true, reps)),
            "chain_100000" => run_chain(&rt, "chain_100000", 100_000, Reps::for_size(true, reps)),
            "cpu_fanout_2" => run_cpu_fanout(&rt, 2, Reps::for_size(true, reps)),
            "file_compile_1000" => run_file_compile(1_000, Reps::for_size(false, reps)),
            "file_chain_1000" => run_file_chain(&rt, 1_000, Reps::for_size(false, reps)),
            other => unreachable!("unknown workload {other} passed the parser"),
        }
    }
    ExitCode::SUCCESS
}

fn usage() -> String {
    format!(
        "usage: agentgraph-benches [WORKLOAD ...] [--reps N]\n\n\
         Runs each WORKLOAD (every one when none is named) and prints one JSON line per mode.\n\
         --reps N   timed repetitions per workload and mode (default 51, 5 for the large ones)\n\n\
         workloads: {}",
        WORKLOADS.join(", ")
    )
}

/// The workloads to run (in the order named, or all) and the forced repetition count;
/// `None` for `--help`.
type Parsed = (Vec<&'static str>, Option<usize>);

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Parsed>, String> {
    let mut workloads = Vec::new();
    let mut reps = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--reps" => {
                let value = args.next().ok_or("--reps needs a number")?;
                match value.parse::<usize>() {
                    Ok(n) if n > 0 => reps = Some(n),
                    _ => return Err(format!("--reps needs a positive number, not `{value}`")),
                }
            }
            name => match WORKLOADS.iter().find(|w| **w == name) {
                Some(w) => workloads.push(*w),
                None => return Err(format!("unknown workload `{name}`")),
            },
        }
    }
    if workloads.is_empty() {
        workloads = WORKLOADS.to_vec();
    }
    Ok(Some((workloads, reps)))
}

/// Warms up, checks the final state and counts the steps with one untimed run, then times
/// `reps.timed` runs and returns the step count and the median.
fn measure_runs<S: State>(
    rt: &Runtime,
    graph: &CompiledGraph<S>,
    input: fn() -> S,
    mode: Mode,
    max_steps: u64,
    reps: Reps,
    check: impl Fn(&S),
) -> (u64, Duration) {
    let cfg = config(mode, max_steps);
    let (state, steps) = run_counting_steps(rt, graph, input(), &cfg);
    check(&state);
    time_runs(rt, graph, input, &cfg, reps.warmup.saturating_sub(1) as u64);
    let mut samples: Vec<Duration> = (0..reps.timed)
        .map(|_| time_runs(rt, graph, input, &cfg, 1))
        .collect();
    (steps, median(&mut samples))
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Sequential => "sequential",
        Mode::Parallel => "parallel",
    }
}

fn run_chain(rt: &Runtime, workload: &'static str, nodes: u64, reps: Reps) {
    let graph = chain(nodes as usize);
    for mode in [Mode::Sequential, Mode::Parallel] {
        let (steps, med) = measure_runs(rt, &graph, Counter::default, mode, nodes + 1, reps, |s| {
            assert_eq!(s.n, nodes, "{workload}: every node ran once")
        });
        Line {
            workload,
            mode: mode_name(mode),
            steps: Some(steps),
            median_s: Some(med.as_secs_f64()),
            per_step_us: Some(med.as_secs_f64() / steps as f64 * 1e6),
            reps: Some(reps.timed),
            ..Line::default()
        }
        .print();
    }
}

fn run_fanout(rt: &Runtime, branches: u64, reps: Reps) {
    let graph = fanout(branches);
    for mode in [Mode::Parallel, Mode::Sequential] {
        let (steps, med) = measure_runs(rt, &graph, Items::default, mode, 10, reps, |s| {
            assert_eq!(s.items, (0..branches).collect::<Vec<_>>());
            assert_eq!(s.n, 2);
        });
        Line {
            workload: "fanout_100",
            mode: mode_name(mode),
            steps: Some(steps),
            median_s: Some(med.as_secs_f64()),
            // Per branch, not per step: the run is 3 steps, the middle one 100 tasks wide.
            per_step_us: Some(med.as_secs_f64() / branches as f64 * 1e6),
            branches: Some(branches),
            reps: Some(reps.timed),
            ..Line::default()
        }
        .print();
    }
}

fn run_loop(rt: &Runtime, iterations: u64, reps: Reps) {
    let graph = two_node_loop(iterations);
    let (steps, med) = measure_runs(
        rt,
        &graph,
        Counter::default,
        Mode::Parallel,
        2 * iterations + 1,
        reps,
        |s| assert_eq!(s.n, 2 * iterations),
    );
    Line {
        workload: "loop_1000",
        mode: mode_name(Mode::Parallel),
        steps: Some(steps),
        median_s: Some(med.as_secs_f64()),
        per_step_us: Some(med.as_secs_f64() / steps as f64 * 1e6),
        iterations: Some(iterations),
        reps: Some(reps.timed),
        ..Line::default()
    }
    .print();
}

fn run_compile(workload: &'static str, nodes: u64, reps: Reps) {
    let time_one = || {
        let started = Instant::now();
        let graph = chain_builder(nodes as usize).compile();
        let took = started.elapsed();
        assert_eq!(
            graph.expect("the chain compiles").node_names().len() as u64,
            nodes
        );
        took
    };
    for _ in 0..reps.warmup {
        time_one();
    }
    let mut samples: Vec<Duration> = (0..reps.timed).map(|_| time_one()).collect();
    let med = median(&mut samples);
    Line {
        workload,
        mode: "build_compile",
        steps: Some(nodes),
        median_s: Some(med.as_secs_f64()),
        per_step_us: Some(med.as_secs_f64() / nodes as f64 * 1e6),
        nodes: Some(nodes),
        reps: Some(reps.timed),
        ..Line::default()
    }
    .print();
}

fn run_cpu_fanout(rt: &Runtime, branches: u64, reps: Reps) {
    let iterations = calibrate_cpu_work(CPU_BRANCH_TIME);
    let graph = cpu_fanout(branches, iterations);
    let mut medians = Vec::new();
    for mode in [Mode::Sequential, Mode::Parallel] {
        let (steps, med) = measure_runs(rt, &graph, Counter::default, mode, 10, reps, |s| {
            assert_eq!(s.n, branches)
        });
        medians.push(med);
        Line {
            workload: "cpu_fanout_2",
            mode: mode_name(mode),
            steps: Some(steps),
            median_s: Some(med.as_secs_f64()),
            per_step_us: Some(med.as_secs_f64() / steps as f64 * 1e6),
            branches: Some(branches),
            iterations: Some(iterations),
            reps: Some(reps.timed),
            ..Line::default()
        }
        .print();
    }
    Line {
        workload: "cpu_fanout_2",
        mode: "speedup",
        speedup: Some(medians[0].as_secs_f64() / medians[1].as_secs_f64()),
        ..Line::default()
    }
    .print();
}

/// Measures a checkpointed workload: one untimed run with a subscriber (checked with
/// `check`, its steps and checkpoint bytes counted; the store must then hold it as
/// completed), `reps.warmup - 1` untimed runs, then `reps.timed` timed runs, each on a fresh
/// run id and without a subscriber. `before_each` runs before each timed run, untimed.
/// Returns the counting run and the median.
#[allow(clippy::too_many_arguments)]
fn measure_durable<S: State>(
    rt: &Runtime,
    graph: &CompiledGraph<S>,
    input: fn() -> S,
    store: &BenchStore,
    base: &RunConfig,
    reps: Reps,
    check: impl Fn(&S),
    mut before_each: impl FnMut(),
) -> (CheckpointedRun<S>, Duration) {
    let counted = checked_run(rt, graph, input, store, base, check);
    let warmup = store.configs(base, reps.warmup.saturating_sub(1) as u64);
    time_runs_each(rt, graph, input, warmup);
    let mut samples: Vec<Duration> = (0..reps.timed)
        .map(|_| {
            before_each();
            time_runs_each(rt, graph, input, vec![store.config(base)])
        })
        .collect();
    (counted, median(&mut samples))
}

/// The untimed first run of a checkpointed workload on `store`, checked: its final state
/// (`check`) and its stored record (completed).
fn checked_run<S: State>(
    rt: &Runtime,
    graph: &CompiledGraph<S>,
    input: fn() -> S,
    store: &BenchStore,
    base: &RunConfig,
    check: impl Fn(&S),
) -> CheckpointedRun<S> {
    let (id, cfg) = store.named_config(base);
    let counted = run_checkpointed(rt, graph, input(), cfg);
    check(&counted.state);
    let record = rt
        .block_on(store.store().get_run(&id))
        .expect("the store reads")
        .expect("the store holds the run");
    assert_eq!(
        record.status,
        RunStatus::Completed,
        "the stored run completed"
    );
    counted
}

fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Sync => "sync",
        Durability::Async => "async",
        Durability::Exit => "exit",
    }
}

/// The line of a checkpointed run of `steps` steps.
fn durable_line<S>(
    workload: &'static str,
    mode: &'static str,
    store: &'static str,
    durability: Durability,
    counted: &CheckpointedRun<S>,
    med: Duration,
    reps: Reps,
) -> Line {
    Line {
        workload,
        mode,
        steps: Some(counted.steps),
        median_s: Some(med.as_secs_f64()),
        per_step_us: Some(med.as_secs_f64() / counted.steps as f64 * 1e6),
        bytes_per_step: Some(counted.bytes_per_step()),
        step0_bytes: Some(counted.step0_bytes()),
        store: Some(store),
        durability: Some(durability_name(durability)),
        reps: Some(reps.timed),
        ..Line::default()
    }
}

/// Prints the `chain_1000` line of a `Durability::Sync` mode, with `ratio_to_raw`: the
/// per-step time over `raw`, the median of the store's raw baseline sampled in the same run.
fn print_sync_line<S>(
    mode: &'static str,
    store: &'static str,
    counted: &CheckpointedRun<S>,
    med: Duration,
    raw: Duration,
    reps: Reps,
) {
    let mut line = durable_line(
        "chain_1000",
        mode,
        store,
        Durability::Sync,
        counted,
        med,
        reps,
    );
    line.ratio_to_raw = Some(med.as_secs_f64() / counted.steps as f64 / raw.as_secs_f64());
    line.print();
}

/// Prints a raw baseline's line: one operation, its median over `samples`.
fn print_raw_line(
    workload: &'static str,
    mode: &'static str,
    store: &'static str,
    samples: &mut [Duration],
) {
    let med = median(samples);
    Line {
        workload,
        mode,
        steps: Some(1),
        median_s: Some(med.as_secs_f64()),
        per_step_us: Some(med.as_secs_f64() * 1e6),
        store: Some(store),
        reps: Some(samples.len()),
        ..Line::default()
    }
    .print();
}

/// `chain_1000` with a checkpoint store: `memory`, `durable_async`, then `durable_sync` with
/// the raw sled baselines sampled between its runs. Returns the per-step time of
/// `durable_async`, in µs.
fn run_chain_durable(rt: &Runtime, nodes: u64, reps: Reps) -> f64 {
    let graph = chain(nodes as usize);
    let check = |s: &Counter| assert_eq!(s.n, nodes, "chain_1000: every node ran once");
    let mut async_us = 0.0;
    for (mode, store, store_name) in [
        ("memory", BenchStore::memory("memory"), "memory"),
        ("durable_async", BenchStore::sled("async"), "sled"),
    ] {
        let base = config(Mode::Parallel, nodes + 1).durability(Durability::Async);
        let (counted, med) = measure_durable(
            rt,
            &graph,
            Counter::default,
            &store,
            &base,
            reps,
            check,
            || {},
        );
        let line = durable_line(
            "chain_1000",
            mode,
            store_name,
            Durability::Async,
            &counted,
            med,
            reps,
        );
        if mode == "durable_async" {
            async_us = line.per_step_us.expect("a per-step time");
        }
        line.print();
    }
    // The same on sled with compression (`RunConfig::compression`): the defaults (records of
    // 4 KiB and more, none of this small state's), then every record offered to zstd
    // (threshold 0; stored compressed only where that is smaller); then with encryption
    // (`RunConfig::encryption`: XChaCha20-Poly1305 under a random key; every checkpoint, field
    // value and event encrypted), alone and with compression's defaults. Each is timed paired
    // with plain `durable_async` runs on a sled store of its own, alternately (a plain run and
    // a run of the mode, either first in turn): `ratio_to_plain` is the mode's median over the paired plain
    // runs' median (`plain_per_step_us`), so that the machine's drift between modes does not
    // count.
    let encryption = Encryption::new(StaticKeys::new(
        Key::generate("bench").expect("a random key"),
    ));
    let plain = || config(Mode::Parallel, nodes + 1).durability(Durability::Async);
    for (mode, store, base) in [
        (
            "durable_async_compressed",
            "compressed",
            plain().compression(Compression::zstd()),
        ),
        (
            "durable_async_compressed_all",
            "compressed",
            plain().compression(Compression::zstd().threshold(0)),
        ),
        (
            "durable_async_encrypted",
            "encrypted",
            plain().encryption(encryption.clone()),
        ),
        (
            "durable_async_both",
            "encrypted",
            plain()
                .encryption(encryption.clone())
                .compression(Compression::zstd()),
        ),
    ] {
        let store = BenchStore::sled(store);
        let plain_store = BenchStore::sled("plain");
        let counted = checked_run(rt, &graph, Counter::default, &store, &base, check);
        checked_run(rt, &graph, Counter::default, &plain_store, &plain(), check);
        let warmup = reps.warmup.saturating_sub(1) as u64;
        time_runs_each(rt, &graph, Counter::default, store.configs(&base, warmup));
        time_runs_each(
            rt,
            &graph,
            Counter::default,
            plain_store.configs(&plain(), warmup),
        );
        let (mut plain_samples, mut samples) = (Vec::new(), Vec::new());
        for rep in 0..reps.timed {
            let mut time_plain = || {
                plain_samples.push(time_runs_each(
                    rt,
                    &graph,
                    Counter::default,
                    vec![plain_store.config(&plain())],
                ));
            };
            let mut time_mode = || {
                samples.push(time_runs_each(
                    rt,
                    &graph,
                    Counter::default,
                    vec![store.config(&base)],
                ));
            };
            // Either goes first in turn, so that going first or second does not count.
            if rep % 2 == 0 {
                time_plain();
                time_mode();
            } else {
                time_mode();
                time_plain();
            }
        }
        let (plain_med, med) = (median(&mut plain_samples), median(&mut samples));
        let mut line = durable_line(
            "chain_1000",
            mode,
            "sled",
            Durability::Async,
            &counted,
            med,
            reps,
        );
        line.ratio_to_plain = Some(med.as_secs_f64() / plain_med.as_secs_f64());
        line.plain_per_step_us = Some(plain_med.as_secs_f64() / counted.steps as f64 * 1e6);
        line.print();
    }

    let store = BenchStore::sled("sync");
    let base = config(Mode::Parallel, nodes + 1).durability(Durability::Sync);
    let mut baseline = SledBaseline::new();
    let mut samples = BaselineSamples::default();
    // Warm the baseline database up; these samples are dropped.
    baseline.sample(
        rt,
        BASELINE_SAMPLES_PER_REP,
        &mut BaselineSamples::default(),
    );
    let (counted, med) = measure_durable(
        rt,
        &graph,
        Counter::default,
        &store,
        &base,
        reps,
        check,
        || baseline.sample(rt, BASELINE_SAMPLES_PER_REP, &mut samples),
    );
    let raw = median(&mut samples.insert_flush_async);
    print_sync_line("durable_sync", "sled", &counted, med, raw, reps);
    for (mode, samples) in [
        ("raw", &mut samples.insert_flush_async),
        ("raw_blocking_flush", &mut samples.insert_flush),
        ("store", &mut samples.store_commit_flush),
    ] {
        print_raw_line("sled_insert_flush_1k", mode, "sled", samples);
    }
    run_chain_durable_redb(rt, &graph, nodes, reps);
    async_us
}

/// `chain_1000` `durable_sync_redb`: on the redb store, with the raw redb baselines (one
/// fsynced commit of 1 KiB in a database of its own) sampled between its runs.
fn run_chain_durable_redb(rt: &Runtime, graph: &CompiledGraph<Counter>, nodes: u64, reps: Reps) {
    let check = |s: &Counter| assert_eq!(s.n, nodes, "chain_1000: every node ran once");
    let store = BenchStore::redb("sync");
    let base = config(Mode::Parallel, nodes + 1).durability(Durability::Sync);
    let mut baseline = RedbBaseline::new();
    let mut samples = RedbSamples::default();
    // Warm the baseline database up; these samples are dropped.
    baseline.sample(rt, BASELINE_SAMPLES_PER_REP, &mut RedbSamples::default());
    let (counted, med) = measure_durable(
        rt,
        graph,
        Counter::default,
        &store,
        &base,
        reps,
        check,
        || baseline.sample(rt, BASELINE_SAMPLES_PER_REP, &mut samples),
    );
    let raw = median(&mut samples.commit);
    print_sync_line("durable_sync_redb", "redb", &counted, med, raw, reps);
    for (mode, samples) in [
        ("raw", &mut samples.commit),
        ("raw_two_phase", &mut samples.commit_two_phase),
        ("store", &mut samples.store_commit_flush),
    ] {
        print_raw_line("redb_commit_1k", mode, "redb", samples);
    }
}

/// `big_state_append` or `big_state_untouched`: a 100-node chain over 10,000 strings, on
/// sled with async durability. `bytes_per_step` leaves out step 0's checkpoint (the whole
/// input), reported as `step0_bytes`. Then the control, mode `durable_async_small_input`: the
/// same runs from a 100-string input, in a store of their own.
fn run_big_state(rt: &Runtime, append: bool, durable_async_us: Option<f64>, reps: Reps) {
    let workload = if append {
        "big_state_append"
    } else {
        "big_state_untouched"
    };
    let graph = big_chain(SHORT_CHAIN as usize, append);
    let base = config(Mode::Parallel, SHORT_CHAIN + 1).durability(Durability::Async);
    for (mode, input, items) in [
        ("durable_async", big_input as fn() -> Big, BIG_ITEMS),
        ("durable_async_small_input", small_input, SMALL_ITEMS),
    ] {
        let store = BenchStore::sled(workload);
        let check = |s: &Big| {
            let added = if append { SHORT_CHAIN as usize } else { 0 };
            assert_eq!(s.items.len(), items + added, "{workload} {mode}: the list");
            assert_eq!(
                s.n,
                if append { 0 } else { SHORT_CHAIN },
                "{workload} {mode}: the counter"
            );
        };
        let (counted, med) = measure_durable(rt, &graph, input, &store, &base, reps, check, || {});
        let mut line = durable_line(
            workload,
            mode,
            "sled",
            Durability::Async,
            &counted,
            med,
            reps,
        );
        line.bytes_per_step = Some(counted.bytes_per_step_after_step0());
        line.ratio_to_durable_async =
            durable_async_us.map(|us| line.per_step_us.expect("a per-step time") / us);
        line.print();
    }
}

/// `resume_100`: a 100-node chain whose node 50 fails once, resumed from a sled store that
/// holds 1,000 other completed runs, async durability.
fn run_resume(rt: &Runtime, reps: Reps) {
    let flaky = Flaky::new(SHORT_CHAIN as usize);
    let graph = flaky_chain(SHORT_CHAIN as usize, FAIL_AT as usize, &flaky);
    let store = BenchStore::sled("resume");
    fill_store(rt, &store, &config(Mode::Parallel, 11), OTHER_RUNS);
    let runs = rt
        .block_on(store.store().list_runs(None, 2 * OTHER_RUNS as usize))
        .expect("the store lists its runs");
    assert_eq!(
        runs.len() as u64,
        OTHER_RUNS,
        "the store holds the other runs"
    );
    let base = config(Mode::Parallel, SHORT_CHAIN + 1).durability(Durability::Async);

    let checked = time_resume(rt, &graph, &flaky, FAIL_AT, &store, &base, true);
    assert_eq!(
        checked.resumed_after,
        Some(FAIL_AT - 1),
        "resumed after step 49"
    );
    let steps = checked.steps_run.expect("steps counted");
    assert_eq!(steps, SHORT_CHAIN - FAIL_AT + 1, "the resume ran 51 steps");
    for _ in 1..reps.warmup {
        time_resume(rt, &graph, &flaky, FAIL_AT, &store, &base, false);
    }
    let (mut first, mut total): (Vec<_>, Vec<_>) = (0..reps.timed)
        .map(|_| {
            let t = time_resume(rt, &graph, &flaky, FAIL_AT, &store, &base, false);
            (t.to_first_node, t.total)
        })
        .unzip();
    let (first, total) = (median(&mut first), median(&mut total));
    Line {
        workload: "resume_100",
        mode: "durable_async",
        steps: Some(steps),
        median_s: Some(total.as_secs_f64()),
        per_step_us: Some(total.as_secs_f64() / steps as f64 * 1e6),
        resume_to_first_node_ms: Some(first.as_secs_f64() * 1e3),
        other_runs: Some(OTHER_RUNS),
        store: Some("sled"),
        durability: Some(durability_name(Durability::Async)),
        reps: Some(reps.timed),
        ..Line::default()
    }
    .print();
}

/// `thread_100_turns`: 100 invocations of one sled thread (`Durability::Async`), each
/// appending one message and running three trivial nodes. Per turn index, the median over
/// the repetitions (each a new thread) of its time; bytes are the same in every repetition.
/// `memory_search_100k`: 100,000 items of 384 dimensions in a sled store, then the median
/// of the searches for the 10 nearest (after the first, which builds the index).
fn run_memory_search(rt: &Runtime, reps: Option<usize>) {
    let (items, dims) = (100_000, 384);
    let searches = reps.unwrap_or(101);
    let store = BenchStore::sled("memory");
    let t = agentgraph_benches::time_memory_search(rt, store.store(), items, dims, searches);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Line {
        workload: "memory_search_100k",
        mode: "brute_force",
        items: Some(items),
        dims: Some(dims),
        median_ms: Some(ms(t.median)),
        filtered_median_ms: Some(ms(t.filtered_median)),
        first_search_ms: Some(ms(t.first)),
        fill_s: Some(t.fill.as_secs_f64()),
        store: Some("sled"),
        reps: Some(searches),
        ..Line::default()
    }
    .print();
}

/// `memory_put`: a chain of 100 steps, each putting 10 memory items, committed with its
/// checkpoint (sled, `Sync` and `Async`); beside the same chain putting none.
fn run_memory_put(rt: &Runtime, reps: Reps) {
    const STEPS: usize = 100;
    const PUTS: usize = 10;
    for durability in [Durability::Sync, Durability::Async] {
        let store = BenchStore::sled("memory-put");
        let with = agentgraph_benches::memory_put_graph(STEPS, PUTS);
        let without = agentgraph_benches::memory_put_graph(STEPS, 0);
        let runs = reps.timed.min(11);
        agentgraph_benches::time_memory_puts(rt, &with, store.store(), durability, 1, "warm");
        let t_with = agentgraph_benches::time_memory_puts(
            rt,
            &with,
            store.store(),
            durability,
            runs,
            "with",
        );
        let t_without = agentgraph_benches::time_memory_puts(
            rt,
            &without,
            store.store(),
            durability,
            runs,
            "without",
        );
        let per_step = |d: Duration| d.as_secs_f64() * 1e6 / STEPS as f64;
        Line {
            workload: "memory_put",
            mode: "parallel",
            steps: Some(STEPS as u64),
            puts_per_step: Some(PUTS),
            puts_per_s: Some((STEPS * PUTS) as f64 / t_with.as_secs_f64()),
            per_step_us: Some(per_step(t_with)),
            per_step_us_without_puts: Some(per_step(t_without)),
            store: Some("sled"),
            durability: Some(durability_name(durability)),
            reps: Some(runs),
            ..Line::default()
        }
        .print();
    }
}

fn run_thread_turns(rt: &Runtime, reps: Reps) {
    let graph = thread_graph();
    let store = BenchStore::sled("thread");
    let base = RunConfig::new().durability(Durability::Async);
    for _ in 0..reps.warmup {
        run_thread(rt, &graph, &store, &base, TURNS);
    }
    let runs: Vec<Vec<Turn>> = (0..reps.timed)
        .map(|_| run_thread(rt, &graph, &store, &base, TURNS))
        .collect();
    let per_turn: Vec<Duration> = (0..TURNS)
        .map(|t| median(&mut runs.iter().map(|r| r[t].time).collect::<Vec<_>>()))
        .collect();
    let bytes: Vec<u64> = runs[0].iter().map(|t| t.bytes).collect();
    let us = |turns: &[Duration]| {
        turns.iter().map(Duration::as_secs_f64).sum::<f64>() / turns.len() as f64 * 1e6
    };
    let mean_bytes = |turns: &[u64]| turns.iter().sum::<u64>() as f64 / turns.len() as f64;
    let (first, last) = (
        us(&per_turn[..TURNS_COMPARED]),
        us(&per_turn[TURNS - TURNS_COMPARED..]),
    );
    Line {
        workload: "thread_100_turns",
        mode: "durable_async",
        turns: Some(TURNS),
        per_turn_us: Some(us(&per_turn)),
        bytes_per_turn: Some(mean_bytes(&bytes)),
        first_bytes_per_turn: Some(mean_bytes(&bytes[..TURNS_COMPARED])),
        last_bytes_per_turn: Some(mean_bytes(&bytes[TURNS - TURNS_COMPARED..])),
        first_turn_us: Some(first),
        last_turn_us: Some(last),
        last_to_first_ratio: Some(last / first),
        store: Some("sled"),
        durability: Some(durability_name(Durability::Async)),
        reps: Some(reps.timed),
        ..Line::default()
    }
    .print();
}

/// `group_chat_100`: a round-robin group chat of 4 model agents for 100 rounds, with a model
/// that answers at once (so the time is the chat's and the engine's): the median chat over
/// the rounds. Without a store, on a `MemoryStore`, then on sled (both `Durability::Async`).
fn run_group_chat(rt: &Runtime, rounds: u32, reps: Reps) {
    for (mode, store) in [
        ("no_store", None),
        ("memory", Some(BenchStore::memory("group-chat"))),
        ("durable_async", Some(BenchStore::sled("group-chat"))),
    ] {
        let mut times = time_group_chats(rt, store.as_ref(), rounds, reps.warmup, reps.timed);
        let chat = median(&mut times);
        Line {
            workload: "group_chat_100",
            mode,
            rounds: Some(rounds),
            agents: Some(GROUP_CHAT_AGENTS),
            per_round_us: Some(chat.as_secs_f64() * 1e6 / f64::from(rounds)),
            median_s: Some(chat.as_secs_f64()),
            store: store
                .as_ref()
                .map(|_| if mode == "memory" { "memory" } else { "sled" }),
            reps: Some(reps.timed),
            ..Line::default()
        }
        .print();
    }
}

/// `agent_turn`: the agent's own overhead per turn (a streamed answer with three tool calls,
/// three tool tasks, a streamed final answer), against the same requests and calls made
/// without the engine; and per streamed token, from a final answer of 1,001 tokens against one
/// of 1. On sled (`Durability::Async`, the workload's line), then on a memory store (what is
/// left without the disk).
fn run_agent_turn(rt: &Runtime, reps: Reps) {
    for (mode, store, kind) in [
        ("durable_async", BenchStore::sled("agent"), "sled"),
        ("memory", BenchStore::memory("agent"), "memory"),
    ] {
        let (mut short, mut raw_short) = time_agent_turns(rt, &store, 1, reps.warmup, reps.timed);
        let (mut long, mut raw_long) =
            time_agent_turns(rt, &store, LONG_ANSWER, reps.warmup, reps.timed);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (short, raw_short) = (us(median(&mut short)), us(median(&mut raw_short)));
        let (long, raw_long) = (us(median(&mut long)), us(median(&mut raw_long)));
        let per_turn = short - raw_short;
        let per_token = ((long - raw_long) - per_turn) / (LONG_ANSWER - 1) as f64;
        // The disk's limit in this process run: the one flush a durable turn must wait for.
        let (raw_flush, store_flush) = if kind == "sled" {
            let mut baseline = SledBaseline::new();
            let mut samples = BaselineSamples::default();
            baseline.sample(
                rt,
                BASELINE_SAMPLES_PER_REP,
                &mut BaselineSamples::default(),
            );
            baseline.sample(rt, BASELINE_SAMPLES_PER_REP * reps.timed, &mut samples);
            (
                Some(us(median(&mut samples.insert_flush_async))),
                Some(us(median(&mut samples.store_commit_flush))),
            )
        } else {
            (None, None)
        };
        Line {
            workload: "agent_turn",
            mode,
            per_turn_us: Some(per_turn),
            per_token_us: Some(per_token),
            turn_us: Some(short),
            raw_turn_us: Some(raw_short),
            long_turn_us: Some(long),
            raw_long_turn_us: Some(raw_long),
            store: Some(kind),
            durability: Some(durability_name(Durability::Async)),
            reps: Some(reps.timed),
            raw_flush_us: raw_flush,
            store_commit_flush_us: store_flush,
            ..Line::default()
        }
        .print();
    }
}

/// `chain_1000` with `Durability::Sync` on PostgreSQL (a throwaway server of this run, with
/// PostgreSQL's default durability), mode `durable_sync_postgres`, with `ratio_to_raw`: the
/// per-step time over the raw baseline's median, one 1 KiB `INSERT` committed in one round
/// trip, sampled between the timed runs. Then the same with one statement per operation
/// (`durable_sync_postgres_per_op`, the comparison the grouped statements were chosen by),
/// and the raw line, `postgres_insert_commit_1k`.
fn run_chain_postgres(rt: &Runtime, nodes: u64, reps: Reps) {
    let graph = chain(nodes as usize);
    let check = |s: &Counter| assert_eq!(s.n, nodes, "chain_1000: every node ran once");
    let server = PostgresServer::start();
    let baseline = PostgresBaseline::new(rt, server.url());
    let mut all_raw = Vec::new();
    // Warm the baseline up; these samples are dropped.
    baseline.sample(rt, BASELINE_SAMPLES_PER_REP, &mut Vec::new());
    for (mode, group) in [
        ("durable_sync_postgres", true),
        ("durable_sync_postgres_per_op", false),
    ] {
        let store = server.store(rt, mode, "sync", group);
        let mut raw = Vec::new();
        let base = config(Mode::Parallel, nodes + 1).durability(Durability::Sync);
        let (counted, med) = measure_durable(
            rt,
            &graph,
            Counter::default,
            &store,
            &base,
            reps,
            check,
            || baseline.sample(rt, BASELINE_SAMPLES_PER_REP, &mut raw),
        );
        let raw_med = median(&mut raw.clone());
        all_raw.extend(raw);
        print_sync_line(mode, "postgres", &counted, med, raw_med, reps);
    }
    print_raw_line("postgres_insert_commit_1k", "raw", "postgres", &mut all_raw);
}

/// The runs of each `workers` measurement, and the single runs timed for the claim latency.
const WORKER_RUNS: usize = 400;
const WORKER_PROBES: usize = 51;

/// `workers`: runs of a 10-step chain of trivial nodes through one PostgreSQL queue (a
/// throwaway server of this run, PostgreSQL's default durability; `Durability::Sync`), taken
/// by 1, 2 and 4 workers: durable steps and runs per second, and the median time from a job
/// queued to its claim with idle workers. `--reps N` sets the runs (N × 10, at least 10).
fn run_workers(rt: &Runtime, reps: Option<usize>) {
    let server = PostgresServer::start();
    let runs = reps.map_or(WORKER_RUNS, |r| (r * 10).max(10));
    for concurrency in WORKER_CONCURRENCIES {
        for durability in [Durability::Sync, Durability::Async] {
            for workers in [1, 2, 4] {
                let t = time_workers(
                    rt,
                    server.url(),
                    workers,
                    concurrency,
                    durability,
                    runs,
                    WORKER_PROBES,
                );
                let mut line = serde_json::json!({
                    "workload": "workers",
                    "mode": "postgres",
                    "durability": durability_name(durability),
                    "workers": workers,
                    "concurrency": concurrency,
                    "runs": runs,
                    "steps_per_s": t.steps_per_s,
                    "runs_per_s": t.runs_per_s,
                    "claim_p50_ms": t.claim_p50.as_secs_f64() * 1e3,
                });
                if let Some(n) = t.statements_per_run {
                    line["statements_per_run"] = n.into();
                }
                println!("{line}");
            }
        }
    }
}

/// `file_compile_1000`: reading, validating and compiling a graph file of `nodes` nodes.
fn run_file_compile(nodes: u64, reps: Reps) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("chain.yaml");
    std::fs::write(&path, agentgraph_benches::file_chain_yaml(nodes as usize))
        .expect("the file is written");
    let time_one = || {
        let started = Instant::now();
        let graph = agentgraph_benches::load_file_graph(&path);
        let took = started.elapsed();
        assert_eq!(graph.node_names().len() as u64, nodes);
        took
    };
    for _ in 0..reps.warmup {
        time_one();
    }
    let mut samples: Vec<Duration> = (0..reps.timed).map(|_| time_one()).collect();
    let med = median(&mut samples);
    Line {
        workload: "file_compile_1000",
        mode: "load_validate_compile",
        median_s: Some(med.as_secs_f64()),
        nodes: Some(nodes),
        reps: Some(reps.timed),
        ..Line::default()
    }
    .print();
}

/// `file_chain_1000`: the file-declared chain against the same chain in Rust, per step.
fn run_file_chain(rt: &Runtime, nodes: u64, reps: Reps) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("chain.yaml");
    std::fs::write(&path, agentgraph_benches::file_chain_yaml(nodes as usize))
        .expect("the file is written");
    let file_graph = agentgraph_benches::load_file_graph(&path);
    let _ = agentgraph_benches::FILE_SCHEMA.set(file_graph.schema().clone());
    let rust_graph = chain(nodes as usize);
    for mode in [Mode::Sequential, Mode::Parallel] {
        let (rust_steps, rust_med) = measure_runs(
            rt,
            &rust_graph,
            Counter::default,
            mode,
            nodes + 1,
            reps,
            |s| assert_eq!(s.n, nodes),
        );
        let (steps, med) = measure_runs(
            rt,
            &file_graph,
            agentgraph_benches::file_input,
            mode,
            nodes + 1,
            reps,
            |s| assert_eq!(s.get("n"), Some(&serde_json::json!(nodes))),
        );
        let per_step = med.as_secs_f64() / steps as f64 * 1e6;
        let rust_per_step = rust_med.as_secs_f64() / rust_steps as f64 * 1e6;
        Line {
            workload: "file_chain_1000",
            mode: mode_name(mode),
            steps: Some(steps),
            median_s: Some(med.as_secs_f64()),
            per_step_us: Some(per_step),
            ratio_to_rust: Some(per_step / rust_per_step),
            reps: Some(reps.timed),
            ..Line::default()
        }
        .print();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> impl Iterator<Item = String> {
        s.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_workloads_and_reps() {
        assert_eq!(parse_args(args("")).unwrap().unwrap().0, WORKLOADS);
        let (w, r) = parse_args(args("loop_1000 --reps 3 chain_1000"))
            .unwrap()
            .unwrap();
        assert_eq!((w, r), (vec!["loop_1000", "chain_1000"], Some(3)));
        assert!(parse_args(args("--help")).unwrap().is_none());
        assert!(parse_args(args("nope")).is_err());
        assert!(parse_args(args("--reps 0")).is_err());
        assert!(parse_args(args("--reps")).is_err());
    }
}
