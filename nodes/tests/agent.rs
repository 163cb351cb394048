//! The tool-calling agent against the scripted OpenAI-compatible server: a turn of three tool
//! calls run as three tasks (the same messages in sequential and parallel modes), a crash
//! after two of them resumed with the third only, approvals (approve, reject, edit), limits
//! on calls and turns, the policies for invalid calls, the stop hook, and a chat of two
//! invocations on a thread.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
use agentgraph_engine::{
    CompiledGraph, Durability, Error, Mode, PendingStatus, Resume, RetryPolicy, RunConfig,
    RunOutcome,
};
use agentgraph_nodes::agent::{
    Agent, AgentError, AgentState, AgentStateUpdate, Approval, ApprovalRequest, InvalidToolCalls,
    TOOL_NODE,
};
use agentgraph_nodes::message::{Message, MessageError, ToolCall};
use agentgraph_nodes::model::ModelError;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::tool::{ToolContext, ToolOptions, ToolSet, tool_fn_with_context};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{Reply, Scripted, finish_chunk, text_chunk, tool_chunk};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn model(server: &Scripted) -> Arc<OpenAiModel> {
    Arc::new(
        OpenAiModel::builder("scripted-model")
            .base_url(&server.base_url)
            .no_api_key()
            .max_retries(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    )
}

/// A streamed plain answer.
fn say(text: &str) -> Reply {
    Reply::sse([text_chunk(text), finish_chunk("stop")])
}

/// A streamed answer calling tools: (id, name, arguments).
fn calls(calls: &[(&str, &str, Value)]) -> Reply {
    let mut chunks: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (id, name, args))| tool_chunk(i as u32, Some(id), Some(name), &args.to_string()))
        .collect();
    chunks.push(finish_chunk("tool_calls"));
    Reply::sse(chunks)
}

/// What the tools were called with: (tool, arguments, idempotency key), in call order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, Value, String)>>>);

