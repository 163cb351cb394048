//! The audit trail in every embedded store: entries numbered and chained in the commit, kept
//! when their run is deleted, atomic with their batch; tampering with the stored bytes
//! (an edited byte, a deleted entry, entries reordered) found by the verifier, with its
//! position.
#![cfg(all(feature = "sled", feature = "redb"))]

use std::time::Duration;

use redb::ReadableTable as _;

use agentgraph_checkpoint::audit::{self, AuditAction, AuditRecord, BreakKind, GENESIS};
use agentgraph_checkpoint::{
    CheckpointStore, MemoryStore, RedbStore, RunRecord, RunStatus, SledStore, StoreError,
    WriteBatch,
};

fn record(caller: &str, action: AuditAction, n: u64) -> AuditRecord {
    AuditRecord::new(caller, action)
        .with_details(serde_json::json!({ "n": n }))
        .at(1_000 + n)
}

/// Writes four entries to `run` (two in one batch), checks them and the chain.
async fn four_entries(store: &dyn CheckpointStore, run: &str) {
    let mut batch = WriteBatch::new();
    batch
        .put_run(RunRecord::new(run, RunStatus::Running, 7, 0))
        .put_audit(run, record("alice", AuditAction::Started, 1));
    store.commit(batch).await.unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put_audit(run, record("bob", AuditAction::InterruptAnswered, 2))
        .put_audit(run, record("bob", AuditAction::Resumed, 3));
    store.commit(batch).await.unwrap();
    let mut batch = WriteBatch::new();
    batch
        .delete_run(run)
        .put_audit(run, record("carol", AuditAction::Deleted, 4));
    store.commit(batch).await.unwrap();
    store.flush().await.unwrap();

    assert!(
        store.get_run(run).await.unwrap().is_none(),
        "the run is gone"
    );
    let entries = store.audit(run).await.unwrap();
    let seen: Vec<_> = entries
        .iter()
        .map(|e| (e.seq, e.record.caller.as_str(), e.record.action))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "alice", AuditAction::Started),
            (2, "bob", AuditAction::InterruptAnswered),
            (3, "bob", AuditAction::Resumed),
            (4, "carol", AuditAction::Deleted),
        ],
        "the entries outlive their run, in order"
    );
    assert_eq!(entries[0].prev, GENESIS);
    for w in entries.windows(2) {
        assert_eq!(w[1].prev, w[0].hash);
    }
    assert_eq!(entries[3].record.details["n"], 4);
    let head = audit::verify(store, run).await.unwrap().unwrap();
    assert_eq!((head.entries, head.head), (4, entries[3].hash));
    // Paging.
    let page = store.get_audit(run, Some(1), 2).await.unwrap();
    assert_eq!(page.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3]);
    assert!(
        store
            .audited_runs()
            .await
            .unwrap()
            .contains(&run.to_owned())
    );
}

/// A fenced batch refused as stale applies nothing, its audit entry included; another run's
/// chain is its own.
async fn atomic_and_per_run(store: &dyn CheckpointStore) {
    let lease = store
        .acquire_lease("fenced", Duration::from_secs(30))
        .await
        .unwrap();
    let stale = lease.epoch();
    drop(lease);
    let lease = store
        .acquire_lease("fenced", Duration::from_secs(30))
        .await
        .unwrap();
    let mut batch = WriteBatch::new();
    batch
        .fence("fenced", stale)
        .put_checkpoint("fenced", 0, vec![1])
        .put_audit("fenced", record("mallory", AuditAction::StateEdited, 1));
    let err = store.commit(batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(store.audit("fenced").await.unwrap().is_empty());
    assert!(store.get_checkpoint("fenced", 0).await.unwrap().is_none());
    let mut batch = WriteBatch::new();
    batch
        .fence("fenced", lease.epoch())
        .put_audit("fenced", record("ann", AuditAction::Started, 1));
    store.commit(batch).await.unwrap();
    let entries = store.audit("fenced").await.unwrap();
    assert_eq!((entries.len(), entries[0].seq), (1, 1));
    assert_eq!(entries[0].prev, GENESIS, "a chain of its own");
    assert!(audit::verify(store, "fenced").await.unwrap().is_ok());
    assert!(audit::verify(store, "never").await.unwrap().is_ok());
}

#[tokio::test]
async fn memory_store_keeps_a_chained_trail() {
    let store = MemoryStore::new();
    four_entries(&store, "run-1").await;
    atomic_and_per_run(&store).await;
}

#[tokio::test]
async fn sled_store_keeps_a_chained_trail() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    four_entries(&store, "run-1").await;
    atomic_and_per_run(&store).await;
    drop(store);
    let store = SledStore::open(dir.path().join("db")).unwrap();
    assert_eq!(
        audit::verify(&store, "run-1")
            .await
            .unwrap()
            .unwrap()
            .entries,
        4
    );
    assert_eq!(store.audited_runs().await.unwrap(), ["fenced", "run-1"]);
}

#[tokio::test]
async fn redb_store_keeps_a_chained_trail() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("db.redb")).unwrap();
    four_entries(&store, "run-1").await;
    atomic_and_per_run(&store).await;
    drop(store);
    let store = RedbStore::open(dir.path().join("db.redb")).unwrap();
    assert_eq!(
        audit::verify(&store, "run-1")
            .await
            .unwrap()
            .unwrap()
            .entries,
        4
    );
    assert_eq!(store.audited_runs().await.unwrap(), ["fenced", "run-1"]);
}

