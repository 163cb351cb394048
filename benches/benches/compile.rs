//! Compilation benchmark: `compile_1000` of `BENCHMARKS.md`, building and compiling a
//! 1,000-node chain.
//!
//! Run with `cargo bench -p agentgraph-benches --bench compile`.

use std::time::Duration;

use agentgraph_benches::chain_builder;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile_1000");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1_000));
    group.bench_function("build_compile", |b| {
        b.iter_with_large_drop(|| chain_builder(1_000).compile().expect("the chain compiles"))
    });
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