impl Log {
    fn calls(&self) -> Vec<(String, Value, String)> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, tool: &str) -> usize {
        self.calls().iter().filter(|(t, ..)| t == tool).count()
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Query {
    q: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Path {
    path: String,
}

/// `lookup` (answers `found {q}`) and `delete` (answers `deleted {path}`), both logged.
fn tools(log: &Log, lookup: ToolOptions, delete: ToolOptions) -> ToolSet {
    let (l1, l2) = (log.clone(), log.clone());
    ToolSet::new()
        .with_options(
            tool_fn_with_context("lookup", "Looks up.", move |x: Query, ctx: ToolContext| {
                let log = l1.clone();
                async move {
                    log.0.lock().unwrap().push((
                        "lookup".into(),
                        json!({ "q": x.q }),
                        ctx.idempotency_key().to_owned(),
                    ));
                    Ok::<_, std::io::Error>(format!("found {}", x.q))
                }
            }),
            lookup,
        )
        .with_options(
            tool_fn_with_context("delete", "Deletes.", move |x: Path, ctx: ToolContext| {
                let log = l2.clone();
                async move {
                    log.0.lock().unwrap().push((
                        "delete".into(),
                        json!({ "path": x.path }),
                        ctx.idempotency_key().to_owned(),
                    ));
                    Ok::<_, std::io::Error>(format!("deleted {}", x.path))
                }
            }),
            delete,
        )
}

/// A message without its generated id: (role, text, call id, is_error, tool calls).
type Shape = (String, String, Option<String>, bool, Vec<String>);

/// The messages without their generated ids.
fn shape(messages: &[Message]) -> Vec<Shape> {
    messages
        .iter()
        .map(|m| {
            (
                m.role.as_str().to_owned(),
                m.content.to_text().into_owned(),
                m.call_id().map(str::to_owned),
                m.is_error(),
                m.tool_calls()
                    .iter()
                    .map(|c| format!("{}:{}", c.id, c.name))
                    .collect(),
            )
        })
        .collect()
}

/// The roles of the messages of request `i` the server got.
fn roles(server: &Scripted, i: usize) -> Vec<String> {
    server.requests()[i].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect()
}

fn store() -> Arc<dyn CheckpointStore> {
    Arc::new(MemoryStore::new())
}

fn cfg(store: &Arc<dyn CheckpointStore>, run: &str) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(run)
        .durability(Durability::Sync)
}

/// The agent error a failed run ends with.
fn agent_error(e: &Error) -> &AgentError {
    match e {
        Error::NodeFailed { source, .. } => source
            .downcast_ref::<AgentError>()
            .unwrap_or_else(|| panic!("not an agent error: {source}")),
        other => panic!("expected a node failure, got {other:?}"),
    }
}

fn question(text: &str) -> AgentState {
    AgentState::from_messages([Message::user(text)])
}

// ---------------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------------

fn three_lookups() -> Reply {
    calls(&[
        ("c1", "lookup", json!({ "q": "a" })),
        ("c2", "lookup", json!({ "q": "b" })),
        ("c3", "lookup", json!({ "q": "c" })),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tool_calls_are_three_tasks_and_both_modes_agree() {
    let mut shapes = Vec::new();
    for mode in [Mode::Sequential, Mode::Parallel] {
        let server = Scripted::start([three_lookups(), say("a, b and c found")]).await;
        let log = Log::default();
        let graph = Agent::new(model(&server))
            .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
            .system_prompt("You look things up.")
            .compile()
            .unwrap();
        let store = store();
        let done = graph
            .run_with(question("find a, b, c"), cfg(&store, "r").mode(mode))
            .await
            .unwrap();
        assert_eq!(
            done.reply().and_then(Message::text),
            Some("a, b and c found")
        );
        assert_eq!(log.count("lookup"), 3);
        // Each call under its own key: its task's, then `/` and the call id.
        let mut keys: Vec<String> = log.calls().into_iter().map(|(.., k)| k).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().any(|k| k.ends_with("/c2")));

        // Two model calls; the second sees the system prompt, the question, the calls and
        // their three results; tools are offered.
        assert_eq!(server.requests().len(), 2);
        assert_eq!(roles(&server, 0), ["system", "user"]);
        assert_eq!(
            roles(&server, 1),
            ["system", "user", "assistant", "tool", "tool", "tool"]
        );
        let body = &server.requests()[1].body;
        assert_eq!(body["messages"][0]["content"], "You look things up.");
        assert_eq!(body["tools"][0]["function"]["name"], "lookup");

        // The three tool tasks ran in one step, after the model's.
        let history = graph.history(store.clone());
        let nodes: Vec<Vec<String>> = history
            .checkpoints("r")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.next)
            .collect();
        assert!(
            nodes
                .iter()
                .any(|n| n == &[TOOL_NODE, TOOL_NODE, TOOL_NODE]),
            "{nodes:?}"
        );
        shapes.push(shape(&done.messages));
    }
    assert_eq!(shapes[0], shapes[1], "sequential and parallel runs agree");
    let results: Vec<(String, Option<String>)> = shapes[1]
        .iter()
        .filter(|s| s.0 == "tool")
        .map(|s| (s.1.clone(), s.2.clone()))
        .collect();
    assert_eq!(
        results,
        [
            ("found a".into(), Some("c1".into())),
            ("found b".into(), Some("c2".into())),
            ("found c".into(), Some("c3".into())),
        ],
        "results merged in the order of the calls"
    );
}

#[tokio::test]
async fn a_history_with_an_unanswered_call_is_refused_before_the_model_is_called() {
    let server = Scripted::start([say("never")]).await;
    let graph = Agent::new(model(&server)).compile().unwrap();
    let input = AgentState::from_messages([
        Message::user("hi"),
        Message::assistant("").with_tool_calls([ToolCall::new("c9", "lookup", json!({}))]),
        Message::user("and?"),
    ]);
    let e = graph.invoke(input).await.unwrap_err();
    assert!(matches!(
        agent_error(&e),
        AgentError::Unanswered(MessageError::UnansweredToolCall { call_id, .. }) if call_id == "c9"
    ));
    assert_eq!(server.requests().len(), 0);
}

// ---------------------------------------------------------------------------------------------
// A crash after two of three calls
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_two_of_three_calls_resumes_with_the_third_only() {
    let server = Scripted::start([
        calls(&[
            ("c1", "lookup", json!({ "q": "a" })),
            ("c2", "lookup", json!({ "q": "b" })),
            ("c3", "slow", json!({ "q": "c" })),
        ]),
        say("all three"),
    ])
    .await;
    let log = Log::default();
    let armed = Arc::new(AtomicBool::new(true));
    let started = Arc::new(Mutex::new(0u32));
    let (a, s) = (armed.clone(), started.clone());
    let slow = tool_fn_with_context("slow", "Slow.", move |x: Query, _: ToolContext| {
        let (armed, started) = (a.clone(), s.clone());
        async move {
            *started.lock().unwrap() += 1;
            if armed.load(Ordering::SeqCst) {
                // The process dies during this call.
                std::future::pending::<()>().await;
            }
            Ok::<_, std::io::Error>(format!("slowly found {}", x.q))
        }
    });
    let set = tools(&log, ToolOptions::new(), ToolOptions::new()).with(slow);
    let graph = Agent::new(model(&server)).tools(set).compile().unwrap();
    let store = store();

    // Run until the two quick calls are stored as done, then drop the run (the crash).
    let run = graph.run_with(question("find a, b, c"), cfg(&store, "crash"));
    let history = graph.history(store.clone());
    let two_done = async {
        loop {
            let pending = history.pending("crash").await.unwrap_or_default();
            let done = pending
                .iter()
                .filter(|t| t.node == TOOL_NODE && t.status == PendingStatus::Done)
                .count();
            if done == 2 && *started.lock().unwrap() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        r = run.into_future() => panic!("the run ended before the crash: {:?}", r.err()),
        () = two_done => {}
    }
    assert_eq!(log.count("lookup"), 2);
    assert_eq!(server.requests().len(), 1);

    // The next process resumes: only the third call runs, then the model.
    armed.store(false, Ordering::SeqCst);
    let done = graph.resume("crash", cfg(&store, "crash")).await.unwrap();
    assert_eq!(log.count("lookup"), 2, "finished calls are not run again");
    assert_eq!(*started.lock().unwrap(), 2, "the third call ran again");
    assert_eq!(
        server.requests().len(),
        2,
        "the first model call is not repeated"
    );
    let texts: Vec<String> = done
        .messages
        .iter()
        .map(|m| m.content.to_text().into_owned())
        .collect();
    assert_eq!(
        texts[2..],
        ["found a", "found b", "slowly found c", "all three"]
    );
}

// ---------------------------------------------------------------------------------------------
// Approval
// ---------------------------------------------------------------------------------------------

/// Runs a turn calling `delete` (which needs approval), answers its interrupt with
/// `decision`, and returns the final state, the log and the server.
async fn approve_with(decision: Approval) -> (AgentState, Log, Scripted) {
    let server = Scripted::start([
        calls(&[
            ("c1", "delete", json!({ "path": "/tmp/x" })),
            ("c2", "lookup", json!({ "q": "a" })),
        ]),
        say("done"),
    ])
    .await;
    let log = Log::default();
    let set = tools(
        &log,
        ToolOptions::new(),
        ToolOptions::new().needs_approval(true),
    );
    let graph: CompiledGraph<AgentState> = Agent::new(model(&server)).tools(set).compile().unwrap();
    let store = store();
    let outcome = graph
        .run_with(question("clean up"), cfg(&store, "a"))
        .outcome()
        .await
        .unwrap();
    let RunOutcome::Interrupted(stop) = outcome else {
        panic!("expected an interrupt");
    };
    assert_eq!(stop.interrupts.len(), 1);
    let asked: ApprovalRequest =
        serde_json::from_value(stop.interrupts[0].payload.clone()).unwrap();
    assert_eq!(
        (
            asked.kind.as_str(),
            asked.tool.as_str(),
            asked.call_id.as_str()
        ),
        ("tool_approval", "delete", "c1")
    );
    assert_eq!(asked.arguments, json!({ "path": "/tmp/x" }));
    // Nothing deleted yet; the other call of the turn ran.
    assert_eq!(log.count("delete"), 0);
    assert_eq!(log.count("lookup"), 1);
    let done = graph
        .resume_with("a", Resume::value(decision), cfg(&store, "a"))
        .await
        .unwrap();
    assert_eq!(log.count("lookup"), 1, "the other call is not run again");
    assert_eq!(server.requests().len(), 2);
    (done, log, server)
}

#[tokio::test]
async fn an_approved_call_runs() {
    let (done, log, _server) = approve_with(Approval::Approve).await;
    assert_eq!(log.count("delete"), 1);
    assert_eq!(log.calls()[1].1, json!({ "path": "/tmp/x" }));
    assert_eq!(done.messages[2].content.to_text(), "deleted /tmp/x");
    assert!(!done.messages[2].is_error());
    assert_eq!(done.reply().and_then(Message::text), Some("done"));
}

#[tokio::test]
async fn a_rejected_call_is_answered_as_an_error_with_the_reason() {
    let (done, log, server) = approve_with(Approval::reject("not that file")).await;
    assert_eq!(log.count("delete"), 0);
    assert!(done.messages[2].is_error());
    assert_eq!(
        done.messages[2].content.to_text(),
        "the call of tool `delete` was rejected: not that file"
    );
    let sent = &server.requests()[1].body["messages"];
    assert_eq!(
        sent[2]["content"],
        "the call of tool `delete` was rejected: not that file"
    );
}

#[tokio::test]
async fn an_edited_call_runs_with_the_new_arguments() {
    let (done, log, _server) = approve_with(Approval::edit(json!({ "path": "/tmp/y" }))).await;
    assert_eq!(log.count("delete"), 1);
    assert_eq!(log.calls()[1].1, json!({ "path": "/tmp/y" }));
    assert_eq!(done.messages[2].content.to_text(), "deleted /tmp/y");
    // The history keeps the model's call as it made it.
    assert_eq!(
        done.messages[1].tool_calls()[0].arguments.as_json(),
        Some(&json!({ "path": "/tmp/x" }))
    );
}

#[tokio::test]
async fn a_rule_picks_calls_to_approve() {
    let server = Scripted::start([calls(&[("c1", "lookup", json!({ "q": "secret" }))])]).await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .approve_when(|call: &ToolCall| {
            call.arguments.as_json().is_some_and(|a| a["q"] == "secret")
        })
        .compile()
        .unwrap();
    let e = graph.invoke(question("?")).await.unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e:?}");
    assert_eq!(log.count("lookup"), 0);
}

// ---------------------------------------------------------------------------------------------
// Limits and policies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn calls_beyond_a_tools_limit_are_answered_as_errors_across_turns() {
    let server = Scripted::start([
        calls(&[("c1", "lookup", json!({ "q": "a" }))]),
        calls(&[
            ("c2", "lookup", json!({ "q": "b" })),
            ("c3", "lookup", json!({ "q": "c" })),
        ]),
        say("enough"),
    ])
    .await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(
            &log,
            ToolOptions::new().max_calls_per_run(2),
            ToolOptions::new(),
        ))
        .compile()
        .unwrap();
    let done = graph.invoke(question("look")).await.unwrap();
    assert_eq!(log.count("lookup"), 2);
    let last_results: Vec<(String, bool)> = done.messages[4..6]
        .iter()
        .map(|m| (m.content.to_text().into_owned(), m.is_error()))
        .collect();
    assert_eq!(
        last_results,
        [
            ("found b".into(), false),
            (
                "tool `lookup` was not called: it may be called at most 2 times in this run".into(),
                true
            ),
        ]
    );
    assert_eq!(done.reply().and_then(Message::text), Some("enough"));
}

