//! The stored event log (`RunConfig::store_events`): the same events as the live stream, in
//! the commit of their checkpoint, numbered without gaps or repeats across failures, crashes
//! and resumes; streamed tokens stored coalesced.

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

/// Two nodes of one step that stream 150 tokens each, yielding between them.
fn streaming_graph() -> agentgraph_engine::CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["left", "right"] {
        b.add_node(name, move |_, ctx: agentgraph_engine::Context| async move {
            for i in 0..150u64 {
                ctx.emit_token(i, &format!("{name}{i} "));
                tokio::task::yield_now().await;
            }
            Ok(TraceUpdate::note(name))
        });
    }
    b.add_edges(START, ["left", "right"])
        .add_edge("left", END)
        .add_edge("right", END);
    b.compile().unwrap()
}

/// The text of each node's tokens, in index order, and the events that are not tokens.
fn texts_and_others(events: &[Event]) -> (Vec<(String, String)>, Vec<Event>) {
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut others = Vec::new();
    let mut next: std::collections::HashMap<String, u64> = Default::default();
    for e in events {
        match &e.kind {
            EventKind::Token {
                node,
                index,
                count,
                text,
                attempt,
                ..
            } => {
                assert_eq!(*attempt, 1);
                let expected = next.entry(node.to_string()).or_default();
                assert_eq!(*index, *expected, "{node}'s tokens come in order");
                *expected += u64::from(*count);
                match texts.iter_mut().find(|(n, _)| **n == **node) {
                    Some((_, t)) => t.push_str(text),
                    None => texts.push((node.to_string(), text.clone())),
                }
            }
            _ => others.push(e.clone()),
        }
    }
    texts.sort();
    (texts, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_live_one_by_one_and_stored_coalesced() {
    use agentgraph_engine::TOKENS_PER_STORED_EVENT;
    for (store, _dir) in stores() {
        for mode in [Mode::Sequential, Mode::Parallel] {
            let g = streaming_graph();
            let id = format!("tokens-{mode:?}");
            let run = g.run_with(
                Trace::default(),
                cfg(&store, &id).mode(mode).store_events(true),
            );
            let live = run.events();
            run.await.unwrap();
            let live: Vec<Event> = live.map(Result::unwrap).collect().await;
            contiguous(&live);
            let live_tokens = live
                .iter()
                .filter(|e| matches!(&e.kind, EventKind::Token { count: 1, .. }))
                .count();
            assert_eq!(live_tokens, 300, "{id}: one live event per token");
            let stored = g
                .history(store.clone())
                .events(&id, None, 10_000)
                .await
                .unwrap();
            let stored_tokens: Vec<u32> = stored
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Token { count, .. } => Some(*count),
                    _ => None,
                })
                .collect();
            assert!(
                stored_tokens.len() < 20,
                "{id}: 300 tokens are stored in a few events, not {}",
                stored_tokens.len()
            );
            assert!(
                stored_tokens
                    .iter()
                    .all(|c| (1..=TOKENS_PER_STORED_EVENT).contains(c))
            );
            assert_eq!(stored_tokens.iter().sum::<u32>(), 300);
            // The same text, in the same order; every other event as it was live.
            let (live_texts, live_others) = texts_and_others(&live);
            let (stored_texts, stored_others) = texts_and_others(&stored);
            assert_eq!(stored_texts, live_texts, "{id}");
            assert!(live_texts[0].1.starts_with("left0 left1 "));
            assert_eq!(stored_others, live_others, "{id}");
            // A stored token event has the number of its first piece.
            for e in &stored {
                if let EventKind::Token { .. } = e.kind {
                    let first = live.iter().find(|l| l.seq == e.seq).unwrap();
                    assert!(matches!(first.kind, EventKind::Token { .. }));
                }
            }
        }
    }
}
