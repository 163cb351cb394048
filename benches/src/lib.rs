//! The agentgraph benchmark harness: the workloads of `BENCHMARKS.md` as graphs, and the
//! helpers that time them. The `agentgraph-benches` binary prints one JSON line per workload
//! and mode; the criterion benches in `benches/` reuse the same graphs.
//!
//! # Examples
//!
//! ```
//! use agentgraph_benches::{Counter, chain, config, runtime, time_runs};
//! use agentgraph_engine::Mode;
//!
//! let rt = runtime();
//! let graph = chain(10);
//! let took = time_runs(&rt, &graph, Counter::default, &config(Mode::Parallel, 100), 3);
//! assert!(took.as_nanos() > 0);
//! ```

mod measure;
mod states;
mod workloads;

pub use measure::{median, run_counting_steps, runtime, time_runs};
pub use states::{Counter, CounterUpdate, Items, ItemsUpdate};
pub use workloads::{
    SEED, calibrate_cpu_work, chain, chain_builder, config, cpu_fanout, cpu_work, fanout,
    two_node_loop,
};

#[cfg(test)]
mod tests {
    use super::*;
    use agentgraph_engine::Mode;

    #[test]
    fn workloads_run_the_steps_they_claim() {
        let rt = runtime();
        for mode in [Mode::Sequential, Mode::Parallel] {
            let cfg = config(mode, 10_000);
            let (s, steps) = run_counting_steps(&rt, &chain(50), Counter::default(), &cfg);
            assert_eq!((s.n, steps), (50, 50));

            let (s, steps) = run_counting_steps(&rt, &fanout(20), Items::default(), &cfg);
            assert_eq!(s.items, (0..20).collect::<Vec<_>>());
            assert_eq!((s.n, steps), (2, 3));

            let (s, steps) = run_counting_steps(&rt, &two_node_loop(30), Counter::default(), &cfg);
            assert_eq!((s.n, steps), (60, 60));

            let (s, steps) =
                run_counting_steps(&rt, &cpu_fanout(2, 1_000), Counter::default(), &cfg);
            assert_eq!((s.n, steps), (2, 1));
        }
    }

    #[test]
    fn calibration_scales_with_the_target() {
        let short = calibrate_cpu_work(std::time::Duration::from_millis(1));
        assert!(short >= 1);
    }
}
