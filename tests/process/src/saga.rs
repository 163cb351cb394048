//! What the saga crash test (`tests/saga_sigkill.rs`) and its child process (the binary
//! `saga_child`, `src/bin/saga_child.rs`) share: a 3-step saga whose third step fails, its
//! side effects and the run's configuration.
#![allow(dead_code, unreachable_pub)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentgraph::prelude::*;
use serde::{Deserialize, Serialize};

/// The id of the run every child works on.
pub const RUN: &str = "saga";
/// Tells the child where to work.
pub const CHILD_DIR: &str = "AGENTGRAPH_SAGA_CHILD_DIR";
/// Tells the child which compensation hangs on its first attempt (the parent then kills the
/// child); unset, none does.
pub const HANG: &str = "AGENTGRAPH_SAGA_HANG";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
pub struct Ledger {
    /// The nodes whose updates were merged, in order.
    #[reducer(append)]
    pub log: Vec<String>,
}

/// Appends `line` to the log `name` in `dir`, in one write.
pub fn append(dir: &Path, name: &str, line: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
        .expect("append to a log");
}

/// The lines of the log `name` in `dir` (none if it does not exist).
pub fn lines(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `START -> book -> reserve -> pay -> END`; `pay` always fails (two attempts). `book` and
/// `reserve` have the compensations `unbook` and `release`. Every node appends its name to
/// `effects.log` when its work is done (its side effect); a compensation first appends its
/// name to `started.log`, and the one named by `hang` then hangs until the process is killed
/// (only while `started.log` lists it once: its rerun after the kill does not hang).
pub fn graph(dir: &Path, hang: Option<String>) -> CompiledGraph<Ledger> {
    let dir: Arc<PathBuf> = Arc::new(dir.to_owned());
    let mut b = GraphBuilder::<Ledger>::new();
    for name in ["book", "reserve"] {
        let dir = dir.clone();
        b.add_node(name, move |_, _| {
            append(&dir, "effects.log", name);
            async move { Ok(LedgerUpdate::new().log(vec![name.to_owned()])) }
        });
    }
    let d = dir.clone();
    b.add_node("pay", move |_, _| {
        append(&d, "effects.log", "pay failed");
        async { Err::<LedgerUpdate, BoxError>("the card is declined".into()) }
    });
    for name in ["unbook", "release"] {
        let dir = dir.clone();
        let hang = hang.clone();
        b.add_node(name, move |_, ctx: Context| {
            let dir = dir.clone();
            let hang = hang.clone();
            async move {
                let undo: Compensation = ctx.input()?;
                append(&dir, "started.log", name);
                let starts = lines(&dir, "started.log")
                    .iter()
                    .filter(|l| *l == name)
                    .count();
                if hang.as_deref() == Some(name) && starts == 1 {
                    append(&dir, "hanging", name);
                    std::future::pending::<()>().await;
                }
                append(&dir, "effects.log", name);
                Ok(LedgerUpdate::new().log(vec![format!("{name} {}", undo.node)]))
            }
        });
    }
    b.add_edge(START, "book")
        .add_edge("book", "reserve")
        .add_edge("reserve", "pay")
        .add_edge("pay", END)
        .retry(
            "pay",
            RetryPolicy::new(2).backoff(std::time::Duration::ZERO, std::time::Duration::ZERO),
        )
        .compensate("book", "unbook")
        .compensate("reserve", "release");
    b.compile().expect("the saga graph compiles")
}

pub fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(RUN)
        .durability(Durability::Sync)
}
