//! Checkpointed runs: resume after a failure without re-running finished work, ownership,
//! fingerprints, cost that follows the change, history (fork, prune, delete), durability modes.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use agentgraph_checkpoint::{MemoryStore, SledStore, StoreError, WriteBatch};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Durability, END, Error, EventKind, GraphBuilder,
    Mode, RunConfig, RunStatus, START,
};
use common::store::Hooked;
use common::{Calls, Trace, TraceUpdate, cfg, counting_chain, logger, stores};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// START -> a -> [b, c, flaky] -> join d -> e -> END; `flaky` fails while `fail` is set.
fn graph(calls: &Calls, fail: &Arc<AtomicBool>) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "c", "d", "e"] {
        let calls = calls.clone();
        b.add_node(name, move |_, _| {
            calls.hit(name);
            async move { Ok(TraceUpdate::note(name).count(1)) }
        });
    }
    let (calls2, fail2) = (calls.clone(), fail.clone());
    b.add_cpu_node("flaky", move |_, _| {
        calls2.hit("flaky");
        if fail2.load(Ordering::SeqCst) {
            return Err::<TraceUpdate, BoxError>("the service is down".into());
        }
        Ok(TraceUpdate::note("flaky").count(10))
    });
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c", "flaky"])
        .add_join(["b", "c", "flaky"], "d")
        .add_edge("d", "e")
        .add_edge("e", END);
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_resumes_running_only_the_failed_task() {
    for (store, _dir) in stores() {
        for mode in [Mode::Sequential, Mode::Parallel] {
            let calls = Calls::default();
            let fail = Arc::new(AtomicBool::new(true));
            let g = graph(&calls, &fail);
            let run = format!("flaky-{mode:?}");
            let e = g
                .run_with(
                    Trace::default(),
                    cfg(&store, &run).mode(mode).durability(Durability::Sync),
                )
                .await
                .unwrap_err();
            assert!(
                matches!(&e, Error::NodeFailed { node, step: 2, .. } if node == "flaky"),
                "{e:?}"
            );
            let record = store.get_run(&run).await.unwrap().unwrap();
            assert_eq!(record.status, RunStatus::Failed);
            assert!(record.error.unwrap().contains("the service is down"));
            assert_eq!(
                (calls.get("b"), calls.get("c"), calls.get("flaky")),
                (1, 1, 1)
            );

            // The cause is fixed: resume. b and c kept their writes and do not run again.
            fail.store(false, Ordering::SeqCst);
            let resumed = g.resume(&run, cfg(&store, &run).mode(mode));
            let events = resumed.events();
            let state = resumed.await.unwrap();
            assert_eq!((calls.get("a"), calls.get("b"), calls.get("c")), (1, 1, 1));
            assert_eq!(
                (calls.get("flaky"), calls.get("d"), calls.get("e")),
                (2, 1, 1)
            );
            assert_eq!(state.log, ["a", "b", "c", "flaky", "d", "e"]);
            assert_eq!(state.count, 15);
            let events: Vec<_> = events.map(Result::unwrap).collect().await;
            assert!(
                matches!(
                    events[0].kind,
                    EventKind::RunResumed {
                        step: 1,
                        restored: 2,
                        ..
                    }
                ),
                "{:?}",
                events[0]
            );
            assert_eq!(
                store.get_run(&run).await.unwrap().unwrap().status,
                RunStatus::Completed
            );

            // The same as a run that never failed.
            let clean = g
                .run_with(Trace::default(), RunConfig::new().mode(mode))
                .await
                .unwrap();
            assert_eq!(clean, state);

            // Resuming a completed run gives its final state without running anything.
            let again = g.resume(&run, cfg(&store, &run)).await.unwrap();
            assert_eq!(again, state);
            assert_eq!(calls.get("e"), 2, "only the clean run ran e again");
        }
    }
}

