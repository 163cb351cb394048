//! The workers' metrics (feature `metrics`): claim latency, lease renewals, queue depth, and a
//! fenced write, counted when the run's lease is taken from under its worker (the run then
//! resumed by the next claim).
#![cfg(feature = "metrics")]

mod support;

use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use agentgraph::run::GraphRegistry;
use agentgraph_postgres::worker::{Queue, Worker};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Notes {
    #[reducer(append)]
    notes: Vec<String>,
}

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn find<'a>(snapshot: &'a Snapshot, kind: MetricKind, name: &str) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(k, ..)| k.kind() == kind && k.key().name() == name)
        .map(|(.., v)| v)
}

#[test]
fn a_worker_records_its_metrics_and_counts_a_fenced_write() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder sees what this thread records: everything runs on a current-thread
    // runtime.
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut g = GraphBuilder::<Notes>::new();
            for name in ["a", "b", "c"] {
                g.add_node(name, move |_, _| async move {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok(NotesUpdate::new().notes(vec![name.to_owned()]))
                });
            }
            g.add_edge(START, "a")
                .add_edge("a", "b")
                .add_edge("b", "c")
                .add_edge("c", END);
            let registry = GraphRegistry::new().with("chain", g.compile().unwrap());
            let store = support::fresh_store("w_metrics").await;
            let schema = store.options().schema().to_owned();
            let worker = Worker::new(store.clone(), registry, "w1")
                .lease_ttl(Duration::from_millis(600))
                .poll_interval(Duration::from_millis(50))
                .busy_delay(Duration::from_millis(50))
                .run_config(|| RunConfig::new().durability(Durability::Sync));
            let stats = worker.stats();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let running = tokio::spawn(worker.run_until(async {
                stopped.await.ok();
            }));
            let queue = Queue::new(&store);
            let run = queue.submit("chain", json!({})).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;

            // Another owner takes the run's lease (a new epoch) while `a` runs: the worker's
            // next write is refused.
            let admin = support::admin().await;
            let taken = admin
                .execute(
                    &format!("UPDATE {schema}.leases SET epoch = epoch + 1 WHERE run_id = $1"),
                    &[&run.as_bytes()],
                )
                .await
                .unwrap();
            assert_eq!(taken, 1, "the run's lease exists");
            let deadline = Instant::now() + Duration::from_secs(30);
            let job = loop {
                let job = queue.job(&run).await.unwrap().unwrap();
                if job.status == "done" {
                    break job;
                }
                assert!(Instant::now() < deadline, "{job:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(job.attempts, 2, "claimed again once the claim expired");
            assert_eq!(job.output.unwrap()["notes"], json!(["a", "b", "c"]));
            assert_eq!((stats.fenced(), stats.completed()), (1, 1));
            stop.send(()).ok();
            running.await.unwrap().unwrap();
        });
    });
    let snapshot: Snapshot = snapshotter.snapshot().into_vec();
    assert!(
        matches!(
            find(
                &snapshot,
                MetricKind::Counter,
                "agentgraph_worker_fenced_writes_total"
            ),
            Some(DebugValue::Counter(1))
        ),
        "one fenced write"
    );
    assert!(matches!(
        find(&snapshot, MetricKind::Counter, "agentgraph_worker_lease_renewals_total"),
        Some(DebugValue::Counter(n)) if *n > 0
    ));
    assert!(matches!(
        find(&snapshot, MetricKind::Histogram, "agentgraph_worker_claim_latency_seconds"),
        Some(DebugValue::Histogram(h)) if h.len() == 2
    ));
    assert!(find(&snapshot, MetricKind::Gauge, "agentgraph_queue_depth").is_some());
}
