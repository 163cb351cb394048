//! The `agentgraph` binary on a store of encrypted runs: read with the keys of `--key-env` (or
//! `AGENTGRAPH_KEYS`), refused with an error naming the key id without them or with a wrong
//! one; bad key lists are errors that never show what they hold.

mod common;

use std::path::Path;
use std::sync::Arc;

use agentgraph::prelude::*;
use agentgraph_checkpoint::encryption::{EncryptedStore, Encryption, Key, StaticKeys};
use common::agentgraph;

const K1: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A sled store at `dir` with the runs `done` and `failed`, encrypted under key `k1`.
fn encrypted_store(dir: &Path) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let keys = StaticKeys::new(Key::parse("k1", K1).unwrap());
        let store: Arc<dyn CheckpointStore> = Arc::new(EncryptedStore::new(
            SledStore::open(dir).unwrap(),
            Encryption::new(keys),
        ));
        common::run(&store, "done", "rust").await.unwrap();
        common::run(&store, "failed", "fail").await.unwrap_err();
    });
}

/// `agentgraph --store dir args...` with `MY_KEYS` set to `keys` (when given).
fn cli(dir: &Path, keys: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = agentgraph(dir);
    cmd.env_remove("AGENTGRAPH_KEYS").env_remove("MY_KEYS");
    if let Some(keys) = keys {
        cmd.env("MY_KEYS", keys).arg("--key-env").arg("MY_KEYS");
    }
    cmd.args(args).output().unwrap()
}

fn ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn failed(output: &std::process::Output) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn encrypted_runs_read_with_the_key_only() {
    let dir = tempfile::tempdir().unwrap();
    encrypted_store(dir.path());
    let keys = format!("k1={K1}");

    // With the key: the state and the events, as for any run.
    let state: serde_json::Value = serde_json::from_str(&ok(&cli(
        dir.path(),
        Some(&keys),
        &["--json", "state", "done"],
    )))
    .unwrap();
    assert_eq!(state["topic"], "rust", "{state}");
    let events = ok(&cli(dir.path(), Some(&keys), &["events", "done"]));
    assert!(
        events.contains("completed") || events.lines().count() > 3,
        "{events}"
    );
    ok(&cli(dir.path(), Some(&keys), &["show", "failed"]));
    // From AGENTGRAPH_KEYS when no --key-env is given; a rotated list reads old keys too.
    let rotated = format!("k2={},k1={K1}", "22".repeat(32));
    let output = agentgraph(dir.path())
        .env("AGENTGRAPH_KEYS", &rotated)
        .args(["--json", "state", "done"])
        .output()
        .unwrap();
    assert!(ok(&output).contains("rust"));

    // Run records are not encrypted: the list reads without keys.
    assert!(ok(&cli(dir.path(), None, &["runs"])).contains("done"));
    // Without the key: an error naming it, never the state.
    for args in [
        &["state", "done"][..],
        &["events", "done"],
        &["show", "done"],
    ] {
        let output = cli(dir.path(), None, args);
        let stderr = failed(&output);
        assert!(stderr.contains("`k1`"), "{args:?}: {stderr}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("rust"));
    }
    // Only another key: the same.
    let stderr = failed(&cli(
        dir.path(),
        Some(&format!("k2={}", "22".repeat(32))),
        &["state", "done"],
    ));
    assert!(
        stderr.contains("`k1`") && stderr.contains("does not have"),
        "{stderr}"
    );
    // A wrong key under the right id.
    let stderr = failed(&cli(
        dir.path(),
        Some(&format!("k1={}", "33".repeat(32))),
        &["state", "done"],
    ));
    assert!(
        stderr.contains("`k1`") && stderr.contains("not the key"),
        "{stderr}"
    );
    // A list that is not keys: an error that shows none of it.
    let stderr = failed(&cli(
        dir.path(),
        Some("k1=not-a-key-but-a-secret"),
        &["state", "done"],
    ));
    assert!(stderr.contains("MY_KEYS"), "{stderr}");
    assert!(!stderr.contains("not-a-key-but-a-secret"), "{stderr}");
    let output = agentgraph(dir.path())
        .env_remove("MY_KEYS")
        .args(["--key-env", "MY_KEYS", "state", "done"])
        .output()
        .unwrap();
    assert!(failed(&output).contains("no keys in environment variable MY_KEYS"));
}