/// The key of entry `seq` of `run`, as the embedded stores lay it out: `A`, the run id's
/// length (u16 BE), the run id, the number (u64 BE).
fn audit_key(run: &str, seq: u64) -> Vec<u8> {
    let mut k = vec![b'A'];
    k.extend_from_slice(&(run.len() as u16).to_be_bytes());
    k.extend_from_slice(run.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A way of tampering with the stored entries of run `run-1` (four of them).
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Flips a byte of entry 3's caller.
    EditCaller,
    /// Flips a byte of entry 2's stored hash.
    EditHash,
    /// Deletes entry 2.
    Delete,
    /// Swaps the bytes of entries 2 and 3.
    Swap,
    /// Moves entry 3 to number 2 (deleting 2): renumbered.
    Renumber,
}

/// What the verifier must say: the number and position of the first broken link, and why.
fn expected(t: Tamper) -> (u64, u64, fn(&BreakKind) -> bool) {
    match t {
        Tamper::EditCaller => (3, 3, |k| *k == BreakKind::HashMismatch),
        Tamper::EditHash => (2, 2, |k| *k == BreakKind::HashMismatch),
        Tamper::Delete => (3, 2, |k| {
            *k == BreakKind::Gap {
                expected: 2,
                found: 3,
            }
        }),
        Tamper::Swap => (2, 2, |k| *k == BreakKind::PrevMismatch),
        Tamper::Renumber => (2, 2, |k| *k == BreakKind::PrevMismatch),
    }
}

const TAMPERS: [Tamper; 5] = [
    Tamper::EditCaller,
    Tamper::EditHash,
    Tamper::Delete,
    Tamper::Swap,
    Tamper::Renumber,
];

/// Applies `t` to `entries` (key, value) of run-1, returning the writes: `None` removes.
fn tampered(t: Tamper, get: impl Fn(u64) -> Vec<u8>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let key = |seq| audit_key("run-1", seq);
    match t {
        Tamper::EditCaller => {
            let mut v = get(3);
            let at = 64
                + v[64..]
                    .windows(3)
                    .position(|w| w == b"bob")
                    .expect("the caller is in the entry");
            v[at] ^= 0x20;
            vec![(key(3), Some(v))]
        }
        Tamper::EditHash => {
            let mut v = get(2);
            v[40] ^= 1;
            vec![(key(2), Some(v))]
        }
        Tamper::Delete => vec![(key(2), None)],
        Tamper::Swap => vec![(key(2), Some(get(3))), (key(3), Some(get(2)))],
        Tamper::Renumber => vec![(key(2), Some(get(3))), (key(3), None)],
    }
}

async fn fill(store: &dyn CheckpointStore) {
    four_entries(store, "run-1").await;
}

fn check_broken(result: Result<audit::ChainHead, audit::BrokenLink>, t: Tamper) {
    let broken = result.expect_err("tampering is found");
    let (seq, position, kind) = expected(t);
    assert_eq!(
        (broken.seq, broken.position),
        (seq, position),
        "{t:?}: {broken}"
    );
    assert!(kind(&broken.kind), "{t:?}: {broken}");
    assert_eq!(broken.run, "run-1");
}

#[tokio::test]
async fn tampering_with_a_sled_store_is_found() {
    for t in TAMPERS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SledStore::open(&path).unwrap();
        fill(&store).await;
        drop(store);
        {
            let db = raw_sled(&path);
            let get = |seq| db.get(audit_key("run-1", seq)).unwrap().unwrap().to_vec();
            for (k, v) in tampered(t, get) {
                match v {
                    Some(v) => db.insert(k, v).unwrap(),
                    None => db.remove(k).unwrap(),
                };
            }
            db.flush().unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        check_broken(audit::verify(&store, "run-1").await.unwrap(), t);
    }
}

#[tokio::test]
async fn tampering_with_a_redb_store_is_found() {
    const DATA: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("agentgraph");
    for t in TAMPERS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = RedbStore::open(&path).unwrap();
        fill(&store).await;
        drop(store);
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(DATA).unwrap();
                let writes = tampered(t, |seq: u64| {
                    table
                        .get(&audit_key("run-1", seq)[..])
                        .unwrap()
                        .unwrap()
                        .value()
                        .to_vec()
                });
                for (k, v) in writes {
                    match v {
                        Some(v) => {
                            table.insert(&k[..], &v[..]).unwrap();
                        }
                        None => {
                            table.remove(&k[..]).unwrap();
                        }
                    }
                }
            }
            txn.commit().unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        check_broken(audit::verify(&store, "run-1").await.unwrap(), t);
    }
}

#[tokio::test]
async fn an_entry_chained_after_a_tampered_one_still_shows_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    fill(&store).await;
    drop(store);
    {
        let db = raw_sled(&path);
        db.remove(audit_key("run-1", 4)).unwrap();
        let mut v = db.get(audit_key("run-1", 1)).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        db.insert(audit_key("run-1", 1), v).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    let mut batch = WriteBatch::new();
    batch.put_audit("run-1", record("dan", AuditAction::Started, 5));
    store.commit(batch).await.unwrap();
    let broken = audit::verify(&store, "run-1").await.unwrap().unwrap_err();
    assert_eq!((broken.seq, broken.position), (1, 1), "{broken}");
    let entries = store.get_audit("run-1", None, 10).await.unwrap();
    assert_eq!(
        entries.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "numbered after the newest left"
    );
}

/// Opens the sled database under a store just dropped: sled's own threads may hold its lock a
/// moment after the drop (longer on a loaded machine), so the open is tried for up to 10 s.
fn raw_sled(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}