#[tokio::test]
async fn the_agents_limit_on_tool_calls_counts_every_tool() {
    let server = Scripted::start([
        calls(&[
            ("c1", "lookup", json!({ "q": "a" })),
            ("c2", "delete", json!({ "path": "/x" })),
        ]),
        say("ok"),
    ])
    .await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .max_tool_calls(1)
        .compile()
        .unwrap();
    let done = graph.invoke(question("go")).await.unwrap();
    assert_eq!((log.count("lookup"), log.count("delete")), (1, 0));
    assert!(done.messages[3].is_error());
    assert_eq!(
        done.messages[3].content.to_text(),
        "tool `delete` was not called: at most 1 tool calls may be made in this run"
    );
}

#[tokio::test]
async fn the_turn_limit_fails_the_run_with_a_typed_error() {
    let server = Scripted::start([
        calls(&[("c1", "lookup", json!({ "q": "a" }))]),
        calls(&[("c2", "lookup", json!({ "q": "b" }))]),
        say("never asked"),
    ])
    .await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .max_turns(2)
        .compile()
        .unwrap();
    let e = graph.invoke(question("loop")).await.unwrap_err();
    assert!(matches!(
        agent_error(&e),
        AgentError::TurnLimit { limit: 2 }
    ));
    assert_eq!(server.requests().len(), 2);
    assert_eq!(log.count("lookup"), 2);
}

