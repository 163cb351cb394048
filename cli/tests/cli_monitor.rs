//! `agentgraph events --follow --monitor URL` against the real monitor server, while a run is
//! in progress and across a restart of the server; and `agentgraph serve`.

#![cfg(feature = "serve")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use agentgraph_engine::StoreInspector;
use agentgraph_monitor::{Monitor, Server};
use common::{Work, failure, graph, json, standard_store, stdout};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agentgraph");

/// A monitor of `store` on `addr`, polling often.
async fn monitor(
    store: &Arc<dyn CheckpointStore>,
    addr: SocketAddr,
    token: Option<&str>,
) -> Server {
    let mut monitor = Monitor::new(store.clone())
        .bind(addr)
        .poll_interval(Duration::from_millis(20));
    if let Some(token) = token {
        monitor = monitor.token(token);
    }
    monitor.serve().await.unwrap()
}

/// Runs the tool with `args` on a blocking thread, and waits for it at most a minute.
async fn tool(args: Vec<String>) -> Output {
    let child = Command::new(BIN)
        .args(&args)
        .env("NO_COLOR", "1")
        .env_remove("AGENTGRAPH_STORE")
        .env_remove("AGENTGRAPH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wait = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the tool should stop by itself")
        .unwrap()
}

/// The JSON lines of `output`, checked to be events numbered 0, 1, 2... of `run`.
fn events(output: &Output, run: &str) -> Vec<Value> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "event {i} of {}", events.len());
        assert_eq!(e["run_id"], run);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_every_event_once_across_a_monitor_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    let first = monitor(&store, "127.0.0.1:0".parse().unwrap(), None).await;
    let addr = first.local_addr();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("live")
        .monitored();
    let input = Work {
        topic: "steady".to_owned(),
        ..Work::default()
    };
    let run = graph().run_with(input, config).spawn();

    let url = format!("http://{addr}");
    let follower = tokio::spawn(tool(
        ["--json", "events", "live", "--follow", "--monitor", &url]
            .map(String::from)
            .to_vec(),
    ));
    // Mid-run, the server goes away and comes back on the same address.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!run.is_finished(), "the run should still be going");
    first.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = monitor(&store, addr, None).await;

    let state = run.await.unwrap();
    assert_eq!(state.n, 40);
    let output = follower.await.unwrap();
    let printed = events(&output, "live");
    assert_eq!(printed.last().unwrap()["kind"]["type"], "run_finished");
    let stored = StoreInspector::new(store.clone())
        .last_event("live")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(printed.len() as u64, stored + 1, "every stored event, once");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");

    // From the middle on, for people.
    let output = tool(
        [
            "events",
            "live",
            "--follow",
            "--after",
            "10",
            "--monitor",
            &url,
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("#11 "), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("run finished after 40 steps"),
        "{text}"
    );
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_sends_the_token_and_says_what_the_monitor_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    common::run(&store, "done", "rust").await.unwrap();
    let server = monitor(&store, "127.0.0.1:0".parse().unwrap(), Some("s3cret")).await;
    let url = server.url();
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = ["--json", "events", "--follow", "--monitor", &url]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let output = tool(args(&["done", "--token", "s3cret"])).await;
    let printed = events(&output, "done");
    assert_eq!(printed.last().unwrap()["kind"]["type"], "run_finished");

    let output = tool(args(&["done"])).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the monitor refused the request (401"),
        "{stderr}"
    );
    assert!(stderr.contains("--token"), "{stderr}");

    let output = tool(args(&["nope", "--token", "s3cret"])).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the monitor has no run `nope`"), "{stderr}");
    server.shutdown().await.unwrap();

    // Nobody listening: a few attempts, then a clear error.
    let output = tool(args(&["done"])).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lost the monitor at"), "{stderr}");
}

