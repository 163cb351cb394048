//! One process at a time: a sled store open in another process is `StoreError::Locked`.
//!
//! The test re-executes its own binary, running only `hold_store_open` with
//! `AGENTGRAPH_HOLD_STORE` set, to hold the store open in a child process.
#![cfg(feature = "sled")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use agentgraph_checkpoint::{
    CheckpointStore, RunRecord, RunStatus, SledStore, StoreError, WriteBatch,
};

const HOLD: &str = "AGENTGRAPH_HOLD_STORE";
const READY: &str = "agentgraph: store held open";

/// In the child: opens the store, commits and flushes a run, prints [`READY`], then waits to be
/// killed. Without the variable (a normal test run) it does nothing.
#[test]
fn hold_store_open() {
    let Some(path) = std::env::var_os(HOLD) else {
        return;
    };
    let store = SledStore::open(&path).expect("the child opens the store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut batch = WriteBatch::new();
        batch.put_run(RunRecord::new("held", RunStatus::Running, 1, 0));
        store.commit(batch).await.unwrap();
        store.flush().await.unwrap();
    });
    println!("\n{READY}");
    std::thread::sleep(std::time::Duration::from_secs(60));
    panic!("the parent test should have killed this process");
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_store_open_in_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hold_store_open",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLD, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.trim() == READY);
    if !ready {
        let status = child.0.wait().unwrap();
        panic!("the child exited ({status}) without opening the store");
    }

    // What sled 0.34.7 itself says: an I/O error of kind Other about the file lock.
    match sled::open(dir.path()) {
        Err(sled::Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::Other, "{e}");
            assert!(e.to_string().contains("could not acquire lock"), "{e}");
        }
        Err(e) => panic!("sled reported a held lock as {e:?}"),
        Ok(_) => panic!("sled opened a store held by another process"),
    }
    let path = dir.path().display().to_string();
    match SledStore::open(dir.path()) {
        Err(StoreError::Locked { path: p }) => assert_eq!(p, path),
        other => panic!("expected StoreError::Locked, got {other:?}"),
    }

    // SIGKILL releases the lock, and what the child flushed is there.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let store = SledStore::open(dir.path()).expect("the lock dies with its process");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let held = rt.block_on(store.get_run("held")).unwrap();
    assert_eq!(held.map(|r| r.status), Some(RunStatus::Running));
}

#[test]
fn a_second_open_in_the_same_process_is_locked_too() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledStore::open(dir.path()).unwrap();
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    drop(first);
    SledStore::open(dir.path()).expect("reopened once the first store is dropped");
}
