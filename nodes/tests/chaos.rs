//! Chaos tests: a model node (the OpenAI-compatible provider against the scripted server)
//! reached through a fault-injecting proxy (`support/chaos.rs`), wrapped in the middleware of
//! `agentgraph-layers` as the README's "Circuit breaker, fallback and timeout" stacks it: a
//! fallback (another model, reached directly) outermost, then a circuit breaker, then a
//! timeout, and the graph's retry policy outside them all.
//!
//! For each fault (latency, dropped connections, a blackhole, a partial response, a reset) the
//! run must end correctly: with the primary's answer, the fallback's, or a typed error when
//! nothing can answer; the breaker must open where it should and then fail fast (no new
//! connection reaches the proxy). The provider's own retries are off and its own timeout is
//! long (120 s), so it is the middleware that contains each fault. Every run is awaited under a
//! loose guard (60 s) so that a middleware that fails to contain a fault fails the test instead
//! of hanging it; no test asserts a tight duration (the figures are `benches`' `chaos`).

#[path = "support/chaos.rs"]
mod chaos;
mod support;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{
    CompiledGraph, END, Error, GraphBuilder, Node, NodeBuilder, RetryPolicy, START, async_node,
};
use agentgraph_layers::{
    CircuitBreakerLayer, CircuitOpen, CircuitState, FallbackLayer, TimedOut, TimeoutLayer,
};
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::model::{ChatModel, ChatRequest, ChatResponse, model_node};
use chaos::{Fault, Proxy, upstream_of};
use support::{Reply, Scripted, finish_chunk, text_chunk};

#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, agentgraph_macros::State,
)]
#[state(crate = agentgraph_engine)]
struct Chat {
    #[reducer(with = agentgraph_nodes::add_messages)]
    messages: Vec<Message>,
}

/// The loose guard on every run: far above what any fault here takes to be contained.
const GUARD: Duration = Duration::from_secs(60);
/// The timeout layer's limit on one call of the primary.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A streamed answer of `pieces` chunks whose text is `text`.
fn streamed(text: &str, pieces: usize) -> Reply {
    Reply::sse(
        (0..pieces)
            .map(|i| text_chunk(if i == 0 { text } else { "" }))
            .chain([finish_chunk("stop")]),
    )
}

/// The primary server (behind the proxy) and the backup (reached directly).
struct Rig {
    primary: Scripted,
    backup: Scripted,
    proxy: Proxy,
}

impl Rig {
    async fn start() -> Self {
        let primary = Scripted::start((0..50).map(|_| streamed("from primary", 20))).await;
        let backup = Scripted::start((0..50).map(|_| streamed("from backup", 1))).await;
        let proxy = Proxy::start(upstream_of(&primary.base_url)).await;
        Rig {
            primary,
            backup,
            proxy,
        }
    }

    /// A fresh client of the primary through the proxy (a fresh connection pool, so that the
    /// fault set now applies to its first call), with no retries of its own.
    fn primary(&self) -> Arc<dyn ChatModel> {
        model(&self.proxy.base_url())
    }

    fn backup(&self) -> Arc<dyn ChatModel> {
        model(&self.backup.base_url)
    }
}

fn model(base_url: &str) -> Arc<dyn ChatModel> {
    Arc::new(
        OpenAiModel::builder("m")
            .base_url(base_url)
            .no_api_key()
            .max_retries(0)
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    )
}

fn ask(model: Arc<dyn ChatModel>) -> impl Node<Chat> {
    async_node(model_node(
        model,
        |s: &Chat| ChatRequest::new(s.messages.clone()),
        |_, r: ChatResponse| ChatUpdate::new().messages(vec![r.message]),
    ))
}

fn one_node_graph(node: impl Node<Chat>, retry: RetryPolicy) -> CompiledGraph<Chat> {
    let mut b = GraphBuilder::<Chat>::new();
    b.add_node_with("answer", node)
        .retry("answer", retry)
        .add_edge(START, "answer")
        .add_edge("answer", END);
    b.compile().unwrap()
}

/// Fallback (the backup) outermost, then the breaker, then the timeout, around the primary.
fn with_fallback(
    rig: &Rig,
    breaker: &CircuitBreakerLayer,
    retry: RetryPolicy,
) -> CompiledGraph<Chat> {
    let node = NodeBuilder::new()
        .layer(FallbackLayer::new(ask(rig.backup())))
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(CALL_TIMEOUT))
        .node(ask(rig.primary()));
    one_node_graph(node, retry)
}

/// The breaker, then the timeout, around the primary: nothing else can answer.
fn without_fallback(
    rig: &Rig,
    breaker: &CircuitBreakerLayer,
    retry: RetryPolicy,
) -> CompiledGraph<Chat> {
    let node = NodeBuilder::new()
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(CALL_TIMEOUT))
        .node(ask(rig.primary()));
    one_node_graph(node, retry)
}

/// Runs the graph once under the guard; the answer's text, or the run's error.
async fn run(graph: &CompiledGraph<Chat>) -> Result<String, Error> {
    let input = Chat {
        messages: vec![Message::user("Hi!")],
    };
    let done = tokio::time::timeout(GUARD, graph.invoke(input))
        .await
        .expect("the middleware contains the fault long before the guard")?;
    Ok(done.messages.last().unwrap().text().unwrap().to_owned())
}

fn no_retry() -> RetryPolicy {
    RetryPolicy::new(1)
}

