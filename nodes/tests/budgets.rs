//! Budgets over a real agent run against the scripted OpenAI-compatible server: the model
//! node reports the tokens of each streamed answer (priced by the run's table) and the agent
//! each tool call it runs; a budget of tokens or tool calls stops the run before its next
//! step, and a higher one resumes it without calling the model or a tool again. Within a
//! step, the agent takes each tool call from the budget before running it (parallel calls
//! beyond the limit are refused and run once on a resume), and the model node checks tokens
//! and cost before each model call.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore, RunStatus};
use agentgraph_engine::{
    Budget, BudgetKind, BudgetScope, CompiledGraph, Error, PendingStatus, PriceTable, RunConfig,
    StoreInspector, TenantBudget,
};
use agentgraph_nodes::agent::{Agent, AgentState, InvalidToolCalls};
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::tool::{ToolSet, tool_fn};
use serde::Deserialize;
use serde_json::json;
use support::{Reply, Scripted, finish_chunk, text_chunk, tool_chunk, usage_chunk};

#[derive(Deserialize, schemars::JsonSchema)]
struct Query {
    q: String,
}

/// Turn 1 calls `lookup` twice (100 prompt + 20 completion tokens); turn 2 answers (150 + 30).
fn script() -> Vec<Reply> {
    vec![
        Reply::sse([
            tool_chunk(
                0,
                Some("c1"),
                Some("lookup"),
                &json!({ "q": "a" }).to_string(),
            ),
            tool_chunk(
                1,
                Some("c2"),
                Some("lookup"),
                &json!({ "q": "b" }).to_string(),
            ),
            finish_chunk("tool_calls"),
            usage_chunk(100, 20),
        ]),
        Reply::sse([
            text_chunk("a and b found"),
            finish_chunk("stop"),
            usage_chunk(150, 30),
        ]),
    ]
}

/// The agent over the server, with a `lookup` tool that logs its queries.
fn agent(server: &Scripted, looked_up: &Arc<Mutex<Vec<String>>>) -> CompiledGraph<AgentState> {
    let model = OpenAiModel::builder("scripted-model")
        .base_url(&server.base_url)
        .no_api_key()
        .max_retries(0)
        .stream_usage(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let log = looked_up.clone();
    let tools = ToolSet::new().with(tool_fn("lookup", "Looks up.", move |x: Query| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(x.q.clone());
            Ok::<_, std::io::Error>(format!("found {}", x.q))
        }
    }));
    Agent::new(Arc::new(model)).tools(tools).compile().unwrap()
}

fn question() -> AgentState {
    AgentState::from_messages([Message::user("find a and b")])
}

fn config(store: &Arc<dyn CheckpointStore>, tenant: &TenantBudget) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id("r")
        .prices(PriceTable::new().price("scripted-model", 2.0, 10.0))
        .tenant_budget(tenant.clone())
}

/// A run without limits counts every token, its cost and every tool call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_counts_its_tokens_cost_and_tool_calls() {
    let server = Scripted::start(script()).await;
    let looked_up = Arc::new(Mutex::new(Vec::new()));
    let graph = agent(&server, &looked_up);
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    // A tenant without limits: a way to read the totals.
    let tenant = TenantBudget::new(Budget::new());
    let done = graph
        .run_with(question(), config(&store, &tenant))
        .await
        .unwrap();
    assert_eq!(done.messages.last().unwrap().text(), Some("a and b found"));
    let used = tenant.usage();
    assert_eq!((used.tokens, used.tool_calls), (300, 2));
    // 250 prompt tokens at $2 and 50 completion tokens at $10 per million.
    assert_eq!(used.cost_nanos, 250 * 2_000 + 50 * 10_000);
    assert_eq!(used.steps, 3);
}

