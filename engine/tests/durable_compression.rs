//! Compressed runs (feature `compression`): a durable run whose state has large fields, stored
//! compressed on sled, failed mid-step, resumed (with and without the setting: readers need no
//! configuration) and read back by the inspector; the records it stores are compressed where
//! they are large and plain where they are small, and a run without the setting stores exactly
//! what it did before.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_checkpoint::SledStore;
use agentgraph_checkpoint::envelope::{self, Codec, RecordKind};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Compression, Context, Durability, END, GraphBuilder,
    RunConfig, RunStatus, START, StoreInspector,
};
use common::{Calls, Trace, TraceUpdate};

/// The size of the large values: text, which compresses well.
const BIG: usize = 70_000;

/// The index of `Trace::last`, the field the large values go to.
const LAST: u32 = 2;

fn big(node: &str) -> String {
    format!("{node} wrote this line of text; ").repeat(BIG / 30)
}

/// `START -> {a, b} -> c -> END`: `a` and `c` write a large `last`; `b` fails while `fail`
/// is set.
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
                let update = TraceUpdate::note(node.clone()).count(1);
                Ok(if node == "b" {
                    update
                } else {
                    update.last(big(&node))
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
        .store_events(true)
        .state_views(true)
}

fn codec(record: &[u8]) -> u8 {
    record[6]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_run_fails_resumes_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    let calls = Calls::default();
    let fail = Arc::new(AtomicBool::new(true));
    let g = graph(&calls, &fail);
    let compressed = cfg(&store).compression(Compression::zstd());

    g.run_with(Trace::default(), compressed.clone())
        .await
        .unwrap_err();
    // `a` finished in the failed step: its result, with a large value, is a pending write,
    // stored compressed.
    // (`b`'s failure, small, is stored plain.)
    let pending = store.get_pending_writes("r", 1).await.unwrap();
    let mut codecs: Vec<u8> = pending.iter().map(|(_, r)| codec(r)).collect();
    codecs.sort();
    assert_eq!(codecs, [Codec::Bincode2 as u8, Codec::Bincode2Zstd as u8]);
    assert!(pending.iter().all(|(_, r)| r.len() < BIG / 10));

    // Resumed without the setting: it reads what was stored compressed, runs `b` (not `a`)
    // and `c`, and stores plain records.
    fail.store(false, Ordering::SeqCst);
    let done = g.resume("r", cfg(&store)).await.unwrap();
    assert_eq!((calls.get("a"), calls.get("b"), calls.get("c")), (1, 2, 1));
    assert_eq!(done.count, 3);
    assert_eq!(done.last, big("c"));
    let blobs = store.get_blobs("r", LAST, 0, u64::MAX).await.unwrap();
    let codecs: Vec<(u64, u8)> = blobs.iter().map(|(v, b)| (*v, codec(b))).collect();
    assert_eq!(codecs.last().map(|c| c.1), Some(Codec::Bincode2 as u8));

    // Again, compressed: a new run of the same graph.
    let store2: Arc<dyn CheckpointStore> =
        Arc::new(SledStore::open(dir.path().join("second")).unwrap());
    let again = g
        .run_with(
            Trace::default(),
            cfg(&store2).compression(Compression::zstd().level(9)),
        )
        .await
        .unwrap();
    assert!(again == done);
    let blobs = store2.get_blobs("r", LAST, 0, u64::MAX).await.unwrap();
    for (version, blob) in &blobs {
        if *version > 0 {
            assert_eq!(codec(blob), Codec::Bincode2Zstd as u8, "version {version}");
            assert!(blob.len() < BIG / 10);
        }
    }
    // Small records (checkpoints, most events) are stored as they were; events of 4 KiB and
    // more (the state views of the large values) compressed.
    for (step, record) in store2.list_checkpoints("r", None, 1000).await.unwrap() {
        assert_eq!(codec(&record), Codec::Bincode2 as u8, "checkpoint {step}");
    }
    let events = store2.get_events("r", None, 1000).await.unwrap();
    let mut large = 0;
    for (seq, event) in &events {
        let payload = envelope::open(RecordKind::Event, event).unwrap();
        let expected = if payload.len() >= Compression::DEFAULT_THRESHOLD {
            large += 1;
            Codec::Bincode2Zstd
        } else {
            Codec::Bincode2
        };
        assert_eq!(codec(event), expected as u8, "event {seq}");
    }
    assert!(large > 0 && large < events.len());
    // The checkpoint event counts the bytes stored: compressed, far under the values' size.
    let inspector = StoreInspector::new(store2.clone());
    let saved: Vec<u64> = inspector
        .events("r", None, 100)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match e.kind {
            agentgraph_engine::EventKind::CheckpointSaved { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert!(
        !saved.is_empty() && saved.iter().all(|b| *b < BIG as u64 / 5),
        "{saved:?}"
    );

    // The inspector (what the command-line tool and the monitor read with) reads both runs
    // without configuration.
    for store in [&store, &store2] {
        let inspector = StoreInspector::new((*store).clone());
        let run = inspector.run("r").await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        let state = inspector.state_json("r", None).await.unwrap();
        assert_eq!(state["last"], serde_json::json!(big("c")));
        assert_eq!(state["count"], serde_json::json!(3));
        let at_one = inspector.state_json("r", Some(1)).await.unwrap();
        assert_eq!(at_one["last"], serde_json::json!(big("a")));
        assert!(inspector.events("r", None, 100).await.unwrap().len() > 3);
        assert!(g.history((*store).clone()).state("r", None).await.unwrap() == done);
    }
}

/// Without the setting a run stores plain records, whatever their size: what it stored before
/// compression existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_the_setting_stores_plain_records() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    let g = graph(&Calls::default(), &Arc::new(AtomicBool::new(false)));
    g.run_with(Trace::default(), cfg(&store)).await.unwrap();
    let blobs = store.get_blobs("r", LAST, 1, u64::MAX).await.unwrap();
    assert!(!blobs.is_empty());
    for (_, blob) in blobs {
        assert_eq!(codec(&blob), Codec::Bincode2 as u8);
        assert!(blob.len() > big("a").len());
        // Exactly the envelope of the stored value.
        let payload = envelope::open(RecordKind::Blob, &blob).unwrap();
        assert_eq!(envelope::seal(RecordKind::Blob, &payload), blob);
    }
}