#[tokio::test]
async fn run_ids_are_owned_and_checked() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let g = graph(&Calls::default(), &Arc::new(AtomicBool::new(false)));
    g.run_with(Trace::default(), cfg(&store, "r1"))
        .await
        .unwrap();
    let e = g
        .run_with(Trace::default(), cfg(&store, "r1"))
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::RunExists(r) if r == "r1"), "{e:?}");
    let e = g.resume("nope", cfg(&store, "nope")).await.unwrap_err();
    assert!(matches!(&e, Error::RunNotFound(r) if r == "nope"), "{e:?}");
    let e = g.resume("r1", RunConfig::new()).await.unwrap_err();
    assert!(matches!(e, Error::NoStore), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_cannot_be_resumed_twice() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let mut b = GraphBuilder::<Trace>::new();
    let (g2, e2) = (gate.clone(), entered.clone());
    b.add_node("wait", move |_, _| {
        let (gate, entered) = (g2.clone(), e2.clone());
        async move {
            entered.notify_one();
            gate.notified().await;
            Ok(TraceUpdate::note("waited"))
        }
    })
    .add_edge(START, "wait")
    .add_edge("wait", END);
    let g = b.compile().unwrap();
    let handle = g.run_with(Trace::default(), cfg(&store, "busy")).spawn();
    entered.notified().await;
    let e = g.resume("busy", cfg(&store, "busy")).await.unwrap_err();
    assert!(
        matches!(&e, Error::Store(StoreError::RunBusy { run }) if run == "busy"),
        "{e:?}"
    );
    assert!(e.to_string().contains("already running"), "{e}");
    gate.notify_one();
    handle.await.unwrap();
    // Released once the run ended.
    g.resume("busy", cfg(&store, "busy")).await.unwrap();
}

#[tokio::test]
async fn a_changed_graph_is_refused_unless_allowed() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let fail = Arc::new(AtomicBool::new(true));
    let g = graph(&Calls::default(), &fail);
    g.run_with(Trace::default(), cfg(&store, "fp"))
        .await
        .unwrap_err();
    fail.store(false, Ordering::SeqCst);

    // The same nodes with one more edge: another fingerprint.
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "c", "d", "e", "flaky"] {
        b.add_node(name, move |_, _| async move { Ok(TraceUpdate::note(name)) });
    }
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c", "flaky"])
        .add_join(["b", "c", "flaky"], "d")
        .add_edge("d", "e")
        .add_edge("e", END)
        .add_edge("c", END);
    let changed = b.compile().unwrap();
    let e = changed.resume("fp", cfg(&store, "fp")).await.unwrap_err();
    assert!(
        matches!(&e, Error::GraphChanged { run, .. } if run == "fp"),
        "{e:?}"
    );
    assert!(e.to_string().contains("allow_graph_change"), "{e}");
    let s = changed
        .resume("fp", cfg(&store, "fp").allow_graph_change(true))
        .await
        .unwrap();
    assert_eq!(s.log, ["a", "b", "c", "flaky", "d", "e"]);
}

/// A chain of `n` nodes, each appending one 20-character string to a big list.
fn appender(n: usize) -> CompiledGraph<Trace> {
    common::chain(n, |_, ctx| async move {
        Ok(TraceUpdate::note(format!("{:>20}", ctx.step())))
    })
}

#[tokio::test]
async fn checkpoint_cost_follows_the_change_not_the_state() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let big = Trace {
        log: (0..10_000).map(|i| format!("{i:>20}")).collect(),
        ..Default::default()
    };
    let g = appender(100);
    let run = g.run_with(big.clone(), cfg(&store, "big"));
    let events = run.events();
    let state = run.await.unwrap();
    assert_eq!(state.log.len(), 10_100);
    let saved: Vec<(u64, u64)> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::CheckpointSaved { step, bytes } => Some((step, bytes)),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(saved.len(), 101);
    assert!(
        saved[0].1 > 200_000,
        "the input is stored whole: {:?}",
        saved[0]
    );
    for (step, bytes) in &saved[1..] {
        assert!(*bytes < 2048, "step {step} wrote {bytes} bytes");
    }
    // Every checkpoint reads back exactly.
    let history = g.history(store.clone());
    let at_50 = history.state("big", Some(50)).await.unwrap();
    assert_eq!(at_50.log.len(), 10_050);
    assert_eq!(at_50.log[10_049], format!("{:>20}", 50));
    assert_eq!(history.state("big", None).await.unwrap(), state);
}

