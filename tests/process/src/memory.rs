//! What the memory crash test (`tests/memory_sigkill.rs`) and its child (`src/bin/memory_child.rs`)
//! share: the graph, its store and its settings.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgraph::memory::Namespace;
use agentgraph::prelude::*;

/// The directory of the child's store, set by the test.
pub const CHILD_DIR: &str = "AGENTGRAPH_MEMORY_CHILD_DIR";
/// The store kind: `sled` or `redb`.
pub const KIND: &str = "AGENTGRAPH_MEMORY_CHILD_KIND";
/// The run's id.
pub const RUN: &str = "memory-crash";
/// Levels of the graph: each a step of two parallel writers, then a step of their join.
pub const LEVELS: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, State)]
pub struct Trail {
    #[reducer(append)]
    pub log: Vec<String>,
}

/// Where every memory write of the graph goes.
pub fn space() -> Namespace {
    Namespace::new(["crash", "memory"])
}

/// Opens the store of `kind` in `dir`.
pub fn open(dir: &Path, kind: &str) -> Arc<dyn CheckpointStore> {
    match kind {
        "sled" => Arc::new(SledStore::open(dir.join("store")).expect("sled opens after a SIGKILL")),
        "redb" => Arc::new(
            agentgraph::store::RedbStore::open(dir.join("store.redb"))
                .expect("redb opens after a SIGKILL"),
        ),
        other => panic!("unknown store kind {other}"),
    }
}

/// The writers and joins: each run of a node (1) adds 1 to the counter of its branch
/// (`total-a`, `total-b`, `total-j`: one writer per step, read then write: a run repeated after
/// its write was committed would add 2, a lost write would add none), and (2) puts an item under a key no other run of it uses (`run-<node>-<nanos>`: a
/// repeated run leaves two), then sleeps a little so that kills land mid-step.
pub fn graph() -> CompiledGraph<Trail> {
    let mut b = GraphBuilder::<Trail>::new();
    let node = |name: String| {
        move |_: Arc<Trail>, ctx: Context| {
            let name = name.clone();
            async move {
                let memory = ctx.memory();
                let counter = format!("total-{}", &name[..1]);
                let total = memory
                    .get(&space(), &counter)
                    .await?
                    .and_then(|i| i.value.as_u64())
                    .unwrap_or(0);
                memory.put(space(), counter, &(total + 1))?;
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                memory.put(space(), format!("run-{name}-{nanos}"), &ctx.step())?;
                tokio::time::sleep(Duration::from_millis(3 + (nanos % 7) as u64)).await;
                Ok::<_, BoxError>(TrailUpdate::new().log(vec![name]))
            }
        }
    };
    let mut prev = START.to_owned();
    for level in 0..LEVELS {
        let (a, b2, j) = (
            format!("a{level}"),
            format!("b{level}"),
            format!("j{level}"),
        );
        b.add_node(a.clone(), node(a.clone()))
            .add_node(b2.clone(), node(b2.clone()))
            .add_node(j.clone(), node(j.clone()))
            .add_edges(&prev, [a.as_str(), b2.as_str()])
            .add_join([a.as_str(), b2.as_str()], &j);
        prev = j;
    }
    b.add_edge(&prev, END);
    b.compile().expect("the graph compiles")
}

/// How many nodes run in an uninterrupted run.
pub const NODES: usize = 3 * LEVELS;

/// The run's configuration: checkpointed to `store`, synchronously durable, in parallel.
pub fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(RUN)
        .durability(Durability::Sync)
        .mode(Mode::Parallel)
}
