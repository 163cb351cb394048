//! Regressions for defects found in review: each test is a scenario that once went wrong.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_checkpoint::{MemoryStore, WriteBatch};
use agentgraph_engine::{
    CheckpointStore, Command, Durability, END, Error, EventKind, GraphBuilder, Mode, Packet,
    RunConfig, RunStatus, START,
};
use common::{Trace, TraceUpdate};
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};

fn cfg(store: &Arc<dyn CheckpointStore>, run: &str) -> RunConfig {
    RunConfig::new().store(store.clone()).run_id(run)
}

fn note(b: &mut GraphBuilder<Trace>, name: &'static str) {
    b.add_node(name, move |_, _| async move { Ok(TraceUpdate::note(name)) });
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
    note(&mut b, "a");
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
    note(&mut b, "a");
    note(&mut b, "b");
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
async fn nested_joins_fire_inner_first_whatever_the_declaration_order() {
    for inner_first in [true, false] {
        let mut b = GraphBuilder::<Trace>::new();
        for n in ["a", "b", "c", "d", "e"] {
            note(&mut b, n);
        }
        b.add_edges(START, ["a", "b", "c"]).add_edge("e", END);
        if inner_first {
            b.add_join(["a", "b"], "d").add_join(["d", "c"], "e");
        } else {
            b.add_join(["d", "c"], "e").add_join(["a", "b"], "d");
        }
        let g = b.compile().unwrap();
        for mode in [Mode::Sequential, Mode::Parallel] {
            let s = g
                .run_with(Trace::default(), RunConfig::new().mode(mode))
                .await
                .unwrap();
            assert_eq!(
                s.log,
                ["a", "b", "c", "d", "e"],
                "inner first: {inner_first}"
            );
        }
    }
}

#[tokio::test]
async fn joins_waiting_on_each_other_are_released_and_loop_like_any_cycle() {
    // d waits for a and e; e waits for b and d: each join's target is the other's predecessor.
    // Neither can fire first by the rule, so the first declared is released; then each firing
    // arms the other, which is a loop, bounded by the recursion limit like any other.
    let mut b = GraphBuilder::<Trace>::new();
    for n in ["a", "b", "d", "e"] {
        note(&mut b, n);
    }
    b.add_edges(START, ["a", "b"])
        .add_join(["a", "e"], "d")
        .add_join(["b", "d"], "e")
        .add_edge("d", END)
        .add_edge("e", END);
    let g = b.compile().unwrap();
    let run = g.run_with(Trace::default(), RunConfig::new().recursion_limit(7));
    let events = run.events();
    let e = run.await.unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { limit: 7 }), "{e:?}");
    let steps: Vec<String> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::StepStarted { tasks, .. } => {
                    Some(tasks.iter().map(|t| t.node.to_string()).collect())
                }
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(steps, ["ab", "d", "e", "d", "e", "d", "e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_outside_the_node_future_are_errors_in_both_modes() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    for mode in [Mode::Sequential, Mode::Parallel] {
        // A panic in the closure's synchronous part, before its future.
        let mut b = GraphBuilder::<Trace>::new();
        b.add_node("boom", |_, _| {
            if true {
                panic!("before the future");
            }
            async { Ok(TraceUpdate::default()) }
        })
        .add_edge(START, "boom")
        .add_edge("boom", END);
        let run = b
            .compile()
            .unwrap()
            .run_with(Trace::default(), RunConfig::new().mode(mode));
        let r = std::panic::AssertUnwindSafe(run.into_future())
            .catch_unwind()
            .await;
        assert!(
            matches!(&r, Ok(Err(Error::NodePanicked { node, message, .. })) if node == "boom" && message == "before the future"),
            "{mode:?}: {:?}",
            r.as_ref()
                .map(|r| r.as_ref().err().map(ToString::to_string))
        );

        // A panicking router fails the run, which is recorded as failed.
        let mut b = GraphBuilder::<Trace>::new();
        note(&mut b, "a");
        b.add_edge(START, "a")
            .add_conditional_edges("a", [END], |_: &Trace| -> &'static str {
                panic!("router bug")
            });
        let id = format!("router-{mode:?}");
        let run = b
            .compile()
            .unwrap()
            .run_with(Trace::default(), cfg(&store, &id).mode(mode));
        let r = std::panic::AssertUnwindSafe(run.into_future())
            .catch_unwind()
            .await;
        assert!(
            matches!(&r, Ok(Err(Error::Panicked { message, .. })) if message == "router bug"),
            "{mode:?}"
        );
        assert_eq!(
            store.get_run(&id).await.unwrap().unwrap().status,
            RunStatus::Failed
        );
    }
}

#[tokio::test]
async fn a_bad_go_to_fails_its_task_and_does_not_poison_the_resume() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let typo = Arc::new(AtomicBool::new(true));
    let t2 = typo.clone();
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("x", move |_, _| {
        let target = if t2.load(Ordering::SeqCst) {
            "revew"
        } else {
            "review"
        };
        async move { Ok(Command::new(TraceUpdate::note("x")).goto(target)) }
    });
    note(&mut b, "y");
    note(&mut b, "review");
    b.add_edges(START, ["x", "y"])
        .add_goto_edges("x", ["review"])
        .add_edge("y", END)
        .add_edge("review", END);
    let g = b.compile().unwrap();
    let run = g.run_with(Trace::default(), cfg(&store, "g").mode(Mode::Sequential));
    let events = run.events();
    let e = run.await.unwrap_err();
    assert!(
        matches!(&e, Error::UndeclaredTarget { target, .. } if target == "revew"),
        "{e:?}"
    );
    let events: Vec<_> = events.map(Result::unwrap).collect().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::NodeFailed { node, .. } if &**node == "x"))
    );
    typo.store(false, Ordering::SeqCst);
    let s = g.resume("g", cfg(&store, "g")).await.unwrap();
    assert_eq!(s.log, ["x", "y", "review"]);

    // A go-to packet whose input cannot be encoded fails its task the same way.
    struct Bad;
    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("p", |_, _| async {
        Ok(Command::new(TraceUpdate::note("p")).goto(Packet::new("q", &Bad)))
    });
    note(&mut b, "q");
    b.add_edge(START, "p")
        .add_goto_edges("p", ["q"])
        .add_edge("q", END);
    let e = b
        .compile()
        .unwrap()
        .invoke(Trace::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PacketEncode { .. }), "{e:?}");
}

