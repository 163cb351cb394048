//! Run ownership through the store's leases: one owner at a time, a run taken over after its
//! lease expired refuses the old owner's writes (typed, nothing applied), and the graph's
//! name on the run records.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::{MemoryStore, StoreError, WriteBatch};
use agentgraph_engine::{CheckpointStore, Durability, END, Error, GraphBuilder, START};
use common::store::Hooked;
use common::{Trace, TraceUpdate, cfg, stores};
use tokio::sync::Notify;

/// START -> a -> wait -> END: `wait` says it started, then waits for the gate (once `fail` is
/// false; while it is true, it fails).
fn waiting_graph(
    entered: &Arc<Notify>,
    gate: &Arc<Notify>,
    fail: &Arc<AtomicBool>,
) -> agentgraph_engine::CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    let (entered, gate, fail) = (entered.clone(), gate.clone(), fail.clone());
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_node("wait", move |_, _| {
            let (entered, gate, fail) = (entered.clone(), gate.clone(), fail.clone());
            async move {
                if fail.load(Ordering::SeqCst) {
                    return Err("not yet".into());
                }
                entered.notify_one();
                gate.notified().await;
                Ok(TraceUpdate::note("waited"))
            }
        })
        .add_edge(START, "a")
        .add_edge("a", "wait")
        .add_edge("wait", END);
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_resume_of_a_running_run_is_busy() {
    for (store, _dir) in stores() {
        let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let fail = Arc::new(AtomicBool::new(true));
        let g = waiting_graph(&entered, &gate, &fail);
        let e = g
            .run_with(Trace::default(), cfg(&store, "twice"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NodeFailed { .. }), "{e:?}");
        fail.store(false, Ordering::SeqCst);
        let first = g.resume("twice", cfg(&store, "twice")).spawn();
        entered.notified().await;
        let e = g.resume("twice", cfg(&store, "twice")).await.unwrap_err();
        assert!(
            matches!(&e, Error::Store(StoreError::RunBusy { run }) if run == "twice"),
            "{e:?}"
        );
        gate.notify_one();
        let state = first.await.unwrap();
        assert_eq!(state.log, ["a", "waited"]);
        // Released once the run ended.
        g.resume("twice", cfg(&store, "twice")).await.unwrap();
    }
}

/// `inner`, whose lease renewals are held back while `paused` is set, as if the process that
/// owns a run were paused (GC, SIGSTOP, a network partition) past its lease.
fn pausable(
    inner: &Arc<dyn CheckpointStore>,
    paused: &Arc<AtomicBool>,
) -> Arc<dyn CheckpointStore> {
    let paused = paused.clone();
    Arc::new(Hooked::new(inner.clone()).on_renew_lease(move || {
        // While paused, the renewal never reaches the store.
        paused.load(Ordering::SeqCst).then_some(Ok(()))
    }))
}

/// Everything stored for `run` that a write of its next step could change.
async fn snapshot(store: &dyn CheckpointStore, run: &str) -> String {
    let record = store.get_run(run).await.unwrap();
    let checkpoints: Vec<u64> = store
        .list_checkpoints(run, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|(step, _)| step)
        .collect();
    let mut pending = Vec::new();
    for step in 0..8 {
        pending.push(store.get_pending_writes(run, step).await.unwrap());
    }
    let events = store.last_event(run).await.unwrap();
    format!("{record:?} {checkpoints:?} {pending:?} {events:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_taken_over_after_its_lease_expired_writes_nothing_more() {
    let ttl = Duration::from_millis(150);
    for durability in [Durability::Sync, Durability::Async] {
        for (inner, _dir) in stores() {
            let paused = Arc::new(AtomicBool::new(false));
            let store = pausable(&inner, &paused);
            let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            let g = waiting_graph(&entered, &gate, &Arc::new(AtomicBool::new(false)));
            let config = cfg(&store, "taken")
                .durability(durability)
                .store_events(true)
                .lease_ttl(ttl);
            let run = g.run_with(Trace::default(), config).spawn();
            entered.notified().await;
            // Heartbeats go on while the run is alive: it keeps its lease past its TTL.
            tokio::time::sleep(ttl * 3).await;
            assert!(matches!(
                inner.acquire_lease("taken", ttl).await,
                Err(StoreError::RunBusy { .. })
            ));
            // The owner is paused past its lease; another takes the run over.
            paused.store(true, Ordering::SeqCst);
            tokio::time::sleep(ttl * 4).await;
            let before = snapshot(&*inner, "taken").await;
            let taker = inner
                .acquire_lease("taken", Duration::from_secs(600))
                .await
                .expect("an expired lease is free");
            gate.notify_one();
            let e = run.await.unwrap_err();
            match &e {
                Error::Store(StoreError::Fenced {
                    run,
                    epoch,
                    current,
                }) => {
                    assert_eq!(run, "taken");
                    assert_eq!(*current, taker.epoch());
                    assert!(epoch < current, "{e}");
                }
                other => panic!("{durability:?}: expected a fenced write, got {other:?}"),
            }
            assert_eq!(
                snapshot(&*inner, "taken").await,
                before,
                "{durability:?}: nothing of the old owner's writes is stored"
            );
            // The new owner writes.
            let mut batch = WriteBatch::new();
            batch.fence("taken", taker.epoch()).delete_run("taken");
            inner.commit(batch).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_records_name_their_graph_and_subgraph_children_theirs() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut child = GraphBuilder::<Trace>::new();
    child
        .named("child-graph")
        .add_node("inner", |_, _| async { Ok(TraceUpdate::note("inner")) })
        .add_edge(START, "inner")
        .add_edge("inner", END);
    let child = child.compile().unwrap();
    let mut b = GraphBuilder::<Trace>::new();
    b.named("parent-graph")
        .add_subgraph(
            "sub",
            child,
            |_| Trace::default(),
            |t| TraceUpdate::new().log(t.log),
        )
        .add_edge(START, "sub")
        .add_edge("sub", END);
    let g = b.compile().unwrap();
    assert_eq!(g.name(), Some("parent-graph"));
    let state = g
        .run_with(Trace::default(), cfg(&store, "named"))
        .await
        .unwrap();
    assert_eq!(state.log, ["inner"]);
    let runs = store.list_runs(None, 10).await.unwrap();
    assert!(runs.len() >= 2, "{runs:?}");
    for record in &runs {
        let expected = if record.run_id == "named" {
            "parent-graph"
        } else {
            assert!(record.run_id.starts_with("named/"), "{record:?}");
            "child-graph"
        };
        assert_eq!(record.graph.as_deref(), Some(expected), "{record:?}");
    }
    // A fork belongs to the graph that made it; a resume keeps the name.
    g.history(store.clone())
        .fork("named", 0, "forked", |_| {})
        .await
        .unwrap();
    let forked = store.get_run("forked").await.unwrap().unwrap();
    assert_eq!(forked.graph.as_deref(), Some("parent-graph"));
    // An unnamed graph's runs have no name.
    let unnamed = common::chain(1, |_, _| async { Ok(TraceUpdate::note("x")) });
    assert_eq!(unnamed.name(), None);
    unnamed
        .run_with(Trace::default(), cfg(&store, "unnamed"))
        .await
        .unwrap();
    assert_eq!(store.get_run("unnamed").await.unwrap().unwrap().graph, None);
}
