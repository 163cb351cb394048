//! Compensations (`GraphBuilder::compensate`): when a run fails for good, the compensations of
//! the nodes that finished run in reverse order of completion, each once, each checkpointed
//! as a step of its own; a resume goes on with those still to run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgraph_engine::{
    BoxError, CheckpointStore, Compensation, CompiledGraph, Context, END, Error, Event, EventKind,
    GraphBuilder, Mode, RetryPolicy, RunConfig, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate, crash_when, memory, stores, sync_cfg};
use futures_util::StreamExt;
use tokio::sync::Notify;

const MODES: [Mode; 2] = [Mode::Sequential, Mode::Parallel];

fn no_wait(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts).backoff(Duration::ZERO, Duration::ZERO)
}

/// How the compensations behave.
#[derive(Clone, Default)]
struct Undo {
    calls: Calls,
    /// `undo_b` fails its first attempt.
    fail_b_once: Arc<AtomicBool>,
    /// `undo_a` signals, then hangs (a crash drops it), on its first attempt.
    hang_a: Option<Arc<Notify>>,
}

/// `START -> a -> b -> c -> END`, `c` failing every attempt (2, retried); `a`, `b` and `c`
/// have the compensations `undo_a`, `undo_b`, `undo_c`, which log `undo <node>`.
fn saga(undo: &Undo) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b"] {
        let calls = undo.calls.clone();
        b.add_node(name, move |_, _| {
            calls.hit(name);
            async move { Ok(TraceUpdate::note(name).count(1)) }
        });
    }
    let calls = undo.calls.clone();
    b.add_node("c", move |_, _| {
        calls.hit("c");
        async { Err::<TraceUpdate, BoxError>("payment refused".into()) }
    });
    for name in ["undo_a", "undo_b", "undo_c"] {
        let undo = undo.clone();
        b.add_node(name, move |state: Arc<Trace>, ctx: Context| {
            let n = undo.calls.hit(name);
            let undo = undo.clone();
            async move {
                let input: Compensation = ctx.input()?;
                if name == "undo_b" && undo.fail_b_once.swap(false, Ordering::SeqCst) {
                    return Err("the refund service is down".into());
                }
                if let (Some(reached), "undo_a", 1) = (&undo.hang_a, name, n) {
                    reached.notify_one();
                    std::future::pending::<()>().await;
                }
                // It reads the state the run failed with.
                assert_eq!(state.count, 2, "{name} sees a and b");
                Ok(TraceUpdate::note(format!(
                    "undo {} ({})",
                    input.node, input.error
                )))
            }
        });
    }
    b.add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END)
        .retry("c", no_wait(2))
        .compensate("a", "undo_a")
        .compensate("b", "undo_b")
        .compensate("c", "undo_c");
    b.compile().unwrap()
}

const CAUSE: &str = "node `c` failed at step 3";

fn expect_compensated(e: Error, cause: bool) -> Vec<String> {
    match e {
        Error::Compensated {
            error,
            compensated,
            cause: c,
        } => {
            assert!(error.starts_with(CAUSE), "{error}");
            assert_eq!(
                c.is_some(),
                cause,
                "the cause is held by the invocation that saw it"
            );
            if let Some(c) = c {
                assert!(
                    matches!(*c, Error::NodeFailed { ref node, attempts: 2, .. } if node == "c")
                );
            }
            compensated
        }
        other => panic!("expected a compensated failure, got {other:?}"),
    }
}

