//! What the thread test (`tests/thread_turns.rs`) and its child process (the binary
//! `thread_child`, `src/bin/thread_child.rs`) share: the conversation's graph and state, and
//! where the child works.
#![allow(dead_code, unreachable_pub)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use serde::{Deserialize, Serialize};

/// The thread every child invokes.
pub const THREAD: &str = "conversation";
/// Tells the child where to work: its store is `$dir/store`, its side effects `$dir/effects.log`.
pub const CHILD_DIR: &str = "AGENTGRAPH_THREAD_CHILD_DIR";
/// With this set, `think` waits this many milliseconds after recording that it started (a
/// window for the test's SIGKILL).
pub const THINK_MS: &str = "AGENTGRAPH_THREAD_THINK_MS";
/// The exit code of a child whose invocation was refused because the thread's last one did not
/// end (`Error::ThreadNotReady`).
pub const NOT_READY: u8 = 3;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
pub struct Conversation {
    #[reducer(append)]
    pub messages: Vec<String>,
    #[reducer(add)]
    pub turns: u64,
}

/// Appends `line` to the side-effect log of `dir`, durably (what a node did, even if the
/// process is killed right after).
pub fn effect(dir: &Path, line: &str) {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("effects.log"))
        .expect("open the effects log");
    // One write per line (O_APPEND keeps a single small write whole).
    log.write_all(format!("{line}\n").as_bytes())
        .expect("write an effect");
    log.sync_all().expect("sync the effects log");
}

/// The side effects recorded in `dir`, in order.
pub fn effects(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("effects.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `START -> think -> reply -> END`: `think` records that it started (and waits `think`, if
/// given), `reply` answers the last message and records that it did.
pub fn graph(dir: PathBuf, think: Option<Duration>) -> CompiledGraph<Conversation> {
    let dir = Arc::new(dir);
    let mut b = GraphBuilder::<Conversation>::new();
    b.named("conversation");
    let d = dir.clone();
    b.add_node("think", move |s: Arc<Conversation>, _| {
        let d = d.clone();
        async move {
            let last = s.messages.last().cloned().unwrap_or_default();
            effect(&d, &format!("think {last}"));
            if let Some(wait) = think {
                tokio::time::sleep(wait).await;
            }
            Ok(ConversationUpdate::new())
        }
    });
    let d = dir.clone();
    b.add_node("reply", move |s: Arc<Conversation>, _| {
        let d = d.clone();
        async move {
            let last = s.messages.last().cloned().unwrap_or_default();
            effect(&d, &format!("reply {last}"));
            Ok(ConversationUpdate::new()
                .messages(vec![format!("re: {last}")])
                .turns(1))
        }
    });
    b.add_edge(START, "think")
        .add_edge("think", "reply")
        .add_edge("reply", END);
    b.compile().expect("the conversation graph compiles")
}

/// The configuration of every invocation: the sled store, checkpoints flushed per step.
pub fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .durability(Durability::Sync)
}
