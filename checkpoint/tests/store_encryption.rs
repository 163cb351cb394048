//! Encrypted stores (feature `encryption`): the conformance suite through the wrapper, on
//! every backend; what is stored underneath; keys missing, wrong, rotated; tampering.
#![cfg(feature = "encryption")]

use std::sync::Arc;

use agentgraph_checkpoint::encryption::{
    EncryptedStore, Encryption, EncryptionError, Key, StaticKeys,
};
use agentgraph_checkpoint::envelope::{self, FormatError, HEADER_LEN, RecordKind};
use agentgraph_checkpoint::{
    CheckpointStore, MemoryStore, RunRecord, RunStatus, StoreError, WriteBatch, conformance,
};

fn k(id: &str, byte: u8) -> Key {
    Key::new(id, [byte; 32]).unwrap()
}

fn encrypted(store: Arc<dyn CheckpointStore>, keys: StaticKeys) -> EncryptedStore {
    EncryptedStore::new(store, Encryption::new(keys))
}

/// A run of every kind of record, written through `store`.
async fn write_run(store: &dyn CheckpointStore, run: &str) {
    let mut batch = WriteBatch::new();
    batch
        .put_run(RunRecord::new(run, RunStatus::Running, 7, 0))
        .put_checkpoint(
            run,
            0,
            envelope::encode(RecordKind::Checkpoint, &"cp 0").unwrap(),
        )
        .put_blob(
            run,
            1,
            0,
            envelope::encode(RecordKind::Blob, &"secret field value").unwrap(),
        )
        .put_pending_write(
            run,
            1,
            2,
            envelope::encode(RecordKind::PendingWrite, &"pw").unwrap(),
        )
        .put_event(
            run,
            0,
            envelope::encode(RecordKind::Event, &"event 0").unwrap(),
        );
    store.commit(batch).await.unwrap();
}

/// Reads every record of `run` back and decodes it.
async fn read_run(store: &dyn CheckpointStore, run: &str) -> Result<Vec<String>, StoreError> {
    let d = |kind, bytes: &[u8]| envelope::decode::<String>(kind, bytes).unwrap();
    let mut out = Vec::new();
    let cp = store.get_checkpoint(run, 0).await?.unwrap();
    out.push(d(RecordKind::Checkpoint, &cp));
    let (_, latest) = store.latest_checkpoint(run).await?.unwrap();
    out.push(d(RecordKind::Checkpoint, &latest));
    for (_, b) in store.list_checkpoints(run, None, 10).await? {
        out.push(d(RecordKind::Checkpoint, &b));
    }
    for (_, b) in store.get_blobs(run, 1, 0, 10).await? {
        out.push(d(RecordKind::Blob, &b));
    }
    for (_, b) in store.get_pending_writes(run, 1).await? {
        out.push(d(RecordKind::PendingWrite, &b));
    }
    for (_, b) in store.get_events(run, None, 10).await? {
        out.push(d(RecordKind::Event, &b));
    }
    Ok(out)
}

const EXPECTED: [&str; 6] = [
    "cp 0",
    "cp 0",
    "cp 0",
    "secret field value",
    "pw",
    "event 0",
];

/// Round trip through the wrapper, and nothing readable underneath.
async fn round_trip(raw: Arc<dyn CheckpointStore>) {
    let store = encrypted(raw.clone(), StaticKeys::new(k("k1", 1)));
    write_run(&store, "run-1").await;
    assert_eq!(read_run(&store, "run-1").await.unwrap(), EXPECTED);
    // Underneath, each record is an envelope of codec 3 naming its key, without the plain text.
    let blob = &raw.get_blobs("run-1", 1, 0, 0).await.unwrap()[0].1;
    assert!(!blob.windows(6).any(|w| w == b"secret"));
    assert_eq!(
        envelope::open(RecordKind::Blob, blob),
        Err(FormatError::Encrypted {
            key_id: "k1".into()
        })
    );
    // Run records pass through.
    assert_eq!(
        raw.get_run("run-1").await.unwrap(),
        store.get_run("run-1").await.unwrap()
    );
    // A record copied under another run (the raw bytes): does not open there.
    let mut copy = WriteBatch::new();
    copy.put_blob("run-2", 1, 0, blob.clone());
    raw.commit(copy).await.unwrap();
    match store.get_blobs("run-2", 1, 0, 0).await {
        Err(StoreError::Encryption { what, source }) => {
            assert_eq!(
                source,
                EncryptionError::Tampered {
                    key_id: "k1".into()
                }
            );
            assert!(what.contains("run-2"), "{what}");
        }
        other => panic!("a copied record opened: {other:?}"),
    }
}

#[tokio::test]
async fn memory_round_trip() {
    round_trip(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_round_trip_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let raw = agentgraph_checkpoint::SledStore::open(dir.path()).unwrap();
        round_trip(Arc::new(raw.clone())).await;
        raw.flush().await.unwrap();
    }
    let raw = agentgraph_checkpoint::SledStore::open(dir.path()).unwrap();
    let store = encrypted(Arc::new(raw), StaticKeys::new(k("k1", 1)));
    assert_eq!(read_run(&store, "run-1").await.unwrap(), EXPECTED);
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn redb_round_trip_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.redb");
    {
        let raw = agentgraph_checkpoint::RedbStore::open(&path).unwrap();
        round_trip(Arc::new(raw.clone())).await;
        raw.flush().await.unwrap();
    }
    let raw = agentgraph_checkpoint::RedbStore::open(&path).unwrap();
    let store = encrypted(Arc::new(raw), StaticKeys::new(k("k1", 1)));
    assert_eq!(read_run(&store, "run-1").await.unwrap(), EXPECTED);
}