#[tokio::test]
async fn the_stop_hook_ends_the_run_after_the_tool_results() {
    let server = Scripted::start([three_lookups(), say("not asked")]).await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .stop_when(|messages: &[Message]| messages.iter().any(|m| m.content.to_text() == "found b"))
        .compile()
        .unwrap();
    let done = graph.invoke(question("find")).await.unwrap();
    assert_eq!(done.messages.len(), 5);
    assert!(done.reply().is_none());
    assert_eq!(server.requests().len(), 1);
}

fn invalid_then_valid() -> [Reply; 3] {
    [
        calls(&[("c1", "nope", json!({}))]),
        calls(&[("c2", "lookup", json!({ "q": "a" }))]),
        say("found it"),
    ]
}

#[tokio::test]
async fn an_invalid_call_is_answered_to_the_model_by_default() {
    let server = Scripted::start(invalid_then_valid()).await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()).deny("delete"))
        .compile()
        .unwrap();
    let done = graph.invoke(question("?")).await.unwrap();
    assert!(done.messages[2].is_error());
    assert_eq!(
        done.messages[2].content.to_text(),
        "tool `nope` does not exist; the tools are: lookup"
    );
    assert_eq!(log.count("lookup"), 1);
    assert_eq!(done.reply().and_then(Message::text), Some("found it"));
}