#[tokio::test]
async fn deltas_are_compacted_into_a_full_value_now_and_then() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let g = appender(40);
    let run = g.run_with(Trace::default(), cfg(&store, "small"));
    let events = run.events();
    let state = run.await.unwrap();
    let sizes: Vec<u64> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::CheckpointSaved { bytes, .. } => Some(bytes),
                _ => None,
            }
        })
        .collect()
        .await;
    // The list starts empty: deltas soon outgrow it and it is stored whole again, repeatedly.
    let max = *sizes.iter().max().unwrap();
    let min = *sizes[1..].iter().min().unwrap();
    assert!(max > 2 * min, "no compaction seen: {sizes:?}");
    let history = g.history(store.clone());
    for step in 0..=40 {
        assert_eq!(
            history.state("small", Some(step)).await.unwrap().log.len(),
            step as usize
        );
    }
    assert_eq!(history.state("small", None).await.unwrap(), state);
}

#[tokio::test]
async fn history_lists_forks_prunes_and_deletes() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let g = appender(6);
    let history = g.history(store.clone());
    let original = g
        .run_with(Trace::default(), cfg(&store, "orig"))
        .await
        .unwrap();

    let cps = history.checkpoints("orig").await.unwrap();
    assert_eq!(
        cps.iter().map(|c| c.step).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6]
    );
    assert_eq!(cps[0].next, ["n0"]);
    assert_eq!(cps[3].written, ["log"]);
    assert_eq!(cps[3].parent, Some(2));
    assert!(cps[6].next.is_empty());

    // Fork after step 3 with an edited state, and run the fork.
    history
        .fork("orig", 3, "fork", |s| s.log.push("edited".into()))
        .await
        .unwrap();
    let forked = history.run("fork").await.unwrap().unwrap();
    assert_eq!(forked.status, RunStatus::Pending);
    assert_eq!(forked.forked_from, Some(("orig".into(), 3)));
    let f = g.resume("fork", cfg(&store, "fork")).await.unwrap();
    assert_eq!(f.log[..3], original.log[..3]);
    assert_eq!(f.log[3], "edited");
    assert_eq!(f.log[4..], original.log[3..]);
    assert!(matches!(
        history.fork("orig", 3, "fork", |_| {}).await,
        Err(Error::RunExists(_))
    ));

    // Prune: the newest two remain, and still read back.
    assert_eq!(history.prune("orig", 2).await.unwrap(), 5);
    let kept: Vec<u64> = history
        .checkpoints("orig")
        .await
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(kept, [5, 6]);
    assert_eq!(history.state("orig", Some(5)).await.unwrap().log.len(), 5);
    assert_eq!(history.state("orig", None).await.unwrap(), original);
    assert!(history.state("orig", Some(2)).await.is_err());

    let runs: Vec<String> = history
        .runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(runs, ["fork", "orig"]);
    history.delete("orig").await.unwrap();
    let runs: Vec<String> = history
        .runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(runs, ["fork"]);
    assert!(store.latest_checkpoint("orig").await.unwrap().is_none());
}

