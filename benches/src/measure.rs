//! Timing runs: the runtime, the timed loop, the step count of a run, the median.

use std::time::Duration;

use agentgraph_engine::{CompiledGraph, EventKind, RunConfig, State};
use futures_util::StreamExt;
use tokio::runtime::Runtime;

/// The multi-thread tokio runtime the benchmarks run on (one worker per core).
///
/// # Panics
///
/// If the runtime cannot be built.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `graph` `iters` times, one run after another, inside one task spawned on `rt` (so on
/// a runtime worker, as [`Run::spawn`](agentgraph_engine::Run::spawn) does), and returns the
/// total wall time of the runs. Making each input and dropping each final state are not timed.
///
/// # Panics
///
/// If a run fails.
pub fn time_runs<S: State>(
    rt: &Runtime,
    graph: &CompiledGraph<S>,
    input: fn() -> S,
    config: &RunConfig,
    iters: u64,
) -> Duration {
    let configs = (0..iters).map(|_| config.clone()).collect();
    crate::time_runs_each(rt, graph, input, configs)
}

/// Runs `graph` once, untimed, on a runtime worker, and returns the final state with the
/// number of steps the run took (read from its `RunFinished` event).
///
/// # Panics
///
/// If the run fails or reports no `RunFinished` event.
pub fn run_counting_steps<S: State>(
    rt: &Runtime,
    graph: &CompiledGraph<S>,
    input: S,
    config: &RunConfig,
) -> (S, u64) {
    let graph = graph.clone();
    // Only the last event matters: keep one.
    let config = config.clone().event_capacity(1);
    rt.block_on(async move {
        tokio::spawn(async move {
            let run = graph.run_with(input, config);
            let mut events = run.events();
            let state = run.await.expect("a benchmark run failed");
            let mut steps = None;
            while let Some(event) = events.next().await {
                if let Ok(event) = event
                    && let EventKind::RunFinished { steps: n, .. } = event.kind
                {
                    steps = Some(n);
                }
            }
            (state, steps.expect("the run reported RunFinished"))
        })
        .await
        .expect("the counting task panicked")
    })
}

/// The median of `samples` (the mean of the two middle ones for an even count).
///
/// # Panics
///
/// If `samples` is empty.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_benches::median;
/// let ms = Duration::from_millis;
/// assert_eq!(median(&mut [ms(3), ms(1), ms(2)]), ms(2));
/// assert_eq!(median(&mut [ms(4), ms(1), ms(2), ms(3)]), Duration::from_micros(2_500));
/// ```
pub fn median(samples: &mut [Duration]) -> Duration {
    assert!(!samples.is_empty(), "the median of no sample");
    samples.sort_unstable();
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2
    }
}