#[tokio::test]
async fn an_invalid_call_can_retry_the_model() {
    let server = Scripted::start(invalid_then_valid()).await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .on_invalid_tool_call(InvalidToolCalls::RetryModel { retries: 1 })
        .compile()
        .unwrap();
    let done = graph.invoke(question("?")).await.unwrap();
    // The invalid answer was dropped: the history holds the valid one only.
    let ids: Vec<String> = done
        .messages
        .iter()
        .flat_map(|m| m.tool_calls().iter().map(|c| c.id.clone()))
        .collect();
    assert_eq!(ids, ["c2"]);
    assert_eq!(server.requests().len(), 3);
    assert_eq!(done.reply().and_then(Message::text), Some("found it"));
}

#[tokio::test]
async fn an_invalid_call_can_fail_the_run() {
    let server = Scripted::start([calls(&[("c1", "lookup", json!({ "q": 7 }))])]).await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .on_invalid_tool_call(InvalidToolCalls::Fail)
        .compile()
        .unwrap();
    let e = graph.invoke(question("?")).await.unwrap_err();
    assert!(matches!(
        agent_error(&e),
        AgentError::InvalidToolCall { call_id, .. } if call_id == "c1"
    ));
    assert_eq!(log.count("lookup"), 0);
}

// ---------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_chat_goes_on_across_invocations_of_a_thread() {
    let server = Scripted::start([
        calls(&[("c1", "lookup", json!({ "q": "paris" }))]),
        say("Paris is found."),
        calls(&[("c2", "lookup", json!({ "q": "rome" }))]),
        say("Rome too."),
    ])
    .await;
    let log = Log::default();
    // Two model calls per invocation: the turn limit counts per invocation.
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .max_turns(2)
        .compile()
        .unwrap();
    let store = store();
    let config = || RunConfig::new().store(store.clone());
    let mut replies = Vec::new();
    for text in ["find paris", "and rome?"] {
        let input = AgentStateUpdate::new().messages(vec![Message::user(text)]);
        let state = graph.invoke_thread("chat", input, config()).await.unwrap();
        replies.push(state.reply().and_then(Message::text).unwrap().to_owned());
    }
    assert_eq!(replies, ["Paris is found.", "Rome too."]);
    assert_eq!(log.count("lookup"), 2);
    // The fourth request holds the whole chat.
    assert_eq!(
        roles(&server, 3),
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
            "tool"
        ]
    );
    let state = graph
        .history(store.clone())
        .state("chat", None)
        .await
        .unwrap();
    assert_eq!(state.messages.len(), 8);
    let per_invocation: BTreeMap<u32, usize> = graph
        .history(store.clone())
        .checkpoints("chat")
        .await
        .unwrap()
        .iter()
        .fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.invocation).or_default() += 1;
            m
        });
    assert_eq!(per_invocation.keys().copied().collect::<Vec<_>>(), [1, 2]);
}

