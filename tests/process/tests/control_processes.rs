//! Control of a run across processes, with a real sled store. The first process is the binary
//! `control_child` of this package, in one of two roles:
//!
//! - `subgraph`: it runs a graph until an interrupt inside a subgraph stops it, and exits. This
//!   process then opens the same store, finds the interrupt, answers it, and finishes the run.
//! - `backoff`: it runs a node that fails twice, with a long delay before its third attempt;
//!   this process kills it with SIGKILL during that delay, then resumes the run, which goes on
//!   at attempt 3 (after what is left of the delay), not attempt 1.
#[path = "../src/control.rs"]
mod control;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use control::*;
use futures_util::StreamExt;

fn start_child(dir: &Path, role: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_control_child"))
        .env(CHILD_DIR, dir)
        .env(CHILD_ROLE, role)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_during_a_backoff_resumes_at_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_child(dir.path(), "backoff");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !dir.path().join("retry-3-scheduled").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited early: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never scheduled its retry"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let g = flaky(dir.path());
    let run = g.resume("order-7", config(&store));
    let events = run.events();
    let state = run.await.unwrap();
    assert_eq!(state.log, ["fetched at attempt 3"]);
    let attempts: Vec<u32> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::NodeStarted { attempt, .. } => Some(attempt),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(attempts, [3], "the attempt count continues after the crash");
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    let runs: Vec<_> = effects
        .lines()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(runs, ["fetch #1", "fetch #2", "fetch #3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_in_a_subgraph_is_resumed_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let status = start_child(dir.path(), "subgraph").wait().unwrap();
    assert!(status.success(), "the first process failed: {status}");

    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let g = graph(dir.path());
    let waiting = g
        .history(store.clone())
        .interrupts("order-7")
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].path, ["approval"]);
    assert_eq!(
        (waiting[0].node.as_str(), &waiting[0].payload),
        ("decide", &serde_json::json!("ship a chair?"))
    );

    let resume = Resume::new().answer(&waiting[0].id, "approved");
    let state = g
        .resume_with("order-7", resume, config(&store))
        .await
        .unwrap();
    assert_eq!(
        state.log,
        ["taken", "checked a chair", "approved", "shipped"]
    );

    // The first process ran take, check and decide; this one only decide (again) and ship.
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    let lines: Vec<(&str, &str)> = effects
        .lines()
        .map(|l| l.split_once(' ').unwrap())
        .collect();
    let me = std::process::id().to_string();
    let first: Vec<_> = lines
        .iter()
        .filter(|(p, _)| *p != me)
        .map(|(_, n)| *n)
        .collect();
    let second: Vec<_> = lines
        .iter()
        .filter(|(p, _)| *p == me)
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(first, ["take", "check", "decide"]);
    assert_eq!(second, ["decide", "ship"]);
}
