//! The middleware's cost per call: `layers_breaker` (a closed circuit breaker around each node
//! of a chain, against the same chain without it) and `layers_batch` (calls through a
//! `Batcher` whose batches fill at once, against the same calls made directly).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph::layers::{Batcher, CircuitBreakerLayer, CircuitState};
use agentgraph_engine::{
    BoxError, CompiledGraph, END, GraphBuilder, Layer, Mode, START, async_node,
};
use futures_util::future::join_all;
use tokio::runtime::Runtime;

use crate::{Counter, CounterUpdate, config, median, run_counting_steps, time_runs};

/// `START -> n0 -> ... -> n{nodes-1} -> END` of trivial async nodes given as values (adding 1
/// to [`Counter::n`]), each wrapped in a clone of `breaker` when there is one.
///
/// # Panics
///
/// If `nodes` is 0.
pub fn breaker_chain(
    nodes: usize,
    breaker: Option<&CircuitBreakerLayer>,
) -> CompiledGraph<Counter> {
    assert!(nodes > 0, "a chain needs at least one node");
    let mut b = GraphBuilder::new();
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    for name in &names {
        let node = async_node(|_: Arc<Counter>, _| async { Ok(CounterUpdate::add(1)) });
        match breaker {
            Some(layer) => b.add_node_with(name.as_str(), layer.layer(node)),
            None => b.add_node_with(name.as_str(), node),
        };
    }
    b.add_edge(START, names[0].as_str());
    for pair in names.windows(2) {
        b.add_edge(pair[0].as_str(), pair[1].as_str());
    }
    b.add_edge(names[nodes - 1].as_str(), END);
    b.compile().expect("the chain compiles")
}

/// Times `graph` (`warmup` untimed runs, then `timed` runs), checking its first run: the
/// steps and the median.
fn measure_chain(
    rt: &Runtime,
    graph: &CompiledGraph<Counter>,
    nodes: u64,
    warmup: usize,
    timed: usize,
) -> (u64, Duration) {
    let cfg = config(Mode::Parallel, nodes + 1);
    let (state, steps) = run_counting_steps(rt, graph, Counter::default(), &cfg);
    assert_eq!(state.n, nodes, "every node ran once");
    time_runs(rt, graph, Counter::default, &cfg, warmup as u64);
    let mut samples: Vec<Duration> = (0..timed)
        .map(|_| time_runs(rt, graph, Counter::default, &cfg, 1))
        .collect();
    (steps, median(&mut samples))
}

/// `layers_breaker`: the 1,000-node chain with a closed breaker (consecutive failures) around
/// every node, and without; the breaker's cost per call is the difference per step. Prints
/// one JSON line per mode.
pub fn run_layers_breaker(rt: &Runtime, nodes: u64, warmup: usize, timed: usize) {
    let breaker = CircuitBreakerLayer::consecutive_failures(5);
    let rate = CircuitBreakerLayer::failure_rate(0.5, Duration::from_secs(10), 20);
    let (_, plain) = measure_chain(
        rt,
        &breaker_chain(nodes as usize, None),
        nodes,
        warmup,
        timed,
    );
    let plain_us = plain.as_secs_f64() / nodes as f64 * 1e6;
    for (mode, layer) in [("consecutive_failures", &breaker), ("failure_rate", &rate)] {
        let graph = breaker_chain(nodes as usize, Some(layer));
        let (steps, med) = measure_chain(rt, &graph, nodes, warmup, timed);
        assert_eq!(layer.state(), CircuitState::Closed, "every call succeeded");
        let per_step_us = med.as_secs_f64() / steps as f64 * 1e6;
        println!(
            "{}",
            serde_json::json!({
                "workload": "layers_breaker",
                "mode": mode,
                "steps": steps,
                "median_s": med.as_secs_f64(),
                "per_step_us": per_step_us,
                "plain_per_step_us": plain_us,
                "overhead_per_call_us": per_step_us - plain_us,
                "reps": timed,
            })
        );
    }
}

/// The trivial work both sides of `layers_batch` do per item.
fn work(x: u64) -> Result<u64, BoxError> {
    Ok(std::hint::black_box(x) + 1)
}

/// Makes `calls` concurrent calls (joined in one task on a runtime worker), through `batcher`
/// or directly, and returns their wall time.
fn time_calls(rt: &Runtime, batcher: Option<&Batcher<u64, u64>>, calls: u64) -> Duration {
    let batcher = batcher.cloned();
    rt.block_on(async move {
        tokio::spawn(async move {
            let started = Instant::now();
            let results = match &batcher {
                Some(b) => join_all((0..calls).map(|x| b.call(x))).await,
                None => join_all((0..calls).map(|x| async move { work(x) })).await,
            };
            let took = started.elapsed();
            assert!(results.iter().all(Result::is_ok), "every call answered");
            took
        })
        .await
        .expect("the timing task panicked")
    })
}

/// `layers_batch`: `calls` concurrent calls through a `Batcher` of `batch_size` (batches fill
/// at once, so no window is waited for; the batch function does the same work per item as a
/// direct call), against the same calls made directly. Prints one JSON line.
pub fn run_layers_batch(rt: &Runtime, calls: u64, batch_size: usize, warmup: usize, timed: usize) {
    let batcher = Batcher::new(
        batch_size,
        Duration::from_secs(1),
        |items: Vec<u64>| async move { Ok(items.into_iter().map(work).collect()) },
    );
    let sample = |b: Option<&Batcher<u64, u64>>| {
        for _ in 0..warmup {
            time_calls(rt, b, calls);
        }
        let mut samples: Vec<Duration> = (0..timed).map(|_| time_calls(rt, b, calls)).collect();
        median(&mut samples)
    };
    let direct = sample(None);
    let batched = sample(Some(&batcher));
    let per_call = |d: Duration| d.as_secs_f64() / calls as f64 * 1e6;
    println!(
        "{}",
        serde_json::json!({
            "workload": "layers_batch",
            "mode": "full_batches",
            "calls": calls,
            "batch_size": batch_size,
            "median_s": batched.as_secs_f64(),
            "per_call_us": per_call(batched),
            "direct_per_call_us": per_call(direct),
            "overhead_per_call_us": per_call(batched) - per_call(direct),
            "reps": timed,
        })
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime;

    #[test]
    fn the_layer_workloads_run() {
        let rt = runtime();
        let breaker = CircuitBreakerLayer::consecutive_failures(1);
        let (steps, _) = measure_chain(&rt, &breaker_chain(10, Some(&breaker)), 10, 1, 1);
        assert_eq!(steps, 10);
        let batcher = Batcher::new(10, Duration::from_secs(1), |items: Vec<u64>| async move {
            Ok(items.into_iter().map(work).collect())
        });
        assert!(time_calls(&rt, Some(&batcher), 100) > Duration::ZERO);
    }
}
