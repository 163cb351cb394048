//! The state shared by the engine's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;

use agentgraph_engine::{BoxError, CompiledGraph, Context, END, GraphBuilder, START};
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
