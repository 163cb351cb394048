//! `CircuitBreakerLayer` in graphs, on tokio's paused clock: it opens after failures and fails
//! fast without calling the node, lets probes through after its recovery timeout, is shared
//! by the nodes its clones wrap, limits the half-open probes, and meets retries as documented.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use agentgraph_engine::{
    BoxError, CompiledGraph, END, Error as EngineError, GraphBuilder, Layer, Mode, Node,
    NodeBuilder, Packet, RetryPolicy, Route, RunConfig, START, async_node,
};
use agentgraph_layers::{
    CircuitBreakerLayer, CircuitOpen, CircuitState, FallbackLayer, TimeoutLayer,
};
use common::{Tally, TallyUpdate};

/// A service that is up or down, and counts the calls it gets.
#[derive(Default)]
struct Service {
    down: AtomicBool,
    calls: AtomicUsize,
}

impl Service {
    fn new(down: bool) -> Arc<Self> {
        let s = Arc::new(Service::default());
        s.down.store(down, Ordering::SeqCst);
        s
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A node calling the service, which answers after `delay` (of tokio's clock).
    fn node(self: &Arc<Self>, delay: Duration) -> impl Node<Tally> + use<> {
        let service = self.clone();
        async_node(move |_: Arc<Tally>, _| {
            let service = service.clone();
            async move {
                service.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                if service.down.load(Ordering::SeqCst) {
                    Err::<TallyUpdate, BoxError>("503 service unavailable".into())
                } else {
                    Ok(TallyUpdate::new().calls(1))
                }
            }
        })
    }
}

fn one_node(node: impl Node<Tally>) -> CompiledGraph<Tally> {
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", node)
        .add_edge(START, "call")
        .add_edge("call", END);
    b.compile().unwrap()
}

/// The node's error of a failed run.
fn node_error(result: Result<Tally, EngineError>) -> BoxError {
    match result {
        Err(EngineError::NodeFailed { source, .. }) => source,
        other => panic!("expected a failed node, got {other:?}"),
    }
}

fn circuit_open(result: Result<Tally, EngineError>) -> CircuitOpen {
    let e = node_error(result);
    e.downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("expected CircuitOpen, got {e}"))
        .clone()
}

#[tokio::test(start_paused = true)]
async fn it_opens_after_consecutive_failures_fails_fast_then_probes_and_closes() {
    let service = Service::new(true);
    let breaker = CircuitBreakerLayer::consecutive_failures(3)
        .recovery_timeout(Duration::from_secs(10))
        .name("api");
    let graph = one_node(breaker.layer(service.node(Duration::ZERO)));

    for _ in 0..3 {
        let e = node_error(graph.invoke(Tally::default()).await);
        assert_eq!(e.to_string(), "503 service unavailable");
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(service.calls(), 3);

    // Open: fails fast, the service is not called.
    let open = circuit_open(graph.invoke(Tally::default()).await);
    assert_eq!(open.node, "call");
    assert_eq!(open.breaker.as_deref(), Some("api"));
    assert_eq!(open.state, CircuitState::Open);
    assert_eq!(open.retry_after, Some(Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(4)).await;
    let open = circuit_open(graph.invoke(Tally::default()).await);
    assert_eq!(open.retry_after, Some(Duration::from_secs(6)));
    assert_eq!(service.calls(), 3);

    // After the recovery timeout a probe goes through; it fails: open again, for 10 s more.
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    node_error(graph.invoke(Tally::default()).await);
    assert_eq!(service.calls(), 4);
    assert_eq!(breaker.state(), CircuitState::Open);

    // The service is back: the next probe succeeds and closes the breaker.
    service.set_down(false);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(graph.invoke(Tally::default()).await.unwrap().calls, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(graph.invoke(Tally::default()).await.unwrap().calls, 1);
    assert_eq!(service.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let service = Service::new(true);
    let breaker = CircuitBreakerLayer::consecutive_failures(2);
    let graph = one_node(breaker.layer(service.node(Duration::ZERO)));
    for down in [true, false, true, false, true] {
        service.set_down(down);
        let _ = graph.invoke(Tally::default()).await;
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn it_opens_on_the_failure_rate_of_its_window_once_it_has_enough_calls() {
    let service = Service::new(false);
    let breaker = CircuitBreakerLayer::failure_rate(0.5, Duration::from_secs(60), 4);
    let graph = one_node(breaker.layer(service.node(Duration::ZERO)));
    // Success, failure, failure: 2 of 3 failed, but the window needs 4 calls.
    graph.invoke(Tally::default()).await.unwrap();
    service.set_down(true);
    for _ in 0..2 {
        node_error(graph.invoke(Tally::default()).await);
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    // A minute later those calls have left the window: two more failures are 2 of 2.
    tokio::time::advance(Duration::from_secs(61)).await;
    for _ in 0..2 {
        node_error(graph.invoke(Tally::default()).await);
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "2 calls in the window"
    );
    node_error(graph.invoke(Tally::default()).await);
    node_error(graph.invoke(Tally::default()).await);
    assert_eq!(breaker.state(), CircuitState::Open, "4 of 4 failed");
}

#[tokio::test(start_paused = true)]
async fn clones_of_one_layer_share_the_breaker_between_nodes() {
    // Two nodes call one service: failures of one open the breaker for the other.
    let service = Service::new(true);
    let breaker = CircuitBreakerLayer::consecutive_failures(2);
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("a", breaker.clone().layer(service.node(Duration::ZERO)))
        .add_node_with("b", breaker.clone().layer(service.node(Duration::ZERO)))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", END);
    let graph = b.compile().unwrap();
    for _ in 0..2 {
        node_error(graph.invoke(Tally::default()).await);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    // Node `b` has never run, and finds the breaker open.
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("b", breaker.layer(service.node(Duration::ZERO)))
        .add_edge(START, "b")
        .add_edge("b", END);
    let open = circuit_open(b.compile().unwrap().invoke(Tally::default()).await);
    assert_eq!(open.node, "b");
    assert_eq!(service.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_breaker_lets_only_its_probes_through() {
    // Four packets in one parallel step find the breaker half-open with 2 probes: two call the
    // service, the other two fail fast and fall back.
    let service = Service::new(true);
    let breaker = CircuitBreakerLayer::consecutive_failures(1)
        .recovery_timeout(Duration::from_secs(5))
        .half_open_probes(2);
    let fast_failed = async_node(|_: Arc<Tally>, _| async { Ok(TallyUpdate::note("fast-failed")) });
    let node = NodeBuilder::new()
        .layer(FallbackLayer::new(fast_failed).on_error(|e| e.is::<CircuitOpen>()))
        .layer(breaker.clone())
        .node(service.node(Duration::from_millis(100)));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", node)
        .add_conditional_edges(START, ["call"], |_: &Tally| {
            Route::packets((0..4).map(|i| Packet::new("call", &i)))
        })
        .add_edge("call", END);
    let graph = b.compile().unwrap();
    let parallel = || RunConfig::new().mode(Mode::Parallel);

    // Closed: all four call the service, and the first failure opens the breaker (the
    // others, calls of the closed state, change nothing).
    let _ = graph.run_with(Tally::default(), parallel()).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    let after_first = service.calls();
    assert_eq!(after_first, 4);

    tokio::time::advance(Duration::from_secs(5)).await;
    service.set_down(false);
    let done = graph.run_with(Tally::default(), parallel()).await.unwrap();
    assert_eq!(service.calls() - after_first, 2, "two probes");
    assert_eq!(done.calls, 2);
    assert_eq!(done.log, ["fast-failed", "fast-failed"]);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "both probes succeeded"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_left_out_by_failure_if_do_not_count() {
    #[derive(Debug, thiserror::Error)]
    #[error("bad request")]
    struct BadRequest;

    let breaker =
        CircuitBreakerLayer::consecutive_failures(1).failure_if(|e| !e.is::<BadRequest>());
    let graph = one_node(breaker.layer(async_node(|_: Arc<Tally>, _| async {
        Err::<TallyUpdate, BoxError>(BadRequest.into())
    })));
    for _ in 0..3 {
        assert!(node_error(graph.invoke(Tally::default()).await).is::<BadRequest>());
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_by_the_graphs_timeout_gives_its_place_back() {
    let service = Service::new(true);
    let breaker =
        CircuitBreakerLayer::consecutive_failures(1).recovery_timeout(Duration::from_secs(1));
    let slow = breaker.layer(service.node(Duration::from_secs(60)));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", slow)
        .timeout("call", Duration::from_secs(2))
        .add_edge(START, "call")
        .add_edge("call", END);
    let graph = b.compile().unwrap();

    // A call the graph's timeout drops counts neither way: the breaker stays closed.
    let e = node_error(graph.invoke(Tally::default()).await);
    assert!(e.is::<agentgraph_engine::NodeTimedOut>(), "{e}");
    assert_eq!(breaker.state(), CircuitState::Closed);

    // Inside the breaker, a timeout layer turns the hang into a failure, which counts.
    let counted =
        CircuitBreakerLayer::consecutive_failures(1).recovery_timeout(Duration::from_secs(1));
    let node = NodeBuilder::new()
        .layer(counted.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .node(service.node(Duration::from_secs(60)));
    let graph = one_node(node);
    node_error(graph.invoke(Tally::default()).await);
    assert_eq!(counted.state(), CircuitState::Open);

    // A half-open probe dropped by the graph's timeout gives its place back: the next call
    // is a probe again, not refused.
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", counted.layer(service.node(Duration::from_secs(60))))
        .timeout("call", Duration::from_secs(2))
        .add_edge(START, "call")
        .add_edge("call", END);
    let graph = b.compile().unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let calls = service.calls();
    for _ in 0..2 {
        let e = node_error(graph.invoke(Tally::default()).await);
        assert!(e.is::<agentgraph_engine::NodeTimedOut>(), "{e}");
    }
    assert_eq!(service.calls() - calls, 2, "each run's call was a probe");
    assert_eq!(counted.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_leaves_circuit_open_out_fails_at_once() {
    let service = Service::new(true);
    let breaker =
        CircuitBreakerLayer::consecutive_failures(2).recovery_timeout(Duration::from_secs(30));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", breaker.layer(service.node(Duration::ZERO)))
        .retry(
            "call",
            RetryPolicy::new(5)
                .backoff(Duration::from_millis(100), Duration::from_secs(1))
                .jitter(false)
                .retry_if(|e| !e.is::<CircuitOpen>()),
        )
        .add_edge(START, "call")
        .add_edge("call", END);
    let graph = b.compile().unwrap();
    let started = tokio::time::Instant::now();
    match graph.invoke(Tally::default()).await {
        Err(EngineError::NodeFailed {
            attempts, source, ..
        }) => {
            // Two failures open it; the third attempt fails fast and is not retried.
            assert_eq!(attempts, 3);
            assert!(source.is::<CircuitOpen>());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(service.calls(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no waiting on an open breaker"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_whose_backoff_outlasts_the_recovery_timeout_becomes_a_probe() {
    let service = Service::new(true);
    let breaker =
        CircuitBreakerLayer::consecutive_failures(1).recovery_timeout(Duration::from_secs(5));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", breaker.clone().layer(service.node(Duration::ZERO)))
        .retry(
            "call",
            RetryPolicy::new(2)
                .backoff(Duration::from_secs(6), Duration::from_secs(6))
                .jitter(false),
        )
        .add_edge(START, "call")
        .add_edge("call", END);
    let graph = b.compile().unwrap();
    let run = tokio::spawn(async move { graph.invoke(Tally::default()).await });
    // The first attempt fails and opens the breaker; the service comes back during the
    // backoff, and the retry, 6 s later, is the half-open probe.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    service.set_down(false);
    let done = run.await.unwrap().unwrap();
    assert_eq!(done.calls, 1);
    assert_eq!(service.calls(), 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
}
