//! The memory workloads: `memory_search_100k` (semantic search over 100,000 items of 384
//! dimensions, brute force on the store handle's index) and `memory_put` (memory writes
//! committed with each step's checkpoint).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph_checkpoint::items::{Item, ItemQuery, Namespace};
use agentgraph_checkpoint::{CheckpointStore, WriteBatch};
use agentgraph_engine::{
    BoxError, CompiledGraph, Context, Durability, END, GraphBuilder, RunConfig, START,
};
use tokio::runtime::Runtime;

use crate::measure::median;

/// A deterministic stream of numbers in [-1, 1) (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vector(&mut self, dims: usize) -> Vec<f32> {
        (0..dims).map(|_| self.next()).collect()
    }
}

/// What `memory_search_100k` measured.
#[derive(Debug, Clone, Copy)]
pub struct SearchTiming {
    /// Writing the items (batches of 1,000).
    pub fill: Duration,
    /// The first search: the index built from a scan of every item, then searched.
    pub first: Duration,
    /// The median of the searches after it.
    pub median: Duration,
    /// The median of the searches with a namespace prefix and a filter.
    pub filtered_median: Duration,
}

/// Fills `store` with `items` items of `dims` random dimensions (in 100 namespaces, values
/// `{"i": i, "even": bool}`), then times `searches` searches for the 10 nearest items to
/// random vectors.
///
/// # Panics
///
/// If the store fails.
pub fn time_memory_search(
    rt: &Runtime,
    store: &Arc<dyn CheckpointStore>,
    items: usize,
    dims: usize,
    searches: usize,
) -> SearchTiming {
    rt.block_on(async {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let began = Instant::now();
        for chunk in 0..items.div_ceil(1_000) {
            let mut batch = WriteBatch::new();
            for i in chunk * 1_000..((chunk + 1) * 1_000).min(items) {
                let ns = Namespace::new(["bench".to_owned(), format!("user-{}", i % 100)]);
                batch.put_item(
                    Item::new(
                        ns,
                        format!("item-{i}"),
                        serde_json::json!({"i": i, "even": i % 2 == 0}),
                    )
                    .with_embedding(noise.vector(dims)),
                );
            }
            store.commit(batch).await.expect("the items are written");
        }
        let fill = began.elapsed();
        let query = |noise: &mut Noise| {
            ItemQuery::new(Namespace::new(["bench"]))
                .vector(noise.vector(dims))
                .limit(10)
        };
        let began = Instant::now();
        let hits = store
            .search_items(&query(&mut noise))
            .await
            .expect("search");
        let first = began.elapsed();
        assert_eq!(hits.len(), 10);
        let mut times = Vec::with_capacity(searches);
        for _ in 0..searches {
            let q = query(&mut noise);
            let began = Instant::now();
            let hits = store.search_items(&q).await.expect("search");
            times.push(began.elapsed());
            assert_eq!(hits.len(), 10);
        }
        let mut filtered = Vec::with_capacity(searches);
        for _ in 0..searches {
            let mut q = query(&mut noise);
            q.prefix = Namespace::new(["bench", "user-7"]);
            q.filter = Some(agentgraph_checkpoint::items::Filter::eq("even", false));
            let began = Instant::now();
            let hits = store.search_items(&q).await.expect("search");
            filtered.push(began.elapsed());
            assert_eq!(hits.len(), 10);
        }
        SearchTiming {
            fill,
            first,
            median: median(&mut times),
            filtered_median: median(&mut filtered),
        }
    })
}

/// A chain of `steps` nodes, each putting `puts` memory items (`puts` 0: none).
pub fn memory_put_graph(steps: usize, puts: usize) -> CompiledGraph<crate::Counter> {
    let mut b = GraphBuilder::<crate::Counter>::new();
    let names: Vec<String> = (0..steps).map(|i| format!("n{i}")).collect();
    for name in &names {
        b.add_node(name.clone(), move |_, ctx: Context| async move {
            let memory = ctx.memory();
            let ns = Namespace::new(["bench", "puts"]);
            for p in 0..puts {
                memory.put(
                    ns.clone(),
                    format!("{}-{}-{p}", ctx.run_id(), ctx.step()),
                    &serde_json::json!({"step": ctx.step(), "p": p}),
                )?;
            }
            Ok::<_, BoxError>(crate::CounterUpdate::new().n(1))
        });
    }
    b.add_edge(START, &names[0]);
    for w in names.windows(2) {
        b.add_edge(&w[0], &w[1]);
    }
    b.add_edge(&names[steps - 1], END);
    b.compile().expect("the graph compiles")
}

/// Times `runs` runs of `graph` checkpointed to `store` with `durability`: the median run.
///
/// # Panics
///
/// If a run fails.
pub fn time_memory_puts(
    rt: &Runtime,
    graph: &CompiledGraph<crate::Counter>,
    store: &Arc<dyn CheckpointStore>,
    durability: Durability,
    runs: usize,
    prefix: &str,
) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for r in 0..runs {
        let config = RunConfig::new()
            .store(store.clone())
            .run_id(format!("{prefix}-{r}"))
            .durability(durability);
        let began = Instant::now();
        rt.block_on(std::future::IntoFuture::into_future(
            graph.run_with(crate::Counter::default(), config),
        ))
        .expect("the run completes");
        times.push(began.elapsed());
    }
    median(&mut times)
}