fn undone(log: &[String]) -> Vec<&str> {
    log.iter()
        .filter(|l| l.starts_with("undo"))
        .map(|l| l.split(" (").next().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_step_saga_compensates_in_reverse_once() {
    for mode in MODES {
        // Without a store.
        let undo = Undo::default();
        let run = saga(&undo).run_with(Trace::default(), RunConfig::new().mode(mode));
        let events = run.events();
        let e = run.await.unwrap_err();
        assert!(e.to_string().contains("undid b, a"), "{e}");
        assert_eq!(expect_compensated(e, true), ["b", "a"]);
        for (node, n) in [("a", 1), ("b", 1), ("c", 2), ("undo_b", 1), ("undo_a", 1)] {
            assert_eq!(undo.calls.get(node), n, "{mode:?}: {node}");
        }
        assert_eq!(undo.calls.get("undo_c"), 0, "c never finished");
        let events: Vec<Event> = events.map(Result::unwrap).collect().await;
        let started: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::CompensationStarted { step, error, nodes } => Some((
                    *step,
                    error.starts_with(CAUSE),
                    nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(started, [(3, true, vec!["b".to_owned(), "a".to_owned()])]);
        let steps: Vec<(u64, String)> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StepStarted { step, tasks } => Some((*step, tasks[0].node.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(
            steps,
            [
                (1, "a".into()),
                (2, "b".into()),
                (3, "c".into()),
                (4, "undo_b".into()),
                (5, "undo_a".into())
            ]
        );
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(EventKind::RunFailed { step: 5, .. })
        ));
    }

    // With stores: checkpointed, ended Failed, and a resume finds nothing to do.
    for (store, _dir) in stores() {
        for mode in MODES {
            let undo = Undo::default();
            let graph = saga(&undo);
            let id = format!("saga-{mode:?}");
            let config = || RunConfig::new().store(store.clone()).run_id(&id).mode(mode);
            let e = graph
                .run_with(Trace::default(), config())
                .await
                .unwrap_err();
            assert_eq!(expect_compensated(e, true), ["b", "a"]);
            let history = graph.history(store.clone());
            let record = history.run(&id).await.unwrap().unwrap();
            assert_eq!(record.status, RunStatus::Failed);
            assert!(record.error.unwrap().contains("undid b, a"));
            let steps: Vec<u64> = history
                .checkpoints(&id)
                .await
                .unwrap()
                .iter()
                .map(|c| c.step)
                .collect();
            assert_eq!(
                steps,
                [0, 1, 2, 3, 4, 5],
                "the failure, then one step per compensation"
            );
            let state = history.state(&id, None).await.unwrap();
            assert_eq!(
                undone(&state.log),
                ["undo b", "undo a"],
                "each compensation's update is merged"
            );
            assert_eq!(state.log[..2], ["a", "b"]);

            let e = graph.resume(&id, config()).await.unwrap_err();
            assert_eq!(expect_compensated(e, false), ["b", "a"]);
            for (node, n) in [("a", 1), ("b", 1), ("c", 2), ("undo_b", 1), ("undo_a", 1)] {
                assert_eq!(undo.calls.get(node), n, "the resume ran nothing: {node}");
            }
            let record = history.run(&id).await.unwrap().unwrap();
            assert_eq!(record.status, RunStatus::Failed);
            assert_eq!(history.checkpoints(&id).await.unwrap().len(), 6);
        }
    }
}

#[tokio::test]
async fn a_compensation_that_fails_stops_the_run_and_resumes_where_it_stopped() {
    let store = memory();
    let undo = Undo::default();
    undo.fail_b_once.store(true, Ordering::SeqCst);
    let graph = saga(&undo);
    let config = || sync_cfg(&store, "refund");
    let e = graph
        .run_with(Trace::default(), config())
        .await
        .unwrap_err();
    let Error::CompensationFailed {
        error,
        node,
        compensation,
        source,
    } = e
    else {
        panic!("expected a failed compensation, got {e:?}");
    };
    assert!(error.starts_with(CAUSE));
    assert_eq!((node.as_str(), compensation.as_str()), ("b", "undo_b"));
    assert!(source.to_string().contains("the refund service is down"));
    assert_eq!(
        undo.calls.get("undo_a"),
        0,
        "the compensations after it wait"
    );
    let history = graph.history(store.clone());
    assert_eq!(
        history.run("refund").await.unwrap().unwrap().status,
        RunStatus::Failed
    );

    // Resumed: `undo_b` runs again (fresh attempts), then `undo_a`; nothing before them.
    let e = graph.resume("refund", config()).await.unwrap_err();
    assert_eq!(expect_compensated(e, false), ["b", "a"]);
    for (node, n) in [("a", 1), ("b", 1), ("c", 2), ("undo_b", 2), ("undo_a", 1)] {
        assert_eq!(undo.calls.get(node), n, "{node}");
    }
    let state = history.state("refund", None).await.unwrap();
    assert_eq!(undone(&state.log), ["undo b", "undo a"]);
}

#[tokio::test]
async fn a_compensation_is_retried_by_its_policy() {
    let undo = Undo::default();
    undo.fail_b_once.store(true, Ordering::SeqCst);
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_node("b", |_, _| async {
            Err::<TraceUpdate, BoxError>("no".into())
        })
        .add_node("undo_a", |_, _| async {
            Err::<TraceUpdate, BoxError>("flaky".into())
        })
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", END)
        .retry("undo_a", no_wait(3))
        .compensate("a", "undo_a");
    let e = b
        .compile()
        .unwrap()
        .invoke(Trace::default())
        .await
        .unwrap_err();
    let Error::CompensationFailed { source, .. } = e else {
        panic!("{e:?}");
    };
    assert!(matches!(*source, Error::NodeFailed { attempts: 3, .. }));
}

/// A crash in the middle of the compensations: the resume goes on with those still to run,
/// and never runs a finished one again.
#[tokio::test]
async fn a_crash_during_compensation_resumes_with_the_rest() {
    for mode in MODES {
        let store = memory();
        let reached = Arc::new(Notify::new());
        let undo = Undo {
            hang_a: Some(reached.clone()),
            ..Undo::default()
        };
        let graph = saga(&undo);
        let config = || sync_cfg(&store, "crash").mode(mode);
        crash_when(graph.run_with(Trace::default(), config()), &reached).await;
        assert_eq!(undo.calls.get("undo_b"), 1);
        assert_eq!(undo.calls.get("undo_a"), 1, "started, then the crash");
        // Let the dropped run release its lease.
        tokio::time::sleep(Duration::from_millis(20)).await;

        let e = graph.resume("crash", config()).await.unwrap_err();
        assert_eq!(expect_compensated(e, false), ["b", "a"]);
        for (node, n) in [("a", 1), ("b", 1), ("c", 2), ("undo_b", 1), ("undo_a", 2)] {
            assert_eq!(undo.calls.get(node), n, "{mode:?}: {node}");
        }
        let state = graph
            .history(store.clone())
            .state("crash", None)
            .await
            .unwrap();
        assert_eq!(
            undone(&state.log),
            ["undo b", "undo a"],
            "each compensation's update is merged once"
        );
    }
}

/// `START -> a -> [b, c]`, `c` fails while `b` finishes: `b` finished in the failing step, so
/// it is compensated first; nodes compensated in reverse task order within a step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_siblings_of_the_failing_step_are_compensated_in_reverse_task_order() {
    let build = || {
        let mut b = GraphBuilder::<Trace>::new();
        for name in ["a", "b", "p", "q"] {
            b.add_node(name, move |_, _| async move { Ok(TraceUpdate::note(name)) });
        }
        b.add_node("c", |_, _| async {
            Err::<TraceUpdate, BoxError>("down".into())
        });
        for name in ["a", "b", "p", "q"] {
            let undo = format!("undo_{name}");
            b.add_node(undo.clone(), move |_, _| {
                let undo = undo.clone();
                async move { Ok(TraceUpdate::note(undo)) }
            })
            .compensate(name, &format!("undo_{name}"));
        }
        b.add_edges(START, ["p", "q"])
            .add_join(["p", "q"], "a")
            .add_edges("a", ["b", "c"])
            .add_edge("b", END)
            .add_edge("c", END);
        b.compile().unwrap()
    };
    let mut logs = Vec::new();
    for mode in MODES {
        let e = build()
            .run_with(Trace::default(), RunConfig::new().mode(mode))
            .await
            .unwrap_err();
        let Error::Compensated { compensated, .. } = e else {
            panic!("{e:?}");
        };
        assert_eq!(compensated, ["b", "a", "q", "p"], "{mode:?}");
        logs.push(compensated);
    }
    assert_eq!(logs[0], logs[1]);
}

#[tokio::test]
async fn a_node_that_finished_twice_is_compensated_once() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("book", |_, _| async { Ok(TraceUpdate::new().count(1)) })
        .add_node("fail", |_, _| async {
            Err::<TraceUpdate, BoxError>("no".into())
        })
        .add_node("unbook", |_, _| async { Ok(TraceUpdate::note("unbook")) })
        .add_edge(START, "book")
        .add_conditional_edges("book", ["book", "fail"], |s: &Trace| {
            if s.count < 3 { "book" } else { "fail" }
        })
        .add_edge("fail", END)
        .compensate("book", "unbook");
    let e = b
        .compile()
        .unwrap()
        .invoke(Trace::default())
        .await
        .unwrap_err();
    let Error::Compensated { compensated, .. } = e else {
        panic!("{e:?}");
    };
    assert_eq!(compensated, ["book"]);
}

#[tokio::test]
async fn cancellation_compensates_only_when_asked() {
    for compensate in [false, true] {
        let store: Arc<dyn CheckpointStore> = memory();
        let calls = Calls::default();
        let started = Arc::new(Notify::new());
        let mut b = GraphBuilder::<Trace>::new();
        b.add_node("book", |_, _| async { Ok(TraceUpdate::note("book")) });
        let s = started.clone();
        b.add_node("wait", move |_, _| {
            let s = s.clone();
            async move {
                s.notify_one();
                std::future::pending::<()>().await;
                Ok(TraceUpdate::new())
            }
        });
        let c = calls.clone();
        b.add_node("unbook", move |_, _| {
            c.hit("unbook");
            async { Ok(TraceUpdate::note("unbook")) }
        })
        .add_edge(START, "book")
        .add_edge("book", "wait")
        .add_edge("wait", END)
        .compensate("book", "unbook");
        let graph = b.compile().unwrap();
        let run = graph.run_with(
            Trace::default(),
            sync_cfg(&store, "cancel").compensate_on_cancel(compensate),
        );
        let cancel = run.cancel_handle();
        let run = run.spawn();
        started.notified().await;
        cancel.cancel();
        let e = run.await.unwrap_err();
        let status = graph
            .history(store.clone())
            .run("cancel")
            .await
            .unwrap()
            .unwrap()
            .status;
        if compensate {
            let Error::Compensated { cause, .. } = e else {
                panic!("{e:?}");
            };
            assert!(matches!(cause.as_deref(), Some(Error::Cancelled { .. })));
            assert_eq!(calls.get("unbook"), 1);
            assert_eq!(status, RunStatus::Failed);
        } else {
            assert!(matches!(e, Error::Cancelled { .. }), "{e:?}");
            assert_eq!(calls.get("unbook"), 0);
            assert_eq!(status, RunStatus::Cancelled);
        }
    }
}

/// A failure caught by an error edge is not a failure of the run: nothing is compensated.
#[tokio::test]
async fn a_caught_failure_compensates_nothing() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("book", |_, _| async { Ok(TraceUpdate::note("book")) })
        .add_node("pay", |_, _| async {
            Err::<TraceUpdate, BoxError>("no".into())
        })
        .add_node("apologize", |_, _| async { Ok(TraceUpdate::note("sorry")) })
        .add_node("unbook", |_, _| async { Ok(TraceUpdate::note("unbook")) })
        .add_edge(START, "book")
        .add_edge("book", "pay")
        .add_edge("pay", END)
        .add_edge("apologize", END)
        .on_error("pay", "apologize")
        .compensate("book", "unbook")
        .compensate("pay", "unbook");
    let done = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!(done.log, ["book", "sorry"]);
}

/// A compensation that stops at an interrupt stops the run (`Interrupted`); answered, the
/// run goes on with it and the compensations after it.
#[tokio::test]
async fn a_compensation_may_ask_before_it_undoes() {
    let store = memory();
    let calls = Calls::default();
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_node("b", |_, _| async { Ok(TraceUpdate::note("b")) })
        .add_node("c", |_, _| async {
            Err::<TraceUpdate, BoxError>("no".into())
        });
    let counted = calls.clone();
    b.add_node("undo_b", move |_, ctx: Context| {
        counted.hit("undo_b");
        async move {
            let refund: bool = ctx.interrupt(&"refund b?")?;
            Ok(TraceUpdate::note(format!("undo b: {refund}")))
        }
    });
    let counted = calls.clone();
    b.add_node("undo_a", move |_, _| {
        counted.hit("undo_a");
        async { Ok(TraceUpdate::note("undo a")) }
    })
    .add_edge(START, "a")
    .add_edge("a", "b")
    .add_edge("b", "c")
    .add_edge("c", END)
    .compensate("a", "undo_a")
    .compensate("b", "undo_b");
    let graph = b.compile().unwrap();
    let config = || sync_cfg(&store, "ask");
    let e = graph
        .run_with(Trace::default(), config())
        .await
        .unwrap_err();
    let Error::Interrupted(stop) = e else {
        panic!("{e:?}");
    };
    assert_eq!(stop.interrupts[0].node, "undo_b");
    assert_eq!(stop.step, 4, "after the failure's checkpoint (3)");
    assert_eq!(calls.get("undo_a"), 0);
    let history = graph.history(store.clone());
    assert_eq!(
        history.run("ask").await.unwrap().unwrap().status,
        RunStatus::Interrupted
    );

    let e = graph
        .resume_with("ask", agentgraph_engine::Resume::value(true), config())
        .await
        .unwrap_err();
    let Error::Compensated { compensated, .. } = e else {
        panic!("{e:?}");
    };
    assert_eq!(compensated, ["b", "a"]);
    assert_eq!((calls.get("undo_b"), calls.get("undo_a")), (2, 1));
    let state = history.state("ask", None).await.unwrap();
    assert_eq!(state.log, ["a", "b", "undo b: true", "undo a"]);
}
