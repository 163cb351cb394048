//! The `thread_100_turns` workload: one thread invoked again and again, each invocation
//! appending one message and running three trivial nodes, timed and weighed turn by turn.

use std::time::{Duration, Instant};

use agentgraph_engine::{CompiledGraph, END, EventKind, GraphBuilder, RunConfig, START};
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use crate::durable::BenchStore;
use crate::states::{Chat, ChatUpdate};

/// `START -> t1 -> t2 -> t3 -> END`: three nodes that write nothing.
pub fn thread_graph() -> CompiledGraph<Chat> {
    let mut b = GraphBuilder::<Chat>::new();
    for name in ["t1", "t2", "t3"] {
        b.add_node(name, |_, _| async { Ok(ChatUpdate::new()) });
    }
    b.add_edge(START, "t1")
        .add_edge("t1", "t2")
        .add_edge("t2", "t3")
        .add_edge("t3", END);
    b.compile().expect("the thread graph compiles")
}

/// One invocation of a thread: how long it took, from the call to its final state, and the
/// bytes of the checkpoints it wrote (from its `CheckpointSaved` events).
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    /// Its wall time.
    pub time: Duration,
    /// The bytes of its checkpoints: blobs and records.
    pub bytes: u64,
}

/// Invokes a new thread of `store` `turns` times, one invocation after another, each with
/// one message of the same length; returns every turn.
///
/// # Panics
///
/// If an invocation fails, or a turn's state is not the thread's messages so far.
pub fn run_thread(
    rt: &Runtime,
    graph: &CompiledGraph<Chat>,
    store: &BenchStore,
    base: &RunConfig,
    turns: usize,
) -> Vec<Turn> {
    let thread = store.next_run_id();
    rt.block_on(async {
        let mut out = Vec::with_capacity(turns);
        for turn in 0..turns {
            let config = base.clone().store(store.store().clone());
            let input = ChatUpdate::say(format!("message {turn:06}"));
            let began = Instant::now();
            let run = graph.invoke_thread(thread.clone(), input, config);
            let events = run.events();
            let state = run.await.expect("an invocation of the thread");
            let time = began.elapsed();
            assert_eq!(state.messages.len(), turn + 1, "one message per turn");
            let bytes = events
                .filter_map(|e| async move {
                    match e.ok()?.kind {
                        EventKind::CheckpointSaved { bytes, .. } => Some(bytes),
                        _ => None,
                    }
                })
                .fold(0, |sum, b| async move { sum + b })
                .await;
            out.push(Turn { time, bytes });
        }
        out
    })
}