// ---------------------------------------------------------------------------------------------
// As a subgraph
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default, serde::Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Desk {
    #[reducer(with = agentgraph_nodes::add_messages)]
    messages: Vec<Message>,
    #[reducer(append)]
    notes: Vec<String>,
}

#[tokio::test]
async fn the_agent_is_a_subgraph_node_of_a_larger_graph() {
    use agentgraph_engine::{END, GraphBuilder, START};
    let server = Scripted::start([three_lookups(), say("a, b, c")]).await;
    let log = Log::default();
    let agent = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .compile()
        .unwrap();
    let mut b = GraphBuilder::<Desk>::new();
    b.add_subgraph(
        "agent",
        agent,
        |d: &Desk| AgentState::from_messages(d.messages.clone()),
        // The agent's messages, the desk's included: `add_messages` replaces those by id.
        |a: AgentState| DeskUpdate::new().messages(a.messages),
    )
    .add_node("file", |d: Arc<Desk>, _| async move {
        let reply = d.messages.last().map(|m| m.content.to_text().into_owned());
        Ok::<_, agentgraph_engine::BoxError>(
            DeskUpdate::new().notes(vec![reply.unwrap_or_default()]),
        )
    })
    .add_edge(START, "agent")
    .add_edge("agent", "file")
    .add_edge("file", END);
    let store = store();
    let done = b
        .compile()
        .unwrap()
        .run_with(
            Desk {
                messages: vec![Message::user("find a, b, c")],
                ..Desk::default()
            },
            cfg(&store, "desk"),
        )
        .await
        .unwrap();
    assert_eq!(done.messages.len(), 6);
    assert_eq!(done.notes, ["a, b, c"]);
    assert_eq!(log.count("lookup"), 3);
}