#[test]
fn serve_serves_a_store_no_program_runs() {
    let dir = tempfile::tempdir().unwrap();
    standard_store(dir.path());
    let expected = stdout(dir.path(), &["events", "done"]);

    let mut server = Command::new(BIN)
        .arg("--store")
        .arg(dir.path())
        .args(["--json", "serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let serving: Value = serde_json::from_str(&line).unwrap();
    let url = serving["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // The store is the server's now; the tool reads it through the server.
    let err = failure(dir.path(), &["runs"]);
    assert!(err.contains("in use by a running program"), "{err}");
    let output = Command::new(BIN)
        .args(["events", "done", "--follow", "--monitor", &url])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);

    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(json(dir.path(), &["runs"]).as_array().unwrap().len(), 3);

    let err = failure(dir.path(), &["serve", "--addr", "0.0.0.0:0"]);
    assert!(err.contains("without a token"), "{err}");
}

/// With a monitor that has `LiveTokens`, `events --follow` prints a node's tokens as they
/// come, while the node runs, and not again when their stored event follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_live_tokens_once() {
    use std::io::Read;
    use tokio::sync::Semaphore;

    const WORDS: [&str; 4] = ["Once", " upon", " a", " time."];
    let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    let live = agentgraph_monitor::LiveTokens::new();
    let server = Monitor::new(store.clone())
        .bind(([127, 0, 0, 1], 0).into())
        .poll_interval(Duration::from_millis(20))
        .live(live.clone())
        .serve()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let pass = gate.clone();
    let mut b = GraphBuilder::<Work>::new();
    b.add_node("writer", move |_, ctx: Context| {
        let pass = pass.clone();
        async move {
            for (i, word) in WORDS.iter().enumerate() {
                pass.acquire().await?.forget();
                ctx.emit_token(i as u64, word);
            }
            Ok::<_, BoxError>(common::WorkUpdate::new().n(1))
        }
    })
    .add_edge(START, "writer")
    .add_edge("writer", END);
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("told")
        .monitored()
        .durability(Durability::Sync);
    let run = b.compile().unwrap().run_with(Work::default(), config);
    live.watch(run.events());
    let run = tokio::spawn(std::future::IntoFuture::into_future(run));
    let inspector = StoreInspector::new(store.clone());
    while inspector.run("told").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut child = Command::new(BIN)
        .args(["events", "told", "--follow", "--monitor", &server.url()])
        .env("NO_COLOR", "1")
        .env_remove("AGENTGRAPH_STORE")
        .env_remove("AGENTGRAPH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let printed = Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = printed.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // Wait for the tool to print the run's start (it is following), give it time to
    // connect, then let the words come one by one: each is printed before the next is made
    // (the node is still running, nothing of its step stored). On a loaded machine the tool
    // can take longer than any fixed pause to start.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !printed.lock().unwrap().contains("run told started") {
        assert!(
            std::time::Instant::now() < deadline,
            "the run's start was not printed: {}",
            printed.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut want = String::new();
    for word in WORDS {
        gate.add_permits(1);
        want.push_str(word);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !printed
            .lock()
            .unwrap()
            .contains(&format!("writer streams: {want}"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{want:?} was not printed: {}",
                printed.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if want != "Once upon a time." {
            assert!(!printed.lock().unwrap().contains("writer finished"));
        }
    }
    run.await.unwrap().unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    reader.join().unwrap();
    assert!(output.status.success());
    let text = printed.lock().unwrap().clone();
    assert_eq!(text.matches("streams: ").count(), 1, "{text}");
    assert_eq!(text.matches("Once upon a time.").count(), 1, "{text}");
    assert!(text.contains("writer finished"), "{text}");
    assert!(text.contains("run finished"), "{text}");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!errors.contains("skipped"), "{errors}");
    server.shutdown().await.unwrap();
}

#[test]
fn serve_serves_a_redb_store_named_by_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs.redb");
    common::standard_redb_store(&file);
    let url = format!("redb:{}", file.display());
    let store = std::path::Path::new(&url);
    let expected = stdout(store, &["events", "done"]);

    let mut server = Command::new(BIN)
        .args(["--store", &url, "--json", "serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let serving: Value = serde_json::from_str(&line).unwrap();
    let monitor = serving["url"].as_str().unwrap().to_owned();

    let err = failure(store, &["runs"]);
    assert!(err.contains("in use by a running program"), "{err}");
    let output = Command::new(BIN)
        .args(["events", "done", "--follow", "--monitor", &monitor])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);

    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(json(store, &["runs"]).as_array().unwrap().len(), 3);
}
