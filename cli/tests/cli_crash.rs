//! The `agentgraph` binary on the store of a crashed run. A child process (this test binary
//! started again with `AGENTGRAPH_CLI_CRASH_DIR` set: see [`child`]) runs a long monitored run
//! on a sled store and announces each durable checkpoint; the test kills it with SIGKILL mid-run, then reads the
//! store with the tool: the run shows as running at its last durable step, its events are a
//! gap-free prefix of a run, and its state is its last checkpoint's.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use agentgraph::prelude::*;
use common::{Work, agentgraph, graph, json, stdout};
use futures_util::StreamExt;
use serde_json::Value;

/// Tells the child where the store is (the child reads the same name).
const CHILD_DIR: &str = "AGENTGRAPH_CLI_CRASH_DIR";
/// The durable checkpoint after which the child is killed.
const KILL_AFTER: u64 = 6;

/// The test's name: the child process is this test binary running only this test.
const TEST: &str = "a_crashed_run_reads_as_running_at_its_last_durable_step";

#[test]
fn a_crashed_run_reads_as_running_at_its_last_durable_step() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(dir.as_ref());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let announced = loop {
        let line = lines.next().expect("the child ended early").unwrap();
        if let Some(step) = line.strip_prefix("saved ") {
            let step: u64 = step.parse().unwrap();
            if step >= KILL_AFTER {
                break step;
            }
        }
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let store = dir.path();

    let show = json(store, &["show", "crashed"]);
    assert_eq!(show["run"]["status"], "running");
    let last_step = show["run"]["last_step"].as_u64().unwrap();
    assert!(
        last_step >= announced,
        "step {announced} was durable, the store says {last_step}"
    );
    assert_eq!(show["checkpoints"].as_u64(), Some(last_step + 1));
    let text = stdout(store, &["show", "crashed"]);
    assert!(text.contains("status       running\n"), "{text}");
    assert!(
        text.contains(&format!("last step    {last_step}\n")),
        "{text}"
    );
    let runs = stdout(store, &["runs"]);
    assert!(
        runs.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("crashed  running  {last_step} ")),
        "{runs}"
    );

    // The events are a gap-free prefix: from #0, numbered without holes, no end.
    let output = agentgraph(store)
        .args(["--json", "events", "crashed"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "event {i}");
    }
    assert_eq!(events[0]["kind"]["type"], "run_started");
    assert_eq!(show["last_event"].as_u64(), Some(events.len() as u64 - 1));
    assert!(events.iter().all(|e| !matches!(
        e["kind"]["type"].as_str().unwrap(),
        "run_finished" | "run_failed" | "run_interrupted"
    )));
    let saved: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"]["type"] == "checkpoint_saved")
        .map(|e| e["kind"]["step"].as_u64().unwrap())
        .collect();
    assert_eq!(saved, (0..=last_step).collect::<Vec<_>>());

    // Following it prints the same and stops: no program can be advancing it.
    let output = agentgraph(store)
        .args(["events", "crashed", "--follow"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        output.stdout,
        stdout(store, &["events", "crashed"]).into_bytes()
    );
    let note = String::from_utf8(output.stderr).unwrap();
    assert!(
        note.contains("it crashed or was killed after step"),
        "{note}"
    );

    // The state is the last checkpoint's, as the program's own types read it.
    let state = json(store, &["state", "crashed"]);
    assert_eq!(state["n"], last_step);
    assert_eq!(
        state,
        json(
            store,
            &["state", "crashed", "--step", &last_step.to_string()]
        )
    );
    let typed = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(store).unwrap());
        graph().history(store).state("crashed", None).await.unwrap()
    });
    assert_eq!(state, serde_json::to_value(&typed).unwrap());
    let history = json(store, &["history", "crashed"]);
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["step"],
        last_step
    );
}

/// The child process: a long monitored run `crashed` on a sled store in `dir`, printing
/// `saved <step>` once each checkpoint is durable, until the parent kills it.
fn child(dir: &std::path::Path) -> ! {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
        let config = RunConfig::new()
            .store(store)
            .run_id("crashed")
            .durability(Durability::Sync)
            .monitored();
        let input = Work {
            topic: "slow".to_owned(),
            ..Work::default()
        };
        let run = graph().run_with(input, config);
        let mut events = run.events();
        let _handle = run.spawn();
        while let Some(Ok(event)) = events.next().await {
            if let EventKind::CheckpointSaved { step, .. } = event.kind {
                // Emitted after the flush: the checkpoint is durable.
                println!("saved {step}");
            }
        }
    });
    unreachable!("the run takes 1,000 steps: the parent kills the child long before")
}
