//! The `agentgraph` binary on a PostgreSQL store named by its URL: the runs other processes
//! wrote, a run followed while another process runs it, and a URL's password never printed.
//!
//! Needs a server: `./scripts/test` starts one and sets `AGENTGRAPH_TEST_POSTGRES_URL`.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use agentgraph_postgres::PostgresStore;
use common::{agentgraph, json, run, stdout};
use serde::{Deserialize, Serialize};

fn server_url() -> String {
    std::env::var("AGENTGRAPH_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "AGENTGRAPH_TEST_POSTGRES_URL is not set: these tests need a PostgreSQL server. Run \
             them with ./scripts/test (which starts one), or start one with `scripts/postgres \
             start DIR` and export AGENTGRAPH_TEST_POSTGRES_URL=<the URL it prints>"
        )
    })
}

/// The server's URL with a schema no other test uses.
fn fresh_url(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let base = server_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!(
        "{base}{sep}schema=cli_{name}_{}_{nanos}",
        std::process::id()
    )
}

#[test]
fn runs_written_by_another_process_are_listed_and_shown() {
    let url = fresh_url("list");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        run(&store, "done", "rust").await.unwrap();
        run(&store, "failed", "fail").await.unwrap_err();
        run(&store, "asked", "ask").await.unwrap_err();
    });
    let store = std::path::Path::new(&url);
    let runs = json(store, &["runs"]);
    let mut listed: Vec<(String, String)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("asked".to_owned(), "interrupted".to_owned()),
            ("done".to_owned(), "completed".to_owned()),
            ("failed".to_owned(), "failed".to_owned()),
        ]
    );
    let shown = stdout(store, &["show", "asked"]);
    assert!(shown.contains("interrupted"), "{shown}");
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Steps {
    #[reducer(add)]
    n: u64,
}

#[test]
fn a_run_another_process_runs_is_followed_to_its_end() {
    let url = fresh_url("follow");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = Arc::new(std::sync::Mutex::new(wait));
    let mut b = GraphBuilder::<Steps>::new();
    b.add_node("first", |_, _| async {
        Ok::<_, BoxError>(StepsUpdate::new().n(1))
    })
    .add_node("held", move |_, _| {
        let wait = wait.clone();
        async move {
            tokio::task::spawn_blocking(move || wait.lock().unwrap().recv().ok())
                .await
                .ok();
            Ok::<_, BoxError>(StepsUpdate::new().n(1))
        }
    })
    .add_edge(START, "first")
    .add_edge("first", "held")
    .add_edge("held", END);
    let graph = b.compile().unwrap();
    let store: Arc<dyn CheckpointStore> =
        Arc::new(rt.block_on(PostgresStore::connect(&url)).unwrap());
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("live")
        .durability(Durability::Sync)
        .store_events(true);
    let running = rt.spawn(graph.run_with(Steps::default(), config).into_future());
    // The run is under way (its first step stored) before the follower starts.
    rt.block_on(async {
        for _ in 0..6000 {
            if store
                .latest_checkpoint("live")
                .await
                .unwrap()
                .is_some_and(|(s, _)| s >= 1)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the run never stored its first step");
    });
    let follower = std::process::Command::new(env!("CARGO_BIN_EXE_agentgraph"))
        .args(["--json", "--store", &url, "events", "live", "--follow"])
        .env_remove("AGENTGRAPH_STORE")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    release.send(()).unwrap();
    let done = rt.block_on(running).unwrap().unwrap();
    assert_eq!(done.n, 2);
    let output = follower.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("\"run_finished\""), "{text}");
    assert!(text.contains("\"step_started\""), "{text}");
}

