//! Map-reduce on the CPU pool: a router splits a range into chunks and sends each as a packet
//! to a CPU-bound node (dynamic fan-out); the chunks run in parallel on rayon while the async
//! runtime stays free, and their counts are merged with an `add` reducer, in packet order.
//! The same graph is run sequentially and in parallel, and the times compared.
//!
//! Run it with `cargo run --release --example cpu_fanout`.

use std::time::Instant;

use agentgraph::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
struct Primes {
    limit: u64,
    #[reducer(add)]
    count: u64,
    #[reducer(append)]
    per_chunk: Vec<u64>,
}

const CHUNKS: u64 = 8;

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn count_chunk(_: &Primes, ctx: &Context) -> Result<PrimesUpdate, BoxError> {
    let (from, to): (u64, u64) = ctx.input()?;
    let count = (from..to).filter(|n| is_prime(*n)).count() as u64;
    Ok(PrimesUpdate::new().count(count).per_chunk(vec![count]))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut graph = GraphBuilder::<Primes>::new();
    graph
        .add_node("split", |_, _| async { Ok(PrimesUpdate::new()) })
        .add_cpu_node("count", count_chunk)
        .add_edge(START, "split")
        .add_conditional_edges("split", ["count"], |s: &Primes| {
            let size = s.limit / CHUNKS;
            Route::packets((0..CHUNKS).map(|i| Packet::new("count", &(i * size, (i + 1) * size))))
        })
        .add_edge("count", END);
    let graph = graph.compile()?;

    let input = Primes {
        limit: 4_000_000,
        ..Default::default()
    };
    let mut times = Vec::new();
    for mode in [Mode::Sequential, Mode::Parallel] {
        let started = Instant::now();
        let done = graph
            .run_with(input.clone(), RunConfig::new().mode(mode))
            .await?;
        let took = started.elapsed();
        println!(
            "{mode:?}: {} primes below {} in {took:.2?} (per chunk: {:?})",
            done.count, done.limit, done.per_chunk
        );
        times.push(took);
    }
    println!(
        "parallel speed-up: {:.2}x on {} rayon threads",
        times[0].as_secs_f64() / times[1].as_secs_f64(),
        rayon::current_num_threads()
    );
    Ok(())
}
