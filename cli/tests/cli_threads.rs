//! The `agentgraph` binary on a thread (`CompiledGraph::invoke_thread`) of three invocations
//! in a sled store: `history` groups its checkpoints by invocation, `show` counts them,
//! `events` prints `ThreadInvoked`, `invocations` lists them, also after `prune`.

mod common;

use std::path::Path;
use std::sync::Arc;

use agentgraph::prelude::*;
use common::{WorkUpdate, graph, json, run, stdout};
use serde_json::{Value, json};

/// A sled store at `dir` with the thread `chat`, invoked three times (the test graph runs
/// `fetch`, `check`, `tick` each time: an input checkpoint and three steps per invocation),
/// and a plain run `done`.
fn thread_store(dir: &Path) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
        let g = graph();
        for turn in 1..=3 {
            let input = WorkUpdate::new().log(vec![format!("user {turn}")]);
            let config = RunConfig::new().store(store.clone()).monitored();
            let state = g.invoke_thread("chat", input, config).await.unwrap();
            assert_eq!(state.n, 3 * turn, "each invocation runs three nodes");
        }
        run(&store, "done", "rust").await.unwrap();
    });
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn a_threads_invocations_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    thread_store(dir.path());

    // history: one table, a heading per invocation.
    let text = stdout(dir.path(), &["history", "chat"]);
    let l = lines(&text);
    assert_eq!(l.len(), 1 + 3 * 5, "{text}");
    assert!(l[0].starts_with("STEP  PARENT  TIME"), "{text}");
    for (i, heading) in [
        (1, "invocation 1"),
        (6, "invocation 2"),
        (11, "invocation 3"),
    ] {
        assert_eq!(l[i], heading, "{text}");
    }
    assert!(l[2].starts_with("0     -       "), "{text}");
    // Invocation 2's first checkpoint holds its input, and runs from START again.
    assert!(l[7].starts_with("4     3       "), "{text}");
    assert!(l[7].contains("  log  "), "{text}");
    assert!(l[7].contains("  fetch  "), "{text}");
    assert!(l[15].starts_with("11    10      "), "{text}");
    assert!(l[15].contains("(end)"), "{text}");
    // A plain run has no headings.
    let plain = stdout(dir.path(), &["history", "done"]);
    assert!(!plain.contains("invocation"), "{plain}");

    let history = json(dir.path(), &["history", "chat"]);
    let numbers: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["invocation"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
    assert_eq!(history[8]["written"], json!(["log"]));
    assert_eq!(history[8]["next"], json!(["fetch"]));
    assert!(
        json(dir.path(), &["history", "done"])
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["invocation"] == 1)
    );

    // show: how many invocations.
    let text = stdout(dir.path(), &["show", "chat"]);
    assert!(text.contains("last step    11\ninvocations  3\n"), "{text}");
    assert!(text.contains("checkpoints  12\n"), "{text}");
    assert_eq!(json(dir.path(), &["show", "chat"])["invocations"], 3);
    let plain = stdout(dir.path(), &["show", "done"]);
    assert!(!plain.contains("invocations"), "{plain}");
    assert_eq!(json(dir.path(), &["show", "done"])["invocations"], 1);

    // events: one ThreadInvoked per invocation, readable; one run_started.
    let text = stdout(dir.path(), &["events", "chat"]);
    for (turn, step) in [(1, 0), (2, 4), (3, 8)] {
        let line =
            format!("thread chat invocation {turn}: input written to log (checkpoint {step})");
        assert_eq!(
            text.lines().filter(|l| l.ends_with(&line)).count(),
            1,
            "{line}:\n{text}"
        );
    }
    let output = common::agentgraph(dir.path())
        .args(["--json", "events", "chat"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let invoked: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["kind"]["type"] == "thread_invoked")
        .map(|e| {
            assert_eq!(e["kind"]["fields"], json!(["log"]));
            (
                e["kind"]["invocation"].as_u64().unwrap(),
                e["kind"]["step"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(invoked, [(1, 0), (2, 4), (3, 8)]);
    let started = events
        .iter()
        .filter(|e| e["kind"]["type"] == "run_started")
        .count();
    assert_eq!(started, 1, "a thread starts once");

    // invocations: one line each.
    let text = stdout(dir.path(), &["invocations", "chat"]);
    let l = lines(&text);
    assert_eq!(l.len(), 4, "{text}");
    assert!(
        l[0].starts_with("INVOCATION  STEPS  CHECKPOINTS  STARTED"),
        "{text}"
    );
    assert!(l[0].ends_with("INPUT"), "{text}");
    assert!(
        l[1].starts_with("1           0-3    4            "),
        "{text}"
    );
    assert!(
        l[2].starts_with("2           4-7    4            "),
        "{text}"
    );
    assert!(
        l[3].starts_with("3           8-11   4            "),
        "{text}"
    );
    // A thread's first checkpoint stores its whole state; a later input, its own fields.
    assert!(l[1].ends_with("  topic, log, n"), "{text}");
    assert!(l[2].ends_with("  log") && l[3].ends_with("  log"), "{text}");
    let listed = json(dir.path(), &["invocations", "chat"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[1]["invocation"], 2);
    assert_eq!(listed[1]["first_step"], 4);
    assert_eq!(listed[1]["last_step"], 7);
    assert_eq!(listed[1]["checkpoints"], 4);
    assert_eq!(listed[1]["input"], json!(["log"]));
    assert_eq!(listed[1]["pruned"], false);
    assert_eq!(listed[1]["started_at_ms"], history[4]["created_at_ms"]);
    assert_eq!(listed[1]["updated_at_ms"], history[7]["created_at_ms"]);
    assert_eq!(
        json(dir.path(), &["invocations", "done"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Pruned to its newest 6 checkpoints: invocation 2 lost its input, 3 is whole; the count
    // still comes from the newest checkpoint.
    json(dir.path(), &["prune", "chat", "--keep", "6"]);
    let text = stdout(dir.path(), &["history", "chat"]);
    let l = lines(&text);
    assert_eq!(l.len(), 1 + 2 + 6, "{text}");
    assert_eq!(l[1], "invocation 2", "{text}");
    assert!(l[2].starts_with("6     5       "), "{text}");
    assert_eq!(l[4], "invocation 3", "{text}");
    assert_eq!(json(dir.path(), &["show", "chat"])["invocations"], 3);
    let text = stdout(dir.path(), &["invocations", "chat"]);
    let l = lines(&text);
    assert_eq!(l.len(), 3, "{text}");
    assert!(
        l[1].starts_with("2           6-7    2            -"),
        "{text}"
    );
    assert!(l[1].ends_with("(pruned)"), "{text}");
    assert!(
        l[2].starts_with("3           8-11   4            "),
        "{text}"
    );
    let listed = json(dir.path(), &["invocations", "chat"]);
    assert_eq!(listed[0]["pruned"], true);
    assert_eq!(listed[0]["input"], Value::Null);
    assert_eq!(listed[0]["started_at_ms"], Value::Null);
    assert_eq!(listed[1]["pruned"], false);
}