/// A token budget stops the agent after its first model turn, before the tools run; a tool
/// call budget after the tools, before the second turn. Each resume with a higher budget goes
/// on without calling the model or a tool again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_tool_call_budgets_stop_and_resume_an_agent() {
    let server = Scripted::start(script()).await;
    let looked_up = Arc::new(Mutex::new(Vec::new()));
    let graph = agent(&server, &looked_up);
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let tenant = TenantBudget::new(Budget::new());

    let e = graph
        .run_with(
            question(),
            config(&store, &tenant).budget(Budget::new().max_tokens(100)),
        )
        .await
        .unwrap_err();
    let Error::BudgetExceeded(stop) = e else {
        panic!("expected a budget stop, got {e:?}");
    };
    assert_eq!(
        (stop.scope, stop.budget, stop.limit, stop.used, stop.step),
        (BudgetScope::Run, BudgetKind::Tokens, 100, 120, 2)
    );
    assert!(looked_up.lock().unwrap().is_empty(), "no tool ran");
    let record = store.get_run("r").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::BudgetExceeded);

    let e = graph
        .resume(
            "r",
            config(&store, &tenant).budget(Budget::new().max_tokens(1_000).max_tool_calls(2)),
        )
        .await
        .unwrap_err();
    let Error::BudgetExceeded(stop) = e else {
        panic!("expected a budget stop, got {e:?}");
    };
    assert_eq!(
        (stop.budget, stop.limit, stop.used, stop.step),
        (BudgetKind::ToolCalls, 2, 2, 3)
    );
    assert_eq!(
        sorted(&looked_up),
        ["a", "b"],
        "the two tool calls run in parallel"
    );
    assert_eq!(server.requests().len(), 1, "the model was called once");

    let done = graph
        .resume(
            "r",
            config(&store, &tenant).budget(Budget::new().max_tokens(1_000)),
        )
        .await
        .unwrap();
    assert_eq!(done.messages.last().unwrap().text(), Some("a and b found"));
    assert_eq!(server.requests().len(), 2);
    assert_eq!(sorted(&looked_up), ["a", "b"], "each tool ran once");
    let used = tenant.usage();
    assert_eq!((used.tokens, used.tool_calls), (300, 2));
}

/// The tools looked up, in name order: the agent runs one turn's tool calls in parallel, so
/// the order they ran in is not part of the contract.
fn sorted(looked_up: &Mutex<Vec<String>>) -> Vec<String> {
    let mut names = looked_up.lock().unwrap().clone();
    names.sort();
    names
}

/// Turn 1 calls `lookup` three times at once (c1 `a`, c2 `b`, c3 `c`); turn 2 answers.
fn three_calls() -> Vec<Reply> {
    vec![
        Reply::sse([
            tool_chunk(
                0,
                Some("c1"),
                Some("lookup"),
                &json!({ "q": "a" }).to_string(),
            ),
            tool_chunk(
                1,
                Some("c2"),
                Some("lookup"),
                &json!({ "q": "b" }).to_string(),
            ),
            tool_chunk(
                2,
                Some("c3"),
                Some("lookup"),
                &json!({ "q": "c" }).to_string(),
            ),
            finish_chunk("tool_calls"),
            usage_chunk(100, 20),
        ]),
        Reply::sse([
            text_chunk("a, b and c found"),
            finish_chunk("stop"),
            usage_chunk(150, 30),
        ]),
    ]
}

/// How often `lookup` ran for each query.
fn counts(looked_up: &Mutex<Vec<String>>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for q in looked_up.lock().unwrap().iter() {
        *counts.entry(q.clone()).or_default() += 1;
    }
    counts
}

