//! How runs fail: write conflicts, node errors and panics, packets that cannot be encoded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, Command, CompiledGraph, END, Error, Event, EventKind, GraphBuilder,
    Mode, Packet, Route, RunConfig, RunStatus, START,
};
use common::{Trace, TraceUpdate, cfg, invoke_err, logger};
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;

const MODES: [Mode; 2] = [Mode::Sequential, Mode::Parallel];

async fn run_collect(g: &CompiledGraph<Trace>, mode: Mode) -> (Result<Trace, Error>, Vec<Event>) {
    let run = g.run_with(Trace::default(), RunConfig::new().mode(mode));
    let events = run.events();
    let result = run.await;
    (result, events.map(Result::unwrap).collect().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_an_overwrite_field_conflict() {
    let mut b = GraphBuilder::new();
    b.add_node("first", |_, _| async {
        Ok(TraceUpdate::note("first").last("first".into()))
    })
    .add_node("second", |_, _| async {
        Ok(TraceUpdate::note("second").last("second".into()))
    })
    .add_node("other", |_, _| async {
        Ok(TraceUpdate::note("other").count(1))
    })
    .add_edges(START, ["other", "second", "first"])
    .add_edge("first", END)
    .add_edge("second", END)
    .add_edge("other", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        let (result, events) = run_collect(&g, mode).await;
        let e = result.unwrap_err();
        match &e {
            Error::Conflict {
                field,
                first,
                second,
                step,
            } => assert_eq!(
                (*field, first.as_str(), second.as_str(), *step),
                ("last", "first", "second", 1)
            ),
            other => panic!("unexpected {other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("`first` and `second` both wrote field `last`"),
            "{text}"
        );
        assert!(text.contains("declare a reducer"), "{text}");
        // Nothing of the step was merged.
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.kind, EventKind::StateUpdated { .. }))
        );
        assert!(matches!(
            events.last().unwrap().kind,
            EventKind::RunFailed { step: 1, .. }
        ));
    }
}

#[tokio::test]
async fn reducer_fields_have_no_conflicts() {
    let mut b = GraphBuilder::new();
    for n in ["a", "b", "c"] {
        b.add_node(
            n,
            move |_, _| async move { Ok(TraceUpdate::note(n).count(2)) },
        );
        b.add_edge(START, n).add_edge(n, END);
    }
    let s = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!((s.log.len(), s.count), (3, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_lets_its_siblings_finish() {
    let slow_done = Arc::new(AtomicBool::new(false));
    let done = slow_done.clone();
    let mut b = GraphBuilder::new();
    b.add_node("fails", |_, _| async {
        Err::<TraceUpdate, BoxError>("the API said no".into())
    })
    .add_node("slow", move |_, _| {
        let done = done.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            done.store(true, Ordering::SeqCst);
            Ok(TraceUpdate::note("slow"))
        }
    })
    .add_node("after", |_, _| async { Ok(TraceUpdate::note("after")) })
    .add_edges(START, ["fails", "slow"])
    .add_edge("fails", "after")
    .add_edge("slow", "after")
    .add_edge("after", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        slow_done.store(false, Ordering::SeqCst);
        let (result, events) = run_collect(&g, mode).await;
        let e = result.unwrap_err();
        assert!(
            matches!(&e, Error::NodeFailed { node, step: 1, .. } if node == "fails"),
            "{e:?}"
        );
        assert!(e.to_string().contains("the API said no"), "{e}");
        let source = std::error::Error::source(&e).expect("the node's error is the source");
        assert_eq!(source.to_string(), "the API said no");
        assert!(
            slow_done.load(Ordering::SeqCst),
            "the sibling was not allowed to finish"
        );
        assert!(
            events.iter().any(
                |e| matches!(&e.kind, EventKind::NodeFinished { node, .. } if &**node == "slow")
            )
        );
        assert!(events.iter().any(|e| matches!(&e.kind, EventKind::NodeFailed { node, error, .. } if &**node == "fails" && error == "the API said no")));
        assert!(
            !events.iter().any(
                |e| matches!(&e.kind, EventKind::NodeStarted { node, .. } if &**node == "after")
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_become_errors_in_both_modes() {
    let mut b = GraphBuilder::new();
    b.add_node("boom", |_, _| async {
        if true {
            panic!("async kaboom");
        }
        Ok(TraceUpdate::default())
    })
    .add_cpu_node("crunch", |_, _| -> Result<TraceUpdate, BoxError> {
        panic!("cpu kaboom {}", 7)
    })
    .add_edges(START, ["boom", "crunch"])
    .add_edge("boom", END)
    .add_edge("crunch", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        let (result, events) = run_collect(&g, mode).await;
        match result.unwrap_err() {
            Error::NodePanicked {
                node,
                message,
                step,
                ..
            } => {
                assert_eq!(
                    (node.as_str(), message.as_str(), step),
                    ("boom", "async kaboom", 1)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(events.iter().any(|e| matches!(&e.kind, EventKind::NodeFailed { node, error, .. } if &**node == "crunch" && error.contains("cpu kaboom 7"))));
    }
}

struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot encode this"))
    }
}

#[tokio::test]
async fn unencodable_packets_fail_the_run() {
    let mut b = GraphBuilder::new();
    b.add_node("plan", |_, _| async { Ok(TraceUpdate::default()) })
        .add_node("work", |_, _| async { Ok(TraceUpdate::default()) })
        .add_edge(START, "plan")
        .add_conditional_edges("plan", ["work"], |_: &Trace| {
            Route::packets([Packet::new("work", &Unencodable)])
        })
        .add_edge("work", END);
    let e = invoke_err(b).await;
    assert!(
        matches!(&e, Error::PacketEncode { from, node, message } if from == "plan" && node == "work" && message.contains("cannot encode this")),
        "{e:?}"
    );
}

#[tokio::test]
async fn packets_must_target_declared_nodes() {
    let mut b = GraphBuilder::new();
    b.add_node("plan", |_, _| async { Ok(TraceUpdate::default()) })
        .add_node("work", |_, _| async { Ok(TraceUpdate::default()) })
        .add_node("other", |_, _| async { Ok(TraceUpdate::default()) })
        .add_edge(START, "plan")
        .add_edge(START, "other")
        .add_conditional_edges("plan", ["work"], |_: &Trace| Packet::new("other", &1u8))
        .add_edge("work", END)
        .add_edge("other", END);
    let e = invoke_err(b).await;
    assert!(
        matches!(&e, Error::UndeclaredTarget { target, .. } if target == "other"),
        "{e:?}"
    );
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
        logger(&mut b, "a");
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
    logger(&mut b, "y");
    logger(&mut b, "review");
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
    logger(&mut b, "q");
    b.add_edge(START, "p")
        .add_goto_edges("p", ["q"])
        .add_edge("q", END);
    let e = invoke_err(b).await;
    assert!(matches!(e, Error::PacketEncode { .. }), "{e:?}");
}
