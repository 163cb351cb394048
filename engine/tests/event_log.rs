//! The stored event log (`RunConfig::store_events`): the same events as the live stream, in
//! the commit of their checkpoint, numbered without gaps or repeats across failures, crashes
//! and resumes.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_checkpoint::{MemoryStore, SledStore};
use agentgraph_engine::{
    BoxError, CheckpointStore, Durability, END, Event, EventKind, GraphBuilder, Mode, RunConfig,
    RunStatus, START,
};
use common::{Trace, TraceUpdate, cfg, counting_chain, logger, stores};
use futures_util::StreamExt;

/// START -> a -> [b, c] -> join d -> END; `c` fails while `fail` is set.
fn graph(fail: &Arc<AtomicBool>) -> agentgraph_engine::CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "d"] {
        b.add_node(name, move |_, ctx: agentgraph_engine::Context| async move {
            ctx.emit("note", name);
            Ok(TraceUpdate::note(name))
        });
    }
    let fail = fail.clone();
    b.add_cpu_node("c", move |_, _| {
        if fail.load(Ordering::SeqCst) {
            return Err::<TraceUpdate, BoxError>("c is broken".into());
        }
        Ok(TraceUpdate::note("c"))
    });
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c"])
        .add_join(["b", "c"], "d")
        .add_edge("d", END);
    b.compile().unwrap()
}

fn contiguous(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq, i as u64,
            "event {i} is numbered {}: {events:#?}",
            e.seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_log_is_the_live_stream() {
    for (store, _dir) in stores() {
        for durability in [Durability::Sync, Durability::Async, Durability::Exit] {
            for mode in [Mode::Sequential, Mode::Parallel] {
                let g = graph(&Arc::new(AtomicBool::new(false)));
                let id = format!("{durability:?}-{mode:?}");
                let config = RunConfig::new()
                    .store(store.clone())
                    .run_id(&id)
                    .mode(mode)
                    .durability(durability)
                    .store_events(true);
                let run = g.run_with(Trace::default(), config);
                let live = run.events();
                run.await.unwrap();
                let live: Vec<Event> = live.map(Result::unwrap).collect().await;
                let stored = g
                    .history(store.clone())
                    .events(&id, None, 1000)
                    .await
                    .unwrap();
                contiguous(&stored);
                assert_eq!(stored, live, "{id}");
                // Paging after a number misses nothing.
                let tail = g
                    .history(store.clone())
                    .events(&id, Some(4), 3)
                    .await
                    .unwrap();
                assert_eq!(tail, stored[5..8], "{id}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_and_resumed_run_numbers_on_after_its_stored_end() {
    for (store, _dir) in stores() {
        let fail = Arc::new(AtomicBool::new(true));
        let g = graph(&fail);
        let config = || {
            RunConfig::new()
                .store(store.clone())
                .run_id("f")
                .store_events(true)
        };
        g.run_with(Trace::default(), config()).await.unwrap_err();
        let history = g.history(store.clone());
        let first = history.events("f", None, 1000).await.unwrap();
        contiguous(&first);
        assert!(matches!(
            first.last().unwrap().kind,
            EventKind::RunFailed { .. }
        ));
        fail.store(false, Ordering::SeqCst);
        g.resume("f", config()).await.unwrap();
        let all = history.events("f", None, 1000).await.unwrap();
        contiguous(&all);
        assert_eq!(all[..first.len()], first[..]);
        assert!(matches!(
            all[first.len()].kind,
            EventKind::RunResumed { .. }
        ));
        assert!(matches!(
            all.last().unwrap().kind,
            EventKind::RunFinished { .. }
        ));
    }
}

/// A run dropped mid-run (nothing more is written, as after a crash) leaves a readable log
/// that ends with its last durable checkpoint; the resumed run numbers on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_run_leaves_a_log_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let g = common::chain(20, |_, ctx| async move {
        if ctx.step() == 12 {
            std::future::pending::<()>().await;
        }
        Ok(TraceUpdate::note(ctx.node()).count(1))
    });
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("crash")
            .durability(Durability::Sync)
            .store_events(true)
    };
    let run = g.run_with(Trace::default(), config());
    let mut live = run.events();
    let fut = run.into_future();
    tokio::select! {
        r = fut => panic!("the run ended: {:?}", r.map(|s| s.count)),
        () = async {
            while let Some(e) = live.next().await {
                if matches!(e.unwrap().kind, EventKind::NodeStarted { step: 12, .. }) {
                    return;
                }
            }
        } => {}
    }
    let history = g.history(store.clone());
    let stored = history.events("crash", None, 1000).await.unwrap();
    contiguous(&stored);
    assert!(
        matches!(
            stored.last().unwrap().kind,
            EventKind::CheckpointSaved { step: 11, .. }
        ),
        "{:?}",
        stored.last()
    );
    let g2 = common::chain(20, |_, ctx| async move {
        Ok(TraceUpdate::note(ctx.node()).count(1))
    });
    let state = g2.resume("crash", config()).await.unwrap();
    assert_eq!(state.count, 20);
    let all = history.events("crash", None, 1000).await.unwrap();
    contiguous(&all);
    assert!(matches!(
        all[stored.len()].kind,
        EventKind::RunResumed { step: 11, .. }
    ));
}

#[tokio::test]
async fn without_the_option_nothing_is_stored() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let g = graph(&Arc::new(AtomicBool::new(false)));
    g.run_with(
        Trace::default(),
        RunConfig::new().store(store.clone()).run_id("n"),
    )
    .await
    .unwrap();
    assert!(store.get_events("n", None, 10).await.unwrap().is_empty());
}