#[tokio::test]
async fn durability_modes_write_the_same_checkpoints() {
    let g = appender(5);
    let mut seen = Vec::new();
    for durability in [Durability::Sync, Durability::Async, Durability::Exit] {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        g.run_with(Trace::default(), cfg(&store, "d").durability(durability))
            .await
            .unwrap();
        let blobs = store.get_blobs("d", 0, 0, 100).await.unwrap();
        let steps: Vec<u64> = g
            .history(store.clone())
            .checkpoints("d")
            .await
            .unwrap()
            .iter()
            .map(|c| c.step)
            .collect();
        seen.push((steps, blobs));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}

#[tokio::test]
async fn exit_durability_writes_nothing_until_the_run_ends() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let probe = store.clone();
    let checked = Arc::new(AtomicUsize::new(0));
    let c2 = checked.clone();
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_node("look", move |_, _| {
            let (probe, checked) = (probe.clone(), c2.clone());
            async move {
                checked.store(
                    probe.list_checkpoints("exit", None, 10).await?.len() + 1,
                    Ordering::SeqCst,
                );
                Ok(TraceUpdate::note("look"))
            }
        })
        .add_edge(START, "a")
        .add_edge("a", "look")
        .add_edge("look", END);
    let g = b.compile().unwrap();
    g.run_with(
        Trace::default(),
        cfg(&store, "exit").durability(Durability::Exit),
    )
    .await
    .unwrap();
    assert_eq!(
        checked.load(Ordering::SeqCst),
        1,
        "a checkpoint was written during the run"
    );
    assert_eq!(
        g.history(store.clone())
            .checkpoints("exit")
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store.get_run("exit").await.unwrap().unwrap().status,
        RunStatus::Completed
    );
}

#[tokio::test]
async fn a_conflict_leaves_the_run_resumable_with_a_fixed_graph() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let build = |both_write: bool| {
        let mut b = GraphBuilder::<Trace>::new();
        b.add_node("x", |_, _| async {
            Ok(TraceUpdate::note("x").last("x".into()))
        })
        .add_node("y", move |_, _| async move {
            let u = TraceUpdate::note("y");
            Ok(if both_write { u.last("y".into()) } else { u })
        })
        .add_edges(START, ["x", "y"])
        .add_edge("x", END)
        .add_edge("y", END);
        b.compile().unwrap()
    };
    let e = build(true)
        .run_with(Trace::default(), cfg(&store, "c"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict { field: "last", .. }), "{e:?}");
    assert!(store.get_pending_writes("c", 1).await.unwrap().is_empty());
    let s = build(false)
        .resume("c", cfg(&store, "c").allow_graph_change(true))
        .await
        .unwrap();
    assert_eq!(
        (s.log.as_slice(), s.last.as_str()),
        (&["x".to_string(), "y".to_string()][..], "x")
    );
}

#[tokio::test]
async fn damaged_checkpoints_fall_back_to_the_last_intact_one() {
    let g = appender(4);
    let reference = g.run(Trace::default()).await.unwrap();
    let template: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    g.run_with(Trace::default(), cfg(&template, "t"))
        .await
        .unwrap();
    let (last_step, last) = template.latest_checkpoint("t").await.unwrap().unwrap();
    assert_eq!(last_step, 4);
    let blob = template.get_blobs("t", 0, 4, 4).await.unwrap().remove(0).1;

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for cut in 0..last.len() {
        cases.push(("checkpoint", last[..cut].to_vec()));
    }
    for byte in 0..last.len() {
        let mut flipped = last.clone();
        flipped[byte] ^= 0x10;
        cases.push(("checkpoint", flipped));
    }
    for cut in 0..blob.len() {
        cases.push(("blob", blob[..cut].to_vec()));
    }
    for (what, damaged) in cases {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        g.run_with(Trace::default(), cfg(&store, "r"))
            .await
            .unwrap();
        let mut batch = WriteBatch::new();
        match what {
            "checkpoint" => batch.put_checkpoint("r", 4, damaged),
            _ => batch.put_blob("r", 0, 4, damaged),
        };
        store.commit(batch).await.unwrap();
        // Reading the damaged checkpoint is a typed error...
        assert!(matches!(
            g.history(store.clone()).state("r", Some(4)).await,
            Err(Error::Corrupt { .. })
        ));
        // ...and resuming falls back to step 3, re-running step 4.
        let resumed = g.resume("r", cfg(&store, "r")).await.unwrap();
        assert_eq!(resumed, reference, "after damaging the {what}");
        assert_eq!(
            g.history(store.clone()).state("r", Some(4)).await.unwrap(),
            reference
        );
    }
}

