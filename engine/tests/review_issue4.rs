//! Review of issue 4 (retries, timeouts, cancellation, interrupts, subgraphs): each test shows
//! one finding. They are deterministic: crashes are simulated by dropping a run whose node
//! waits forever, after a `Notify` says the point of interest is reached.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, Durability, END, Error, EventKind,
    GraphBuilder, Interrupt, InterruptKind, Mode, Resume, RetryPolicy, RunConfig, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate};
use futures_util::StreamExt;
use tokio::sync::Notify;

fn memory() -> Arc<dyn CheckpointStore> {
    Arc::new(MemoryStore::new())
}

fn cfg(store: &Arc<dyn CheckpointStore>, run: &str) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(run)
        .durability(Durability::Sync)
}

fn stopped(e: Error) -> Vec<Interrupt> {
    match e {
        Error::Interrupted(stop) => stop.interrupts,
        other => panic!("expected an interrupt, got {other:?}"),
    }
}

fn kinds(interrupts: &[Interrupt]) -> Vec<(InterruptKind, &str)> {
    interrupts
        .iter()
        .map(|i| (i.kind, i.node.as_str()))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("the service said 503")]
struct Unavailable;

/// A retry policy with a 1 ms delay.
fn quick_retry() -> RetryPolicy {
    RetryPolicy::new(5)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .jitter(false)
}

/// Runs `run` until `reached` is notified, then drops it, as a crash would leave it (nothing
/// more is written: the store is `Sync`, so what was written is durable).
async fn crash_when<S: agentgraph_engine::State>(run: agentgraph_engine::Run<S>, reached: &Notify) {
    let fut = run.into_future();
    tokio::select! {
        r = fut => panic!("the run ended before the crash: {:?}", r.err()),
        () = reached.notified() => {}
    }
}

// ---------------------------------------------------------------------------------------------
// 1. An `interrupt_before` gate is passed only while the task's pending record says it was
//    raised there: any later record of the task (its own interrupt, a scheduled retry, a
//    failure) makes the gate stop the step again, and the gate's new record drops the answers.
// ---------------------------------------------------------------------------------------------

