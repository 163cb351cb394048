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
    Counter, Items, calibrate_cpu_work, chain, chain_builder, config, cpu_fanout, fanout, median,
    run_counting_steps, runtime, time_runs, two_node_loop,
};
use agentgraph_engine::{CompiledGraph, Mode, State};
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
];

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
    reps: Option<usize>,
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
    for workload in workloads {
        match workload {
            "chain_1000" => run_chain(&rt, "chain_1000", 1_000, Reps::for_size(false, reps)),
            "fanout_100" => run_fanout(&rt, 100, Reps::for_size(false, reps)),
            "loop_1000" => run_loop(&rt, 1_000, Reps::for_size(false, reps)),
            "compile_1000" => run_compile("compile_1000", 1_000, Reps::for_size(false, reps)),
            "compile_100000" => run_compile("compile_100000", 100_000, Reps::for_size(true, reps)),
            "chain_100000" => run_chain(&rt, "chain_100000", 100_000, Reps::for_size(true, reps)),
            "cpu_fanout_2" => run_cpu_fanout(&rt, 2, Reps::for_size(true, reps)),
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
