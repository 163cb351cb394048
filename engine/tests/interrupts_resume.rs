//! Interrupts across resumes and crashes: an `interrupt_before` gate is passed once, answers
//! survive a crash during a retry of the answered node, a resume with an unknown interrupt id
//! leaves the run waiting, `GraphHistory::interrupts` lists only the gates still ahead, and the
//! tasks of a step read one snapshot after a state edit. Crashes are simulated by dropping a
//! run whose node waits forever, after a `Notify` says the point of interest is reached.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, Error, GraphBuilder, Interrupt, InterruptKind, Mode,
    Resume, RetryPolicy, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate, crash_when, memory, stopped, sync_cfg};
use tokio::sync::Notify;

fn kinds(interrupts: &[Interrupt]) -> Vec<(InterruptKind, &str)> {
    interrupts
        .iter()
        .map(|i| (i.kind, i.node.as_str()))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("the service said 503")]
struct Unavailable;

/// Where a node's process dies: while armed, a node that gets there says so (`reached`) and
/// waits forever, for [`crash_when`] to drop its run.
#[derive(Clone)]
struct CrashPoint {
    reached: Arc<Notify>,
    armed: Arc<AtomicBool>,
}

impl CrashPoint {
    /// An armed crash point.
    fn new() -> Self {
        CrashPoint {
            reached: Arc::new(Notify::new()),
            armed: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Crashes here while armed; returns at once otherwise.
    async fn pass(&self) {
        if self.armed.load(Ordering::SeqCst) {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
    }

    /// From now on nodes pass this point, as in the process that resumes the run.
    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

/// A retry policy with a 1 ms delay.
fn quick_retry() -> RetryPolicy {
    RetryPolicy::new(5)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .jitter(false)
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
        g.run_with(Trace::default(), sync_cfg(&store, "gq"))
            .await
            .unwrap_err(),
    );
    assert_eq!(kinds(&first), [(InterruptKind::Before, "review")]);
    // Passing the gate runs the node, which asks its question.
    let asked = stopped(g.resume("gq", sync_cfg(&store, "gq")).await.unwrap_err());
    assert_eq!(kinds(&asked), [(InterruptKind::Node, "review")]);
    assert_eq!(calls.get("review"), 1);

    // Answering it must run the node with the answer: the gate was passed already.
    let resume = Resume::new().answer(&asked[0].id, "approved");
    match g.resume_with("gq", resume, sync_cfg(&store, "gq")).await {
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
        g.run_with(Trace::default(), sync_cfg(&store, "gq2"))
            .await
            .unwrap_err(),
    );
    let asked = stopped(g.resume("gq2", sync_cfg(&store, "gq2")).await.unwrap_err());
    let resume = Resume::new().answer(&asked[0].id, "approved");
    let mut outcome = g.resume_with("gq2", resume, sync_cfg(&store, "gq2")).await;
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
        outcome = g.resume("gq2", sync_cfg(&store, "gq2")).await;
    }
    panic!("never finished: {:?}", outcome.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_node_killed_during_its_retries_resumes_at_its_next_attempt_not_its_gate() {
    let store = memory();
    let calls = Calls::default();
    let second_attempt = CrashPoint::new();
    let mut b = GraphBuilder::<Trace>::new();
    let (c, crash) = (calls.clone(), second_attempt.clone());
    b.add_node("act", move |_, ctx: Context| {
        c.hit("act");
        let crash = crash.clone();
        async move {
            match ctx.attempt() {
                1 => Err::<TraceUpdate, BoxError>(Box::new(Unavailable)),
                n => {
                    crash.pass().await;
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
        g.run_with(Trace::default(), sync_cfg(&store, "gr"))
            .await
            .unwrap_err(),
    );
    assert_eq!(kinds(&first), [(InterruptKind::Before, "act")]);
    // Passed: attempt 1 fails, the retry is persisted, attempt 2 runs and the process dies.
    crash_when(
        g.resume("gr", sync_cfg(&store, "gr")),
        &second_attempt.reached,
    )
    .await;
    assert_eq!(calls.get("act"), 2);

    second_attempt.disarm();
    let result = g.resume("gr", sync_cfg(&store, "gr")).await;
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
    let second_attempt = CrashPoint::new();
    let mut b = GraphBuilder::<Trace>::new();
    let (c, crash) = (calls.clone(), second_attempt.clone());
    b.add_node("ask", move |_, ctx: Context| {
        c.hit("ask");
        let crash = crash.clone();
        async move {
            let name: String = ctx.interrupt("name?")?;
            // With its answer, the node calls a flaky service: the first call fails.
            if ctx.attempt() == 1 {
                return Err::<TraceUpdate, BoxError>(Box::new(Unavailable));
            }
            crash.pass().await;
            Ok(TraceUpdate::note(name))
        }
    })
    .retry("ask", quick_retry())
    .add_edge(START, "ask")
    .add_edge("ask", END);
    let g = b.compile().unwrap();
    let asked = stopped(
        g.run_with(Trace::default(), sync_cfg(&store, "ar"))
            .await
            .unwrap_err(),
    );
    let resume = Resume::new().answer(&asked[0].id, "Ada");
    crash_when(
        g.resume_with("ar", resume, sync_cfg(&store, "ar")),
        &second_attempt.reached,
    )
    .await;

    second_attempt.disarm();
    match g.resume("ar", sync_cfg(&store, "ar")).await {
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
        g.run_with(Trace::default(), sync_cfg(&store, "typo"))
            .await
            .unwrap_err(),
    );
    let e = g
        .resume_with(
            "typo",
            Resume::new().answer("no-such-id", true),
            sync_cfg(&store, "typo"),
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
        g.run_with(Trace::default(), sync_cfg(&store, "stale"))
            .await
            .unwrap_err(),
    );
    assert_eq!(kinds(&first), [(InterruptKind::After, "draft")]);
    let second = stopped(
        g.resume("stale", sync_cfg(&store, "stale"))
            .await
            .unwrap_err(),
    );
    assert_eq!(kinds(&second), [(InterruptKind::Before, "review")]);
    let listed = g.history(store.clone()).interrupts("stale").await.unwrap();
    assert_eq!(
        kinds(&listed),
        kinds(&second),
        "GraphHistory::interrupts lists a gate the run already passed"
    );
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
            sync_cfg(&store, "snap").mode(Mode::Sequential),
        )
        .await
        .unwrap_err(),
    );
    let resume = Resume::new()
        .answer(&asked[0].id, true)
        .update(TraceUpdate::new().last("edited".into()));
    let state = g
        .resume_with(
            "snap",
            resume,
            sync_cfg(&store, "snap").mode(Mode::Sequential),
        )
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
