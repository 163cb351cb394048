//! What the engine's integration tests share: their state, a chain builder, a call counter,
//! the stores every durable behaviour is checked on, a store with hooks ([`store::Hooked`]), run
//! configurations, and simulated crashes.
#![allow(dead_code, unreachable_pub)]

pub mod store;

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::sync::{Arc, Mutex};

use agentgraph_checkpoint::{MemoryStore, SledStore};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, Durability, END, Error, GraphBuilder,
    Interrupt, RunConfig, START,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
pub struct Trace {
    #[reducer(append)]
    pub log: Vec<String>,
    #[reducer(add)]
    pub count: u64,
    pub last: String,
}

impl TraceUpdate {
    /// An update appending one entry to the log.
    pub fn note(item: impl Into<String>) -> Self {
        TraceUpdate::new().log(vec![item.into()])
    }
}

/// `START -> n0 -> ... -> n{len-1} -> END`, every node made by `node`.
pub fn chain<F, Fut>(len: usize, node: F) -> CompiledGraph<Trace>
where
    F: Fn(Arc<Trace>, Context) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<TraceUpdate, BoxError>> + Send + 'static,
{
    let mut b = GraphBuilder::<Trace>::new();
    let names: Vec<String> = (0..len).map(|i| format!("n{i}")).collect();
    for name in &names {
        b.add_node(name.clone(), node.clone());
    }
    b.add_edge(START, &names[0]);
    for w in names.windows(2) {
        b.add_edge(&w[0], &w[1]);
    }
    b.add_edge(&names[len - 1], END);
    b.compile().unwrap()
}

/// Counts how often each node ran.
#[derive(Default, Clone)]
pub struct Calls(Arc<Mutex<BTreeMap<String, u32>>>);

impl Calls {
    /// Counts a call of `node`; returns how many there have been.
    pub fn hit(&self, node: &str) -> u32 {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(node.to_owned()).or_default();
        *n += 1;
        *n
    }

    /// How many calls of `node` there have been.
    pub fn get(&self, node: &str) -> u32 {
        self.0.lock().unwrap().get(node).copied().unwrap_or(0)
    }
}

/// A memory store and a sled store (with the directory that holds it).
pub fn stores() -> Vec<(Arc<dyn CheckpointStore>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    vec![(Arc::new(MemoryStore::new()), None), (sled, Some(dir))]
}

/// A memory store.
pub fn memory() -> Arc<dyn CheckpointStore> {
    Arc::new(MemoryStore::new())
}

/// Run `run`, checkpointed to `store`.
pub fn cfg(store: &Arc<dyn CheckpointStore>, run: &str) -> RunConfig {
    RunConfig::new().store(store.clone()).run_id(run)
}

/// Run `run`, checkpointed to `store` with `Durability::Sync`: what a simulated crash leaves
/// is what was written.
pub fn sync_cfg(store: &Arc<dyn CheckpointStore>, run: &str) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(run)
        .durability(Durability::Sync)
}

/// The error a run of `b`, compiled, from the default state ends with; panics if `b` does not
/// compile or the run succeeds.
pub async fn invoke_err(b: GraphBuilder<Trace>) -> Error {
    b.compile()
        .unwrap()
        .invoke(Trace::default())
        .await
        .unwrap_err()
}

/// The interrupts a run stopped at; panics if it ended otherwise.
pub fn stopped(e: Error) -> Vec<Interrupt> {
    match e {
        Error::Interrupted(stop) => stop.interrupts,
        other => panic!("expected an interrupt, got {other:?}"),
    }
}

/// Runs `run` until `reached` is notified, then drops it, as a crash would leave it (nothing
/// more is written: the store is `Sync`, so what was written is durable).
pub async fn crash_when<S: agentgraph_engine::State>(
    run: agentgraph_engine::Run<S>,
    reached: &Notify,
) {
    let fut = run.into_future();
    tokio::select! {
        r = fut => panic!("the run ended before the crash: {:?}", r.err()),
        () = reached.notified() => {}
    }
}

/// Adds `name`, an async node that logs its name.
pub fn logger(b: &mut GraphBuilder<Trace>, name: &'static str) {
    b.add_node(name, move |_, _| async move { Ok(TraceUpdate::note(name)) });
}

/// A chain of `n` nodes, each noting the step it runs in and counting 1.
pub fn counting_chain(n: usize) -> CompiledGraph<Trace> {
    chain(n, |_, ctx| async move {
        Ok(TraceUpdate::note(ctx.step().to_string()).count(1))
    })
}
