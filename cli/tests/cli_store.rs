//! The `agentgraph` binary against stores made by real runs: a completed run, a failed one,
//! one waiting at an interrupt, a subgraph's runs; human and `--json` output; hostile input.

mod common;

use std::sync::Arc;

use agentgraph::prelude::*;
use agentgraph::run::RunMetadata;
use agentgraph_engine::StoreInspector;
use assert_cmd::Command;
use common::{Work, WorkUpdate, agentgraph, failure, graph, json, standard_store, stdout};
use predicates::prelude::*;
use serde_json::{Value, json};

fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    standard_store(dir.path());
    dir
}

/// Reads the store at `dir` in this process, then closes it.
fn with_store<T>(dir: &std::path::Path, f: impl AsyncFnOnce(Arc<dyn CheckpointStore>) -> T) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
        f(store).await
    })
}

#[test]
fn runs_lists_every_run_with_its_status() {
    let dir = store();
    let text = stdout(dir.path(), &["runs"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("RUN     STATUS       STEP  UPDATED"),
        "{text}"
    );
    // Runs are listed by id, with status, last step, a relative time and the error.
    assert!(
        lines[1].starts_with("asked   interrupted  1     "),
        "{text}"
    );
    assert!(
        lines[2].starts_with("done    completed    3     "),
        "{text}"
    );
    assert!(
        lines[3].starts_with("failed  failed       1     "),
        "{text}"
    );
    assert!(lines[3].contains("the checker is down"), "{text}");
    assert!(
        lines[2].contains(" ago") || lines[2].contains("just now"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );

    let runs = json(dir.path(), &["runs"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1]["run_id"], "done");
    assert_eq!(runs[1]["status"], "completed");
    assert_eq!(runs[1]["last_step"], 3);
    assert_eq!(runs[1]["error"], Value::Null);
    assert_eq!(runs[1]["parent"], Value::Null);
    assert_eq!(runs[1]["fingerprint"], graph().fingerprint().to_string());
    assert!(
        runs[1]["updated_at_ms"].as_u64().unwrap() >= runs[1]["created_at_ms"].as_u64().unwrap()
    );
    assert_eq!(runs[2]["status"], "failed");
    assert!(
        runs[2]["error"]
            .as_str()
            .unwrap()
            .contains("the checker is down")
    );

    let failed = json(
        dir.path(),
        &["runs", "--status", "failed", "--status", "interrupted"],
    );
    let ids: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["asked", "failed"]);
    assert_eq!(
        stdout(dir.path(), &["runs", "--status", "cancelled"]),
        "no run matches\n"
    );
    // One JSON shape per object: a run is the engine's record as it serializes (the
    // monitor's API serves the same), plus the CLI's `parent`.
    let records = with_store(dir.path(), async |store| {
        agentgraph_engine::StoreInspector::new(store)
            .runs()
            .await
            .unwrap()
    });
    for (printed, record) in runs.iter().zip(&records) {
        let mut printed = printed.clone();
        printed.as_object_mut().unwrap().remove("parent");
        assert_eq!(printed, serde_json::to_value(record).unwrap());
    }
}

#[test]
fn show_summarises_a_run() {
    let dir = store();
    let text = stdout(dir.path(), &["show", "done"]);
    assert!(text.contains("run          done\n"), "{text}");
    assert!(text.contains("status       completed\n"), "{text}");
    assert!(text.contains("last step    3\n"), "{text}");
    assert!(text.contains("checkpoints  4\n"), "{text}");
    assert!(
        text.contains(&format!("fingerprint  {}\n", graph().fingerprint())),
        "{text}"
    );
    assert!(text.contains("graph        3 nodes, 5 edges\n"), "{text}");
    assert!(!text.contains("error"), "{text}");

    let show = json(dir.path(), &["show", "done"]);
    assert_eq!(show["run"]["status"], "completed");
    assert_eq!(show["checkpoints"], 4);
    let events = show["events"].as_u64().unwrap();
    assert_eq!(show["last_event"].as_u64(), Some(events - 1));
    assert!(
        text.contains(&format!(
            "events       {events} stored (#0 to #{})\n",
            events - 1
        )),
        "{text}"
    );
    assert_eq!(show["interrupts"], json!([]));
    assert_eq!(show["graph"]["nodes"], 3);

    let text = stdout(dir.path(), &["show", "failed"]);
    assert!(text.contains("status       failed\n"), "{text}");
    assert!(
        text.contains("error        node `check` failed at step 2"),
        "{text}"
    );
    assert!(text.contains("the checker is down"), "{text}");
}

#[test]
fn show_lists_the_interrupts_a_run_waits_on() {
    let dir = store();
    let waiting = with_store(dir.path(), async |store| {
        StoreInspector::new(store)
            .interrupts("asked")
            .await
            .unwrap()
    });
    assert_eq!(waiting.len(), 1);
    let id = &waiting[0].id;

    let text = stdout(dir.path(), &["show", "asked"]);
    assert!(text.contains("status       interrupted\n"), "{text}");
    assert!(
        text.contains(&format!("waiting on\n  check at step 2 (Node): id {id}\n")),
        "{text}"
    );
    assert!(
        text.contains(r#"    payload: {"question":"publish?"}"#),
        "{text}"
    );

    let show = json(dir.path(), &["show", "asked"]);
    assert_eq!(show["interrupts"][0]["id"], id.as_str());
    assert_eq!(show["interrupts"][0]["node"], "check");
    assert_eq!(show["interrupts"][0]["kind"], "node");
    assert_eq!(
        show["interrupts"][0]["payload"],
        json!({ "question": "publish?" })
    );
}

#[test]
fn history_lists_checkpoints() {
    let dir = store();
    let text = stdout(dir.path(), &["history", "done"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("STEP  PARENT  TIME"), "{text}");
    assert!(lines[1].starts_with("0     -       "), "{text}");
    assert!(lines[1].contains("fetch"), "{text}");
    assert!(lines[4].starts_with("3     2       "), "{text}");
    assert!(lines[4].contains("log, n"), "{text}");
    assert!(lines[4].contains("(end)"), "{text}");

    let history = json(dir.path(), &["history", "done"]);
    let steps: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [0, 1, 2, 3]);
    assert_eq!(history[1]["parent"], 0);
    assert_eq!(history[1]["written"], json!(["log", "n"]));
    assert_eq!(history[1]["next"], json!(["check"]));
    assert_eq!(history[3]["next"], json!([]));
    assert!(history[0]["blob_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn state_is_the_typed_state_as_json() {
    let dir = store();
    let typed = with_store(dir.path(), async |store| {
        let history = graph().history(store);
        let mut states = Vec::new();
        for step in 0..=3 {
            states.push(
                serde_json::to_value(history.state("done", Some(step)).await.unwrap()).unwrap(),
            );
        }
        states
    });
    for (step, expected) in typed.iter().enumerate() {
        let step = step.to_string();
        assert_eq!(
            &json(dir.path(), &["state", "done", "--step", &step]),
            expected,
            "step {step}"
        );
        let text = stdout(dir.path(), &["state", "done", "--step", &step]);
        assert_eq!(&serde_json::from_str::<Value>(&text).unwrap(), expected);
    }
    // The newest checkpoint by default, pretty for people.
    let text = stdout(dir.path(), &["state", "done"]);
    assert!(text.starts_with("{\n  \""), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), typed[3]);
    assert_eq!(typed[3]["n"], 3);

    let err = failure(dir.path(), &["state", "done", "--step", "9"]);
    assert!(
        err.contains("run `done` has no checkpoint at step 9 (its last step is 3"),
        "{err}"
    );
}

#[test]
fn state_of_a_run_without_views_says_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    with_store(dir.path(), async |store| {
        let config = RunConfig::new().store(store).run_id("plain");
        graph().run_with(Work::default(), config).await.unwrap();
    });
    let err = failure(dir.path(), &["state", "plain"]);
    assert!(
        err.contains("run `plain` stored no JSON views of its state"),
        "{err}"
    );
    assert!(err.contains("RunConfig::monitored()"), "{err}");
    // Nor did it store events.
    let output = agentgraph(dir.path())
        .args(["events", "plain"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("stored no events"));
}

#[test]
fn events_lists_the_stored_events_in_order() {
    let dir = store();
    let text = stdout(dir.path(), &["events", "done"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("#0    run done started"), "{text}");
    assert!(
        lines.last().unwrap().contains("run finished after 3 steps"),
        "{text}"
    );

    let output = agentgraph(dir.path())
        .args(["--json", "events", "done"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), lines.len());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
        assert_eq!(e["run_id"], "done");
    }
    assert_eq!(events[0]["kind"]["type"], "run_started");
    assert_eq!(events.last().unwrap()["kind"]["type"], "run_finished");

    let after = stdout(dir.path(), &["events", "done", "--after", "3"]);
    assert!(after.starts_with("#4 "), "{after}");
    assert_eq!(after.lines().count(), lines.len() - 4);

    // Following a run that has ended prints what it stored, then stops.
    assert_eq!(stdout(dir.path(), &["events", "done", "--follow"]), text);
    let failed = stdout(dir.path(), &["events", "failed", "--follow"]);
    assert!(
        failed
            .lines()
            .last()
            .unwrap()
            .contains("run failed at step 2"),
        "{failed}"
    );
}

#[test]
fn dot_renders_an_exported_description() {
    let dir = tempfile::tempdir().unwrap();
    let description = graph().describe();
    let file = dir.path().join("graph.json");
    std::fs::write(&file, serde_json::to_string(&description).unwrap()).unwrap();
    let dot = stdout(dir.path(), &["dot", file.to_str().unwrap()]);
    assert_eq!(dot, description.to_dot());
    assert!(dot.starts_with("digraph agentgraph {"));

    // From stdin, without a store.
    Command::new(env!("CARGO_BIN_EXE_agentgraph"))
        .args(["dot", "-"])
        .env_remove("AGENTGRAPH_STORE")
        .write_stdin(serde_json::to_string(&description).unwrap())
        .assert()
        .success()
        .stdout(description.to_dot());

    let doc = json(dir.path(), &["dot", file.to_str().unwrap()]);
    assert_eq!(doc["dot"], description.to_dot());
    assert_eq!(doc["fingerprint"], graph().fingerprint().to_string());

    std::fs::write(&file, "{\"nodes\": 3}").unwrap();
    let err = failure(dir.path(), &["dot", file.to_str().unwrap()]);
    assert!(err.contains("is not a graph description"), "{err}");
    let err = failure(dir.path(), &["dot", "/no/such/graph.json"]);
    assert!(err.contains("cannot read /no/such/graph.json"), "{err}");
}

#[test]
fn prune_deletes_what_it_says() {
    let dir = store();
    let pruned = json(dir.path(), &["prune", "done", "--keep", "2"]);
    assert_eq!(
        pruned,
        json!({ "runs": [{ "run_id": "done", "deleted": 2 }], "deleted": 2 })
    );
    let steps: Vec<u64> = json(dir.path(), &["history", "done"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [2, 3]);
    // The kept checkpoints still read.
    assert_eq!(json(dir.path(), &["state", "done", "--step", "2"])["n"], 2);
    assert_eq!(
        stdout(dir.path(), &["prune", "done", "--keep", "2"]),
        "deleted 0 checkpoints of run `done` (kept the newest 2)\n"
    );

    // Every run: `failed` has 0 and 1, `asked` 0 and 1, `done` 2 and 3.
    let text = stdout(dir.path(), &["prune", "--all", "--keep", "1"]);
    assert_eq!(
        text,
        "deleted 3 checkpoints from 3 of 3 runs (kept the newest 1 of each)\n"
    );
    for run in ["asked", "done", "failed"] {
        assert_eq!(
            json(dir.path(), &["history", run])
                .as_array()
                .unwrap()
                .len(),
            1,
            "{run}"
        );
    }
    // The interrupted run still knows what it waits on.
    assert_eq!(
        json(dir.path(), &["show", "asked"])["interrupts"][0]["node"],
        "check"
    );

    // --keep 0 is a usage error: delete removes a run.
    agentgraph(dir.path())
        .args(["prune", "done", "--keep", "0"])
        .assert()
        .code(2);
    agentgraph(dir.path())
        .args(["prune", "--keep", "1"])
        .assert()
        .code(2);
}

#[test]
fn delete_removes_a_run() {
    let dir = store();
    assert_eq!(
        stdout(dir.path(), &["delete", "asked"]),
        "deleted run `asked`\n"
    );
    let ids: Vec<String> = json(dir.path(), &["runs"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["done", "failed"]);
    assert_eq!(
        json(dir.path(), &["delete", "failed"]),
        json!({ "deleted": ["failed"] })
    );
    let err = failure(dir.path(), &["show", "asked"]);
    assert_eq!(
        err,
        "error: no run `asked` in the store (list them with `agentgraph runs`)\n"
    );
}

#[test]
fn subgraph_runs_are_shown_under_their_parents_with_all() {
    let dir = tempfile::tempdir().unwrap();
    with_store(dir.path(), async |store| {
        let mut b = GraphBuilder::<Work>::new();
        b.add_subgraph(
            "inner",
            graph(),
            |s: &Work| s.clone(),
            |w: Work| WorkUpdate::new().n(w.n),
        )
        .add_edge(START, "inner")
        .add_edge("inner", END);
        let outer = b.compile().unwrap();
        let config = RunConfig::new().store(store).run_id("outer").monitored();
        outer.run_with(Work::default(), config).await.unwrap();
    });
    let runs = json(dir.path(), &["runs"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["run_id"], "outer");

    let all = json(dir.path(), &["runs", "--all"]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let child = all[1]["run_id"].as_str().unwrap().to_owned();
    assert!(child.starts_with("outer/@inner/"), "{child}");
    assert_eq!(all[1]["parent"], "outer");

    let text = stdout(dir.path(), &["runs", "--all"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("outer "), "{text}");
    assert!(lines[2].starts_with(&format!("  {child} ")), "{text}");

    let show = stdout(dir.path(), &["show", &child]);
    assert!(show.contains("subgraph of  outer\n"), "{show}");
    let show = json(dir.path(), &["show", "outer"]);
    assert_eq!(show["subgraph_runs"], json!([child]));
    assert_eq!(
        stdout(dir.path(), &["delete", "outer"]),
        "deleted run `outer` and its subgraph run\n"
    );
    assert_eq!(json(dir.path(), &["runs", "--all"]), json!([]));
    assert_eq!(stdout(dir.path(), &["runs"]), "the store has no runs\n");
}

#[test]
fn an_unknown_run_is_named_with_what_to_do() {
    let dir = store();
    let expected = "error: no run `nope` in the store (list them with `agentgraph runs`)\n";
    for args in [
        &["show", "nope"][..],
        &["history", "nope"],
        &["state", "nope"],
        &["events", "nope"],
        &["events", "nope", "--follow"],
        &["delete", "nope"],
        &["prune", "nope", "--keep", "1"],
    ] {
        assert_eq!(failure(dir.path(), args), expected, "{args:?}");
    }
}

#[test]
fn a_path_that_is_no_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = failure(&missing, &["runs"]);
    assert!(
        err.contains("no store at") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!missing.exists(), "the tool must not create a store");

    let err = failure(dir.path(), &["runs"]);
    assert!(err.contains("is not a store: it has no conf"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );

    let file = dir.path().join("file");
    std::fs::write(&file, "not a store").unwrap();
    let err = failure(&file, &["runs"]);
    assert!(err.contains("is not a store: it is a file"), "{err}");

    // No store at all.
    Command::new(env!("CARGO_BIN_EXE_agentgraph"))
        .arg("runs")
        .env_remove("AGENTGRAPH_STORE")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no store given: pass `--store PATH`",
        ));
    // The store from the environment.
    let store = store();
    Command::new(env!("CARGO_BIN_EXE_agentgraph"))
        .args(["--json", "runs"])
        .env("AGENTGRAPH_STORE", store.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("\"run_id\":\"done\""));
}

#[test]
fn a_store_held_by_a_running_program_points_to_its_monitor() {
    let dir = store();
    let held = SledStore::open(dir.path()).unwrap();
    let err = failure(dir.path(), &["runs"]);
    assert!(err.contains("is in use by a running program"), "{err}");
    assert!(err.contains("--follow --monitor URL"), "{err}");
    drop(held);
    // sled lets the lock go a moment after the drop; the tool waits for it.
    stdout(dir.path(), &["runs"]);
}

#[test]
fn usage_errors_exit_with_code_2() {
    let dir = store();
    agentgraph(dir.path()).args(["show"]).assert().code(2);
    agentgraph(dir.path())
        .args(["runs", "--status", "sleepy"])
        .assert()
        .code(2);
    agentgraph(dir.path()).args(["frobnicate"]).assert().code(2);
    agentgraph(dir.path())
        .args(["events", "done", "--monitor", "http://127.0.0.1:1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--follow"));
    agentgraph(dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "agentgraph events run-42 --follow --monitor http://127.0.0.1:7070",
        ));
}

/// A run whose step stopped in one branch (an interrupt) while the other finished: `pending`
/// and `show` list both tasks, `history` shows the finished one apart from what will run.
#[test]
fn a_stopped_step_shows_its_finished_task() {
    let dir = tempfile::tempdir().unwrap();
    with_store(dir.path(), async |store| {
        let mut b = GraphBuilder::<Work>::new();
        b.add_node("ask", |_, ctx: Context| async move {
            let topic: String = ctx.interrupt(&"topic?")?;
            Ok::<_, BoxError>(WorkUpdate::new().topic(topic))
        })
        .add_node("note", |_, _| async {
            Ok(WorkUpdate::new().log(vec!["noted".into()]).n(1))
        })
        .add_edge(START, "ask")
        .add_edge(START, "note")
        .add_edge("ask", END)
        .add_edge("note", END);
        let config = RunConfig::new().store(store).run_id("half").monitored();
        let stopped = b.compile().unwrap().run_with(Work::default(), config).await;
        assert!(matches!(stopped, Err(Error::Interrupted(_))));
    });

    let tasks = json(dir.path(), &["pending", "half"]);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_eq!(tasks[0]["node"], "ask");
    assert_eq!(tasks[0]["status"], "interrupted");
    assert_eq!(tasks[0]["interrupts"].as_array().unwrap().len(), 1);
    assert_eq!(tasks[1]["node"], "note");
    assert_eq!(tasks[1]["status"], "done");
    assert_eq!(tasks[1]["step"], 1);
    assert_eq!(tasks[1]["attempts"], 1);

    let text = stdout(dir.path(), &["pending", "half"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("STEP  NODE  STATUS"), "{text}");
    assert!(lines[1].starts_with("1     ask   interrupted  1"), "{text}");
    assert!(lines[1].contains("waiting on "), "{text}");
    assert!(lines[2].starts_with("1     note  done         1"), "{text}");
    assert!(lines[2].contains("write saved, not committed"), "{text}");

    let show = json(dir.path(), &["show", "half"]);
    assert_eq!(show["pending"], Value::Array(tasks.clone()));
    let text = stdout(dir.path(), &["show", "half"]);
    assert!(text.contains("stopped in step 1"), "{text}");
    assert!(text.contains("  1     note  done"), "{text}");

    let history = json(dir.path(), &["history", "half"]);
    assert_eq!(history[0]["next"], json!(["ask"]));
    assert_eq!(history[0]["finished"], json!(["note"]));
    let text = stdout(dir.path(), &["history", "half"]);
    assert!(text.contains("ask (done: note)"), "{text}");

    // A run that stopped between steps, or finished, has none.
    let dir = store();
    assert_eq!(json(dir.path(), &["pending", "done"]), json!([]));
    let text = stdout(dir.path(), &["pending", "done"]);
    assert!(text.contains("stopped between steps"), "{text}");
    let show = json(dir.path(), &["show", "done"]);
    assert_eq!(show["pending"], json!([]));
}

/// A store with three threads: `chat-ann` (user, title, tags, a label, kept an hour),
/// `chat-bob` (kept a millisecond) and `plain` (no session).
fn session_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    with_store(dir.path(), async |store| {
        let run = |id: &str, config: RunConfig| {
            let config = config.store(store.clone()).run_id(id);
            let work = Work {
                topic: "rust".into(),
                ..Work::default()
            };
            graph().run_with(work, config)
        };
        let ann = RunMetadata::new()
            .with_user("ann")
            .with_title("Refund for order 17")
            .with_tags(["support", "billing"])
            .with_label("channel", "email");
        let hour = std::time::Duration::from_secs(3600);
        run("chat-ann", RunConfig::new().metadata(ann).ttl(hour))
            .await
            .unwrap();
        let bob = RunMetadata::new().with_user("bob").with_tag("support");
        let ms = std::time::Duration::from_millis(1);
        run("chat-bob", RunConfig::new().metadata(bob).ttl(ms))
            .await
            .unwrap();
        run("plain", RunConfig::new()).await.unwrap();
    });
    dir
}

fn run_ids(runs: &Value) -> Vec<&str> {
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect()
}

#[test]
fn runs_are_listed_by_user_tag_label_and_title() {
    let dir = session_store();
    let path = dir.path();
    assert_eq!(
        run_ids(&json(path, &["runs", "--user", "ann"])),
        ["chat-ann"]
    );
    assert_eq!(
        run_ids(&json(path, &["runs", "--tag", "support"])),
        ["chat-ann", "chat-bob"]
    );
    assert_eq!(
        run_ids(&json(
            path,
            &["runs", "--tag", "support", "--tag", "billing"]
        )),
        ["chat-ann"]
    );
    assert_eq!(
        run_ids(&json(path, &["runs", "--label", "channel=email"])),
        ["chat-ann"]
    );
    assert_eq!(
        run_ids(&json(path, &["runs", "--title", "ORDER 17"])),
        ["chat-ann"]
    );
    assert_eq!(
        run_ids(&json(
            path,
            &["runs", "--user", "bob", "--status", "failed"]
        )),
        Vec::<&str>::new()
    );
    assert_eq!(
        stdout(path, &["runs", "--user", "carol"]),
        "no run matches\n"
    );
    let output = agentgraph(path)
        .args(["runs", "--label", "channel"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a label is KEY=VALUE");

    // The JSON is the record's: metadata, time to live, expiry.
    let runs = json(path, &["runs"]);
    assert_eq!(
        runs[0]["metadata"],
        json!({
            "user": "ann",
            "title": "Refund for order 17",
            "tags": ["billing", "support"],
            "labels": { "channel": "email" },
        })
    );
    assert_eq!(runs[0]["ttl_ms"], 3_600_000);
    assert_eq!(
        runs[0]["expires_at_ms"].as_u64().unwrap(),
        runs[0]["updated_at_ms"].as_u64().unwrap() + 3_600_000
    );
    assert_eq!(runs[2]["metadata"]["user"], Value::Null);
    assert_eq!(runs[2]["expires_at_ms"], Value::Null);

    // The table shows the session's columns.
    let text = stdout(path, &["runs"]);
    let lines: Vec<&str> = text.lines().collect();
    // (The UPDATED column is as wide as its values, "1s ago" or "12s ago": compare words.)
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header[..8],
        [
            "RUN", "STATUS", "STEP", "UPDATED", "USER", "TITLE", "TAGS", "EXPIRES"
        ],
        "{text}"
    );
    assert!(
        lines[1].contains("  ann   Refund for order 17  billing,support  in 59m"),
        "{text}"
    );
    assert!(lines[2].contains("  bob         "), "{text}");
    assert!(lines[2].ends_with("expired"), "{text}");
    assert!(lines[3].starts_with("plain     completed"), "{text}");
    // (A store whose runs have no session keeps the table it had: see
    // `runs_lists_every_run_with_its_status`.)

    let show = stdout(path, &["show", "chat-ann"]);
    assert!(show.contains("\nuser         ann\n"), "{show}");
    assert!(
        show.contains("\ntitle        Refund for order 17\n"),
        "{show}"
    );
    assert!(show.contains("\ntags         billing, support\n"), "{show}");
    assert!(show.contains("\nlabels       channel=email\n"), "{show}");
    assert!(show.contains("kept 1h after its last write)\n"), "{show}");
    assert!(!stdout(path, &["show", "plain"]).contains("user"));
}

#[test]
fn sweep_deletes_the_expired_runs_once() {
    let dir = session_store();
    let path = dir.path();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        stdout(path, &["sweep"]),
        "deleted 1 expired run:\n  chat-bob\n"
    );
    assert_eq!(json(path, &["sweep"]), json!({ "deleted": [] }));
    assert_eq!(stdout(path, &["sweep"]), "no run has expired\n");
    assert_eq!(run_ids(&json(path, &["runs"])), ["chat-ann", "plain"]);
}

/// A run whose failure was caught by an error edge and whose next failure was compensated:
/// `events` prints both, `show` its end, `dot` of its graph both edge kinds.
#[test]
fn events_of_error_edges_and_compensations_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::<Work>::new();
    b.add_node("book", |_, _| async { Ok(WorkUpdate::new()) })
        .add_node("check", |_, _| async {
            Err::<WorkUpdate, BoxError>("the checker is down".into())
        })
        .add_node("guess", |_, _| async { Ok(WorkUpdate::new()) })
        .add_node("pay", |_, _| async {
            Err::<WorkUpdate, BoxError>("declined".into())
        })
        .add_node("unbook", |_, _| async { Ok(WorkUpdate::new()) })
        .add_edge(START, "book")
        .add_edge("book", "check")
        .add_edge("check", END)
        .add_edge("guess", "pay")
        .add_edge("pay", END)
        .on_error("check", "guess")
        .compensate("book", "unbook");
    let graph = b.compile().unwrap();
    with_store(dir.path(), async |store| {
        let config = RunConfig::new()
            .store(store.clone())
            .run_id("saga")
            .monitored();
        let e = graph.run_with(Work::default(), config).await.unwrap_err();
        assert!(matches!(e, Error::Compensated { .. }), "{e}");
    });
    let text = stdout(dir.path(), &["events", "saga"]);
    assert!(
        text.contains("check failed for good, routed to guess: the checker is down"),
        "{text}"
    );
    assert!(
        text.contains("compensating after step 4 (book): node `pay` failed"),
        "{text}"
    );
    assert!(text.contains("step 5 started: unbook[0]"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("(the run was compensated: undid book)"),
        "{text}"
    );
    let graph_file = dir.path().join("graph.json");
    std::fs::write(
        &graph_file,
        serde_json::to_string(&graph.describe()).unwrap(),
    )
    .unwrap();
    let dot = stdout(dir.path(), &["dot", graph_file.to_str().unwrap()]);
    assert!(
        dot.contains("label=\"on error\"") && dot.contains("label=\"compensate\""),
        "{dot}"
    );
}

#[test]
fn events_prints_a_tasks_streamed_tokens_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    with_store(dir.path(), async |store| {
        let mut b = GraphBuilder::<Work>::new();
        b.add_node("writer", |_, ctx: Context| async move {
            for i in 0..70u64 {
                ctx.emit_token(i, &format!("w{i} "));
            }
            Ok(WorkUpdate::new().n(1))
        })
        .add_node("poet", |_, ctx: Context| async move {
            ctx.emit_token(0, "roses\n");
            ctx.emit_token(1, "are red");
            Ok(WorkUpdate::new().n(1))
        })
        .add_edge(START, "writer")
        .add_edge("writer", "poet")
        .add_edge("poet", END);
        let config = RunConfig::new()
            .store(store.clone())
            .run_id("streamed")
            .mode(Mode::Sequential)
            .monitored();
        b.compile()
            .unwrap()
            .run_with(Work::default(), config)
            .await
            .unwrap();
    });
    let text = stdout(dir.path(), &["events", "streamed"]);
    let writer: String = (0..70).map(|i| format!("w{i} ")).collect();
    let lines: Vec<&str> = text.lines().collect();
    // 70 tokens, stored as two events (64 and 6): one line, after the node started.
    let at = lines
        .iter()
        .position(|l| l.contains("writer streams: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(lines[at - 1].contains("writer started"), "{text}");
    assert!(
        lines[at].ends_with(&format!("   writer streams: {writer}")),
        "{text}"
    );
    assert!(lines[at + 1].contains("writer finished"), "{text}");
    assert_eq!(text.matches("streams: ").count(), 2, "{text}");
    // Line breaks in a token are escaped.
    assert!(
        text.contains("   poet streams: roses\\nare red\n"),
        "{text}"
    );

    // In JSON, each stored event is a line of its own.
    let output = agentgraph(dir.path())
        .args(["--json", "events", "streamed"])
        .output()
        .unwrap();
    let tokens: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"]["type"] == "token")
        .collect();
    let counts: Vec<u64> = tokens
        .iter()
        .map(|e| e["kind"]["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [64, 6, 2]);
    assert_eq!(tokens[1]["kind"]["index"], 64);
    assert_eq!(tokens[2]["kind"]["text"], "roses\nare red");
}

/// `redb:PATH`: the same commands read a redb store's file as they read a sled store.
#[test]
fn a_redb_store_is_read_through_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs.redb");
    common::standard_redb_store(&file);
    let url = format!("redb:{}", file.display());
    let url = std::path::Path::new(&url);
    let sled = store();
    let strip = |v: Value| {
        let mut runs = v.as_array().unwrap().clone();
        for r in &mut runs {
            let r = r.as_object_mut().unwrap();
            r.remove("created_at_ms");
            r.remove("updated_at_ms");
        }
        runs
    };
    assert_eq!(
        strip(json(url, &["runs"])),
        strip(json(sled.path(), &["runs"]))
    );
    let text = stdout(url, &["runs"]);
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .starts_with("done    completed    3     "),
        "{text}"
    );
    assert!(stdout(url, &["show", "done"]).contains("completed"));
    assert_eq!(
        json(url, &["history", "done"]).as_array().unwrap().len(),
        json(sled.path(), &["history", "done"])
            .as_array()
            .unwrap()
            .len()
    );
    // `sled:PATH` is the bare path's store.
    let sled_url = format!("sled:{}", sled.path().display());
    assert_eq!(
        strip(json(std::path::Path::new(&sled_url), &["runs"])),
        strip(json(sled.path(), &["runs"]))
    );
    // Held by a running program.
    let held = agentgraph_checkpoint::RedbStore::open(&file).unwrap();
    let err = failure(url, &["runs"]);
    assert!(err.contains("is in use by a running program"), "{err}");
    assert!(
        err.contains("a redb store is open in one process at a time"),
        "{err}"
    );
    drop(held);
    stdout(url, &["runs"]);
}

#[test]
fn a_redb_url_that_is_no_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.redb");
    let url = format!("redb:{}", missing.display());
    let err = failure(std::path::Path::new(&url), &["runs"]);
    assert!(
        err.contains("no store at") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!missing.exists(), "the tool must not create a store");

    let url = format!("redb:{}", dir.path().display());
    let err = failure(std::path::Path::new(&url), &["runs"]);
    assert!(
        err.contains("is not a redb store: it is a directory"),
        "{err}"
    );

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "not a store").unwrap();
    let url = format!("redb:{}", file.display());
    let err = failure(std::path::Path::new(&url), &["runs"]);
    assert!(err.contains("cannot open the store at"), "{err}");
    assert!(err.contains("not a redb database"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a store", "left alone");

    let err = failure(std::path::Path::new("mongodb://db/runs"), &["runs"]);
    assert!(err.contains("unknown store scheme `mongodb`"), "{err}");
    assert!(err.contains("`redb:PATH`"), "{err}");
    let err = failure(std::path::Path::new("redb:"), &["runs"]);
    assert!(err.contains("has nothing after `redb:`"), "{err}");
}