#[tokio::test]
async fn a_run_stopped_by_the_turn_limit_goes_on_after_a_new_user_message() {
    let server = Scripted::start([
        calls(&[("c1", "lookup", json!({ "q": "a" }))]),
        say("found a"),
    ])
    .await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .max_turns(1)
        .compile()
        .unwrap();
    let store = store();
    let e = graph
        .run_with(question("find a"), cfg(&store, "limit"))
        .await
        .unwrap_err();
    assert!(matches!(
        agent_error(&e),
        AgentError::TurnLimit { limit: 1 }
    ));
    // A user message starts a new count: the failed model call runs again and answers.
    let resume =
        Resume::new().update(AgentStateUpdate::new().messages(vec![Message::user("go on")]));
    let done = graph
        .resume_with("limit", resume, cfg(&store, "limit"))
        .await
        .unwrap();
    assert_eq!(done.reply().and_then(Message::text), Some("found a"));
    assert_eq!(server.requests().len(), 2);
    assert_eq!(roles(&server, 1), ["user", "assistant", "tool", "user"]);
}

#[tokio::test]
async fn parallel_approvals_are_answered_by_id() {
    let server = Scripted::start([
        calls(&[
            ("c1", "delete", json!({ "path": "/a" })),
            ("c2", "delete", json!({ "path": "/b" })),
        ]),
        say("one of two"),
    ])
    .await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(
            &log,
            ToolOptions::new(),
            ToolOptions::new().needs_approval(true),
        ))
        .compile()
        .unwrap();
    let store = store();
    let RunOutcome::Interrupted(stop) = graph
        .run_with(question("clean"), cfg(&store, "two"))
        .outcome()
        .await
        .unwrap()
    else {
        panic!("expected interrupts");
    };
    let asked: Vec<(String, String)> = stop
        .interrupts
        .iter()
        .map(|i| {
            let r: ApprovalRequest = serde_json::from_value(i.payload.clone()).unwrap();
            (r.call_id, i.id.clone())
        })
        .collect();
    assert_eq!(
        asked.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    let resume = Resume::new()
        .answer(&asked[0].1, Approval::Approve)
        .answer(&asked[1].1, Approval::reject(""));
    let done = graph
        .resume_with("two", resume, cfg(&store, "two"))
        .await
        .unwrap();
    assert_eq!(log.count("delete"), 1);
    assert_eq!(done.messages[2].content.to_text(), "deleted /a");
    assert_eq!(
        done.messages[3].content.to_text(),
        "the call of tool `delete` was rejected"
    );
}

// ---------------------------------------------------------------------------------------------
// Model calls: retries, timeout, the limit per run
// ---------------------------------------------------------------------------------------------

/// A stream that sends some text, then breaks its connection.
fn cut_stream() -> Reply {
    Reply::sse_raw(
        [
            text_chunk("Lost").to_string(),
            text_chunk(" words").to_string(),
        ],
        false,
        true,
    )
    .paced(Duration::from_millis(30))
}

