//! Chaos tests over MCP's streamable HTTP: a node that calls the `add` tool of
//! `mcp_test_server --http` (a child process) through the fault-injecting proxy of the node
//! library's tests (`nodes/tests/support/chaos.rs`, included by path), wrapped in a fallback
//! (the same tool reached directly), a circuit breaker and a timeout, as the README's
//! "Circuit breaker, fallback and timeout" stacks them.
//!
//! For each fault the run ends with the right sum, from the primary when it survives the
//! fault, else from the fallback; the breaker opens after three failures and the primary is
//! not called again while it is open. Each node call connects a new client (so the fault set
//! applies to it). Runs are awaited under a loose guard (60 s) so that a fault the middleware
//! does not contain fails the test instead of hanging it; no tight timing is asserted.
//!
//! A client makes several requests (`initialize`, `notifications/initialized`, the standalone
//! GET stream, `tools/list`, `tools/call`), some over one keep-alive connection, so a fault on
//! a whole connection hits whichever comes first; the partial answers of `tools/call` are cut
//! with `Fault::CutBody`, which lets everything pass but the answer to the request that
//! names `tools/call`, and cuts that answer in its body.

#[path = "../../nodes/tests/support/chaos.rs"]
mod chaos;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, Error, GraphBuilder, NodeBuilder, RetryPolicy, START,
    async_node,
};
use agentgraph_layers::{CircuitBreakerLayer, CircuitState, FallbackLayer, TimedOut, TimeoutLayer};
use agentgraph_mcp::{McpClient, McpError};
use agentgraph_nodes::tool::{Tool, ToolContext, ToolError};
use chaos::{Fault, Proxy};
use serde_json::json;
use support::{mcp_error, server};

#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, agentgraph_macros::State,
)]
#[state(crate = agentgraph_engine)]
struct Sum {
    a: i64,
    b: i64,
    sum: String,
}

/// `http://127.0.0.1:{port}/{path}` with the port replaced by the proxy's.
fn through(proxy: &Proxy, url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    format!("http://{}/{path}", proxy.addr)
}

/// The socket address of an `http://host:port/...` URL.
fn addr_of(url: &str) -> std::net::SocketAddr {
    let rest = url.strip_prefix("http://").unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// A node that connects to `url` and calls `add` with the state's numbers; `calls` counts
/// the times it is called.
fn add_node(url: String, calls: Arc<AtomicU64>) -> impl agentgraph_engine::Node<Sum> {
    async_node(move |s: Arc<Sum>, _: Context| {
        let url = url.clone();
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let client = McpClient::connect_http(&url).await?;
            let add = client
                .tools()
                .into_iter()
                .find(|t| t.name() == "add")
                .ok_or("no add tool")?;
            let out = add
                .call(json!({ "a": s.a, "b": s.b }), ToolContext::new("k"))
                .await?;
            Ok::<_, BoxError>(SumUpdate::new().sum(out.content.to_text().into_owned()))
        }
    })
}

fn graph(
    url: &str,
    proxy: &Proxy,
    breaker: &CircuitBreakerLayer,
    primary_calls: &Arc<AtomicU64>,
) -> CompiledGraph<Sum> {
    let node = NodeBuilder::new()
        .layer(FallbackLayer::new(add_node(url.to_owned(), Arc::default())))
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .node(add_node(through(proxy, url), primary_calls.clone()));
    one_node_graph(node)
}

/// The breaker and the timeout around the primary, no fallback: the run's error is the
/// primary's.
fn graph_without_fallback(
    url: &str,
    proxy: &Proxy,
    breaker: &CircuitBreakerLayer,
    primary_calls: &Arc<AtomicU64>,
) -> CompiledGraph<Sum> {
    let node = NodeBuilder::new()
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .node(add_node(through(proxy, url), primary_calls.clone()));
    one_node_graph(node)
}

fn one_node_graph(node: impl agentgraph_engine::Node<Sum>) -> CompiledGraph<Sum> {
    let mut b = GraphBuilder::<Sum>::new();
    b.add_node_with("add", node)
        .retry("add", RetryPolicy::new(1))
        .add_edge(START, "add")
        .add_edge("add", END);
    b.compile().unwrap()
}

async fn run(graph: &CompiledGraph<Sum>, a: i64, b: i64) -> String {
    try_run(graph, a, b)
        .await
        .expect("the run ends with an answer")
}

/// Runs the graph once under the guard: the sum, or the run's error.
async fn try_run(graph: &CompiledGraph<Sum>, a: i64, b: i64) -> Result<String, Error> {
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        graph.invoke(Sum {
            a,
            b,
            ..Sum::default()
        }),
    )
    .await
    .expect("the middleware contains the fault long before the guard")?;
    Ok(done.sum)
}

/// The last attempt's error of a run that failed in its node.
fn node_error(result: Result<String, Error>) -> agentgraph_engine::BoxError {
    match result {
        Err(Error::NodeFailed { source, .. }) => source,
        other => panic!("expected a failed node, got {other:?}"),
    }
}

/// One run of the primary behind the breaker and the timeout, no fallback, with `fault` set:
/// the run's node error, the proxy (for its counters) and how many times the primary was
/// called.
async fn failed_without_fallback(fault: Fault) -> (BoxError, Proxy, u64) {
    let (_server, url) = server();
    let proxy = Proxy::start(addr_of(&url)).await;
    proxy.set_fault(fault);
    let breaker = CircuitBreakerLayer::consecutive_failures(3);
    let calls = Arc::new(AtomicU64::new(0));
    let g = graph_without_fallback(&url, &proxy, &breaker, &calls);
    let e = node_error(try_run(&g, 1, 2).await);
    (e, proxy, calls.load(Ordering::SeqCst))
}