/// Under `Durability::Async`, the steps before a node that runs for long reach the store
/// while it runs: the background writer drains what queued, rather than waiting for the
/// run's next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes_reach_the_store_while_a_long_node_runs() {
    for (store, _dir) in stores() {
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let g = common::chain(8, move |_, ctx| {
            let gate = gate.clone();
            async move {
                if ctx.step() == 6 {
                    gate.notified().await;
                }
                Ok(TraceUpdate::note(ctx.node()).count(1))
            }
        });
        let config = RunConfig::new()
            .store(store.clone())
            .run_id("long")
            .durability(Durability::Async)
            .store_events(true);
        let run = tokio::spawn(g.run_with(Trace::default(), config).into_future());
        // Steps 1 to 5 were written in groups; the last group must not wait for step 6.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let latest = store.latest_checkpoint("long").await.unwrap().map(|c| c.0);
            let events = store.last_event("long").await.unwrap();
            let stored = g
                .history(store.clone())
                .events("long", None, 1000)
                .await
                .unwrap();
            let saved5 = stored
                .iter()
                .any(|e| matches!(e.kind, EventKind::CheckpointSaved { step: 5, .. }));
            if latest == Some(5) && saved5 {
                contiguous(&stored);
                assert_eq!(events, stored.last().map(|e| e.seq));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "step 5 never reached the store while step 6 ran (newest: {latest:?})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        release.notify_one();
        assert_eq!(run.await.unwrap().unwrap().count, 8);
    }
}

#[tokio::test]
async fn sequence_numbers_are_positions_in_the_run_and_survive_a_resume() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    for n in ["a", "b", "c"] {
        logger(&mut b, n);
    }
    b.add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    let g = b.compile().unwrap();
    // Unobserved, then stopped after step 2.
    g.run_with(Trace::default(), cfg(&store, "s").recursion_limit(2))
        .await
        .unwrap_err();
    let record = store.get_run("s").await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.last_step),
        (RunStatus::Failed, Some(2))
    );
    let run = g.resume("s", cfg(&store, "s"));
    let events = run.events();
    run.await.unwrap();
    let events: Vec<_> = events.map(Result::unwrap).collect().await;
    assert!(matches!(
        events[0].kind,
        EventKind::RunResumed { step: 2, .. }
    ));
    assert!(
        events[0].seq > 10,
        "numbering continues after the first run's events: {}",
        events[0].seq
    );
    for w in events.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
}

#[tokio::test]
async fn a_resumed_run_numbers_its_events_after_the_last_checkpoint() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let g = counting_chain(3);
    let run = g.run_with(Trace::default(), cfg(&store, "e").recursion_limit(2));
    let first = run.events();
    run.await.unwrap_err();
    let first: Vec<_> = first.map(Result::unwrap).collect().await;
    let saved = first
        .iter()
        .rev()
        .find(|e| matches!(e.kind, EventKind::CheckpointSaved { step: 2, .. }))
        .unwrap()
        .seq;
    let run = g.resume("e", cfg(&store, "e"));
    let events = run.events();
    run.await.unwrap();
    let resumed = events.map(Result::unwrap).collect::<Vec<_>>().await;
    assert!(matches!(resumed[0].kind, EventKind::RunResumed { .. }));
    assert_eq!(resumed[0].seq, saved + 1);
}
