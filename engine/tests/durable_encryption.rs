//! Encrypted runs (feature `encryption`): a durable run on sled and redb, failed mid-step and
//! resumed with the key (and after a key rotation), every record it stored encrypted; read
//! back by the inspector with the key, refused with errors naming the key id without it or
//! with a wrong one (never a fallback to an older checkpoint); the decoded states and
//! checkpoints those of the same run stored plain.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_checkpoint::SledStore;
use agentgraph_checkpoint::envelope::{self, Codec, FormatError, RecordKind};
use agentgraph_engine::encryption::{EncryptionError, Key, StaticKeys};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, Durability, END, Encryption, Error,
    GraphBuilder, RunConfig, RunStatus, START, StoreError, StoreInspector,
};
use common::{Calls, Trace, TraceUpdate};

/// `START -> {a, b} -> c -> END`; `b` fails while `fail` is set; every node writes a secret.
fn graph(calls: &Calls, fail: &Arc<AtomicBool>) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "c"] {
        let calls = calls.clone();
        let fail = fail.clone();
        b.add_node(name, move |_: Arc<Trace>, ctx: Context| {
            calls.hit(ctx.node());
            let node = ctx.node().to_owned();
            let failing = node == "b" && fail.load(Ordering::SeqCst);
            async move {
                if failing {
                    return Err::<TraceUpdate, BoxError>("b is down".into());
                }
                let update = TraceUpdate::note(format!("SECRET-{node}")).count(1);
                Ok(if node == "b" {
                    update
                } else {
                    update.last(format!("SECRET-last-{node}"))
                })
            }
        });
    }
    b.add_edge(START, "a");
    b.add_edge(START, "b");
    b.add_edge("a", "c");
    b.add_edge("b", "c");
    b.add_edge("c", END);
    b.compile().unwrap()
}

fn cfg(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id("r")
        .durability(Durability::Sync)
        .monitored()
}

fn key(id: &str, byte: u8) -> Key {
    Key::new(id, [byte; 32]).unwrap()
}

fn with(keys: StaticKeys) -> Encryption {
    Encryption::new(keys)
}

/// Every record of run `r` as stored, with its kind.
async fn stored(store: &dyn CheckpointStore) -> Vec<(RecordKind, Vec<u8>)> {
    let mut out = Vec::new();
    for (_, c) in store.list_checkpoints("r", None, 1000).await.unwrap() {
        out.push((RecordKind::Checkpoint, c));
    }
    for field in 0..3 {
        for (_, b) in store.get_blobs("r", field, 0, u64::MAX).await.unwrap() {
            out.push((RecordKind::Blob, b));
        }
    }
    for step in 0..4 {
        for (_, p) in store.get_pending_writes("r", step).await.unwrap() {
            out.push((RecordKind::PendingWrite, p));
        }
    }
    for (_, e) in store.get_events("r", None, 1000).await.unwrap() {
        out.push((RecordKind::Event, e));
    }
    out
}

/// The key id each stored record of `r` names (all of them encrypted, none with the secrets).
async fn key_ids(store: &dyn CheckpointStore) -> Vec<String> {
    let records = stored(store).await;
    assert!(records.len() > 10);
    records
        .iter()
        .map(|(kind, bytes)| {
            assert_eq!(bytes[6], Codec::Encrypted as u8);
            assert!(!bytes.windows(6).any(|w| w == b"SECRET"));
            match envelope::open(*kind, bytes) {
                Err(FormatError::Encrypted { key_id }) => key_id,
                other => panic!("{kind:?} record read without the key: {other:?}"),
            }
        })
        .collect()
}

