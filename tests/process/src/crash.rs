//! What the crash test (`tests/crash_sigkill.rs`) and its child process (the binary
//! `crash_child`, `src/bin/crash_child.rs`) share: the graph, its state and side effects, and
//! the run's configuration.
#![allow(dead_code, unreachable_pub)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph::prelude::*;
use serde::{Deserialize, Serialize};

/// The id of the run every child works on.
pub const RUN: &str = "crash";
/// Rounds of the loop: two steps each (the branches, then the tally).
pub const ROUNDS: u64 = 30;
/// The parallel branches; `crunch` is the CPU node.
pub const BRANCHES: [&str; 3] = ["fetch", "score", "crunch"];
/// The most tasks of one step: what one kill can make run again.
pub const WIDTH: usize = BRANCHES.len();
/// Tells the child where to work.
pub const CHILD_DIR: &str = "AGENTGRAPH_CRASH_CHILD_DIR";
/// Tells the child its number, which names its log files.
pub const CHILD_ID: &str = "AGENTGRAPH_CRASH_CHILD_ID";
/// One kill in four lands within this many milliseconds of the spawn: while the child starts,
/// opens (recovers) the store and loads the run.
pub const START_WINDOW_MS: u64 = 60;
/// The others land within this many milliseconds of the run's start (the whole run takes
/// about 150 ms), so that a run takes several kills to complete.
pub const RUN_WINDOW_MS: u64 = 40;
/// The padding of every other summary: large values take another path in the sled store.
pub const LARGE_SUMMARY: usize = 70_000;
/// The longest a child may take to finish a run uninterrupted.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
pub struct Tally {
    /// (step, node) of every update merged.
    #[reducer(append)]
    pub trace: Vec<(u64, String)>,
    #[reducer(add)]
    pub total: u64,
    #[reducer(add)]
    pub rounds: u64,
    #[reducer(max)]
    pub last_step: u64,
    /// Overwritten by the tally node alone.
    pub summary: String,
}

/// One run of a node, as its side effect recorded it.
#[derive(Debug, Clone)]
pub struct Effect {
    pub step: u64,
    pub node: String,
    pub task: String,
}

/// Where nodes record that they ran.
#[derive(Clone)]
pub enum Effects {
    /// Appends a `step,node,task` line to a file, in one write (the child).
    File(Arc<PathBuf>),
    /// Collects them (the uninterrupted reference run).
    Memory(Arc<Mutex<Vec<Effect>>>),
}

impl Effects {
    pub fn record(&self, ctx: &Context) {
        let effect = Effect {
            step: ctx.step(),
            node: ctx.node().to_owned(),
            task: ctx.task_id().to_string(),
        };
        match self {
            Effects::File(path) => {
                let line = format!("{},{},{}\n", effect.step, effect.node, effect.task);
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&**path)
                    .and_then(|mut f| f.write_all(line.as_bytes()))
                    .expect("append to the effects log");
            }
            Effects::Memory(all) => all.lock().unwrap().push(effect),
        }
    }
}

/// A node's pause, 0 to 3 ms, the same in every run, so that kills land mid-step.
pub fn pause(step: u64, weight: u64) -> Duration {
    Duration::from_millis((step * 7 + weight * 3) % 4)
}

pub fn update(step: u64, node: &str, weight: u64) -> TallyUpdate {
    TallyUpdate::new()
        .trace(vec![(step, node.to_owned())])
        .total(step * weight)
        .last_step(step)
}

/// START -> [fetch, score, crunch] -> join tally -> back to the branches until ROUNDS are done.
pub fn graph(effects: Effects) -> CompiledGraph<Tally> {
    let mut b = GraphBuilder::<Tally>::new();
    for (weight, name) in [(1, "fetch"), (2, "score")] {
        let effects = effects.clone();
        b.add_node(name, move |_, ctx: Context| {
            effects.record(&ctx);
            async move {
                tokio::time::sleep(pause(ctx.step(), weight)).await;
                Ok(update(ctx.step(), name, weight))
            }
        });
    }
    let crunch = effects.clone();
    b.add_cpu_node("crunch", move |_, ctx| {
        crunch.record(ctx);
        std::thread::sleep(pause(ctx.step(), 3));
        Ok(update(ctx.step(), "crunch", 3))
    });
    b.add_node("tally", move |state: Arc<Tally>, ctx: Context| {
        effects.record(&ctx);
        async move {
            let round = state.rounds + 1;
            let mut summary = format!("round {round}, total {}", state.total);
            if round % 2 == 1 {
                // Over 64 KiB: the sled store keeps the blob of this summary in a file.
                summary.push_str(&"~".repeat(LARGE_SUMMARY));
            }
            Ok(update(ctx.step(), "tally", 4).rounds(1).summary(summary))
        }
    });
    b.add_edges(START, BRANCHES)
        .add_join(BRANCHES, "tally")
        .add_conditional_edges("tally", ["fetch", "score", "crunch", END], |s: &Tally| {
            if s.rounds < ROUNDS {
                Route::to(BRANCHES)
            } else {
                Route::end()
            }
        });
    b.compile().expect("the crash graph compiles")
}

/// The stores the crash test runs on; the child takes one's name as its argument.
pub const STORES: [&str; 2] = ["sled", "redb"];

/// Opens the store of kind `kind` (`sled` or `redb`) in the child's directory `dir`.
pub fn open_store(dir: &std::path::Path, kind: &str) -> Result<Arc<dyn CheckpointStore>, String> {
    let store: Arc<dyn CheckpointStore> = match kind {
        "sled" => Arc::new(
            SledStore::open(dir.join("store"))
                .map_err(|e| format!("sled does not open after a SIGKILL: {e}"))?,
        ),
        "redb" => Arc::new(
            RedbStore::open(dir.join("store.redb"))
                .map_err(|e| format!("redb does not open after a SIGKILL: {e}"))?,
        ),
        other => return Err(format!("unknown store kind `{other}` (sled or redb)")),
    };
    Ok(store)
}

pub fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(RUN)
        .mode(Mode::Parallel)
        .durability(Durability::Sync)
}