#[tokio::test]
async fn the_wrapper_conforms_on_memory() {
    let raw = MemoryStore::new();
    let put = raw.clone();
    let store = encrypted(Arc::new(raw), StaticKeys::new(k("k1", 1)));
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        put.put_raw_run_record(run, bytes)
    })
    .await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn the_wrapper_conforms_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let raw = agentgraph_checkpoint::SledStore::open(dir.path()).unwrap();
    let put = raw.clone();
    let store = encrypted(Arc::new(raw), StaticKeys::new(k("k1", 1)));
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        put.put_raw_run_record(run, bytes)
    })
    .await;
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn the_wrapper_conforms_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let raw = agentgraph_checkpoint::RedbStore::open(dir.path().join("runs.redb")).unwrap();
    let put = raw.clone();
    let store = encrypted(Arc::new(raw), StaticKeys::new(k("k1", 1)));
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        put.put_raw_run_record(run, bytes)
    })
    .await;
}

#[tokio::test]
async fn keys_missing_wrong_and_rotated() {
    let raw: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    write_run(&encrypted(raw.clone(), StaticKeys::new(k("k1", 1))), "old").await;
    // Missing: a typed error naming the key, from every read.
    let without = encrypted(raw.clone(), StaticKeys::new(k("k2", 2)));
    match read_run(&without, "old").await {
        Err(e @ StoreError::Encryption { .. }) => {
            assert!(e.to_string().contains("`k1`"), "{e}");
            let StoreError::Encryption { source, .. } = e else {
                unreachable!()
            };
            assert_eq!(
                source,
                EncryptionError::MissingKey {
                    key_id: "k1".into()
                }
            );
        }
        other => panic!("read without the key: {other:?}"),
    }
    assert!(matches!(
        without.get_events("old", None, 10).await,
        Err(StoreError::Encryption { .. })
    ));
    // Wrong: another key under the same id.
    match encrypted(raw.clone(), StaticKeys::new(k("k1", 9)))
        .get_checkpoint("old", 0)
        .await
    {
        Err(StoreError::Encryption { source, what }) => {
            assert_eq!(
                source,
                EncryptionError::WrongKey {
                    key_id: "k1".into()
                }
            );
            assert_eq!(what, "checkpoint 0 of run `old`");
        }
        other => panic!("read with a wrong key: {other:?}"),
    }
    // Rotated: k2 current, k1 kept. Old records read, new ones are k2's.
    let rotated = encrypted(raw.clone(), StaticKeys::new(k("k1", 1)).rotate(k("k2", 2)));
    assert_eq!(read_run(&rotated, "old").await.unwrap(), EXPECTED);
    write_run(&rotated, "new").await;
    let (_, stored) = raw.latest_checkpoint("new").await.unwrap().unwrap();
    assert_eq!(
        envelope::open(RecordKind::Checkpoint, &stored),
        Err(FormatError::Encrypted {
            key_id: "k2".into()
        })
    );
    // Once k1 is dropped, its records no longer read; k2's do.
    let only_k2 = encrypted(raw.clone(), StaticKeys::new(k("k2", 2)));
    assert_eq!(read_run(&only_k2, "new").await.unwrap(), EXPECTED);
    assert!(read_run(&only_k2, "old").await.is_err());
    // Plain records (written before encryption) read through the wrapper as they are.
    write_run(&*raw, "plain").await;
    assert_eq!(read_run(&only_k2, "plain").await.unwrap(), EXPECTED);
}

#[tokio::test]
async fn tampered_and_damaged_records() {
    let raw = MemoryStore::new();
    let store = encrypted(Arc::new(raw.clone()), StaticKeys::new(k("k1", 1)));
    write_run(&store, "r").await;
    let (_, stored) = raw.latest_checkpoint("r").await.unwrap().unwrap();
    // A byte of the ciphertext changed and the checksum recomputed: tampered.
    let mut tampered = stored.clone();
    let i = tampered.len() - 20;
    tampered[i] ^= 1;
    let mut h = crc32fast::Hasher::new();
    h.update(&tampered[..12]);
    h.update(&tampered[HEADER_LEN..]);
    tampered[12..16].copy_from_slice(&h.finalize().to_le_bytes());
    let mut batch = WriteBatch::new();
    batch.put_checkpoint("r", 0, tampered);
    raw.commit(batch).await.unwrap();
    assert!(matches!(
        store.get_checkpoint("r", 0).await,
        Err(StoreError::Encryption {
            source: EncryptionError::Tampered { .. },
            ..
        })
    ));
    // Damage the checksum sees passes through: the reader reports it as damage.
    let mut damaged = stored.clone();
    damaged[i] ^= 1;
    let mut batch = WriteBatch::new();
    batch.put_checkpoint("r", 0, damaged.clone());
    raw.commit(batch).await.unwrap();
    let read = store.get_checkpoint("r", 0).await.unwrap().unwrap();
    assert_eq!(read, damaged);
    assert!(matches!(
        envelope::open(RecordKind::Checkpoint, &read),
        Err(FormatError::Checksum { .. })
    ));
}

#[tokio::test]
async fn keys_never_show() {
    let key = Key::parse("k1", &"c3".repeat(32)).unwrap();
    let store = encrypted(Arc::new(MemoryStore::new()), StaticKeys::new(key.clone()));
    let shown = format!(
        "{store:?} {key:?} {:?}",
        Encryption::new(StaticKeys::new(key.clone()))
    );
    assert!(shown.contains("k1"));
    for secret in ["c3c3", "195, 195", "195,195", "w8PD"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