/// START -> review -> END, `review` gated by `interrupt_before` and asking a question inside.
fn gated_question(calls: &Calls) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    let calls = calls.clone();
    b.add_node("review", move |_, ctx: Context| {
        calls.hit("review");
        async move {
            let verdict: String = ctx.interrupt("approve?")?;
            Ok::<_, BoxError>(TraceUpdate::note(verdict))
        }
    })
    .interrupt_before(["review"])
    .add_edge(START, "review")
    .add_edge("review", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn a_gated_node_that_interrupts_gets_its_answer_instead_of_its_gate_again() {
    let store = memory();
    let calls = Calls::default();
    let g = gated_question(&calls);
    let first = stopped(
        g.run_with(Trace::default(), cfg(&store, "gq"))
            .await
            .unwrap_err(),
    );
    assert_eq!(kinds(&first), [(InterruptKind::Before, "review")]);
    // Passing the gate runs the node, which asks its question.
    let asked = stopped(g.resume("gq", cfg(&store, "gq")).await.unwrap_err());
    assert_eq!(kinds(&asked), [(InterruptKind::Node, "review")]);
    assert_eq!(calls.get("review"), 1);

    // Answering it must run the node with the answer: the gate was passed already.
    let resume = Resume::new().answer(&asked[0].id, "approved");
    match g.resume_with("gq", resume, cfg(&store, "gq")).await {
        Ok(state) => assert_eq!(state.log, ["approved"]),
        Err(e) => panic!(
            "the answered run stopped again, at {:?} (a gate it had passed)",
            kinds(&stopped(e))
        ),
    }
}

#[tokio::test]
async fn a_gated_node_answered_once_is_not_asked_again_forever() {
    // Continues the previous test's scenario to show the answer is lost: passing the gate a
    // second time runs the node without the answer, so it asks the same question again.
    let store = memory();
    let calls = Calls::default();
    let g = gated_question(&calls);
    stopped(
        g.run_with(Trace::default(), cfg(&store, "gq2"))
            .await
            .unwrap_err(),
    );
    let asked = stopped(g.resume("gq2", cfg(&store, "gq2")).await.unwrap_err());
    let resume = Resume::new().answer(&asked[0].id, "approved");
    let mut outcome = g.resume_with("gq2", resume, cfg(&store, "gq2")).await;
    // Keep resuming without new answers, as a client that passes gates would: the node must
    // finish with the answer it was given, not ask again.
    for _ in 0..3 {
        match outcome {
            Ok(state) => {
                assert_eq!(state.log, ["approved"]);
                return;
            }
            Err(e) => {
                let waiting = stopped(e);
                assert_ne!(
                    kinds(&waiting),
                    [(InterruptKind::Node, "review")],
                    "the node asks again: its answer was dropped (calls: {})",
                    calls.get("review")
                );
            }
        }
        outcome = g.resume("gq2", cfg(&store, "gq2")).await;
    }
    panic!("never finished: {:?}", outcome.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_node_killed_during_its_retries_resumes_at_its_next_attempt_not_its_gate() {
    let store = memory();
    let calls = Calls::default();
    let second_attempt = Arc::new(Notify::new());
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut b = GraphBuilder::<Trace>::new();
    let (c, reached, h) = (calls.clone(), second_attempt.clone(), hang.clone());
    b.add_node("act", move |_, ctx: Context| {
        c.hit("act");
        let (reached, hang) = (reached.clone(), h.clone());
        async move {
            match ctx.attempt() {
                1 => Err::<TraceUpdate, BoxError>(Box::new(Unavailable)),
                n => {
                    if hang.load(std::sync::atomic::Ordering::SeqCst) {
                        reached.notify_one();
                        std::future::pending::<()>().await;
                    }
                    Ok(TraceUpdate::note(format!("attempt {n}")))
                }
            }
        }
    })
    .retry("act", quick_retry())
    .interrupt_before(["act"])
    .add_edge(START, "act")
    .add_edge("act", END);
    let g = b.compile().unwrap();
    let first = stopped(
        g.run_with(Trace::default(), cfg(&store, "gr"))
            .await
            .unwrap_err(),
    );
    assert_eq!(kinds(&first), [(InterruptKind::Before, "act")]);
    // Passed: attempt 1 fails, the retry is persisted, attempt 2 runs and the process dies.
    crash_when(g.resume("gr", cfg(&store, "gr")), &second_attempt).await;
    assert_eq!(calls.get("act"), 2);

    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let result = g.resume("gr", cfg(&store, "gr")).await;
    match result {
        Ok(state) => assert_eq!(state.log, ["attempt 2"], "the attempt count goes on"),
        Err(e) => panic!("the resumed run stopped at a gate it had passed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Answers are stored in the task's `Interrupted` pending record; the task's next record
//    (`Retrying`) replaces it, so a crash during a retry of the answered node loses the answers
//    ("Both are stored before anything runs, so a crash of the resumed run does not lose them":
//    `CompiledGraph::resume_with`).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_survive_a_crash_during_a_retry_of_the_answered_node() {
    let store = memory();
    let calls = Calls::default();
    let second_attempt = Arc::new(Notify::new());
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut b = GraphBuilder::<Trace>::new();
    let (c, reached, h) = (calls.clone(), second_attempt.clone(), hang.clone());
    b.add_node("ask", move |_, ctx: Context| {
        c.hit("ask");
        let (reached, hang) = (reached.clone(), h.clone());
        async move {
            let name: String = ctx.interrupt("name?")?;
            // With its answer, the node calls a flaky service: the first call fails.
            if ctx.attempt() == 1 {
                return Err::<TraceUpdate, BoxError>(Box::new(Unavailable));
            }
            if hang.load(std::sync::atomic::Ordering::SeqCst) {
                reached.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(TraceUpdate::note(name))
        }
    })
    .retry("ask", quick_retry())
    .add_edge(START, "ask")
    .add_edge("ask", END);
    let g = b.compile().unwrap();
    let asked = stopped(
        g.run_with(Trace::default(), cfg(&store, "ar"))
            .await
            .unwrap_err(),
    );
    let resume = Resume::new().answer(&asked[0].id, "Ada");
    crash_when(
        g.resume_with("ar", resume, cfg(&store, "ar")),
        &second_attempt,
    )
    .await;

    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    match g.resume("ar", cfg(&store, "ar")).await {
        Ok(state) => assert_eq!(state.log, ["Ada"]),
        Err(e) => panic!("the answer was lost in the crash: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A resume that fails before anything runs (an unknown interrupt id: a typo) records the run
//    as `Failed`, and `GraphHistory::interrupts` then no longer lists its `interrupt_after` gate.
// ---------------------------------------------------------------------------------------------

/// START -> draft -> review -> publish -> END.
fn pipeline() -> GraphBuilder<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["draft", "review", "publish"] {
        b.add_node(name, move |_, _| async move { Ok(TraceUpdate::note(name)) });
    }
    b.add_edge(START, "draft")
        .add_edge("draft", "review")
        .add_edge("review", "publish")
        .add_edge("publish", END);
    b
}

#[tokio::test]
async fn an_unknown_interrupt_id_leaves_the_run_waiting_where_it_was() {
    let store = memory();
    let mut b = pipeline();
    b.interrupt_after(["draft"]);
    let g = b.compile().unwrap();
    let waiting = stopped(
        g.run_with(Trace::default(), cfg(&store, "typo"))
            .await
            .unwrap_err(),
    );
    let e = g
        .resume_with(
            "typo",
            Resume::new().answer("no-such-id", true),
            cfg(&store, "typo"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownInterrupt { .. }), "{e:?}");
    let record = store.get_run("typo").await.unwrap().unwrap();
    let listed = g.history(store.clone()).interrupts("typo").await.unwrap();
    assert_eq!(
        (record.status, listed),
        (RunStatus::Interrupted, waiting),
        "a rejected resume changed the stored run"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. `GraphHistory::interrupts` lists the `interrupt_after` gates of the last checkpoint whenever
//    the run is `Interrupted`, even after a resume passed them and the run stopped again at a
//    later interrupt of the next step: it disagrees with `Error::Interrupted`.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn history_does_not_list_an_after_gate_that_was_passed() {
    let store = memory();
    let mut b = pipeline();
    b.interrupt_after(["draft"]).interrupt_before(["review"]);
    let g = b.compile().unwrap();
    let first = stopped(
        g.run_with(Trace::default(), cfg(&store, "stale"))
            .await
            .unwrap_err(),
    );
    assert_eq!(kinds(&first), [(InterruptKind::After, "draft")]);
    let second = stopped(g.resume("stale", cfg(&store, "stale")).await.unwrap_err());
    assert_eq!(kinds(&second), [(InterruptKind::Before, "review")]);
    let listed = g.history(store.clone()).interrupts("stale").await.unwrap();
    assert_eq!(
        kinds(&listed),
        kinds(&second),
        "GraphHistory::interrupts lists a gate the run already passed"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Panics on odd input: a step or run timeout of `Duration::MAX` ("no limit, in effect")
//    overflows `Instant + Duration` in the scheduler.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_step_timeout_of_duration_max_does_not_panic() {
    let g = common::chain(2, |_, _| async { Ok(TraceUpdate::new().count(1)) });
    let run = g.run_with(
        Trace::default(),
        RunConfig::new().step_timeout(Duration::MAX),
    );
    let result = tokio::spawn(run.into_future()).await;
    assert!(result.is_ok(), "the run panicked: {:?}", result.err());
    assert_eq!(result.unwrap().unwrap().count, 2);
}

#[tokio::test]
async fn a_run_timeout_of_duration_max_does_not_panic() {
    let g = common::chain(2, |_, _| async { Ok(TraceUpdate::new().count(1)) });
    let run = g.run_with(
        Trace::default(),
        RunConfig::new().run_timeout(Duration::MAX),
    );
    let result = tokio::spawn(run.into_future()).await;
    assert!(result.is_ok(), "the run panicked: {:?}", result.err());
    assert_eq!(result.unwrap().unwrap().count, 2);
}

// ---------------------------------------------------------------------------------------------
// 6. Subgraphs.
// ---------------------------------------------------------------------------------------------

#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, agentgraph_macros::State,
)]
#[state(crate = agentgraph_engine)]
struct Inner {
    #[reducer(add)]
    n: u64,
}

/// A child chain of `len` trivial nodes.
fn child_chain(len: usize) -> CompiledGraph<Inner> {
    let mut b = GraphBuilder::<Inner>::new();
    let names: Vec<String> = (0..len).map(|i| format!("c{i}")).collect();
    for name in &names {
        b.add_node(name.clone(), |_, _| async { Ok(InnerUpdate::new().n(1)) });
    }
    b.add_edge(START, &names[0]);
    for w in names.windows(2) {
        b.add_edge(&w[0], &w[1]);
    }
    b.add_edge(&names[len - 1], END);
    b.compile().unwrap()
}

/// A subgraph's events reach the parent's subscriber, or the subscriber is told how many it
/// missed (DESIGN §7: "a slow subscriber is told how many events it missed"). A child that
/// never waits runs to its end in one poll of the relay; the relay then drains the child's
/// stream with `now_or_never`, which tokio's cooperative budget cuts off after about 128
/// events: the rest are dropped without a word. (Past the child's own capacity, 4,096 events,
/// the child stream's `Missed` errors are dropped silently too.) A 200-node child (about 800
/// events) shows it; a 20-node child passes.
#[tokio::test]
async fn a_subgraph_never_drops_events_silently() {
    let len = 200;
    let mut b = GraphBuilder::<Trace>::new();
    b.add_subgraph(
        "sub",
        child_chain(len),
        |_: &Trace| Inner::default(),
        |c: Inner| TraceUpdate::new().count(c.n),
    )
    .add_edge(START, "sub")
    .add_edge("sub", END);
    let g = b.compile().unwrap();
    // The parent's own buffer is large enough for everything.
    let run = g.run_with(
        Trace::default(),
        RunConfig::new()
            .event_capacity(1 << 20)
            .mode(Mode::Sequential),
    );
    let events = run.events();
    let state = run.await.unwrap();
    assert_eq!(state.count, len as u64);
    let (mut nested, mut lagged) = (0usize, 0u64);
    let events: Vec<_> = events.collect().await;
    for e in events {
        match e {
            Ok(e) => {
                if let EventKind::Subgraph { event, .. } = &e.kind
                    && matches!(event.kind, EventKind::NodeStarted { .. })
                {
                    nested += 1;
                }
            }
            Err(missed) => lagged += missed.0,
        }
    }
    assert!(
        nested == len || lagged > 0,
        "the parent's subscriber saw {nested} of the child's {len} NodeStarted events and was \
         told of no missed event"
    );
}

/// A parent resumed with `allow_graph_change(true)` after its subgraph's graph changed (which
/// changes the parent's fingerprint too: it includes the child's) resumes the child without
/// that permission: the child fails with `GraphChanged`, and so does every later resume.
#[tokio::test]
async fn a_parent_allowed_a_graph_change_resumes_its_changed_subgraph() {
    let store = memory();
    let child = |extra: bool| {
        let mut b = GraphBuilder::<Inner>::new();
        b.add_node("ask", |_, ctx: Context| async move {
            let n: u64 = ctx.interrupt("n?")?;
            Ok::<_, BoxError>(InnerUpdate::new().n(n))
        })
        .add_edge(START, "ask");
        if extra {
            b.add_node("more", |_, _| async { Ok(InnerUpdate::new().n(100)) })
                .add_edge("ask", "more")
                .add_edge("more", END);
        } else {
            b.add_edge("ask", END);
        }
        b.compile().unwrap()
    };
    let parent = |inner: CompiledGraph<Inner>| {
        let mut b = GraphBuilder::<Trace>::new();
        b.add_subgraph(
            "sub",
            inner,
            |_: &Trace| Inner::default(),
            |c: Inner| TraceUpdate::new().count(c.n),
        )
        .add_edge(START, "sub")
        .add_edge("sub", END);
        b.compile().unwrap()
    };
    let v1 = parent(child(false));
    let asked = stopped(
        v1.run_with(Trace::default(), cfg(&store, "p"))
            .await
            .unwrap_err(),
    );
    // The child graph is changed (a node added) and the parent resumed, allowing the change.
    let v2 = parent(child(true));
    assert_ne!(v1.fingerprint(), v2.fingerprint());
    let result = v2
        .resume_with(
            "p",
            Resume::new().answer(&asked[0].id, 1),
            cfg(&store, "p").allow_graph_change(true),
        )
        .await;
    match result {
        Ok(state) => assert_eq!(state.count, 101),
        Err(e) => panic!("the permission did not reach the child run: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 7. DESIGN §2: "The nodes scheduled for a step (its tasks) all read the same snapshot". A
//    resume with a state edit re-runs the interrupted task on the edited state, but applies the
//    pending writes its siblings computed from the state before the edit.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn after_a_state_edit_the_tasks_of_one_step_read_one_snapshot() {
    let store = memory();
    let mut b = GraphBuilder::<Trace>::new();
    // Both nodes note the `last` they read.
    b.add_node("reader", |s: Arc<Trace>, _| async move {
        Ok(TraceUpdate::note(format!("reader saw {:?}", s.last)))
    })
    .add_node("asker", |s: Arc<Trace>, ctx: Context| async move {
        let _: bool = ctx.interrupt("ok?")?;
        Ok::<_, BoxError>(TraceUpdate::note(format!("asker saw {:?}", s.last)))
    })
    .add_edges(START, ["reader", "asker"])
    .add_edge("reader", END)
    .add_edge("asker", END);
    let g = b.compile().unwrap();
    let asked = stopped(
        g.run_with(
            Trace {
                last: "before".into(),
                ..Trace::default()
            },
            cfg(&store, "snap").mode(Mode::Sequential),
        )
        .await
        .unwrap_err(),
    );
    let resume = Resume::new()
        .answer(&asked[0].id, true)
        .update(TraceUpdate::new().last("edited".into()));
    let state = g
        .resume_with("snap", resume, cfg(&store, "snap").mode(Mode::Sequential))
        .await
        .unwrap();
    let seen: Vec<&str> = state
        .log
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "the tasks of one step read different snapshots: {:?}",
        state.log
    );
}

/// A child run is found by its id alone (`{run}/{node}/{task id}`, all derived from the parent's
/// run id), so a child left by an earlier parent of the same id is taken for this parent's own.
/// With `Durability::Exit` a crash loses the whole parent ("a crash loses the whole run"), but
/// the child, which completed, wrote itself at its end: a new run under the same id (with a
/// different input) gets the old child's result without running the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_never_takes_the_child_runs_of_a_lost_run_of_the_same_id() {
    let store = memory();
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let waiting = Arc::new(Notify::new());
    let mut child = GraphBuilder::<Inner>::new();
    child
        .add_node("add_ten", |_, _| async { Ok(InnerUpdate::new().n(10)) })
        .add_edge(START, "add_ten")
        .add_edge("add_ten", END);
    let mut b = GraphBuilder::<Trace>::new();
    let (h, w) = (hang.clone(), waiting.clone());
    b.add_subgraph(
        "sub",
        child.compile().unwrap(),
        |t: &Trace| Inner { n: t.count },
        |c: Inner| TraceUpdate::new().last(c.n.to_string()),
    )
    .add_node("after", move |_, _| {
        let (hang, waiting) = (h.clone(), w.clone());
        async move {
            if hang.load(std::sync::atomic::Ordering::SeqCst) {
                waiting.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(TraceUpdate::new())
        }
    })
    .add_edge(START, "sub")
    .add_edge("sub", "after")
    .add_edge("after", END);
    let g = b.compile().unwrap();
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("job")
            .durability(Durability::Exit)
    };
    let one = Trace {
        count: 1,
        ..Trace::default()
    };
    crash_when(g.run_with(one, config()), &waiting).await;
    assert!(
        store.get_run("job").await.unwrap().is_none(),
        "Exit durability: the crashed run left nothing"
    );

    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let five = Trace {
        count: 5,
        ..Trace::default()
    };
    let state = g.run_with(five, config()).await.unwrap();
    assert_eq!(
        state.last, "15",
        "the subgraph's result belongs to another run's input"
    );
}
