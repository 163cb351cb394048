//! `ConcurrencyLimitLayer` bounds the calls in flight, per layer value, for async and CPU-bound
//! nodes, and lets a cancelled waiter go without calling the node.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{
    CompiledGraph, Context, END, Error as EngineError, GraphBuilder, Layer, Mode, Node,
    NodeBuilder, Packet, Route, RunConfig, START, async_node, cpu_node,
};
use agentgraph_layers::{ConcurrencyLimitLayer, Limit};
use common::{Gauge, Report, Shielded, Tally, TallyUpdate};

/// An async node that stays in flight for 10 ms (of tokio's clock) and counts itself.
fn slow_node(gauge: Arc<Gauge>) -> impl Node<Tally> {
    async_node(move |_: Arc<Tally>, _| {
        let gauge = gauge.clone();
        async move {
            gauge.enter();
            tokio::time::sleep(Duration::from_millis(10)).await;
            gauge.leave();
            Ok(TallyUpdate::new().calls(1))
        }
    })
}

/// `START` sends `per_node` packets to each of `nodes`: one step of that many parallel tasks.
fn fan_out(
    nodes: Vec<(&'static str, Box<dyn Node<Tally>>)>,
    per_node: usize,
) -> CompiledGraph<Tally> {
    let names: Vec<&'static str> = nodes.iter().map(|(n, _)| *n).collect();
    let mut b = GraphBuilder::<Tally>::new();
    for (name, node) in nodes {
        b.add_node_with(name, node).add_edge(name, END);
    }
    let targets = names.clone();
    b.add_conditional_edges(START, names, move |_: &Tally| {
        Route::packets(
            targets
                .iter()
                .flat_map(|n| (0..per_node).map(move |i| Packet::new(*n, &i))),
        )
    });
    b.compile().unwrap()
}

fn parallel() -> RunConfig {
    RunConfig::new().mode(Mode::Parallel)
}

// Paused time on one thread: a node's sleep ends only when every other task is waiting, so
// every task that can enter does before any leaves, and the maximum is exact.
#[tokio::test(start_paused = true)]
async fn eight_parallel_calls_limited_to_two_run_two_at_a_time() {
    let gauge = Gauge::new();
    let node = NodeBuilder::new()
        .layer(ConcurrencyLimitLayer::new(2))
        .node(slow_node(gauge.clone()));
    let graph = fan_out(vec![("work", Box::new(node))], 8);
    let done = graph.run_with(Tally::default(), parallel()).await.unwrap();
    assert_eq!(done.calls, 8);
    assert_eq!(gauge.total(), 8);
    assert_eq!(gauge.max(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_the_limit_the_same_graph_runs_all_eight_at_once() {
    // The control for the test above: what the gauge shows when nothing limits the calls.
    let gauge = Gauge::new();
    let graph = fan_out(vec![("work", Box::new(slow_node(gauge.clone())))], 8);
    graph.run_with(Tally::default(), parallel()).await.unwrap();
    assert_eq!(gauge.max(), 8);
}

#[tokio::test(start_paused = true)]
async fn one_layer_value_on_two_nodes_shares_its_limit() {
    let gauge = Gauge::new();
    let shared = ConcurrencyLimitLayer::new(2);
    let a = shared.layer(slow_node(gauge.clone()));
    let b = shared.clone().layer(slow_node(gauge.clone()));
    let graph = fan_out(vec![("a", Box::new(a)), ("b", Box::new(b))], 4);
    let done = graph.run_with(Tally::default(), parallel()).await.unwrap();
    assert_eq!(done.calls, 8);
    assert_eq!(gauge.max(), 2);
    assert_eq!(shared.available(), 2, "every permit is back");
}

#[tokio::test(start_paused = true)]
async fn a_layer_per_node_gives_each_node_its_own_limit() {
    let gauge = Gauge::new();
    let a = ConcurrencyLimitLayer::new(2).layer(slow_node(gauge.clone()));
    let b = ConcurrencyLimitLayer::new(2).layer(slow_node(gauge.clone()));
    let graph = fan_out(vec![("a", Box::new(a)), ("b", Box::new(b))], 4);
    graph.run_with(Tally::default(), parallel()).await.unwrap();
    assert_eq!(gauge.max(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_node_holds_its_permit_until_its_closure_returns() {
    // The closures run on rayon's threads (as many as cores): only the permit, held until the
    // closure's result arrives, keeps two of them from overlapping.
    let gauge = Gauge::new();
    let g = gauge.clone();
    let node = ConcurrencyLimitLayer::new(1).layer(cpu_node(move |_: &Tally, _: &Context| {
        g.enter();
        std::thread::sleep(Duration::from_millis(5));
        g.leave();
        Ok(TallyUpdate::new().calls(1))
    }));
    let graph = fan_out(vec![("work", Box::new(node))], 8);
    let done = graph.run_with(Tally::default(), parallel()).await.unwrap();
    assert_eq!(done.calls, 8);
    assert_eq!(gauge.max(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_it_waits_for_a_permit_does_not_call_the_node() {
    let gauge = Gauge::new();
    let release = Arc::new(tokio::sync::Notify::new());
    let (g, r) = (gauge.clone(), release.clone());
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let holder = async_node(move |_: Arc<Tally>, _| {
        let (g, r, entered_tx) = (g.clone(), r.clone(), entered_tx.clone());
        async move {
            g.enter();
            entered_tx.send(()).unwrap();
            r.notified().await;
            g.leave();
            Ok(TallyUpdate::new().calls(1))
        }
    });
    // Each call runs on a task of its own, which the engine does not drop: the waiting call
    // learns of the cancellation from its context.
    let (node, mut probe) = Shielded::new(ConcurrencyLimitLayer::new(1).layer(holder));
    let graph = fan_out(vec![("work", Box::new(node))], 2);
    let run = graph.run_with(Tally::default(), parallel());
    let cancel = run.cancel_handle();
    let run = run.spawn();

    // One call holds the only permit; the other waits for it.
    probe.started(2).await;
    tokio::time::timeout(Duration::from_secs(60), entered.recv())
        .await
        .expect("no call entered the node");
    cancel.cancel();
    assert!(matches!(run.await, Err(EngineError::Cancelled { .. })));
    assert_eq!(
        probe.next().await,
        Report::Cancelled {
            node: "work".into(),
            limit: Limit::Concurrency,
        }
    );
    release.notify_one();
    assert_eq!(probe.next().await, Report::Done);
    assert_eq!(gauge.total(), 1, "the cancelled call never called the node");
}
