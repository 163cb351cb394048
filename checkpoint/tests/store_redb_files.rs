//! The redb store's file: a process killed (SIGKILL) while it creates stores leaves every path
//! openable; a foreign, another program's, truncated or damaged file is a typed error, never
//! a panic or a half-read store; a second open is `StoreError::Locked`.
#![cfg(all(feature = "redb", unix))]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, RedbStore, StoreError, WriteBatch};

const CHILD_DIR: &str = "AGENTGRAPH_REDB_CREATING_DIR";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn store_path(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("{i}.redb"))
}

/// Run as a child process by `a_store_killed_while_created_opens`: creates stores `0.redb`,
/// `1.redb`, ... in the directory it is given, each with one flushed checkpoint, until it is
/// killed. (Does nothing when run as a test.)
#[test]
fn creating_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let rt = rt();
    for i in 0.. {
        let store = RedbStore::open(store_path(&dir, i)).unwrap();
        rt.block_on(async {
            let mut batch = WriteBatch::new();
            batch.put_checkpoint("run", 0, vec![i as u8; 64]);
            store.commit(batch).await.unwrap();
            store.flush().await.unwrap();
        });
    }
}

#[test]
fn a_store_killed_while_created_opens() {
    let rt = rt();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut cut_creations = 0;
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "creating_child", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(30 + rng % 200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let made = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".redb")
            })
            .count() as u32;
        if dir
            .path()
            .join(format!("{made}.redb.creating.new"))
            .exists()
        {
            cut_creations += 1;
        }
        // Every store the child made opens, and so does the one it was making (created
        // again if it was not complete), and none is left half-made.
        for i in 0..=made {
            let path = store_path(dir.path(), i);
            let store = RedbStore::open(&path)
                .unwrap_or_else(|e| panic!("round {round}: {} does not open: {e}", path.display()));
            let got = rt.block_on(store.get_checkpoint("run", 0)).unwrap();
            assert!(
                got.is_none() || got == Some(vec![i as u8; 64]),
                "round {round}: store {i} holds {got:?}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".redb"))
            .collect();
        assert!(left.is_empty(), "round {round}: files left: {left:?}");
    }
    eprintln!("{cut_creations} of 20 kills cut a creation short");
    assert!(cut_creations > 0, "no kill landed in a creation");
}

#[test]
fn a_second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = RedbStore::open(&path).unwrap();
    match RedbStore::open(&path) {
        Err(StoreError::Locked { path: p }) => assert!(p.contains("s.redb")),
        other => panic!("a second open must be Locked, got {other:?}"),
    }
    drop(store);
    RedbStore::open(&path).unwrap();
}

#[test]
fn an_empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.redb");
    std::fs::write(&path, b"").unwrap();
    let store = RedbStore::open(&path).unwrap();
    assert!(rt().block_on(store.list_runs(None, 1)).unwrap().is_empty());
}

fn expect_corrupt(path: &Path, what: &str) -> String {
    match RedbStore::open(path) {
        Err(StoreError::Corrupt { what: w, .. }) => {
            assert!(
                w.contains(&path.display().to_string()),
                "{what}: the error names the file: {w}"
            );
            w
        }
        other => panic!("{what}: must be Corrupt, got {other:?}"),
    }
}

#[test]
fn foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a store at all, but some notes").unwrap();
    expect_corrupt(&text, "a text file");
    assert_eq!(
        std::fs::read(&text).unwrap(),
        b"not a store at all, but some notes",
        "a foreign file is left as it was"
    );

    // Another program's redb database.
    let other = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("theirs");
            txn.open_table(table).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let what = expect_corrupt(&other, "another program's redb database");
    assert!(what.contains("another program"), "{what}");
}

/// A store with some runs, flushed and closed; its bytes.
fn a_store(path: &Path) -> Vec<u8> {
    let store = RedbStore::open(path).unwrap();
    rt().block_on(async {
        for i in 0..20u8 {
            let mut batch = WriteBatch::new();
            batch.put_checkpoint(&format!("run-{i}"), 0, vec![i; 3000]);
            store.commit(batch).await.unwrap();
        }
        store.flush().await.unwrap();
    });
    drop(store);
    std::fs::read(path).unwrap()
}

#[test]
fn truncated_and_damaged_files_are_reported_not_half_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let good = a_store(&path);
    // Truncated.
    for len in [1, 9, 100, 4096, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..len]).unwrap();
        expect_corrupt(&path, &format!("truncated to {len} bytes"));
    }
    // Bytes flipped: the open refuses the file, or opens it and every checkpoint reads back
    // intact (the damage fell in free space).
    let mut refused = 0;
    for at in (0..good.len()).step_by(good.len() / 97) {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        match RedbStore::open(&path) {
            Err(StoreError::Corrupt { .. }) => refused += 1,
            Err(e) => panic!("byte {at} flipped: {e:?}"),
            Ok(store) => rt().block_on(async {
                for i in 0..20u8 {
                    let got = store.get_checkpoint(&format!("run-{i}"), 0).await;
                    assert_eq!(got.unwrap(), Some(vec![i; 3000]), "byte {at} flipped");
                }
            }),
        }
    }
    assert!(refused > 0, "some flipped byte is in a used page");
}

#[test]
fn concurrent_creators_make_one_store() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| RedbStore::open(&path).map(drop)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in &results {
            assert!(
                matches!(result, Ok(()) | Err(StoreError::Locked { .. })),
                "round {round}: {result:?}"
            );
        }
        assert!(results.iter().any(Result::is_ok), "round {round}");
        RedbStore::open(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["s.redb"], "round {round}");
    }
}