#[tokio::test]
async fn a_run_stopped_while_a_join_waits_resumes_into_the_join() {
    // a -> [b, x], x -> y, y -> c or END, [b, c] -> d. After step 2, b has arrived and the join
    // waits, because y may still lead to c; at step 3, y goes to END: c is skipped and the join
    // fires with b alone. The waiting join must survive the stop.
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "x", "y", "c", "d"] {
        b.add_node(name, move |_, _| async move { Ok(TraceUpdate::note(name)) });
    }
    b.add_edge(START, "a")
        .add_edges("a", ["b", "x"])
        .add_edge("x", "y")
        .add_conditional_edges("y", ["c", END], |_: &Trace| END)
        .add_join(["b", "c"], "d")
        .add_edge("d", END);
    let g = b.compile().unwrap();
    let whole = g.run(Trace::default()).await.unwrap();
    assert_eq!(whole.log, ["a", "b", "x", "y", "d"]);
    for stop in 1..=3 {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let e = g
            .run_with(Trace::default(), cfg(&store, "j").recursion_limit(stop))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::RecursionLimit { .. }), "{e:?}");
        let resumed = g.resume("j", cfg(&store, "j")).await.unwrap();
        assert_eq!(resumed, whole, "stopped after step {stop}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_async_run_resumes_without_racing_its_writer() {
    // Each invocation writes its own generation into the state, as a real (non-deterministic)
    // node would: if the dropped run's writer could still commit after the resume began, the
    // stored history would mix the two timelines.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let generation = Arc::new(AtomicUsize::new(0));
    let gen2 = generation.clone();
    let g = common::chain(300, move |_, ctx| {
        let g = gen2.load(Ordering::SeqCst);
        async move {
            if ctx.step() % 50 == 0 {
                tokio::task::yield_now().await;
            }
            Ok(TraceUpdate::note(format!("{g}:{}", ctx.step())).count(1))
        }
    });
    let history = g.history(store.clone());
    for attempt in 0..5u64 {
        let run = format!("dropped-{attempt}");
        let config = || cfg(&store, &run).durability(Durability::Async);
        generation.fetch_add(1, Ordering::SeqCst);
        // Dropped mid-run: its writer may still be committing a group.
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(500 + attempt * 700),
            g.run_with(Trace::default(), config()).into_future(),
        )
        .await;
        generation.fetch_add(1, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let state = loop {
            match g.resume(&run, config()).await {
                Err(Error::Store(StoreError::RunBusy { .. }))
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(Error::RunNotFound(_)) => {
                    // Dropped before its first checkpoint was handed over: start it again.
                    break g.run_with(Trace::default(), config()).await.unwrap();
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(
            (state.count, state.log.len()),
            (300, 300),
            "attempt {attempt}"
        );
        // The stored history is one timeline: every checkpoint's log is a prefix of the last.
        assert_eq!(
            history.state(&run, None).await.unwrap(),
            state,
            "attempt {attempt}"
        );
        for cp in history.checkpoints(&run).await.unwrap() {
            let at = history.state(&run, Some(cp.step)).await.unwrap();
            assert_eq!(
                at.log[..],
                state.log[..at.log.len()],
                "attempt {attempt}, step {}",
                cp.step
            );
        }
    }
}

/// The same field names and reducers as `Trace`, but `log` holds numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Numbers {
    #[reducer(append)]
    log: Vec<u32>,
    #[reducer(add)]
    count: u64,
    last: String,
}

#[tokio::test]
async fn a_changed_field_type_is_refused_and_never_destroys_history() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Numbers>::new();
    b.add_node("a", |_, _| async { Ok(NumbersUpdate::new().log(vec![7])) })
        .add_edge(START, "a")
        .add_edge("a", END);
    b.compile()
        .unwrap()
        .run_with(Numbers::default(), cfg(&store, "n"))
        .await
        .unwrap();

    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    b.add_edge(START, "a").add_edge("a", END);
    let g = b.compile().unwrap();
    let e = g.resume("n", cfg(&store, "n")).await.unwrap_err();
    assert!(
        matches!(e, Error::GraphChanged { .. }),
        "the field type is in the fingerprint: {e:?}"
    );
    let e = g
        .resume("n", cfg(&store, "n").allow_graph_change(true))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Incompatible { .. }), "{e:?}");
    // Nothing was deleted or re-run.
    assert_eq!(store.latest_checkpoint("n").await.unwrap().unwrap().0, 1);
}

