//! What the engine's integration tests share: their state, a chain builder, a call counter,
//! and the stores every durable behaviour is checked on.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use agentgraph_checkpoint::{MemoryStore, SledStore};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, GraphBuilder, START,
};
use serde::{Deserialize, Serialize};

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
