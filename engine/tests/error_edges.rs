//! Error edges (`GraphBuilder::on_error`): a node's final failure routes to a handler that
//! gets the failure as its input, instead of failing the run; checkpointed like any result.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, EdgeKind, Error, Event, EventKind, GraphBuilder,
    GraphError, Mode, NodeFailure, PendingStatus, RetryPolicy, RunConfig, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate, crash_when, logger, memory, sync_cfg};
use futures_util::StreamExt;
use tokio::sync::Notify;

const MODES: [Mode; 2] = [Mode::Sequential, Mode::Parallel];

fn no_wait(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts).backoff(Duration::ZERO, Duration::ZERO)
}

/// A handler that logs the failure it is given.
async fn handler(_: Arc<Trace>, ctx: Context) -> Result<TraceUpdate, BoxError> {
    let f: NodeFailure = ctx.input()?;
    Ok(TraceUpdate::note(format!(
        "{} caught {}: {} after {}",
        ctx.node(),
        f.node,
        f.error,
        f.attempts
    )))
}

/// `START -> [a, flaky, c]`, `flaky` failing every attempt (3, retried) and caught by
/// `fallback`; `flaky -> after` is never taken.
fn fan_out(calls: &Calls) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    logger(&mut b, "c");
    logger(&mut b, "after");
    let counted = calls.clone();
    b.add_node("flaky", move |_, _| {
        counted.hit("flaky");
        async { Err::<TraceUpdate, BoxError>("boom".into()) }
    })
    .add_node("fallback", handler)
    .retry("flaky", no_wait(3))
    .on_error("flaky", "fallback")
    .add_edges(START, ["a", "flaky", "c"])
    .add_edge("a", END)
    .add_edge("c", END)
    .add_edge("flaky", "after")
    .add_edge("after", END)
    .add_edge("fallback", END);
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_failure_after_retries_goes_to_its_handler() {
    let mut finals = Vec::new();
    for mode in MODES {
        let calls = Calls::default();
        let graph = fan_out(&calls);
        let run = graph.run_with(Trace::default(), RunConfig::new().mode(mode));
        let events = run.events();
        let done = run.await.expect("the failure is caught: the run completes");
        let events: Vec<Event> = events.map(Result::unwrap).collect().await;
        assert_eq!(calls.get("flaky"), 3, "{mode:?}: its retries first");
        assert_eq!(
            done.log,
            ["a", "c", "fallback caught flaky: boom after 3"],
            "{mode:?}: the failed task writes nothing, `after` never runs"
        );
        let routed: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ErrorRouted {
                    step,
                    node,
                    handler,
                    error,
                    ..
                } => Some((*step, node.to_string(), handler.to_string(), error.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            routed,
            [(1, "flaky".into(), "fallback".into(), "boom".into())]
        );
        let failed = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::NodeFailed { .. }))
            .count();
        assert_eq!(failed, 3, "every attempt's failure is an event");
        finals.push(done);
    }
    assert_eq!(finals[0], finals[1], "sequential and parallel modes agree");
}

#[tokio::test]
async fn a_handler_reached_only_by_its_error_edge_compiles_and_runs_once() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("charge", |_, _| async {
        Err::<TraceUpdate, BoxError>("card declined".into())
    })
    .add_node("refund", handler)
    .on_error("charge", "refund")
    .add_edge(START, "charge")
    .add_edge("charge", END)
    .add_edge("refund", END);
    let done = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!(done.log, ["refund caught charge: card declined after 1"]);
}

#[tokio::test]
async fn without_an_error_edge_the_run_fails_as_before() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("charge", |_, _| async {
        Err::<TraceUpdate, BoxError>("card declined".into())
    })
    .add_edge(START, "charge")
    .add_edge("charge", END);
    let e = b
        .compile()
        .unwrap()
        .invoke(Trace::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NodeFailed { ref node, .. } if node == "charge"));
}

#[tokio::test]
async fn interrupts_are_not_caught() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("ask", |_, ctx: Context| async move {
        let answer: String = ctx.interrupt(&"approve?")?;
        Ok(TraceUpdate::note(answer))
    })
    .add_node("fallback", handler)
    .on_error("ask", "fallback")
    .add_edge(START, "ask")
    .add_edge("ask", END)
    .add_edge("fallback", END);
    let e = b
        .compile()
        .unwrap()
        .invoke(Trace::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e:?}");
}