/// The model error a failed run ends with.
fn model_error(e: &Error) -> &ModelError {
    match e {
        Error::NodeFailed { source, .. } => source
            .downcast_ref::<ModelError>()
            .unwrap_or_else(|| panic!("not a model error: {source}")),
        other => panic!("expected a node failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cut_model_stream_is_called_again_by_default() {
    let server = Scripted::start([cut_stream(), say("found it")]).await;
    let graph = Agent::new(model(&server)).compile().unwrap();
    let store = store();
    let done = graph
        .run_with(question("find"), cfg(&store, "cut"))
        .await
        .unwrap();
    assert_eq!(done.reply().and_then(Message::text), Some("found it"));
    assert_eq!(server.requests().len(), 2);
    // The failed attempt left nothing in the state: one answer.
    assert_eq!(done.messages.len(), 2);
}

#[tokio::test]
async fn a_model_call_over_its_timeout_is_called_again() {
    let server = Scripted::start([
        Reply::sse([text_chunk("Slow"), text_chunk("."), finish_chunk("stop")])
            .paced(Duration::from_secs(30)),
        say("Quick."),
    ])
    .await;
    // Long enough for the second attempt on a loaded machine.
    let graph = Agent::new(model(&server))
        .model_timeout(Duration::from_secs(2))
        .model_retry(
            Agent::default_model_retry()
                .backoff(Duration::from_millis(1), Duration::from_millis(5)),
        )
        .compile()
        .unwrap();
    let done = graph.invoke(question("hurry")).await.unwrap();
    assert_eq!(done.reply().and_then(Message::text), Some("Quick."));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn model_retries_can_be_turned_off() {
    let server = Scripted::start([cut_stream(), say("not asked")]).await;
    let graph = Agent::new(model(&server))
        .model_retry(RetryPolicy::never())
        .compile()
        .unwrap();
    let e = graph.invoke(question("find")).await.unwrap_err();
    assert!(
        matches!(model_error(&e), ModelError::StreamCut { .. }),
        "{e}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_error_the_provider_gave_up_on_is_not_retried_again() {
    // The provider retries 5xx itself (here `max_retries(0)`): the agent does not add its own.
    let server = Scripted::start([Reply::error(503, "overloaded"), say("not asked")]).await;
    let graph = Agent::new(model(&server)).compile().unwrap();
    let e = graph.invoke(question("find")).await.unwrap_err();
    assert!(
        matches!(model_error(&e), ModelError::Status { status: 503, .. }),
        "{e}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn the_model_call_limit_counts_across_the_invocations_of_a_thread() {
    let server = Scripted::start([
        say("Hello."),
        calls(&[("c1", "lookup", json!({ "q": "rome" }))]),
        say("not asked"),
    ])
    .await;
    let log = Log::default();
    let graph = Agent::new(model(&server))
        .tools(tools(&log, ToolOptions::new(), ToolOptions::new()))
        .max_model_calls(2)
        .compile()
        .unwrap();
    let store = store();
    let config = || RunConfig::new().store(store.clone());
    let hello = AgentStateUpdate::new().messages(vec![Message::user("hi")]);
    graph.invoke_thread("chat", hello, config()).await.unwrap();
    // The second invocation's first call is the run's second; its tool runs; a third model
    // call is refused, although `max_turns` would allow it.
    let rome = AgentStateUpdate::new().messages(vec![Message::user("find rome")]);
    let e = graph
        .invoke_thread("chat", rome, config())
        .await
        .unwrap_err();
    assert!(matches!(
        agent_error(&e),
        AgentError::ModelCallLimit { limit: 2 }
    ));
    assert_eq!(
        agent_error(&e).to_string(),
        "the agent reached its limit of 2 model calls in this run: raise `max_model_calls` or go on in a new thread"
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(log.count("lookup"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_of_a_turn_run_at_the_same_time_in_parallel_mode() {
    let server = Scripted::start([three_lookups(), say("all found")]).await;
    // Each call waits until all three have started: run one after another, they never would.
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let tools = ToolSet::new().with(tool_fn_with_context(
        "lookup",
        "Looks up.",
        move |x: Query, _: ToolContext| {
            let barrier = barrier.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                    .await
                    .map_err(|_| std::io::Error::other("the other calls never started"))?;
                Ok::<_, std::io::Error>(format!("found {}", x.q))
            }
        },
    ));
    let graph = Agent::new(model(&server)).tools(tools).compile().unwrap();
    let store = store();
    let done = graph
        .run_with(question("find"), cfg(&store, "p").mode(Mode::Parallel))
        .await
        .unwrap();
    let results: Vec<String> = done
        .messages
        .iter()
        .filter(|m| m.call_id().is_some())
        .map(|m| m.content.to_text().into_owned())
        .collect();
    assert_eq!(results, ["found a", "found b", "found c"]);
    assert_eq!(done.reply().and_then(Message::text), Some("all found"));
}