/// Three parallel tool calls under a budget of 2: two run (which two is the race's), the
/// third is refused before it runs and the run stops in the tool step with the typed error;
/// the finished calls' results are kept. Resumed with a budget of 5, the third runs, once,
/// and the model answers; no call ran twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_tool_calls_beyond_the_budget_are_refused_and_run_once_on_resume() {
    let server = Scripted::start(three_calls()).await;
    let looked_up = Arc::new(Mutex::new(Vec::new()));
    let graph = agent(&server, &looked_up);
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let tenant = TenantBudget::new(Budget::new());

    let e = graph
        .run_with(
            AgentState::from_messages([Message::user("find a, b and c")]),
            config(&store, &tenant).budget(Budget::new().max_tool_calls(2)),
        )
        .await
        .unwrap_err();
    let Error::BudgetExceeded(stop) = e else {
        panic!("expected a budget stop, got {e:?}");
    };
    assert_eq!(
        (stop.scope, stop.budget, stop.limit, stop.used, stop.step),
        (BudgetScope::Run, BudgetKind::ToolCalls, 2, 2, 2)
    );
    let ran = counts(&looked_up);
    assert_eq!(ran.len(), 2, "two calls ran: {ran:?}");
    assert!(ran.values().all(|&n| n == 1), "each once: {ran:?}");
    assert_eq!(tenant.usage().tool_calls, 2);
    let record = store.get_run("r").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::BudgetExceeded);
    // The tool step's tasks, by call id (their order in the step is the calls').
    let mut pending: Vec<PendingStatus> = graph
        .history(store.clone())
        .pending("r")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.status)
        .collect();
    pending.sort_by_key(|s| s.as_str());
    assert_eq!(
        pending,
        [
            PendingStatus::Done,
            PendingStatus::Done,
            PendingStatus::OverBudget
        ]
    );

    let done = graph
        .resume(
            "r",
            config(&store, &tenant).budget(Budget::new().max_tool_calls(5)),
        )
        .await
        .unwrap();
    assert_eq!(
        done.messages.last().unwrap().text(),
        Some("a, b and c found")
    );
    assert_eq!(
        counts(&looked_up),
        BTreeMap::from([("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]),
        "every call ran exactly once"
    );
    // The tool results, by call id: each call answered once, with its own result.
    let mut results: Vec<(String, String)> = done
        .messages
        .iter()
        .filter_map(|m| Some((m.call_id()?.to_owned(), m.content.to_text().into_owned())))
        .collect();
    results.sort();
    assert_eq!(
        results,
        [
            ("c1".to_owned(), "found a".to_owned()),
            ("c2".to_owned(), "found b".to_owned()),
            ("c3".to_owned(), "found c".to_owned()),
        ]
    );
    assert_eq!(
        server.requests().len(),
        2,
        "the model was called once per turn"
    );
    assert_eq!(tenant.usage().tool_calls, 3);
    let usage = StoreInspector::new(store.clone())
        .usage("r")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((usage.total.tool_calls, usage.total.tokens), (3, 300));
}

/// The model node checks the budget before each model call, not only before each step: an
/// agent asked to retry an invalid answer in the same task does not call the model again once
/// the first answer used the run's tokens; resumed with more tokens, the task runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_is_not_made_once_the_tokens_are_used() {
    let server = Scripted::start([
        Reply::sse([
            tool_chunk(0, Some("c1"), Some("no_such_tool"), "{}"),
            finish_chunk("tool_calls"),
            usage_chunk(100, 20),
        ]),
        Reply::sse([
            text_chunk("done"),
            finish_chunk("stop"),
            usage_chunk(150, 30),
        ]),
    ])
    .await;
    let model = OpenAiModel::builder("scripted-model")
        .base_url(&server.base_url)
        .no_api_key()
        .max_retries(0)
        .stream_usage(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let graph = Agent::new(Arc::new(model))
        .on_invalid_tool_call(InvalidToolCalls::RetryModel { retries: 3 })
        .compile()
        .unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let tenant = TenantBudget::new(Budget::new());
    let e = graph
        .run_with(
            question(),
            config(&store, &tenant).budget(Budget::new().max_tokens(100)),
        )
        .await
        .unwrap_err();
    let Error::BudgetExceeded(stop) = e else {
        panic!("expected a budget stop, got {e:?}");
    };
    assert_eq!(
        (stop.budget, stop.limit, stop.used, stop.step),
        (BudgetKind::Tokens, 100, 120, 1)
    );
    assert_eq!(server.requests().len(), 1, "no second call over the budget");

    let done = graph
        .resume(
            "r",
            config(&store, &tenant).budget(Budget::new().max_tokens(1_000)),
        )
        .await
        .unwrap();
    assert_eq!(done.messages.last().unwrap().text(), Some("done"));
    assert_eq!(server.requests().len(), 2);
}
