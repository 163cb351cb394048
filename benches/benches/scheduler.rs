//! Scheduler benchmarks: `chain_1000`, `fanout_100` and `loop_1000` of `BENCHMARKS.md`, each
//! run timed on a runtime worker with the graph compiled beforehand.
//!
//! Run with `cargo bench -p agentgraph-benches --bench scheduler`.

use std::time::Duration;

use agentgraph_benches::{
    Counter, Items, chain, config, fanout, runtime, time_runs, two_node_loop,
};
use agentgraph_engine::Mode;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

fn small_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn modes() -> [(&'static str, Mode); 2] {
    [
        ("sequential", Mode::Sequential),
        ("parallel", Mode::Parallel),
    ]
}

fn scheduler(c: &mut Criterion) {
    let rt = runtime();

    let graph = chain(1_000);
    let mut group = small_group(c, "chain_1000");
    group.throughput(Throughput::Elements(1_000));
    for (name, mode) in modes() {
        let cfg = config(mode, 1_001);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| time_runs(&rt, &graph, Counter::default, &cfg, iters))
        });
    }
    group.finish();

    let graph = fanout(100);
    let mut group = small_group(c, "fanout_100");
    // Elements are branches: criterion's per-element time is the per-branch time.
    group.throughput(Throughput::Elements(100));
    for (name, mode) in modes() {
        let cfg = config(mode, 10);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| time_runs(&rt, &graph, Items::default, &cfg, iters))
        });
    }
    group.finish();

    let graph = two_node_loop(1_000);
    let mut group = small_group(c, "loop_1000");
    group.throughput(Throughput::Elements(2_000));
    let cfg = config(Mode::Parallel, 2_001);
    group.bench_function("parallel", |b| {
        b.iter_custom(|iters| time_runs(&rt, &graph, Counter::default, &cfg, iters))
    });
    group.finish();
}

criterion_group!(benches, scheduler);
criterion_main!(benches);