async fn fail_then_resume(store: Arc<dyn CheckpointStore>) {
    let calls = Calls::default();
    let fail = Arc::new(AtomicBool::new(true));
    let g = graph(&calls, &fail);
    let k1 = with(StaticKeys::new(key("k1", 1)));
    g.run_with(Trace::default(), cfg(&store).encryption(k1.clone()))
        .await
        .unwrap_err();
    // `a`'s result is a pending write, encrypted; so is everything else.
    assert!(key_ids(&*store).await.iter().all(|id| id == "k1"));

    // Resumed without the key: a typed error naming it, not a fallback.
    fail.store(false, Ordering::SeqCst);
    let e = g.resume("r", cfg(&store)).await.unwrap_err();
    assert!(e.to_string().contains("`k1`"), "{e}");
    assert!(matches!(e, Error::Incompatible { .. }), "{e:?}");
    // With a wrong key under its id: the store's typed error.
    let e = g
        .resume(
            "r",
            cfg(&store).encryption(with(StaticKeys::new(key("k1", 7)))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Store(StoreError::Encryption {
                source: EncryptionError::WrongKey { key_id },
                ..
            }) if key_id == "k1"
        ),
        "{e:?}"
    );
    assert_eq!((calls.get("a"), calls.get("b"), calls.get("c")), (1, 1, 0));

    // Resumed after a rotation: k2 current, k1 kept. `a` is not run again.
    let rotated = with(StaticKeys::new(key("k1", 1)).rotate(key("k2", 2)));
    let done = g
        .resume("r", cfg(&store).encryption(rotated.clone()))
        .await
        .unwrap();
    assert_eq!((calls.get("a"), calls.get("b"), calls.get("c")), (1, 2, 1));
    assert_eq!(done.count, 3);
    assert_eq!(done.last, "SECRET-last-c");
    let ids = key_ids(&*store).await;
    assert!(ids.iter().any(|id| id == "k1") && ids.iter().any(|id| id == "k2"));

    // The same run stored plain: the same decoded states, step by step.
    let plain: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    let g2 = graph(&Calls::default(), &Arc::new(AtomicBool::new(true)));
    g2.run_with(Trace::default(), cfg(&plain))
        .await
        .unwrap_err();
    let g2 = graph(&Calls::default(), &Arc::new(AtomicBool::new(false)));
    let plain_done = g2.resume("r", cfg(&plain)).await.unwrap();
    assert!(plain_done == done);

    // Read back: with the keys, what the plain run reads; without, errors naming the key.
    let with_keys = StoreInspector::new(rotated.wrap(store.clone()));
    let plain_reader = StoreInspector::new(plain.clone());
    assert_eq!(
        with_keys.run("r").await.unwrap().unwrap().status,
        RunStatus::Completed
    );
    for step in [None, Some(0), Some(1), Some(2)] {
        assert_eq!(
            with_keys.state_json("r", step).await.unwrap(),
            plain_reader.state_json("r", step).await.unwrap(),
            "step {step:?}"
        );
    }
    let events = with_keys.events("r", None, 1000).await.unwrap();
    assert_eq!(
        events.len(),
        plain_reader.events("r", None, 1000).await.unwrap().len()
    );
    assert!(
        g.history(rotated.wrap(store.clone()))
            .state("r", None)
            .await
            .unwrap()
            == done
    );
    let blind = StoreInspector::new(store.clone());
    // (A monitored run's state reads from its stored views: events, the first one k1's.)
    let e = blind.state_json("r", None).await.unwrap_err();
    assert!(e.to_string().contains("encrypted with key `k1`"), "{e}");
    let e = g.history(store.clone()).state("r", None).await.unwrap_err();
    assert!(e.to_string().contains("encrypted with key `k2`"), "{e}");
    let e = blind.events("r", None, 1000).await.unwrap_err();
    assert!(e.to_string().contains("encrypted with key"), "{e}");
    // Only k2: k1's records (the failed step's events among them) no longer read.
    let only_k2 = StoreInspector::new(with(StaticKeys::new(key("k2", 2))).wrap(store.clone()));
    let e = only_k2.events("r", None, 1000).await.unwrap_err();
    assert!(e.to_string().contains("`k1`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_run_on_sled_fails_resumes_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    fail_then_resume(Arc::new(SledStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_run_in_memory_fails_resumes_and_reads_back() {
    fail_then_resume(Arc::new(agentgraph_checkpoint::MemoryStore::new())).await;
}

#[cfg(feature = "compression")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_and_encrypted() {
    use agentgraph_engine::Compression;
    let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    let g = graph(&Calls::default(), &Arc::new(AtomicBool::new(false)));
    let keys = with(StaticKeys::new(key("k1", 1)));
    let done = g
        .run_with(
            Trace::default(),
            cfg(&store)
                .compression(Compression::zstd().threshold(0))
                .encryption(keys.clone()),
        )
        .await
        .unwrap();
    assert!(key_ids(&*store).await.iter().all(|id| id == "k1"));
    // Underneath the encryption, some records are compressed.
    let inner = keys.wrap(store.clone());
    let records = stored(&*inner).await;
    assert!(
        records
            .iter()
            .any(|(_, r)| r[6] == Codec::Bincode2Zstd as u8)
    );
    assert!(g.history(inner).state("r", None).await.unwrap() == done);
}