#[tokio::test]
async fn a_run_that_fails_before_its_first_checkpoint_frees_its_id() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    note(&mut b, "a");
    note(&mut b, "b");
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
async fn a_go_to_from_a_join_predecessor_still_arrives() {
    let mut b = GraphBuilder::<Trace>::new();
    note(&mut b, "a");
    b.add_node("b", |_, _| async {
        Ok(Command::new(TraceUpdate::note("b")).goto("z"))
    });
    for n in ["c", "d", "z"] {
        note(&mut b, n);
    }
    b.add_edge(START, "a")
        .add_conditional_edges("a", ["b", "c"], |_: &Trace| "b")
        .add_goto_edges("b", ["z"])
        .add_join(["b", "c"], "d")
        .add_edge("c", END)
        .add_edge("d", END)
        .add_edge("z", END);
    // b went to z and arrived at the join; c was not taken: d fires with z, merged in plan order.
    let s = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!(s.log, ["a", "b", "d", "z"]);
}

#[tokio::test]
async fn sequence_numbers_are_positions_in_the_run_and_survive_a_resume() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    for n in ["a", "b", "c"] {
        note(&mut b, n);
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
async fn exit_durability_reports_checkpoints_only_when_written() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    note(&mut b, "a");
    note(&mut b, "b");
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

/// A memory store whose commit number `fail_at` fails, as a full disk would.
#[derive(Debug)]
struct FailingStore {
    inner: MemoryStore,
    commits: Arc<std::sync::atomic::AtomicUsize>,
    fail_at: usize,
}

impl FailingStore {
    /// The store, and the number of commits asked of it so far.
    fn counted(
        inner: &MemoryStore,
        fail_at: usize,
    ) -> (
        Arc<dyn CheckpointStore>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let commits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let store = Arc::new(FailingStore {
            inner: inner.clone(),
            commits: commits.clone(),
            fail_at,
        });
        (store, commits)
    }
}

type StoreFuture<'a, T> =
    agentgraph_checkpoint::BoxFuture<'a, Result<T, agentgraph_checkpoint::StoreError>>;

impl CheckpointStore for FailingStore {
    fn commit(&self, batch: WriteBatch) -> StoreFuture<'_, ()> {
        if self.commits.fetch_add(1, Ordering::SeqCst) == self.fail_at {
            return Box::pin(async {
                Err(agentgraph_checkpoint::StoreError::Backend(
                    "the disk is full".into(),
                ))
            });
        }
        self.inner.commit(batch)
    }
    fn flush(&self) -> StoreFuture<'_, ()> {
        self.inner.flush()
    }
    fn get_run<'a>(
        &'a self,
        run: &'a str,
    ) -> StoreFuture<'a, Option<agentgraph_checkpoint::RunRecord>> {
        self.inner.get_run(run)
    }
    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<agentgraph_checkpoint::RunRecord>> {
        self.inner.list_runs(after, limit)
    }
    fn get_checkpoint<'a>(&'a self, run: &'a str, step: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.get_checkpoint(run, step)
    }
    fn latest_checkpoint<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<(u64, Vec<u8>)>> {
        self.inner.latest_checkpoint(run)
    }
    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.list_checkpoints(run, after, limit)
    }
    fn get_blobs<'a>(
        &'a self,
        run: &'a str,
        field: u32,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.get_blobs(run, field, from, to)
    }
    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> StoreFuture<'a, Vec<(u32, Vec<u8>)>> {
        self.inner.get_pending_writes(run, step)
    }
    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.get_events(run, after, limit)
    }
    fn last_event<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<u64>> {
        self.inner.last_event(run)
    }
    fn acquire_lease<'a>(
        &'a self,
        run: &'a str,
        ttl: std::time::Duration,
    ) -> StoreFuture<'a, agentgraph_checkpoint::Lease> {
        self.inner.acquire_lease(run, ttl)
    }
    fn renew_lease<'a>(
        &'a self,
        lease: &'a agentgraph_checkpoint::Lease,
        ttl: std::time::Duration,
    ) -> StoreFuture<'a, ()> {
        self.inner.renew_lease(lease, ttl)
    }
    fn release_lease(&self, lease: agentgraph_checkpoint::Lease) -> StoreFuture<'_, ()> {
        self.inner.release_lease(lease)
    }
}

fn counting_chain(n: usize) -> agentgraph_engine::CompiledGraph<Trace> {
    common::chain(n, |_, ctx| async move {
        Ok(TraceUpdate::note(ctx.step().to_string()).count(1))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_never_followed_by_later_ones() {
    let g = counting_chain(40);
    let whole = g.run(Trace::default()).await.unwrap();
    for durability in [Durability::Async, Durability::Sync] {
        for fail_at in 0..4 {
            let memory = MemoryStore::new();
            let (failing, commits) = FailingStore::counted(&memory, fail_at);
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