#[test]
fn an_unknown_handler_names_the_node_and_the_handler() {
    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    b.add_edge(START, "a")
        .add_edge("a", END)
        .on_error("a", "nope");
    let Err(GraphError::NoSuchHandler {
        setting,
        node,
        handler,
    }) = b.compile()
    else {
        panic!("an unknown handler does not compile");
    };
    assert_eq!(
        (setting, node.as_str(), handler.as_str()),
        ("on_error", "a", "nope")
    );
    let e = GraphError::NoSuchHandler {
        setting,
        node,
        handler,
    };
    assert!(e.to_string().contains("`a`") && e.to_string().contains("`nope`"));

    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    b.add_edge(START, "a")
        .add_edge("a", END)
        .on_error("ghost", "a");
    assert!(matches!(
        b.compile(),
        Err(GraphError::NoSuchNode {
            setting: "on_error",
            ..
        })
    ));
}

/// A caught failure finished while its sibling still ran is a stored pending write: after a
/// crash the failed node does not run again, and its handler runs.
#[tokio::test]
async fn a_caught_failure_is_checkpointed_and_resumed() {
    let store = memory();
    let calls = Calls::default();
    let reached = Arc::new(Notify::new());
    let make = |calls: &Calls, reached: &Arc<Notify>, hang: bool| {
        let mut b = GraphBuilder::<Trace>::new();
        let counted = calls.clone();
        b.add_node("flaky", move |_, _| {
            counted.hit("flaky");
            async { Err::<TraceUpdate, BoxError>("boom".into()) }
        });
        let reached = reached.clone();
        b.add_node("slow", move |_, _| {
            let reached = reached.clone();
            async move {
                if hang {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    reached.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok(TraceUpdate::note("slow"))
            }
        })
        .add_node("fallback", handler)
        .on_error("flaky", "fallback")
        .add_edges(START, ["flaky", "slow"])
        .add_edge("flaky", END)
        .add_edge("slow", END)
        .add_edge("fallback", END);
        b.compile().unwrap()
    };
    let graph = make(&calls, &reached, true);
    let config = || sync_cfg(&store, "caught").mode(Mode::Parallel);
    crash_when(graph.run_with(Trace::default(), config()), &reached).await;
    assert_eq!(calls.get("flaky"), 1);

    let history = graph.history(store.clone());
    let pending = history.pending("caught").await.unwrap();
    let flaky = pending.iter().find(|t| t.node == "flaky").expect("kept");
    assert_eq!(flaky.status, PendingStatus::Done);
    assert_eq!(flaky.written.as_deref(), Some(&[][..]), "it wrote nothing");

    let graph = make(&calls, &reached, false);
    let done = graph.resume("caught", config()).await.unwrap();
    assert_eq!(calls.get("flaky"), 1, "the caught failure is not run again");
    assert_eq!(done.log, ["slow", "fallback caught flaky: boom after 1"]);
    let record = history.run("caught").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Completed);
}

#[test]
fn dot_draws_error_and_compensation_edges() {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["book", "pay", "fallback", "unbook"] {
        logger(&mut b, name);
    }
    b.add_edge(START, "book")
        .add_edge("book", "pay")
        .add_edge("pay", END)
        .add_edge("fallback", END)
        .on_error("pay", "fallback")
        .compensate("book", "unbook");
    let graph = b.compile().unwrap();
    let description = graph.describe();
    let kinds: Vec<(&str, &str, EdgeKind)> = description
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.kind))
        .filter(|(_, _, k)| matches!(k, EdgeKind::Error | EdgeKind::Compensate))
        .collect();
    assert_eq!(
        kinds,
        [
            ("pay", "fallback", EdgeKind::Error),
            ("book", "unbook", EdgeKind::Compensate)
        ]
    );
    let dot = description.to_dot();
    assert!(
        dot.contains("    2 -> 3 [style=dashed, color=red, fontcolor=red, label=\"on error\"];"),
        "{dot}"
    );
    assert!(
        dot.contains(
            "    1 -> 4 [style=dotted, color=gray40, fontcolor=gray40, label=\"compensate\", constraint=false];"
        ),
        "{dot}"
    );
    // The edges are part of the graph's identity.
    let mut plain = GraphBuilder::<Trace>::new();
    for name in ["book", "pay", "fallback", "unbook"] {
        logger(&mut plain, name);
    }
    plain
        .add_edge(START, "book")
        .add_edge("book", "pay")
        .add_edge("pay", END)
        .add_edge("fallback", END)
        .add_edge("unbook", END)
        .add_edge(START, "fallback")
        .add_edge(START, "unbook");
    assert_ne!(plain.compile().unwrap().fingerprint(), graph.fingerprint());
}
