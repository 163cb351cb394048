//! The workers' metrics (feature `metrics`): claim latency, lease renewals, queue depth, jobs
//! held by their tenant's cap, and a fenced write, counted when the run's lease is taken from
//! under its worker (the run then resumed by the next claim).
#![cfg(feature = "metrics")]

mod support;

use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use agentgraph::run::GraphRegistry;
use agentgraph::store::TenantId;
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
    let mut snapshots: Vec<Snapshot> = metrics::with_local_recorder(&recorder, || {
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

            // A job of a tenant capped at 0 waits in the queue: the gauge of held jobs says 1
            // at the worker's next poll. (A snapshot drains what it reads: they are all kept.)
            let acme = TenantId::new("acme").unwrap();
            queue.set_tenant_limit(&acme, 0).await.unwrap();
            queue
                .clone()
                .tenant(acme)
                .submit("chain", json!({}))
                .await
                .unwrap();
            let mut snapshots = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let snapshot: Snapshot = snapshotter.snapshot().into_vec();
                let held = matches!(
                    find(&snapshot, MetricKind::Gauge, "agentgraph_queue_held_by_tenant_cap"),
                    Some(DebugValue::Gauge(held)) if held.into_inner() == 1.0
                );
                snapshots.push(snapshot);
                if held {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no held job in the gauge within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.send(()).ok();
            running.await.unwrap().unwrap();
            snapshots
        })
    });
    snapshots.push(snapshotter.snapshot().into_vec());
    let counter = |name: &str| -> u64 {
        snapshots
            .iter()
            .filter_map(|s| match find(s, MetricKind::Counter, name) {
                Some(DebugValue::Counter(n)) => Some(*n),
                _ => None,
            })
            .sum()
    };
    let samples = |name: &str| -> usize {
        snapshots
            .iter()
            .filter_map(|s| match find(s, MetricKind::Histogram, name) {
                Some(DebugValue::Histogram(h)) => Some(h.len()),
                _ => None,
            })
            .sum()
    };
    assert_eq!(
        counter("agentgraph_worker_fenced_writes_total"),
        1,
        "one fenced write"
    );
    assert!(counter("agentgraph_worker_lease_renewals_total") > 0);
    assert_eq!(
        samples("agentgraph_worker_claim_latency_seconds"),
        2,
        "two claims; the held job is never claimed"
    );
    assert!(
        snapshots
            .iter()
            .any(|s| find(s, MetricKind::Gauge, "agentgraph_queue_depth").is_some())
    );
}