#[test]
fn a_url_password_is_never_printed() {
    let output = agentgraph(std::path::Path::new(
        "postgres://agentgraph:hunter2-not-shown@127.0.0.1:1/postgres",
    ))
    .arg("runs")
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn the_queue_of_workers_is_listed() {
    use agentgraph_postgres::worker::{Queue, Worker};
    let url = fresh_url("queue");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(PostgresStore::connect(&url)).unwrap();
    let queue = Queue::new(&store);
    let (a, b) = rt.block_on(async {
        (
            queue.submit("steps", serde_json::json!({})).await.unwrap(),
            queue
                .submit("steps", serde_json::json!({ "n": 5 }))
                .await
                .unwrap(),
        )
    });
    let path = std::path::Path::new(&url);
    let jobs = json(path, &["jobs", "--status", "queued"]);
    let runs: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, [a.as_str(), b.as_str()]);
    assert!(stdout(path, &["workers"]).contains("no worker has registered"));

    // A worker takes both, and stops.
    let mut g = GraphBuilder::<Steps>::new();
    g.add_node("one", |_, _| async {
        Ok::<_, BoxError>(StepsUpdate::new().n(1))
    })
    .add_edge(START, "one")
    .add_edge("one", END);
    let registry = agentgraph::run::GraphRegistry::new().with("steps", g.compile().unwrap());
    rt.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker =
            Worker::new(store.clone(), registry, "cli-w").poll_interval(Duration::from_millis(50));
        let task = tokio::spawn(worker.run_until(async move {
            let _ = stopped.await;
        }));
        for _ in 0..6000 {
            if queue.jobs(Some("done"), 0, 10).await.unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    });
    let text = stdout(path, &["jobs"]);
    assert_eq!(
        text.lines().filter(|l| l.contains(" done ")).count(),
        2,
        "{text}"
    );
    let workers = json(path, &["workers"]);
    assert_eq!(workers[0]["id"], "cli-w");
    assert_eq!(workers[0]["stopped"], true);
    assert_eq!(workers[0]["graphs"], serde_json::json!(["steps"]));
    let embedded = tempfile::tempdir().unwrap();
    common::standard_store(embedded.path());
    let refused = common::failure(embedded.path(), &["jobs"]);
    assert!(refused.contains("only a PostgreSQL store"), "{refused}");
}

#[test]
fn jobs_with_a_tenant_are_the_tenants() {
    use agentgraph_checkpoint::TenantId;
    use agentgraph_postgres::worker::Queue;
    let url = fresh_url("queue_tenants");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(PostgresStore::connect(&url)).unwrap();
    let queue = Queue::new(&store);
    let acme = queue
        .clone()
        .tenant(TenantId::new("acme").unwrap())
        .caller("alice");
    let globex = queue.clone().tenant(TenantId::new("globex").unwrap());
    rt.block_on(async {
        assert!(
            acme.submit_with_id("steps", "acme-1", serde_json::json!({}))
                .await
                .unwrap()
        );
        assert!(
            globex
                .submit_with_id("steps", "globex-1", serde_json::json!({}))
                .await
                .unwrap()
        );
    });
    let path = std::path::Path::new(&url);
    let jobs = json(path, &["--tenant", "acme", "jobs"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (&jobs[0]["run_id"], &jobs[0]["tenant"], &jobs[0]["caller"]),
        (
            &serde_json::json!("acme-1"),
            &serde_json::json!("acme"),
            &serde_json::json!("alice")
        )
    );
    let text = stdout(path, &["jobs", "--tenant", "globex"]);
    assert!(
        text.contains("globex-1") && !text.contains("acme"),
        "{text}"
    );
    // Over every tenant: both, each with its tenant.
    let text = stdout(path, &["jobs"]);
    assert!(text.contains("TENANT"), "{text}");
    let line = text.lines().find(|l| l.contains("acme-1")).unwrap();
    assert!(
        line.contains(" acme ") && line.contains(" alice "),
        "{line}"
    );
    assert!(text.contains("globex-1"), "{text}");
    assert_eq!(jobs[0]["held_by_tenant_cap"], serde_json::json!(false));
    // acme capped at 0: its job waits for a place, and says so.
    rt.block_on(queue.set_tenant_limit(&TenantId::new("acme").unwrap(), 0))
        .unwrap();
    let jobs = json(path, &["--tenant", "acme", "jobs"]);
    assert_eq!(jobs[0]["held_by_tenant_cap"], serde_json::json!(true));
    let text = stdout(path, &["jobs"]);
    let line = text.lines().find(|l| l.contains("acme-1")).unwrap();
    assert!(line.ends_with("tenant cap"), "{line}");
    let line = text.lines().find(|l| l.contains("globex-1")).unwrap();
    assert!(line.ends_with("now"), "{line}");
    // The workers serve every tenant: not for a tenant's eyes.
    let refused = common::failure(path, &["--tenant", "acme", "workers"]);
    assert!(refused.contains("without `--tenant`"), "{refused}");
}
