//! Metrics (the `metrics` feature): a run records its runs, steps, node latencies, failures,
//! retries and checkpoints with the `metrics` facade.
#![cfg(feature = "metrics")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, Context, Durability, END, GraphBuilder, Mode, RetryPolicy,
    RunConfig, START,
};
use common::{Trace, TraceUpdate};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn counter(snapshot: &Snapshot, name: &str, node: Option<&str>) -> u64 {
    snapshot
        .iter()
        .filter(|(k, ..)| k.kind() == MetricKind::Counter && k.key().name() == name)
        .filter(|(k, ..)| {
            node.is_none_or(|n| {
                k.key()
                    .labels()
                    .any(|l| l.key() == "node" && l.value() == n)
            })
        })
        .map(|(.., v)| match v {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

fn histogram(snapshot: &Snapshot, name: &str, node: Option<&str>) -> Vec<f64> {
    snapshot
        .iter()
        .filter(|(k, ..)| k.kind() == MetricKind::Histogram && k.key().name() == name)
        .filter(|(k, ..)| {
            node.is_none_or(|n| {
                k.key()
                    .labels()
                    .any(|l| l.key() == "node" && l.value() == n)
            })
        })
        .flat_map(|(.., v)| match v {
            DebugValue::Histogram(h) => h.iter().map(|f| f.into_inner()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_run_records_its_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder sees what this thread records: the run is sequential, on a
    // current-thread runtime.
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tries = Arc::new(AtomicU32::new(0));
            let mut b = GraphBuilder::<Trace>::new();
            b.add_node("steady", |_, _| async { Ok(TraceUpdate::note("steady")) });
            let t = tries.clone();
            b.add_node("flaky", move |_, _: Context| {
                let t = t.clone();
                async move {
                    if t.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err::<TraceUpdate, BoxError>("not yet".into());
                    }
                    Ok(TraceUpdate::note("flaky"))
                }
            })
            .retry(
                "flaky",
                RetryPolicy::new(3).backoff(std::time::Duration::ZERO, std::time::Duration::ZERO),
            )
            .add_node("broken", |_, _| async {
                Err::<TraceUpdate, BoxError>("always".into())
            })
            .add_edge(START, "steady")
            .add_edge("steady", "flaky")
            .add_conditional_edges("flaky", ["broken", END], |s: &Trace| {
                if s.count == 0 { END } else { "broken" }
            })
            .add_edge("broken", END);
            let g = b.compile().unwrap();
            let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
            let config = || {
                RunConfig::new()
                    .mode(Mode::Sequential)
                    .store(store.clone())
                    .durability(Durability::Sync)
            };
            g.run_with(Trace::default(), config()).await.unwrap();
            let failing = Trace {
                count: 1,
                ..Trace::default()
            };
            tries.store(5, Ordering::SeqCst);
            assert!(g.run_with(failing, config().run_id("bad")).await.is_err());
            assert!(g.resume("bad", config()).await.is_err());
        });
    });
    let snapshot: Snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&snapshot, "agentgraph_runs_started_total", None), 2);
    assert_eq!(counter(&snapshot, "agentgraph_runs_resumed_total", None), 1);
    assert_eq!(
        counter(&snapshot, "agentgraph_runs_finished_total", None),
        1
    );
    assert_eq!(counter(&snapshot, "agentgraph_runs_failed_total", None), 2);
    // 2 steps in the first run, 3 in the second (the last fails), 1 in its resume.
    assert_eq!(counter(&snapshot, "agentgraph_steps_total", None), 6);
    assert_eq!(
        counter(&snapshot, "agentgraph_retries_total", Some("flaky")),
        2
    );
    assert_eq!(
        counter(&snapshot, "agentgraph_node_failures_total", Some("flaky")),
        2
    );
    assert_eq!(
        counter(&snapshot, "agentgraph_node_failures_total", Some("broken")),
        2
    );
    assert_eq!(
        histogram(
            &snapshot,
            "agentgraph_node_duration_seconds",
            Some("steady")
        )
        .len(),
        2
    );
    assert_eq!(
        histogram(&snapshot, "agentgraph_node_duration_seconds", Some("flaky")).len(),
        2
    );
    let bytes = histogram(&snapshot, "agentgraph_checkpoint_bytes", None);
    // Steps 0 to 2 of each run (the second fails at step 3, twice).
    assert_eq!(bytes.len(), 6, "{bytes:?}");
    assert!(bytes.iter().all(|b| *b > 0.0));
    assert_eq!(
        histogram(&snapshot, "agentgraph_checkpoint_duration_seconds", None).len(),
        bytes.len()
    );
}
