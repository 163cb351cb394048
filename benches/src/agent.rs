//! The `agent_turn` workload: the tool-calling agent's own overhead per turn, against the
//! scripted OpenAI-compatible server of the node library's tests, and per streamed token.
//!
//! A turn is one thread invocation of the agent on sled (`Durability::Async`): a streamed model
//! answer calling `lookup` three times, the three calls (three tasks), and a streamed final
//! answer of `tokens` tokens. Its raw counterpart does the same work without the engine: the
//! same two streamed requests to the same server through the same client (`OpenAiModel`), read
//! to their end, and the three tool calls made directly. Its requests offer the same tools as
//! the agent's (`ChatRequest::tools_from` of the same tool set): a user calling the model by
//! hand must send their schemas too, so serializing them, and the server reading them, is
//! not the engine's overhead (before session 11 the raw requests carried none, which counted
//! that work against the engine). The difference is the engine's overhead: the graph, its
//! tasks, events and checkpoints.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph_engine::{CheckpointStore, Durability, RunConfig};
use agentgraph_nodes::agent::{Agent, AgentStateUpdate};
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::model::{ChatModel, ChatRequest};
use agentgraph_nodes::tool::{ToolContext, ToolSet, tool_fn};
use serde::Deserialize;
use serde_json::Value;
use tokio::runtime::Runtime;

#[path = "../../nodes/tests/support/mod.rs"]
pub(crate) mod support;

use support::{Reply, Scripted, finish_chunk, text_chunk, tool_chunk};

use crate::durable::BenchStore;

#[derive(Deserialize, schemars::JsonSchema)]
struct Lookup {
    /// The key.
    key: String,
}

fn lookup_tools() -> ToolSet {
    ToolSet::new().with(tool_fn(
        "lookup",
        "Looks a key up.",
        |x: Lookup| async move { Ok::<_, std::convert::Infallible>(format!("value of {}", x.key)) },
    ))
}

/// The model's first answer: three calls of `lookup`.
fn three_calls() -> Reply {
    let mut chunks: Vec<Value> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let args = serde_json::json!({ "key": k }).to_string();
            tool_chunk(i as u32, Some(&format!("call-{k}")), Some("lookup"), &args)
        })
        .collect();
    chunks.push(finish_chunk("tool_calls"));
    Reply::sse(chunks)
}

/// The final answer: `tokens` streamed tokens of one word each.
fn answer(tokens: usize) -> Reply {
    let mut chunks: Vec<Value> = (0..tokens).map(|i| text_chunk(&format!("w{i} "))).collect();
    chunks.push(finish_chunk("stop"));
    Reply::sse(chunks)
}

fn model(server: &Scripted) -> Arc<OpenAiModel> {
    Arc::new(
        OpenAiModel::builder("scripted-model")
            .base_url(&server.base_url)
            .no_api_key()
            .max_retries(0)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a model"),
    )
}

/// The times of `reps` agent turns (on `store`) and of `reps` raw turns, each with a final
/// answer of `tokens` tokens, interleaved (a raw turn, then an agent turn), after `warmup` of each.
///
/// # Panics
///
/// If a turn fails or answers otherwise than scripted.
pub fn time_agent_turns(
    rt: &Runtime,
    store: &BenchStore,
    tokens: usize,
    warmup: usize,
    reps: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let rounds = warmup + reps;
    let server = rt.block_on(Scripted::start(
        (0..2 * rounds).flat_map(|_| [three_calls(), answer(tokens)]),
    ));
    let model = model(&server);
    let graph = Agent::new(model.clone())
        .tools(lookup_tools())
        .compile()
        .expect("the agent compiles");
    let tools = lookup_tools();
    let base = RunConfig::new().durability(Durability::Async);
    let (mut agent, mut raw) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Raw: the same requests and calls, without the engine.
        let began = Instant::now();
        rt.block_on(async {
            let question = Message::user("look up a, b and c");
            let first = model
                .stream(ChatRequest::new(vec![question.clone()]).tools_from(&tools))
                .await
                .expect("a stream")
                .response()
                .await
                .expect("the first answer");
            let mut history = vec![question, first.message.clone()];
            for call in first.tool_calls() {
                let ctx = ToolContext::new(format!("raw/{}", call.id));
                history.push(tools.answer(call, ctx).await);
            }
            let last = model
                .stream(ChatRequest::new(history).tools_from(&tools))
                .await
                .expect("a stream")
                .response()
                .await
                .expect("the final answer");
            assert_eq!(last.text().len(), tokens * 3 + extra(tokens));
        });
        let raw_time = began.elapsed();
        // The agent: one invocation of a new thread.
        let thread = store.next_run_id();
        let config = base
            .clone()
            .store(store.store().clone() as Arc<dyn CheckpointStore>);
        let input = AgentStateUpdate::new().messages(vec![Message::user("look up a, b and c")]);
        let began = Instant::now();
        let state = rt
            .block_on(graph.invoke_thread(thread, input, config).into_future())
            .expect("an agent turn");
        let agent_time = began.elapsed();
        assert_eq!(
            state.messages.len(),
            6,
            "question, calls, three results, answer"
        );
        if round >= warmup {
            raw.push(raw_time);
            agent.push(agent_time);
        }
    }
    assert_eq!(server.left(), 0, "every scripted reply was used");
    (agent, raw)
}

/// The length of the scripted answer's text beyond 3 bytes per token (`w0 ` .. `w9 ` are 3
/// bytes, `w10 ` on 4, and so on).
fn extra(tokens: usize) -> usize {
    (0..tokens).map(|i| i.to_string().len() - 1).sum()
}
