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

mod agent;
mod chaos;
mod durable;
mod file;
mod group_chat;
mod layers;
mod measure;
mod memory;
mod postgres;
mod states;
mod thread;
mod workers;
mod workloads;

pub use agent::time_agent_turns;
pub use chaos::run_chaos;
pub use durable::{
    BaselineSamples, BenchStore, CheckpointedRun, RAW_VALUE_LEN, RedbBaseline, RedbSamples,
    ResumeTiming, SledBaseline, fill_store, run_checkpointed, time_resume, time_runs_each,
};
pub use file::{FILE_SCHEMA, file_chain_yaml, file_input, load_file_graph};
pub use group_chat::{GROUP_CHAT_AGENTS, time_group_chats};
pub use layers::{breaker_chain, run_layers_batch, run_layers_breaker};
pub use measure::{median, run_counting_steps, runtime, time_runs};
pub use memory::{SearchTiming, memory_put_graph, time_memory_puts, time_memory_search};
pub use postgres::{PostgresBaseline, PostgresServer};
pub use states::{Big, BigUpdate, Chat, ChatUpdate, Counter, CounterUpdate, Items, ItemsUpdate};
pub use thread::{Turn, run_thread, thread_graph};
pub use workers::{WORKER_CONCURRENCIES, WORKER_STEPS, WorkerTiming, time_workers};
pub use workloads::{
    BIG_ITEM_LEN, BIG_ITEMS, Flaky, SEED, SMALL_ITEMS, big_chain, big_input, big_item,
    calibrate_cpu_work, chain, chain_builder, config, cpu_fanout, cpu_work, fanout, flaky_chain,
    small_input, two_node_loop,
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
    fn durable_workloads_write_checkpoints_and_resume() {
        use agentgraph_engine::Durability;
        let rt = runtime();
        let cfg = config(Mode::Parallel, 10_000);
        for store in [BenchStore::memory("t"), BenchStore::sled("t")] {
            let run = run_checkpointed(&rt, &chain(20), Counter::default(), store.config(&cfg));
            assert_eq!((run.state.n, run.steps), (20, 20));
            assert_eq!(run.checkpoints.len(), 21);
            assert!(run.step0_bytes() > 0 && run.bytes_per_step() > 0.0);
            let took = time_runs_each(&rt, &chain(20), Counter::default, store.configs(&cfg, 2));
            assert!(took.as_nanos() > 0);
        }

        let store = BenchStore::sled("big");
        for append in [true, false] {
            let run = run_checkpointed(&rt, &big_chain(5, append), big_input(), store.config(&cfg));
            let items = if append { BIG_ITEMS + 5 } else { BIG_ITEMS };
            assert_eq!(run.state.items.len(), items);
            assert_eq!(run.state.n, if append { 0 } else { 5 });
            assert!(run.step0_bytes() > (BIG_ITEMS * BIG_ITEM_LEN) as u64);
            assert!(run.bytes_per_step_after_step0() < 2048.0);
        }

        let flaky = Flaky::new(10);
        let graph = flaky_chain(10, 5, &flaky);
        let store = BenchStore::sled("resume");
        fill_store(&rt, &store, &cfg, 3);
        let base = cfg.clone().durability(Durability::Async);
        let t = time_resume(&rt, &graph, &flaky, 5, &store, &base, true);
        assert_eq!((t.resumed_after, t.steps_run), (Some(4), Some(6)));
        assert!(t.to_first_node <= t.total);
    }

    #[test]
    fn the_sled_baseline_samples_each_kind() {
        let rt = runtime();
        let mut baseline = SledBaseline::new();
        let mut samples = BaselineSamples::default();
        baseline.sample(&rt, 3, &mut samples);
        baseline.sample(&rt, 2, &mut samples);
        assert_eq!(samples.insert_flush_async.len(), 5);
        assert_eq!(samples.insert_flush.len(), 5);
        assert_eq!(samples.store_commit_flush.len(), 5);
    }

    #[test]
    fn calibration_scales_with_the_target() {
        let short = calibrate_cpu_work(std::time::Duration::from_millis(1));
        assert!(short >= 1);
    }
}