#[tokio::test]
async fn a_checkpoint_from_a_newer_format_stops_the_resume() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    logger(&mut b, "b");
    b.add_edge(START, "a").add_edge("a", "b").add_edge("b", END);
    let g = b.compile().unwrap();
    g.run_with(Trace::default(), cfg(&store, "v"))
        .await
        .unwrap();
    let (step, mut bytes) = store.latest_checkpoint("v").await.unwrap().unwrap();
    bytes[4] = 2; // format version 2, with a valid checksum
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..12]);
    h.update(&bytes[16..]);
    let crc = h.finalize();
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    let mut batch = WriteBatch::new();
    batch.put_checkpoint("v", step, bytes.clone());
    store.commit(batch).await.unwrap();
    let e = g.resume("v", cfg(&store, "v")).await.unwrap_err();
    assert!(
        matches!(&e, Error::Incompatible { reason, .. } if reason.contains("newer")),
        "{e:?}"
    );
    assert_eq!(store.get_checkpoint("v", step).await.unwrap(), Some(bytes));
}

#[tokio::test]
async fn a_run_that_fails_before_its_first_checkpoint_frees_its_id() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    logger(&mut b, "b");
    b.add_conditional_edges(START, ["a"], |_: &Trace| "b")
        .add_edge("a", "b")
        .add_edge("b", END);
    let g = b.compile().unwrap();
    let e = g
        .run_with(Trace::default(), cfg(&store, "r"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UndeclaredTarget { .. }), "{e:?}");
    assert!(store.get_run("r").await.unwrap().is_none());
    let e = g
        .run_with(Trace::default(), cfg(&store, "r"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::UndeclaredTarget { .. }),
        "the id is free again: {e:?}"
    );
}

#[tokio::test]
async fn exit_durability_reports_checkpoints_only_when_written() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    logger(&mut b, "b");
    b.add_edge(START, "a").add_edge("a", "b").add_edge("b", END);
    let run = b.compile().unwrap().run_with(
        Trace::default(),
        cfg(&store, "x").durability(Durability::Exit),
    );
    let events = run.events();
    run.await.unwrap();
    let saved: Vec<u64> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::CheckpointSaved { step, .. } => Some(step),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(saved, [2]);
}

