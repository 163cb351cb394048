//! `agentgraph audit`, run as a child process: the entries of runs written by a program and by
//! the tool itself (`--as`, the OS user), a chain verified, and a store tampered with (an
//! entry's byte edited, an entry deleted, the newest entry removed) reported with the broken
//! link's position and exit code 3.

mod common;

use std::path::Path;
use std::sync::Arc;

use agentgraph::prelude::*;
use common::{Work, agentgraph, failure, graph, json, stdout};

/// A sled store at `dir` with run `asked` started by `alice` and waiting at an interrupt,
/// and run `done` completed by `bob`.
fn store(dir: &Path) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
        let config = |run: &str, caller: &str| {
            RunConfig::new()
                .store(store.clone())
                .run_id(run)
                .caller(caller)
        };
        let work = |topic: &str| Work {
            topic: topic.to_owned(),
            ..Work::default()
        };
        graph()
            .run_with(work("rust"), config("done", "bob"))
            .await
            .unwrap();
        let asked = graph()
            .run_with(work("ask"), config("asked", "alice"))
            .await;
        assert!(matches!(asked, Err(Error::Interrupted(_))));
    });
}

/// The key of audit entry `seq` of `run` in the embedded stores.
fn audit_key(run: &str, seq: u64) -> Vec<u8> {
    let mut k = vec![b'A'];
    k.extend_from_slice(&(run.len() as u16).to_be_bytes());
    k.extend_from_slice(run.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Runs `agentgraph --store dir args...`, expects exit code 3 (a broken chain), returns stdout
/// and stderr.
fn broken(dir: &Path, args: &[&str]) -> (String, String) {
    let output = agentgraph(dir).args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "`{}` exits with 3; stdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" ")
    );
    assert!(stderr.contains("audit chain"), "{stderr}");
    (stdout, stderr)
}

#[test]
fn audit_lists_and_verifies_what_programs_and_the_tool_did() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());

    let runs = json(dir.path(), &["audit", "list"]);
    assert_eq!(runs["runs"], serde_json::json!(["asked", "done"]));
    let text = stdout(dir.path(), &["audit", "list", "asked"]);
    assert!(text.starts_with("SEQ"), "{text}");
    assert!(text.contains("alice") && text.contains("started"), "{text}");

    // The tool's own actions, by `--as` and by the OS user.
    stdout(
        dir.path(),
        &["--as", "carol", "prune", "done", "--keep", "1"],
    );
    agentgraph(dir.path())
        .env("USER", "dave")
        .args(["delete", "done"])
        .assert()
        .success();
    let entries = json(dir.path(), &["audit", "list", "done"]);
    let seen: Vec<(String, String)> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["caller"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = seen.iter().map(|(c, a)| (&**c, &**a)).collect();
    assert_eq!(
        pairs,
        [("bob", "started"), ("carol", "pruned"), ("dave", "deleted")]
    );
    assert_eq!(entries["entries"][2]["seq"], 3);
    assert_eq!(entries["entries"][2]["prev"], entries["entries"][1]["hash"]);

    let text = stdout(dir.path(), &["audit", "verify", "done"]);
    assert!(text.starts_with("done: intact, 3 entries, head "), "{text}");
    let verified = json(dir.path(), &["audit", "verify"]);
    assert_eq!(verified["broken"], 0);
    assert_eq!(verified["chains"].as_array().unwrap().len(), 2);
    let head = verified["chains"][1]["head"]["head"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(verified["chains"][1]["run_id"], "done");
    stdout(dir.path(), &["audit", "verify", "done", "--head", &head]);

    // Tampering, in the store's file: an edited caller.
    {
        let db = sled::open(dir.path()).unwrap();
        let mut v = db.get(audit_key("done", 2)).unwrap().unwrap().to_vec();
        let at = 64 + v[64..].windows(5).position(|w| w == b"carol").unwrap();
        v[at] = b'k';
        db.insert(audit_key("done", 2), v).unwrap();
        db.flush().unwrap();
    }
    let (out, _) = broken(dir.path(), &["audit", "verify", "done"]);
    assert!(
        out.contains("done: BROKEN at entry 2 (position 2)") && out.contains("edited"),
        "{out}"
    );
    // Every chain: `asked` intact, `done` broken.
    let (out, _) = broken(dir.path(), &["audit", "verify"]);
    assert!(out.contains("asked: intact, 1 entry"), "{out}");
    let output = agentgraph(dir.path())
        .args(["--json", "audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["broken"], 1);
    assert_eq!(report["chains"][1]["broken"]["seq"], 2);
    assert_eq!(
        report["chains"][1]["broken"]["kind"]["kind"],
        "hash_mismatch"
    );

    // A deleted entry in the middle of the chain.
    {
        let db = sled::open(dir.path()).unwrap();
        db.remove(audit_key("done", 1)).unwrap();
        db.flush().unwrap();
    }
    let (out, _) = broken(dir.path(), &["audit", "verify", "done"]);
    assert!(
        out.contains("done: BROKEN at entry 2 (position 1)"),
        "{out}"
    );
}

#[test]
fn a_removed_newest_entry_is_found_with_the_head_kept_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    stdout(dir.path(), &["--as", "carol", "delete", "done"]);
    let verified = json(dir.path(), &["audit", "verify", "done"]);
    let head = verified["chains"][0]["head"]["head"]
        .as_str()
        .unwrap()
        .to_owned();
    // Entry 1 removed: the chain starts at 2, a gap at position 1.
    {
        let db = sled::open(dir.path()).unwrap();
        db.remove(audit_key("done", 1)).unwrap();
        db.flush().unwrap();
    }
    let (out, _) = broken(dir.path(), &["audit", "verify", "done"]);
    assert!(
        out.contains("done: BROKEN at entry 2 (position 1): entry 1 is missing"),
        "{out}"
    );
    // The newest entry removed: what is left is intact, but the head kept says otherwise.
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    stdout(dir.path(), &["--as", "carol", "delete", "done"]);
    let verified = json(dir.path(), &["audit", "verify", "done"]);
    let head2 = verified["chains"][0]["head"]["head"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(head, head2, "times differ, hashes too");
    {
        let db = sled::open(dir.path()).unwrap();
        db.remove(audit_key("done", 2)).unwrap();
        db.flush().unwrap();
    }
    stdout(dir.path(), &["audit", "verify", "done"]);
    let err = failure(dir.path(), &["audit", "verify", "done", "--head", &head2]);
    assert!(err.contains("removed"), "{err}");
    let err = failure(dir.path(), &["audit", "verify", "done", "--head", "xyz"]);
    assert!(err.contains("64 hex digits"), "{err}");
}

/// Ctrl-C during `agentgraph run` cancels the run as `--as` says: it ends cancelled,
/// checkpointed, and its audit trail's `cancelled` entry names that caller.
#[test]
fn ctrl_c_cancels_a_run_as_the_caller() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    // A server that accepts and never answers: the `fetch` node waits (its timeout is 30 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = dir.path().join("slow.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
state:
  - {{ name: item, type: any }}
nodes:
  - {{ name: fetch, kind: http, with: {{ url: \"http://{}/slow\", output: item }} }}
edges:
  - {{ from: START, to: fetch }}
  - {{ from: fetch, to: END }}
",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentgraph"))
        .arg("--store")
        .arg(&store)
        .args(["--json", "--as", "dave", "run"])
        .arg(&file)
        .args(["--thread", "slow-1"])
        .env_remove("AGENTGRAPH_STORE")
        .env_remove("AGENTGRAPH_CALLER")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once `fetch` has started, Ctrl-C.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the run prints fetch's start").unwrap();
        if line.contains("node_started") && line.contains("fetch") {
            break;
        }
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cancelling run slow-1 as dave"), "{stderr}");
    drop(silent);

    let run = json(&store, &["show", "slow-1"]);
    assert_eq!(run["run"]["status"], "cancelled", "{run}");
    let trail = json(&store, &["audit", "list", "slow-1"]);
    let entries = trail["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{trail}"));
    let last = entries.last().unwrap();
    assert_eq!(last["action"], "cancelled", "{trail}");
    assert_eq!(last["caller"], "dave", "{trail}");
}
