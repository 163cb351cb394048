//! `RateLimitLayer` lets a quota's burst through, holds the calls over it, shares its limiter
//! between the nodes of one layer value, and lets a cancelled waiter go without calling the
//! node.
//!
//! governor's limiter reads the real clock, so no test waits for a quota to refill and none
//! asserts an upper bound on time: a call over an hourly quota is held for an hour, far longer
//! than any test looks.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentgraph_engine::{
    Context, END, Error as EngineError, GraphBuilder, Layer, Mode, Node, Packet, Route, RunConfig,
    START, async_node,
};
use agentgraph_layers::{Limit, Quota, RateLimitLayer};
use common::{Report, Shielded, Tally, TallyUpdate};
use tokio::sync::mpsc;

fn per_hour(calls: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(calls).unwrap())
}

/// A node that reports each call on `tx`.
fn reporting_node(tx: mpsc::UnboundedSender<usize>) -> impl Node<Tally> {
    async_node(move |_: Arc<Tally>, ctx: Context| {
        let tx = tx.clone();
        async move {
            let i: usize = ctx.input()?;
            tx.send(i).unwrap();
            Ok(TallyUpdate::new().calls(1))
        }
    })
}

/// Waits for the next report, failing the test rather than hanging if none comes.
async fn next_call(rx: &mut mpsc::UnboundedReceiver<usize>) -> usize {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("a call within the burst never came")
        .unwrap()
}

/// Whether a call is reported within 200 ms.
async fn another_call_comes(rx: &mut mpsc::UnboundedReceiver<usize>) -> bool {
    tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burst_goes_through_and_the_next_call_waits() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with(
        "call",
        RateLimitLayer::new(per_hour(2)).layer(reporting_node(tx)),
    )
    .add_conditional_edges(START, ["call"], |_: &Tally| {
        Route::packets((0..3).map(|i| Packet::new("call", &i)))
    })
    .add_edge("call", END);
    let graph = b.compile().unwrap();
    let run = graph.run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel));

    tokio::select! {
        result = run => panic!("the run ended with a call over the quota held: {result:?}"),
        calls = async {
            let mut calls = vec![next_call(&mut rx).await, next_call(&mut rx).await];
            calls.sort_unstable();
            (calls, another_call_comes(&mut rx).await)
        } => {
            let (calls, third) = calls;
            assert_eq!(calls.len(), 2);
            assert!(!third, "the third call went through a quota of two an hour");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_layer_value_on_two_nodes_shares_its_quota() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shared = RateLimitLayer::new(per_hour(1));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("a", shared.layer(reporting_node(tx.clone())))
        .add_node_with("b", shared.clone().layer(reporting_node(tx)))
        .add_conditional_edges(START, ["a", "b"], |_: &Tally| {
            Route::packets([Packet::new("a", &0usize), Packet::new("b", &1usize)])
        })
        .add_edge("a", END)
        .add_edge("b", END);
    let graph = b.compile().unwrap();
    let run = graph.run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel));

    tokio::select! {
        result = run => panic!("both nodes ran on a shared quota of one: {result:?}"),
        second = async {
            next_call(&mut rx).await;
            another_call_comes(&mut rx).await
        } => assert!(!second, "the second node did not wait for the quota the first used"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_per_node_gives_each_node_its_own_quota() {
    // The control for the test above.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with(
        "a",
        RateLimitLayer::new(per_hour(1)).layer(reporting_node(tx.clone())),
    )
    .add_node_with(
        "b",
        RateLimitLayer::new(per_hour(1)).layer(reporting_node(tx)),
    )
    .add_conditional_edges(START, ["a", "b"], |_: &Tally| {
        Route::packets([Packet::new("a", &0usize), Packet::new("b", &1usize)])
    })
    .add_edge("a", END)
    .add_edge("b", END);
    let done = b.compile().unwrap().invoke(Tally::default()).await.unwrap();
    assert_eq!(done.calls, 2);
    let mut calls = vec![next_call(&mut rx).await, next_call(&mut rx).await];
    calls.sort_unstable();
    assert_eq!(calls, [0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_it_waits_does_not_call_the_node() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let limited = RateLimitLayer::new(per_hour(1)).layer(async_node(move |_: Arc<Tally>, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(TallyUpdate::new().calls(1)) }
    }));
    // Each call runs on a task of its own, which the engine does not drop: the waiting call
    // learns of the cancellation from its context.
    let (node, mut probe) = Shielded::new(limited);
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", node)
        .add_conditional_edges(START, ["call"], |_: &Tally| {
            Route::packets((0..2).map(|i| Packet::new("call", &i)))
        })
        .add_edge("call", END);
    let graph = b.compile().unwrap();
    let run = graph.run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel));
    let cancel = run.cancel_handle();
    let run = run.spawn();

    // The quota of one an hour lets one call through; the other waits.
    probe.started(2).await;
    assert_eq!(probe.next().await, Report::Done);
    cancel.cancel();
    assert!(matches!(run.await, Err(EngineError::Cancelled { .. })));
    assert_eq!(
        probe.next().await,
        Report::Cancelled {
            node: "call".into(),
            limit: Limit::Rate,
        }
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the cancelled call never called the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_spaced_by_the_quota() {
    // Measured, and bounded from below only: 20 a second in bursts of one spaces five calls
    // by at least four intervals of 50 ms, however fast or slow the machine is.
    let quota = Quota::per_second(NonZeroU32::new(20).unwrap()).allow_burst(NonZeroU32::MIN);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", RateLimitLayer::new(quota).layer(reporting_node(tx)))
        .add_conditional_edges(START, ["call"], |_: &Tally| {
            Route::packets((0..5).map(|i| Packet::new("call", &i)))
        })
        .add_edge("call", END);
    let started = Instant::now();
    let done = b
        .compile()
        .unwrap()
        .run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(done.calls, 5);
    assert_eq!((0..5).filter(|_| rx.try_recv().is_ok()).count(), 5);
    eprintln!("5 calls at 20/s, burst 1: {elapsed:?} (at least 200 ms by the quota)");
    // One interval of slack for clock granularity; the limiter's own guarantee is 200 ms.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
}