/// A fault that makes every call of the primary fail: each run is answered by the fallback;
/// the breaker opens after three failures, and from then on fails fast: the fallback answers
/// and no connection reaches the proxy. Once the fault is gone and the recovery timeout has
/// passed, a probe goes through and the primary answers again.
async fn contained_by_fallback_and_breaker(fault: Fault) {
    let rig = Rig::start().await;
    let breaker = CircuitBreakerLayer::consecutive_failures(3)
        .recovery_timeout(Duration::from_millis(300))
        .name("primary");
    rig.proxy.set_fault(fault);
    for i in 1..=3 {
        let graph = with_fallback(&rig, &breaker, no_retry());
        assert_eq!(
            run(&graph).await.unwrap(),
            "from backup",
            "{fault:?}, run {i}"
        );
    }
    assert_eq!(rig.proxy.accepted(), 3, "{fault:?}: one connection per run");
    assert_eq!(breaker.state(), CircuitState::Open, "{fault:?}");
    let graph = with_fallback(&rig, &breaker, no_retry());
    assert_eq!(run(&graph).await.unwrap(), "from backup", "{fault:?}");
    assert_eq!(
        rig.proxy.accepted(),
        3,
        "{fault:?}: the open breaker failed fast"
    );
    assert_eq!(rig.backup.requests().len(), 4);

    // The fault ends; after the recovery timeout, the probe reaches the primary.
    rig.proxy.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let graph = with_fallback(&rig, &breaker, no_retry());
    assert_eq!(run(&graph).await.unwrap(), "from primary", "{fault:?}");
    assert_eq!(breaker.state(), CircuitState::Closed, "{fault:?}");
    assert_eq!(rig.proxy.accepted(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_below_the_timeout_still_gets_the_primary_answer() {
    for fault in [
        Fault::Latency(Duration::from_millis(200)),
        Fault::LatencyPerChunk(Duration::from_millis(20)),
    ] {
        let rig = Rig::start().await;
        let breaker = CircuitBreakerLayer::consecutive_failures(3);
        rig.proxy.set_fault(fault);
        let graph = with_fallback(&rig, &breaker, no_retry());
        assert_eq!(run(&graph).await.unwrap(), "from primary", "{fault:?}");
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(rig.backup.requests().is_empty(), "{fault:?}: no fallback");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_above_the_timeout_is_cut_and_the_fallback_answers() {
    contained_by_fallback_and_breaker(Fault::Latency(Duration::from_secs(5))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_go_to_the_fallback_and_open_the_breaker() {
    contained_by_fallback_and_breaker(Fault::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_cut_by_the_timeout() {
    contained_by_fallback_and_breaker(Fault::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_in_its_headers_is_a_failure() {
    contained_by_fallback_and_breaker(Fault::CutAfter(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_in_its_stream_is_a_failure() {
    // Measure a whole response, then cut the next ones halfway through.
    let rig = Rig::start().await;
    let whole = {
        let probe = Proxy::start(upstream_of(&rig.primary.base_url)).await;
        let graph = one_node_graph(ask(model(&probe.base_url())), no_retry());
        assert_eq!(run(&graph).await.unwrap(), "from primary");
        drop(graph);
        probe.forwarded()
    };
    assert!(whole > 1000, "20 chunks make a long stream: {whole} bytes");
    drop(rig);
    contained_by_fallback_and_breaker(Fault::CutAfter(whole as usize / 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_is_a_failure() {
    contained_by_fallback_and_breaker(Fault::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_ride_over_a_few_dropped_connections() {
    let rig = Rig::start().await;
    let breaker = CircuitBreakerLayer::consecutive_failures(5);
    rig.proxy.set_fault_for(Fault::Drop, 2);
    let retry = RetryPolicy::new(3).backoff(Duration::from_millis(10), Duration::from_millis(50));
    let graph = without_fallback(&rig, &breaker, retry);
    assert_eq!(run(&graph).await.unwrap(), "from primary");
    assert_eq!(rig.proxy.accepted(), 3, "two dropped, the third answered");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_to_answer_the_run_fails_typed_then_fast() {
    let rig = Rig::start().await;
    let breaker =
        CircuitBreakerLayer::consecutive_failures(2).recovery_timeout(Duration::from_secs(600));
    rig.proxy.set_fault(Fault::Blackhole);
    let retry = RetryPolicy::new(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .retry_if(|e| !e.is::<CircuitOpen>());
    // Two attempts, each cut by the timeout: the run fails with `TimedOut`, the breaker opens.
    let graph = without_fallback(&rig, &breaker, retry.clone());
    match run(&graph).await {
        Err(Error::NodeFailed { source, .. }) => {
            assert!(source.is::<TimedOut>(), "{source}");
        }
        other => panic!("expected a timed-out node, got {other:?}"),
    }
    assert_eq!(rig.proxy.accepted(), 2);
    assert_eq!(breaker.state(), CircuitState::Open);
    // The next run fails at once with `CircuitOpen`, not retried, no connection made.
    let graph = without_fallback(&rig, &breaker, retry);
    match run(&graph).await {
        Err(Error::NodeFailed { source, .. }) => {
            assert!(source.is::<CircuitOpen>(), "{source}");
        }
        other => panic!("expected an open circuit, got {other:?}"),
    }
    assert_eq!(rig.proxy.accepted(), 2);
}