/// `inner`, whose commit number `fail_at` fails, as a full disk would; with the number of
/// commits asked of it so far.
fn failing_store(
    inner: &MemoryStore,
    fail_at: usize,
) -> (Arc<dyn CheckpointStore>, Arc<AtomicUsize>) {
    let commits = Arc::new(AtomicUsize::new(0));
    let counted = commits.clone();
    let store = Hooked::new(Arc::new(inner.clone())).on_commit(move || {
        (counted.fetch_add(1, Ordering::SeqCst) == fail_at)
            .then(|| Err(StoreError::Backend("the disk is full".into())))
    });
    (Arc::new(store), commits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_never_followed_by_later_ones() {
    let g = counting_chain(40);
    let whole = g.run(Trace::default()).await.unwrap();
    for durability in [Durability::Async, Durability::Sync] {
        for fail_at in 0..4 {
            let memory = MemoryStore::new();
            let (failing, commits) = failing_store(&memory, fail_at);
            let result = g
                .run_with(Trace::default(), cfg(&failing, "w").durability(durability))
                .await;
            let e = match result {
                // Group commit may write the whole run in fewer commits than `fail_at + 1`
                // (how many depends on timing): then no write failed, and the run is whole.
                Ok(state) => {
                    assert_eq!(durability, Durability::Async);
                    assert!(
                        commits.load(Ordering::SeqCst) <= fail_at,
                        "a write failed unseen"
                    );
                    assert_eq!(state, whole);
                    continue;
                }
                Err(e) => e,
            };
            assert!(
                matches!(e, Error::Store(_)),
                "{durability:?} {fail_at}: {e:?}"
            );
            // What is stored is one consistent prefix: every checkpoint's count is its step.
            let store: Arc<dyn CheckpointStore> = Arc::new(memory.clone());
            let history = g.history(store.clone());
            let cps = history.checkpoints("w").await.unwrap();
            for (i, cp) in cps.iter().enumerate() {
                assert_eq!(cp.step, i as u64, "{durability:?} {fail_at}: a gap");
                let s = history.state("w", Some(cp.step)).await.unwrap();
                assert_eq!(
                    s.count, cp.step,
                    "{durability:?} {fail_at}: step {}",
                    cp.step
                );
            }
            match store.get_run("w").await.unwrap() {
                // Nothing was committed: the id is free again.
                None => assert!(cps.is_empty()),
                Some(record) => {
                    assert_eq!(record.status, RunStatus::Failed);
                    assert_eq!(record.last_step, cps.last().map(|c| c.step));
                    let resumed = g.resume("w", cfg(&store, "w")).await.unwrap();
                    assert_eq!(resumed, whole, "{durability:?} {fail_at}");
                }
            }
        }
    }
}

/// A store that records its commits and flushes, in order, into `ops`.
fn recording(ops: &Arc<std::sync::Mutex<Vec<&'static str>>>) -> Arc<dyn CheckpointStore> {
    let (commits, flushes) = (ops.clone(), ops.clone());
    Arc::new(
        Hooked::new(common::memory())
            .on_commit(move || {
                commits.lock().unwrap().push("commit");
                None
            })
            .on_flush(move || {
                flushes.lock().unwrap().push("flush");
                None
            }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes_are_flushed_while_a_slow_node_runs_and_when_the_run_ends() {
    let ops = Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = recording(&ops);
    let seen = ops.clone();
    // `n1` waits (up to a minute, however loaded the machine) until the checkpoints before it
    // were flushed: the writer flushes while a node runs, without waiting for the run's end.
    let graph = common::chain(3, move |_, ctx| {
        let seen = seen.clone();
        async move {
            if ctx.node() == "n1" {
                let began = std::time::Instant::now();
                while !seen.lock().unwrap().contains(&"flush") {
                    assert!(
                        began.elapsed() < std::time::Duration::from_secs(60),
                        "no flush while n1 ran: {:?}",
                        seen.lock().unwrap()
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            Ok(TraceUpdate::note(ctx.node()).count(1))
        }
    });
    let config = cfg(&store, "slow").durability(Durability::Async);
    let done = graph.run_with(Trace::default(), config).await.unwrap();
    assert_eq!(done.count, 3);
    // The run returned durable: its last write was a flush, after every commit.
    let ops = ops.lock().unwrap().clone();
    assert_eq!(ops.last(), Some(&"flush"), "{ops:?}");
    let record = store.get_run("slow").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_run_of_quick_steps_ends_flushed_with_every_step_stored() {
    for store_events in [false, true] {
        let ops = Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = recording(&ops);
        let graph = common::chain(50, |_, _| async { Ok(TraceUpdate::new().count(1)) });
        let run = format!("quick-{store_events}");
        let config = cfg(&store, &run)
            .durability(Durability::Async)
            .store_events(store_events);
        let done = graph.run_with(Trace::default(), config).await.unwrap();
        assert_eq!(done.count, 50);
        let ops = ops.lock().unwrap().clone();
        assert_eq!(ops.last(), Some(&"flush"), "{ops:?}");
        let record = store.get_run(&run).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        let steps = store.list_checkpoints(&run, None, 100).await.unwrap();
        assert_eq!(steps.len(), 51, "step 0 and one per node");
        if store_events {
            let events = store.get_events(&run, None, 10_000).await.unwrap();
            assert!(!events.is_empty());
        }
    }
}
