//! `FallbackLayer`: the fallback runs on failure (or a rejected result), gets the cause, and
//! its update and go-to stand for the wrapped node's; interrupts and errors its predicate
//! leaves out are not caught.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentgraph_engine::{
    BoxError, Command, Context, END, Error as EngineError, GraphBuilder, Layer, Mode, Node,
    NodeBuilder, Packet, Route, RunConfig, START, async_node,
};
use agentgraph_layers::{FallbackCause, FallbackLayer, with_cause};
use common::{Tally, TallyUpdate};

fn failing(message: &'static str) -> impl Node<Tally> {
    async_node(move |_: Arc<Tally>, _| async move { Err::<TallyUpdate, BoxError>(message.into()) })
}

fn graph_of(node: impl Node<Tally>) -> agentgraph_engine::CompiledGraph<Tally> {
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", node)
        .add_edge(START, "call")
        .add_edge("call", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn the_fallbacks_update_is_merged_as_the_nodes() {
    let backup = async_node(|s: Arc<Tally>, ctx: Context| async move {
        Ok(TallyUpdate::note(format!("backup for {} ({})", ctx.node(), s.query)).calls(1))
    });
    let graph = graph_of(
        NodeBuilder::new()
            .layer(FallbackLayer::new(backup))
            .node(failing("down")),
    );
    let input = Tally {
        query: "q".into(),
        calls: 10,
        ..Tally::default()
    };
    let done = graph.invoke(input).await.unwrap();
    assert_eq!(done.log, ["backup for call (q)"]);
    assert_eq!(done.calls, 11, "merged through the field's reducer");
}

#[tokio::test]
async fn a_node_that_succeeds_never_calls_its_fallback() {
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let backup = async_node(move |_: Arc<Tally>, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok(TallyUpdate::note("backup")) }
    });
    let ok = async_node(|_: Arc<Tally>, _| async { Ok(TallyUpdate::note("primary")) });
    let graph = graph_of(FallbackLayer::new(backup).layer(ok));
    assert_eq!(
        graph.invoke(Tally::default()).await.unwrap().log,
        ["primary"]
    );
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn with_cause_sees_the_error() {
    #[derive(Debug, thiserror::Error)]
    #[error("quota exceeded, retry in {0} s")]
    struct Quota(u64);

    let primary =
        async_node(|_: Arc<Tally>, _| async { Err::<TallyUpdate, BoxError>(Quota(42).into()) });
    let backup = with_cause(
        |_: Arc<Tally>, _: Context, cause: FallbackCause<Tally>| async move {
            let quota = cause
                .error()
                .and_then(|e| e.downcast_ref::<Quota>())
                .map(|q| q.0);
            Ok(TallyUpdate::note(format!("retry in {quota:?}")))
        },
    );
    let graph = graph_of(FallbackLayer::from_fallback(backup).layer(primary));
    assert_eq!(
        graph.invoke(Tally::default()).await.unwrap().log,
        ["retry in Some(42)"]
    );
}

#[tokio::test]
async fn on_error_chooses_which_errors_fall_back() {
    let backup = async_node(|_: Arc<Tally>, _| async { Ok(TallyUpdate::note("backup")) });
    let layer = FallbackLayer::new(backup).on_error(|e| e.to_string().contains("503"));
    let graph = graph_of(layer.clone().layer(failing("503 unavailable")));
    assert_eq!(
        graph.invoke(Tally::default()).await.unwrap().log,
        ["backup"]
    );
    let graph = graph_of(layer.layer(failing("400 bad request")));
    match graph.invoke(Tally::default()).await {
        Err(EngineError::NodeFailed { source, .. }) => {
            assert_eq!(source.to_string(), "400 bad request")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn on_result_rejects_a_result_and_hands_it_to_the_fallback() {
    let empty = async_node(|_: Arc<Tally>, _| async { Ok(TallyUpdate::new().calls(0)) });
    let backup = with_cause(
        |_: Arc<Tally>, _: Context, cause: FallbackCause<Tally>| async move {
            let FallbackCause::Rejected(cmd) = cause else {
                panic!("a rejected result")
            };
            Ok(TallyUpdate::note(format!(
                "rejected calls={:?}",
                cmd.update().calls
            )))
        },
    );
    let layer = FallbackLayer::from_fallback(backup)
        .on_result(|c: &Command<Tally>| c.update().calls == Some(0));
    let graph = graph_of(layer.layer(empty));
    assert_eq!(
        graph.invoke(Tally::default()).await.unwrap().log,
        ["rejected calls=Some(0)"]
    );
}

#[tokio::test]
async fn a_failing_fallback_fails_the_task_with_its_own_error() {
    let graph = graph_of(FallbackLayer::new(failing("backup down too")).layer(failing("down")));
    match graph.invoke(Tally::default()).await {
        Err(EngineError::NodeFailed { source, .. }) => {
            assert_eq!(source.to_string(), "backup down too")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_fallbacks_go_to_is_followed_as_the_nodes() {
    let backup = async_node(|_: Arc<Tally>, _| async {
        Ok(Command::new(TallyUpdate::note("backup")).goto("apologise"))
    });
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", FallbackLayer::new(backup).layer(failing("down")))
        .add_node("apologise", |_, _| async { Ok(TallyUpdate::note("sorry")) })
        .add_node("next", |_, _| async { Ok(TallyUpdate::note("next")) })
        .add_edge(START, "call")
        .add_edge("call", "next")
        .add_goto_edges("call", ["apologise"])
        .add_edge("apologise", END)
        .add_edge("next", END);
    let done = b.compile().unwrap().invoke(Tally::default()).await.unwrap();
    assert_eq!(done.log, ["backup", "sorry"]);
}

#[tokio::test]
async fn an_interrupt_is_not_caught() {
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let backup = async_node(move |_: Arc<Tally>, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok(TallyUpdate::note("backup")) }
    });
    let asks = async_node(|_: Arc<Tally>, ctx: Context| async move {
        let answer: String = ctx.interrupt("approve?")?;
        Ok(TallyUpdate::note(answer))
    });
    let graph = graph_of(FallbackLayer::new(backup).layer(asks));
    match graph.invoke(Tally::default()).await {
        Err(EngineError::Interrupted(stop)) => assert_eq!(stop.interrupts[0].payload, "approve?"),
        other => panic!("{other:?}"),
    }
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_packet_tasks_fallback_reads_the_packet() {
    let backup = async_node(|_: Arc<Tally>, ctx: Context| async move {
        let i: u32 = ctx.input()?;
        Ok(TallyUpdate::note(format!("backup {i}")))
    });
    let flaky = async_node(|_: Arc<Tally>, ctx: Context| async move {
        let i: u32 = ctx.input()?;
        if i.is_multiple_of(2) {
            Ok(TallyUpdate::note(format!("primary {i}")))
        } else {
            Err(format!("{i} failed").into())
        }
    });
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", FallbackLayer::new(backup).layer(flaky))
        .add_conditional_edges(START, ["call"], |_: &Tally| {
            Route::packets((0..4u32).map(|i| Packet::new("call", &i)))
        })
        .add_edge("call", END);
    let done = b
        .compile()
        .unwrap()
        .run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel))
        .await
        .unwrap();
    assert_eq!(done.log, ["primary 0", "backup 1", "primary 2", "backup 3"]);
}
