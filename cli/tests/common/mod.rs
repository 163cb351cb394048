//! What the CLI tests share: a small graph, stores made by real runs of it, and running the
//! `agentgraph` binary.

#![allow(dead_code, unreachable_pub)]

mod graph;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use agentgraph::prelude::*;
use assert_cmd::Command;
#[allow(unused_imports)] // each test file uses some of them
pub use graph::{Work, WorkUpdate, graph};

/// Runs `topic` as run `run` on `store`, monitored; returns its result.
pub async fn run(
    store: &Arc<dyn CheckpointStore>,
    run: &str,
    topic: &str,
) -> agentgraph::Result<Work> {
    let config = RunConfig::new()
        .store(store.clone())
        .run_id(run)
        .monitored();
    graph()
        .run_with(
            Work {
                topic: topic.to_owned(),
                ..Work::default()
            },
            config,
        )
        .await
}

/// A store at `dir` with a completed run `done`, a failed run `failed` and a run `asked`
/// waiting at an interrupt; the store is closed when it returns.
pub fn standard_store(dir: &Path) {
    fill_standard_store(Arc::new(SledStore::open(dir).unwrap()));
}

/// The runs of [`standard_store`] in the redb store at file `path` (its URL is `redb:PATH`).
pub fn standard_redb_store(path: &Path) {
    fill_standard_store(Arc::new(
        agentgraph_checkpoint::RedbStore::open(path).unwrap(),
    ));
}

fn fill_standard_store(store: Arc<dyn CheckpointStore>) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        run(&store, "done", "rust").await.unwrap();
        let failed = run(&store, "failed", "fail").await.unwrap_err();
        assert!(
            failed.to_string().contains("the checker is down"),
            "{failed}"
        );
        let asked = run(&store, "asked", "ask").await.unwrap_err();
        assert!(matches!(asked, Error::Interrupted(_)), "{asked}");
    });
}

/// The `agentgraph` binary, on the store at `store`, without colours.
pub fn agentgraph(store: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentgraph"));
    cmd.arg("--store")
        .arg(store)
        .env_remove("AGENTGRAPH_STORE")
        .env_remove("AGENTGRAPH_TOKEN")
        .env_remove("AGENTGRAPH_CALLER")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs `agentgraph --store store args...`, expects success, returns stdout.
pub fn stdout(store: &Path, args: &[&str]) -> String {
    let output = agentgraph(store).args(args).output().unwrap();
    assert_success(&output, args);
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `agentgraph --json --store store args...`, expects success, parses stdout.
pub fn json(store: &Path, args: &[&str]) -> serde_json::Value {
    let output = agentgraph(store).arg("--json").args(args).output().unwrap();
    assert_success(&output, args);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "`{}` printed no JSON document ({e}):\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Runs `agentgraph --store store args...`, expects exit code 1 with no stdout, returns
/// stderr.
pub fn failure(store: &Path, args: &[&str]) -> String {
    let output = agentgraph(store).args(args).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "`{}` should fail with code 1; stderr:\n{stderr}",
        args.join(" ")
    );
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains(" { "), "a Debug dump: {stderr}");
    stderr
}

fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "`{}` failed: {}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
