//! The `chaos` workload: how long each fault of the chaos tests (`nodes/tests/chaos.rs`) takes
//! to be contained by the middleware. A model node (`OpenAiModel`, its own retries off, its own
//! timeout 120 s) calls the scripted OpenAI-compatible server of the node library's tests
//! through the fault-injecting proxy of the same tests (both included by path), wrapped as the
//! README stacks it: a `FallbackLayer` (another model on another scripted server, reached
//! directly) outermost, then a `CircuitBreakerLayer` (`consecutive_failures(3)`), then a
//! `TimeoutLayer` of 1 s.
//!
//! Each repetition: a fresh breaker and client, the fault set, then one run timed from the
//! fault's start (just before the run) to its correct end (the fallback's answer, or the
//! primary's for a fault the call survives): `contained_ms`. Then the same fault twice more
//! (the breaker opens at the third failure) and one more run timed with the breaker open:
//! `open_ms`, which calls nothing behind the proxy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph::layers::{CircuitBreakerLayer, CircuitState, FallbackLayer, TimeoutLayer};
use agentgraph_engine::{
    CompiledGraph, END, GraphBuilder, Node, NodeBuilder, RetryPolicy, START, async_node,
};
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::model::{ChatModel, ChatRequest, ChatResponse, model_node};
use tokio::runtime::Runtime;

#[path = "../../nodes/tests/support/chaos.rs"]
mod proxy;

use crate::agent::support::{Reply, Scripted, finish_chunk, text_chunk};
use proxy::{Fault, Proxy, upstream_of};

/// The state of the workload's one-node graph.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, agentgraph::State)]
struct ChaosChat {
    #[reducer(with = agentgraph_nodes::add_messages)]
    messages: Vec<Message>,
}

/// The timeout layer's limit on one call of the primary.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

fn streamed(text: &str, pieces: usize) -> Reply {
    Reply::sse(
        (0..pieces)
            .map(|i| text_chunk(if i == 0 { text } else { "" }))
            .chain([finish_chunk("stop")]),
    )
}

fn model(base_url: &str) -> Arc<dyn ChatModel> {
    Arc::new(
        OpenAiModel::builder("m")
            .base_url(base_url)
            .no_api_key()
            .max_retries(0)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a model client"),
    )
}

fn ask(model: Arc<dyn ChatModel>) -> impl Node<ChaosChat> {
    async_node(model_node(
        model,
        |s: &ChaosChat| ChatRequest::new(s.messages.clone()),
        |_, r: ChatResponse| ChaosChatUpdate::new().messages(vec![r.message]),
    ))
}

fn graph(
    proxy: &Proxy,
    backup: &Scripted,
    breaker: &CircuitBreakerLayer,
) -> CompiledGraph<ChaosChat> {
    let node = NodeBuilder::new()
        .layer(FallbackLayer::new(ask(model(&backup.base_url))))
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(CALL_TIMEOUT))
        .node(ask(model(&proxy.base_url())));
    let mut b = GraphBuilder::<ChaosChat>::new();
    b.add_node_with("answer", node)
        .retry("answer", RetryPolicy::new(1))
        .add_edge(START, "answer")
        .add_edge("answer", END);
    b.compile().expect("the chaos graph compiles")
}

async fn answer(graph: &CompiledGraph<ChaosChat>) -> String {
    let done = graph
        .invoke(ChaosChat {
            messages: vec![Message::user("Hi!")],
        })
        .await
        .expect("the middleware answers");
    done.messages
        .last()
        .and_then(|m| m.text())
        .expect("an answer")
        .to_owned()
}

/// The faults, by mode name, and the answer the run must end with.
fn faults(stream_bytes: usize) -> Vec<(&'static str, Fault, &'static str)> {
    vec![
        (
            "latency_200ms",
            Fault::Latency(Duration::from_millis(200)),
            "from primary",
        ),
        (
            "latency_5s",
            Fault::Latency(Duration::from_secs(5)),
            "from backup",
        ),
        ("drop", Fault::Drop, "from backup"),
        ("blackhole", Fault::Blackhole, "from backup"),
        ("cut_headers", Fault::CutAfter(20), "from backup"),
        (
            "cut_stream",
            Fault::CutAfter(stream_bytes / 2),
            "from backup",
        ),
        ("reset", Fault::Reset, "from backup"),
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    ms(crate::median(samples))
}

/// `chaos`: prints one JSON line per fault: `contained_ms` and, for the faults that fail the
/// primary, `open_ms` (medians over `timed` repetitions, after `warmup`).
///
/// # Panics
///
/// If a run ends with another answer than the expected one, or the breaker is not open after
/// three failures.
pub fn run_chaos(rt: &Runtime, warmup: usize, timed: usize) {
    rt.block_on(async {
        let primary = Scripted::start((0..10_000).map(|_| streamed("from primary", 20))).await;
        let backup = Scripted::start((0..10_000).map(|_| streamed("from backup", 1))).await;
        let proxy = Proxy::start(upstream_of(&primary.base_url)).await;
        // The bytes of one whole response, to cut the stream halfway.
        let before = proxy.forwarded();
        let breaker = CircuitBreakerLayer::consecutive_failures(3);
        assert_eq!(
            answer(&graph(&proxy, &backup, &breaker)).await,
            "from primary"
        );
        let stream_bytes = (proxy.forwarded() - before) as usize;
        for (mode, fault, expected) in faults(stream_bytes) {
            let mut contained = Vec::new();
            let mut open = Vec::new();
            for rep in 0..warmup + timed {
                let breaker = CircuitBreakerLayer::consecutive_failures(3)
                    .recovery_timeout(Duration::from_secs(600));
                let first = graph(&proxy, &backup, &breaker);
                proxy.set_fault(fault);
                let started = Instant::now();
                let got = answer(&first).await;
                let took = started.elapsed();
                assert_eq!(got, expected, "{mode}");
                let failing = expected == "from backup";
                let open_took = if failing {
                    for _ in 0..2 {
                        assert_eq!(answer(&graph(&proxy, &backup, &breaker)).await, expected);
                    }
                    assert_eq!(breaker.state(), CircuitState::Open, "{mode}");
                    let accepted = proxy.accepted();
                    let last = graph(&proxy, &backup, &breaker);
                    let started = Instant::now();
                    assert_eq!(answer(&last).await, expected);
                    let took = started.elapsed();
                    assert_eq!(
                        proxy.accepted(),
                        accepted,
                        "{mode}: the open breaker failed fast"
                    );
                    Some(took)
                } else {
                    None
                };
                proxy.set_fault(Fault::None);
                if rep >= warmup {
                    contained.push(took);
                    open.extend(open_took);
                }
            }
            let mut line = serde_json::json!({
                "workload": "chaos",
                "mode": mode,
                "contained_ms": median_ms(&mut contained),
                "max_contained_ms": ms(contained.iter().copied().max().unwrap_or_default()),
                "timeout_ms": ms(CALL_TIMEOUT),
                "reps": timed,
            });
            if !open.is_empty() {
                line["open_ms"] = median_ms(&mut open).into();
            }
            println!("{line}");
        }
    });
}
