//! Checkpoint benchmarks: `chain_1000` of `BENCHMARKS.md` with an in-memory store (`memory`)
//! and with the embedded sled store and async durability (`durable_async`). Each run gets a
//! fresh run id of one store per mode (a sled store in a temporary directory); the graph is
//! compiled beforehand. `memory_store_events` and `memory_monitored` add the stored event log,
//! and the log with the graph and JSON views of the state: what monitoring costs.
//!
//! Run with `cargo bench -p agentgraph-benches --bench checkpoint`.

use std::time::Duration;

use agentgraph_benches::{BenchStore, Counter, chain, config, runtime, time_runs_each};
use agentgraph_engine::{Durability, Mode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn checkpoint(c: &mut Criterion) {
    let rt = runtime();
    let graph = chain(1_000);
    let base = config(Mode::Parallel, 1_001).durability(Durability::Async);

    let mut group = c.benchmark_group("chain_1000");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1_000));
    for (name, store) in [
        ("memory", BenchStore::memory("memory")),
        ("durable_async", BenchStore::sled("async")),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                time_runs_each(&rt, &graph, Counter::default, store.configs(&base, iters))
            })
        });
    }
    // What monitoring costs: the events stored with the checkpoints, then also the graph and
    // the JSON views of the state (`RunConfig::monitored`).
    let store = BenchStore::memory("monitored");
    for (name, base) in [
        ("memory_store_events", base.clone().store_events(true)),
        ("memory_monitored", base.clone().monitored()),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                time_runs_each(&rt, &graph, Counter::default, store.configs(&base, iters))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, checkpoint);
criterion_main!(benches);