/// Every call of the primary fails: the fallback answers, the breaker opens after three
/// failures, then the primary is not called. The proxy, for its counters.
async fn contained(fault: Fault) -> Proxy {
    let (_server, url) = server();
    let proxy = Proxy::start(addr_of(&url)).await;
    let breaker =
        CircuitBreakerLayer::consecutive_failures(3).recovery_timeout(Duration::from_secs(600));
    let calls = Arc::new(AtomicU64::new(0));
    proxy.set_fault(fault);
    for i in 1..=3 {
        let g = graph(&url, &proxy, &breaker, &calls);
        assert_eq!(run(&g, 20, i).await, (20 + i).to_string(), "{fault:?}");
    }
    assert_eq!(breaker.state(), CircuitState::Open, "{fault:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let g = graph(&url, &proxy, &breaker, &calls);
    assert_eq!(run(&g, 1, 1).await, "2", "{fault:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "{fault:?}: the open breaker failed fast"
    );
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_below_the_timeout_still_gets_the_primary_answer() {
    let (_server, url) = server();
    let proxy = Proxy::start(addr_of(&url)).await;
    proxy.set_fault(Fault::Latency(Duration::from_millis(100)));
    let breaker = CircuitBreakerLayer::consecutive_failures(3);
    let calls = Arc::new(AtomicU64::new(0));
    let g = graph(&url, &proxy, &breaker, &calls);
    assert_eq!(run(&g, 20, 22).await, "42");
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(proxy.accepted() > 0, "the call went through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_go_to_the_fallback_and_open_the_breaker() {
    contained(Fault::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_cut_by_the_timeout() {
    contained(Fault::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_in_its_headers_is_a_failure() {
    contained(Fault::CutAfter(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_is_a_failure() {
    contained(Fault::Reset).await;
}

/// The answer of `tools/call` cut in the middle of its JSON-RPC message (`data:
/// {"jsonrpc":"2.0","id":..,"result"` and no more), after its headers and after the priming
/// event with which the server opens the SSE stream (its event id and retry interval). Since
/// an event id came, rmcp's client resumes the stream (a GET with `Last-Event-ID`, SEP-1699) when
/// it breaks, and again each time the resumed stream ends without the answer, up to
/// `HTTP_STREAM_RECONNECTS` times (250 ms, 500 ms, 1 s apart, or the server's longer `retry`
/// interval; rmcp's own default has no limit). The 1 s timeout ends it first, the breaker counts
/// it, the fallback answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_answer_cut_in_its_json_is_cut_by_the_timeout() {
    let fault = Fault::CutBody {
        request: "tools/call",
        after: "\"result\"",
    };
    let proxy = contained(fault).await;
    assert_eq!(
        proxy.cuts(),
        3,
        "each of the primary's three calls got through initialize and tools/list and had its \
         tools/call answer cut; the open breaker made no call"
    );

    // Without the fallback the run fails with the timeout's error: the call was neither
    // answered nor failed before it.
    let (e, proxy, calls) = failed_without_fallback(fault).await;
    assert!(e.is::<TimedOut>(), "{e}");
    assert_eq!((proxy.cuts(), calls), (1, 1));
}

/// The answer of `tools/call` cut in its body before its first SSE event is whole (after
/// `data:`), so before any event id: the client cannot resume, the call fails at once with a
/// typed error (the transport closed under it: `McpError::ServerDied`, in the tool's error),
/// which the breaker counts; the fallback answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_answer_cut_before_its_first_event_fails_typed() {
    let fault = Fault::CutBody {
        request: "tools/call",
        after: "data:",
    };
    let proxy = contained(fault).await;
    assert_eq!(
        proxy.cuts(),
        3,
        "one cut tools/call answer per call of the primary"
    );

    // Without the fallback the run fails with the tool's error, not the timeout's.
    let (e, proxy, calls) = failed_without_fallback(fault).await;
    let failed = e.downcast_ref::<ToolError>().expect("the tool's failure");
    assert!(
        matches!(mcp_error(failed), McpError::ServerDied { .. }),
        "{failed}"
    );
    assert_eq!((proxy.cuts(), calls), (1, 1));
}

/// The answer of `tools/call` cut in its JSON, after which the server cannot be reached any
/// more (the proxy drops every new connection: the server is gone), with no timeout, no breaker and
/// no fallback: the client resumes the stream `HTTP_STREAM_RECONNECTS` times (after the server's 3
/// s `retry` interval, then 500 ms and 1 s: rmcp waits the longer of the server's interval and the
/// policy's) and then the call fails with a typed error by itself. rmcp's default policy would try
/// again without end, with doubling delays (this test would then hit the 60 s guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_whose_server_is_gone_after_a_cut_fails_by_itself() {
    let (_server, url) = server();
    let proxy = Arc::new(Proxy::start(addr_of(&url)).await);
    proxy.set_fault(Fault::CutBody {
        request: "tools/call",
        after: "\"result\"",
    });
    // Once the answer is cut, nothing gets through any more.
    let watcher = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            while proxy.cuts() == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            proxy.set_fault(Fault::Drop);
        })
    };
    let calls = Arc::new(AtomicU64::new(0));
    let mut b = GraphBuilder::<Sum>::new();
    b.add_node_with("add", add_node(through(&proxy, &url), calls.clone()))
        .add_edge(START, "add")
        .add_edge("add", END);
    let g = b.compile().unwrap();
    let e = node_error(try_run(&g, 1, 2).await);
    watcher.await.unwrap();
    let failed = e.downcast_ref::<ToolError>().expect("the tool's failure");
    assert!(
        matches!(
            mcp_error(failed),
            McpError::ServerDied { .. } | McpError::Protocol { .. }
        ),
        "{failed}"
    );
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
