//! The multi-agent patterns against the scripted OpenAI-compatible server in keyed mode (each
//! agent's model name picks its script, so parallel agents get their own replies whatever
//! order their requests arrive in): who spoke when, what each agent saw, every tool call with
//! its result across handoffs (parallel ones too), a swarm's active agent across the turns of a
//! thread, votes, a judge, fallbacks on failure and on a refused answer, a pipeline, and
//! planning mode (read-only tools while planning, approve, edit, reject, resume after the
//! interrupt, a parallel vote where only the winner runs side-effecting tools, the plan kept
//! across turns).

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
use agentgraph_engine::{Durability, Error, Mode, Resume, RunConfig};
use agentgraph_nodes::agent::Agent;
use agentgraph_nodes::message::Message;
use agentgraph_nodes::messages::ensure_answered;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::patterns::{
    Aggregate, Decision, Ensemble, Fallback, Handoff, Member, PatternError, Pipeline, PlanDecision,
    PlanReview, PlanStatus, Planning, Report, Supervisor, Swarm, TeamState, TeamStateUpdate, View,
};
use agentgraph_nodes::tool::{ToolFilter, ToolSet, tool_fn};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{Recorded, Reply, Scripted, finish_chunk, text_chunk, tool_chunk};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An agent whose model is named `key` (its script's key) on `server`.
fn agent(server: &Scripted, key: &str) -> Agent {
    let model = OpenAiModel::builder(key)
        .base_url(&server.base_url)
        .no_api_key()
        .max_retries(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Agent::new(Arc::new(model))
}

fn member(server: &Scripted, key: &str) -> Member {
    Member::new(key, agent(server, key))
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

fn question(text: &str) -> TeamState {
    TeamState::from_messages([Message::user(text)])
}

fn cfg(store: &Arc<dyn CheckpointStore>, run: &str) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(run)
        .durability(Durability::Sync)
}

fn store() -> Arc<dyn CheckpointStore> {
    Arc::new(MemoryStore::new())
}

/// The messages of a request, as JSON.
fn sent(r: &Recorded) -> Vec<Value> {
    r.body["messages"].as_array().unwrap().clone()
}

/// The texts of a request's messages of `role`.
fn texts(r: &Recorded, role: &str) -> Vec<String> {
    sent(r)
        .iter()
        .filter(|m| m["role"] == role)
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Whether a request carries any tool call or tool result.
fn has_tool_chatter(r: &Recorded) -> bool {
    sent(r)
        .iter()
        .any(|m| m["role"] == "tool" || m.get("tool_calls").is_some_and(|c| !c.is_null()))
}

/// Every tool call of every request the server got has its result after it, and no result
/// is without its call: no history sent to a model holds a dangling call.
fn assert_paired(server: &Scripted) {
    for (i, r) in server.requests().iter().enumerate() {
        let messages = sent(r);
        let mut open: Vec<String> = Vec::new();
        let mut made: HashSet<String> = HashSet::new();
        for m in &messages {
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                for c in calls {
                    let id = c["id"].as_str().unwrap().to_owned();
                    made.insert(id.clone());
                    open.push(id);
                }
            }
            if m["role"] == "tool" {
                let id = m["tool_call_id"].as_str().unwrap();
                assert!(
                    made.contains(id),
                    "request {i}: result {id} without its call"
                );
                open.retain(|o| o != id);
            }
        }
        assert!(
            open.is_empty(),
            "request {i} ({:?}) has unanswered calls {open:?}",
            r.key
        );
    }
}

/// The (name, text) of the team's answers since the last user message.
fn answers(s: &TeamState) -> Vec<(String, String)> {
    s.answers_in_turn()
        .map(|m| (m.name.clone().unwrap(), m.text().unwrap().to_owned()))
        .collect()
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Query {
    q: String,
}

/// What the tools were called with, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// `lookup` (read-only: answers `found {q}`) and `delete` (a side effect), both logged.
fn tools(log: &Log) -> ToolSet {
    let (l1, l2) = (log.clone(), log.clone());
    ToolSet::new()
        .with(tool_fn("lookup", "Looks up.", move |x: Query| {
            let log = l1.clone();
            async move {
                log.0.lock().unwrap().push(format!("lookup {}", x.q));
                Ok::<_, std::io::Error>(format!("found {}", x.q))
            }
        }))
        .with(tool_fn("delete", "Deletes.", move |x: Query| {
            let log = l2.clone();
            async move {
                log.0.lock().unwrap().push(format!("delete {}", x.q));
                Ok::<_, std::io::Error>(format!("deleted {}", x.q))
            }
        }))
}

fn node_error(e: &Error) -> &PatternError {
    match e {
        Error::NodeFailed { source, .. } => source
            .downcast_ref::<PatternError>()
            .unwrap_or_else(|| panic!("not a pattern error: {source}")),
        other => panic!("expected a node failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Supervisor
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_supervisor_routes_workers_report_and_every_call_keeps_its_result() {
    let server = Scripted::start_keyed([
        (
            "boss",
            vec![
                calls(&[(
                    "h1",
                    "transfer_to_searcher",
                    json!({ "task": "find rust async" }),
                )]),
                calls(&[("h2", "transfer_to_writer", json!({ "task": "write it up" }))]),
                say("Here is your report."),
            ],
        ),
        (
            "searcher",
            vec![
                calls(&[("s1", "lookup", json!({ "q": "rust async" }))]),
                say("tokio is the runtime"),
            ],
        ),
        ("writer", vec![say("Report: tokio.")]),
    ])
    .await;
    let log = Log::default();
    let graph = Supervisor::model(Arc::new(
        OpenAiModel::builder("boss")
            .base_url(&server.base_url)
            .no_api_key()
            .max_retries(0)
            .build()
            .unwrap(),
    ))
    .worker(
        Member::new("searcher", agent(&server, "searcher").tools(tools(&log)))
            .description("Searches."),
    )
    .worker(member(&server, "writer").description("Writes."))
    .compile()
    .unwrap();
    let store = store();
    let done = graph
        .run_with(question("Tell me about async Rust"), cfg(&store, "sup"))
        .await
        .unwrap();

    // Who spoke when.
    assert_eq!(
        server.keys(),
        ["boss", "searcher", "searcher", "boss", "writer", "boss"]
    );
    assert_eq!(log.calls(), ["lookup rust async"]);
    assert_eq!(server.left(), 0);
    // What each one saw: the supervisor its handoffs (each with its result) and the answers;
    // the workers their task, not the supervisor's calls or each other's tool chatter.
    let searcher = &server.requests_for("searcher")[0];
    assert!(!has_tool_chatter(searcher));
    assert_eq!(
        texts(searcher, "user"),
        ["Tell me about async Rust", "find rust async"]
    );
    let writer = &server.requests_for("writer")[0];
    assert!(!has_tool_chatter(writer), "the writer sees no tool chatter");
    assert_eq!(texts(writer, "assistant"), ["tokio is the runtime"]);
    assert_eq!(texts(writer, "user").last().unwrap(), "write it up");
    let boss = &server.requests_for("boss")[2];
    let tool_results = sent(boss).iter().filter(|m| m["role"] == "tool").count();
    assert_eq!(tool_results, 2, "both handoffs answered");
    assert!(
        !sent(boss).iter().any(|m| m["tool_call_id"] == "s1"),
        "the searcher's lookup stays in its run"
    );
    assert_paired(&server);
    // The team's conversation.
    ensure_answered(&done.messages).unwrap();
    assert_eq!(
        answers(&done),
        [
            ("searcher".into(), "tokio is the runtime".into()),
            ("writer".into(), "Report: tokio.".into()),
            ("supervisor".into(), "Here is your report.".into()),
        ]
    );
    assert_eq!(done.messages.len(), 1 + 2 + 1 + 2 + 1 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_handoff_runs_both_workers_then_the_supervisor_once() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        let server = Scripted::start_keyed([
            (
                "boss",
                vec![
                    calls(&[
                        ("h1", "transfer_to_searcher", json!({ "task": "search" })),
                        ("h2", "transfer_to_writer", json!({ "task": "outline" })),
                    ]),
                    say("Both done."),
                ],
            ),
            (
                "searcher",
                vec![
                    calls(&[("s1", "lookup", json!({ "q": "x" }))]),
                    say("searched"),
                ],
            ),
            ("writer", vec![say("outlined")]),
        ])
        .await;
        let log = Log::default();
        let graph = Supervisor::model(agent_model(&server, "boss"))
            .worker(
                Member::new("searcher", agent(&server, "searcher").tools(tools(&log)))
                    .reports(Report::Everything),
            )
            .worker(member(&server, "writer"))
            .compile()
            .unwrap();
        let store = store();
        let done = graph
            .run_with(question("go"), cfg(&store, "par").mode(mode))
            .await
            .unwrap();
        let keys = server.keys();
        assert_eq!(keys.iter().filter(|k| *k == "boss").count(), 2, "{mode:?}");
        assert_eq!(keys.first().unwrap(), "boss");
        assert_eq!(keys.last().unwrap(), "boss");
        // The second supervisor call sees both answers, after both handoffs' results, and
        // the searcher's reported lookup with its result.
        let boss = &server.requests_for("boss")[1];
        let assistant = texts(boss, "assistant");
        assert!(assistant.contains(&"searched".to_owned()), "{assistant:?}");
        assert!(assistant.contains(&"outlined".to_owned()));
        assert!(sent(boss).iter().any(|m| m["tool_call_id"] == "s1"));
        assert_paired(&server);
        ensure_answered(&done.messages).unwrap();
        // Merged in plan order (searcher, then writer), whichever finished first.
        let names: Vec<_> = answers(&done).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["searcher", "writer", "supervisor"], "{mode:?}");
        let handoff = done
            .messages
            .iter()
            .find(|m| m.name.as_deref() == Some("supervisor") && !m.tool_calls().is_empty())
            .unwrap();
        assert_eq!(handoff.tool_calls().len(), 2, "one message, two handoffs");
    }
}

fn agent_model(server: &Scripted, key: &str) -> Arc<OpenAiModel> {
    Arc::new(
        OpenAiModel::builder(key)
            .base_url(&server.base_url)
            .no_api_key()
            .max_retries(0)
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_of_an_unknown_tool_is_answered_and_the_supervisor_asked_again() {
    let server = Scripted::start_keyed([(
        "boss",
        vec![
            calls(&[("u1", "web_search", json!({ "q": "x" }))]),
            say("I will answer myself."),
        ],
    )])
    .await;
    let graph = Supervisor::model(agent_model(&server, "boss"))
        .worker(member(&server, "writer"))
        .compile()
        .unwrap();
    let done = graph.invoke(question("hi")).await.unwrap();
    assert_eq!(server.keys(), ["boss", "boss"]);
    let again = &server.requests_for("boss")[1];
    let error = sent(again)
        .into_iter()
        .find(|m| m["tool_call_id"] == "u1")
        .unwrap();
    assert!(
        error["content"]
            .as_str()
            .unwrap()
            .contains("no tool `web_search`")
    );
    assert_paired(&server);
    ensure_answered(&done.messages).unwrap();
    assert_eq!(
        done.messages.last().unwrap().text(),
        Some("I will answer myself.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_parallel_round_resumes_without_running_the_finished_worker_again() {
    let server = Scripted::start_keyed([
        ("searcher", vec![say("sources")]),
        ("writer", vec![Reply::error(500, "down"), say("draft")]),
    ])
    .await;
    let graph = Supervisor::rule(|s: &TeamState| {
        if s.answers_in_turn().count() >= 2 {
            Decision::finish()
        } else {
            Decision::parallel([
                Handoff::new("searcher", "search"),
                Handoff::new("writer", "write"),
            ])
        }
    })
    .worker(member(&server, "searcher"))
    .worker(member(&server, "writer"))
    .compile()
    .unwrap();
    let store = store();
    let e = graph
        .run_with(question("go"), cfg(&store, "crash"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NodeFailed { .. }), "{e:?}");
    let done = graph.resume("crash", cfg(&store, "crash")).await.unwrap();
    assert_eq!(
        server.requests_for("searcher").len(),
        1,
        "finished: not run again"
    );
    assert_eq!(server.requests_for("writer").len(), 2);
    let names: Vec<_> = answers(&done).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["searcher", "writer"]);
    ensure_answered(&done.messages).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_tokens_stream_as_events_of_the_teams_run() {
    let server = Scripted::start_keyed([
        (
            "boss",
            vec![
                calls(&[("h1", "transfer_to_writer", json!({ "task": "write" }))]),
                say("Done."),
            ],
        ),
        (
            "writer",
            vec![Reply::sse([
                text_chunk("Once "),
                text_chunk("upon"),
                finish_chunk("stop"),
            ])],
        ),
    ])
    .await;
    let graph = Supervisor::model(agent_model(&server, "boss"))
        .worker(member(&server, "writer"))
        .compile()
        .unwrap();
    let run = graph.run_with(question("a story"), RunConfig::new());
    let mut events = run.events();
    let collect = tokio::spawn(async move {
        let mut tokens = Vec::new();
        while let Some(Ok(event)) = futures_util::StreamExt::next(&mut events).await {
            match event.kind {
                agentgraph_engine::EventKind::Token { node, text, .. } => {
                    tokens.push((node.to_string(), text));
                }
                agentgraph_engine::EventKind::Subgraph { node, event, .. } => {
                    if let agentgraph_engine::EventKind::Token { text, .. } = &event.kind {
                        tokens.push((node.to_string(), text.clone()));
                    }
                }
                _ => {}
            }
        }
        tokens
    });
    run.await.unwrap();
    let tokens = collect.await.unwrap();
    assert_eq!(
        tokens,
        [
            ("writer".to_owned(), "Once ".to_owned()),
            ("writer".to_owned(), "upon".to_owned()),
            ("supervisor".to_owned(), "Done.".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_see_only_what_their_view_gives_them() {
    let server = Scripted::start_keyed([
        (
            "searcher",
            vec![
                calls(&[("s1", "lookup", json!({ "q": "x" }))]),
                say("found x"),
            ],
        ),
        ("writer", vec![say("wrote")]),
        ("auditor", vec![say("audited")]),
        ("tasker", vec![say("tasked")]),
    ])
    .await;
    let log = Log::default();
    let order = ["searcher", "writer", "auditor", "tasker"];
    let graph = Supervisor::rule(move |s: &TeamState| {
        let spoken = s.answers_in_turn().count();
        match order.get(spoken) {
            Some(next) => Decision::handoff(Handoff::new(*next, format!("task for {next}"))),
            None => Decision::finish_with("all done"),
        }
    })
    .worker(
        Member::new("searcher", agent(&server, "searcher").tools(tools(&log)))
            .reports(Report::Everything),
    )
    .worker(member(&server, "writer"))
    .worker(member(&server, "auditor").sees(View::Everything))
    .worker(member(&server, "tasker").sees(View::Task))
    .compile()
    .unwrap();
    let store = store();
    let done = graph
        .run_with(question("q"), cfg(&store, "views"))
        .await
        .unwrap();
    assert_eq!(
        server.keys(),
        ["searcher", "searcher", "writer", "auditor", "tasker"]
    );
    // The transcript: no tool chatter, though the searcher reported its calls.
    assert!(!has_tool_chatter(&server.requests_for("writer")[0]));
    // Everything: the searcher's lookup and its result, and the supervisor's handoffs.
    let auditor = &server.requests_for("auditor")[0];
    assert!(sent(auditor).iter().any(|m| m["tool_call_id"] == "s1"));
    assert!(sent(auditor).iter().filter(|m| m["role"] == "tool").count() >= 4);
    // The task alone.
    let tasker = &server.requests_for("tasker")[0];
    assert_eq!(sent(tasker).len(), 1);
    assert_eq!(texts(tasker, "user"), ["task for tasker"]);
    assert_eq!(sent(tasker)[0]["name"], "supervisor");
    assert_paired(&server);
    ensure_answered(&done.messages).unwrap();
    assert_eq!(done.messages.last().unwrap().text(), Some("all done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_chooses_the_worker_through_an_interrupt_and_the_run_resumes() {
    let server = Scripted::start_keyed([("writer", vec![say("written")])]).await;
    let graph = Supervisor::user_choice()
        .worker(member(&server, "searcher").description("Searches."))
        .worker(member(&server, "writer").description("Writes."))
        .compile()
        .unwrap();
    let store = store();
    let Err(Error::Interrupted(stop)) = graph
        .run_with(question("a poem"), cfg(&store, "choice"))
        .await
    else {
        panic!("expected the choice")
    };
    let choice = &stop.interrupts[0].payload;
    assert_eq!(choice["kind"], "choose_worker");
    assert_eq!(choice["workers"][1], json!(["writer", "Writes."]));
    let pick = Decision::handoff(Handoff::new("writer", "Write a poem."));
    let Err(Error::Interrupted(_)) = graph
        .resume_with("choice", Resume::value(pick), cfg(&store, "choice"))
        .await
    else {
        panic!("expected the second choice")
    };
    let done = graph
        .resume_with(
            "choice",
            Resume::value(Decision::finish()),
            cfg(&store, "choice"),
        )
        .await
        .unwrap();
    assert_eq!(answers(&done), [("writer".into(), "written".into())]);
    assert_eq!(
        texts(&server.requests()[0], "user").last().unwrap(),
        "Write a poem."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_never_finishes_hits_its_round_limit_and_unknown_workers_fail() {
    let server = Scripted::start_keyed([("w", vec![say("1"), say("2"), say("3")])]).await;
    let graph = Supervisor::rule(|_| Decision::handoff(Handoff::new("w", "again")))
        .worker(member(&server, "w"))
        .max_rounds(2)
        .compile()
        .unwrap();
    let e = graph.invoke(question("loop")).await.unwrap_err();
    assert!(matches!(
        node_error(&e),
        PatternError::RoundLimit { limit: 2 }
    ));
    assert_eq!(server.keys(), ["w", "w"]);

    let graph = Supervisor::rule(|_| Decision::handoff(Handoff::new("nobody", "x")))
        .worker(member(&server, "w"))
        .compile()
        .unwrap();
    let e = graph.invoke(question("?")).await.unwrap_err();
    assert!(matches!(node_error(&e), PatternError::UnknownWorker { name } if name == "nobody"));

    let bad = Supervisor::rule(|_| Decision::finish())
        .worker(member(&server, "w"))
        .worker(member(&server, "w"))
        .compile();
    assert!(matches!(bad, Err(PatternError::DuplicateName { .. })));
    let bad = Supervisor::rule(|_| Decision::finish())
        .worker(Member::new("a b", agent(&server, "w")))
        .compile();
    assert!(matches!(bad, Err(PatternError::InvalidName { .. })));
}

// ---------------------------------------------------------------------------------------------
// Swarm
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_hands_over_and_the_next_message_reaches_the_agent_that_spoke_last() {
    let server = Scripted::start_keyed([
        (
            "triage",
            vec![calls(&[(
                "t1",
                "transfer_to_billing",
                json!({ "message": "wants a refund" }),
            )])],
        ),
        (
            "billing",
            vec![
                calls(&[("b1", "lookup", json!({ "q": "order 7" }))]),
                say("Refund sent for order 7."),
                say("You're welcome."),
            ],
        ),
    ])
    .await;
    let log = Log::default();
    let graph = Swarm::new()
        .agent(member(&server, "triage").description("Routes."))
        .agent(Member::new(
            "billing",
            agent(&server, "billing").tools(tools(&log)),
        ))
        .compile()
        .unwrap();
    let store = store();
    let say_user = |t: &str| TeamStateUpdate::new().messages(vec![Message::user(t)]);
    let s = graph
        .invoke_thread("chat", say_user("refund order 7"), cfg(&store, "chat"))
        .await
        .unwrap();
    assert_eq!(s.active.as_deref(), Some("billing"));
    assert_eq!(server.keys(), ["triage", "billing", "billing"]);
    // Triage was offered the handoff tool; billing was handed the note, not triage's call.
    let triage = &server.requests_for("triage")[0];
    let offered: Vec<&str> = triage.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["transfer_to_billing"]);
    let billing = &server.requests_for("billing")[0];
    assert!(!has_tool_chatter(billing));
    assert_eq!(
        texts(billing, "user").last().unwrap(),
        "triage handed the conversation over to you. wants a refund"
    );
    // The handoff is recorded with its result; billing's lookup stays in its run.
    ensure_answered(&s.messages).unwrap();
    assert!(s.messages.iter().any(|m| m.call_id() == Some("t1")));
    assert!(!s.messages.iter().any(|m| m.call_id() == Some("b1")));

    // The next turn goes to billing, not triage.
    let s = graph
        .invoke_thread("chat", say_user("thanks"), cfg(&store, "chat"))
        .await
        .unwrap();
    assert_eq!(server.keys(), ["triage", "billing", "billing", "billing"]);
    assert_eq!(answers(&s), [("billing".into(), "You're welcome.".into())]);
    let billing = server.requests_for("billing").pop().unwrap();
    assert_eq!(
        texts(&billing, "user"),
        ["refund order 7", "thanks"],
        "no stale handoff note"
    );
    assert_eq!(texts(&billing, "assistant"), ["Refund sent for order 7."]);
    assert_paired(&server);
    assert_eq!(log.calls(), ["lookup order 7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_stops_following_handoffs_at_its_limit() {
    let ping = |id: &str| calls(&[(id, "transfer_to_b", json!({ "message": "" }))]);
    let pong = |id: &str| calls(&[(id, "transfer_to_a", json!({ "message": "" }))]);
    let server =
        Scripted::start_keyed([("a", vec![ping("p1"), ping("p2")]), ("b", vec![pong("q1")])]).await;
    let graph = Swarm::new()
        .agent(member(&server, "a"))
        .agent(member(&server, "b"))
        .max_handoffs(2)
        .compile()
        .unwrap();
    let done = graph.invoke(question("hi")).await.unwrap();
    assert_eq!(server.keys(), ["a", "b", "a"]);
    // The third handoff is recorded (answered) and makes b active, but is not followed.
    assert_eq!(done.active.as_deref(), Some("b"));
    ensure_answered(&done.messages).unwrap();
    assert_paired(&server);
}

// ---------------------------------------------------------------------------------------------
// Ensemble, fallback, pipeline
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_votes_and_a_failed_member_does_not_fail_it() {
    let server = Scripted::start_keyed([
        ("a", vec![say("Paris")]),
        ("b", vec![say("paris.")]),
        ("c", vec![say("Lyon")]),
        ("d", vec![Reply::error(500, "down")]),
    ])
    .await;
    let graph = Ensemble::new(Aggregate::MajorityVote)
        .agent(member(&server, "c"))
        .agent(member(&server, "a"))
        .agent(member(&server, "d"))
        .agent(member(&server, "b"))
        .compile()
        .unwrap();
    let store = store();
    let done = graph
        .run_with(question("Capital of France?"), cfg(&store, "vote"))
        .await
        .unwrap();
    assert_eq!(done.winner.as_deref(), Some("a"));
    assert_eq!(answers(&done), [("a".into(), "Paris".into())]);
    let agents: Vec<_> = done.answers.iter().map(|a| a.agent.as_str()).collect();
    // One answer per agent, in plan order; a failure's is recorded by its handler, a step
    // later.
    assert_eq!(agents, ["c", "a", "b", "d"]);
    assert!(done.answers[3].error.as_ref().unwrap().contains("down"));
    // Every agent saw the task alone, none another's answer.
    for key in ["a", "b", "c", "d"] {
        let r = &server.requests_for(key)[0];
        assert_eq!(texts(r, "user"), ["Capital of France?"]);
        assert!(texts(r, "assistant").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_picks_and_concatenate_keeps_all() {
    let server = Scripted::start_keyed([
        ("a", vec![say("short"), say("short")]),
        ("b", vec![say("a longer answer"), say("a longer answer")]),
        ("judge", vec![say("Answer 2 is best.")]),
    ])
    .await;
    let graph = Ensemble::new(Aggregate::judge(agent_model(&server, "judge")))
        .agent(member(&server, "a"))
        .agent(member(&server, "b"))
        .compile()
        .unwrap();
    let done = graph.invoke(question("explain")).await.unwrap();
    assert_eq!(done.winner.as_deref(), Some("b"));
    let judge = &server.requests_for("judge")[0];
    let shown = texts(judge, "user").pop().unwrap();
    assert!(shown.contains("Task:\nexplain"), "{shown}");
    assert!(shown.contains("Answer 1:\nshort") && shown.contains("Answer 2:\na longer answer"));
    assert_eq!(server.keys().last().unwrap(), "judge");

    let graph = Ensemble::new(Aggregate::Concatenate)
        .agent(member(&server, "a"))
        .agent(member(&server, "b"))
        .compile()
        .unwrap();
    let done = graph.invoke(question("explain")).await.unwrap();
    assert_eq!(
        answers(&done),
        [(
            "ensemble".into(),
            "[a]\nshort\n\n[b]\na longer answer".into()
        )]
    );
    assert!(done.winner.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_chain_goes_on_after_a_failure_and_a_refused_answer() {
    let server = Scripted::start_keyed([
        ("cheap", vec![Reply::error(500, "overloaded")]),
        ("medium", vec![say("no idea")]),
        ("strong", vec![say("42")]),
    ])
    .await;
    let graph = Fallback::new()
        .agent(member(&server, "cheap"))
        .agent(member(&server, "medium"))
        .agent(member(&server, "strong"))
        .check(|a| a.trim().parse::<i64>().is_ok())
        .compile()
        .unwrap();
    let store = store();
    let done = graph
        .run_with(question("6 x 7?"), cfg(&store, "fb"))
        .await
        .unwrap();
    assert_eq!(server.keys(), ["cheap", "medium", "strong"]);
    assert_eq!(done.winner.as_deref(), Some("strong"));
    assert_eq!(answers(&done), [("strong".into(), "42".into())]);
    let tried: Vec<_> = done
        .answers
        .iter()
        .map(|a| (a.agent.as_str(), a.accepted, a.error.is_some()))
        .collect();
    assert_eq!(
        tried,
        [
            ("cheap", false, true),
            ("medium", false, true),
            ("strong", true, false)
        ]
    );
    // The strong agent saw the task, not the refused answer.
    assert!(texts(&server.requests_for("strong")[0], "assistant").is_empty());

    // All refused: the run fails, typed.
    let server =
        Scripted::start_keyed([("cheap", vec![say("?")]), ("strong", vec![say("??")])]).await;
    let graph = Fallback::new()
        .agent(member(&server, "cheap"))
        .agent(member(&server, "strong"))
        .check(|a| a.parse::<i64>().is_ok())
        .compile()
        .unwrap();
    let e = graph.invoke(question("6 x 7?")).await.unwrap_err();
    assert!(matches!(
        node_error(&e),
        PatternError::NoAcceptedAnswer { attempts: 2 }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_runs_its_agents_in_order_each_seeing_those_before() {
    // One model name for all three: the server tells them apart by a marker in their
    // system prompts.
    let server = Scripted::start_keyed([
        ("[research]", vec![say("facts")]),
        ("[write]", vec![say("draft")]),
        ("[edit]", vec![say("final")]),
    ])
    .await;
    let stage = |name: &str| {
        let agent = agent(&server, "shared-model").system_prompt(format!("You are [{name}]."));
        Member::new(name, agent)
    };
    let graph = Pipeline::new()
        .agent(stage("research"))
        .agent(stage("write"))
        .agent(stage("edit"))
        .compile()
        .unwrap();
    let done = graph.invoke(question("topic")).await.unwrap();
    assert_eq!(server.keys(), ["[research]", "[write]", "[edit]"]);
    assert_eq!(
        texts(&server.requests_for("[edit]")[0], "assistant"),
        ["facts", "draft"]
    );
    let names: Vec<_> = answers(&done).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["research", "write", "edit"]);
}

// ---------------------------------------------------------------------------------------------
// Planning mode
// ---------------------------------------------------------------------------------------------

/// The names of the tools a request offered.
fn offered(r: &Recorded) -> Vec<String> {
    r.body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn review(e: Error) -> PlanReview {
    let Error::Interrupted(stop) = e else {
        panic!("expected the plan's review, got {e:?}")
    };
    serde_json::from_value(stop.interrupts[0].payload.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_uses_read_only_tools_waits_for_approval_then_executes_with_all() {
    let server = Scripted::start_keyed([(
        "dev",
        vec![
            // Plan phase: a read-only lookup, then a call of `delete`, refused (denied).
            calls(&[("p1", "lookup", json!({ "q": "logs" }))]),
            calls(&[("p2", "delete", json!({ "q": "tmp" }))]),
            say("1. delete tmp"),
            // After the rejection: a new plan.
            say("1. delete tmp/cache"),
            // Execution.
            calls(&[("e1", "delete", json!({ "q": "tmp/cache" }))]),
            say("deleted the cache"),
        ],
    )])
    .await;
    let log = Log::default();
    let graph = Planning::new(Member::new("dev", agent(&server, "dev").tools(tools(&log))))
        .read_only(ToolFilter::new().allow("lookup"))
        .compile()
        .unwrap();
    let store = store();
    let e = graph
        .run_with(question("clean up"), cfg(&store, "plan"))
        .await
        .unwrap_err();
    let r = review(e);
    assert_eq!(
        (r.plan.as_str(), r.author.as_str(), r.revision),
        ("1. delete tmp", "dev", 1)
    );
    assert_eq!(
        log.calls(),
        ["lookup logs"],
        "delete is denied while planning"
    );
    for req in server.requests() {
        assert_eq!(offered(&req), ["lookup"]);
    }
    let denied = sent(&server.requests()[2])
        .into_iter()
        .find(|m| m["tool_call_id"] == "p2")
        .unwrap();
    assert!(denied["content"].as_str().unwrap().contains("not allowed"));

    // Rejected: the planner plans again, told why.
    let e = graph
        .resume_with(
            "plan",
            Resume::value(PlanDecision::Reject {
                reason: "only the cache".into(),
            }),
            cfg(&store, "plan"),
        )
        .await
        .unwrap_err();
    let r = review(e);
    assert_eq!((r.plan.as_str(), r.revision), ("1. delete tmp/cache", 2));
    let replan = &server.requests()[3];
    assert!(
        texts(replan, "user")
            .iter()
            .any(|t| t == "The plan was rejected: only the cache")
    );
    assert!(
        texts(replan, "user")
            .last()
            .unwrap()
            .contains("The current plan (rejected, by dev):\n1. delete tmp")
    );

    // Approved: carried out with every tool.
    let done = graph
        .resume_with(
            "plan",
            Resume::value(PlanDecision::Approve),
            cfg(&store, "plan"),
        )
        .await
        .unwrap();
    assert_eq!(log.calls(), ["lookup logs", "delete tmp/cache"]);
    let exec = &server.requests()[4];
    assert_eq!(offered(exec), ["lookup", "delete"]);
    assert!(
        texts(exec, "user")
            .last()
            .unwrap()
            .ends_with("1. delete tmp/cache")
    );
    let plan = done.plan.clone().unwrap();
    assert_eq!(
        (plan.status, plan.text.as_str()),
        (PlanStatus::Done, "1. delete tmp/cache")
    );
    assert_eq!(
        done.messages.last().unwrap().text(),
        Some("deleted the cache")
    );
    assert_paired(&server);
    ensure_answered(&done.messages).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_plan_is_carried_out_and_the_plan_persists_across_turns() {
    let server = Scripted::start_keyed([(
        "dev",
        vec![
            say("1. delete everything"),
            calls(&[("e1", "delete", json!({ "q": "one file" }))]),
            say("done"),
            // The next turn: the planner sees the plan carried out.
            say("2. nothing more"),
            say("nothing to do"),
        ],
    )])
    .await;
    let log = Log::default();
    let graph = Planning::new(Member::new("dev", agent(&server, "dev").tools(tools(&log))))
        .read_only(ToolFilter::new().allow("lookup"))
        .compile()
        .unwrap();
    let store = store();
    let ask = |t: &str| TeamStateUpdate::new().messages(vec![Message::user(t)]);
    let e = graph
        .invoke_thread("t", ask("clean"), cfg(&store, "t"))
        .await
        .unwrap_err();
    assert_eq!(review(e).plan, "1. delete everything");
    let edit = PlanDecision::Edit {
        plan: "1. delete one file".into(),
    };
    let done = graph
        .resume_with("t", Resume::value(edit), cfg(&store, "t"))
        .await
        .unwrap();
    assert_eq!(log.calls(), ["delete one file"]);
    assert_eq!(done.plan.as_ref().unwrap().text, "1. delete one file");

    let e = graph
        .invoke_thread("t", ask("anything else?"), cfg(&store, "t"))
        .await
        .unwrap_err();
    let r = review(e);
    assert_eq!((r.plan.as_str(), r.revision), ("2. nothing more", 2));
    let planner = &server.requests()[3];
    assert!(
        texts(planner, "user")
            .last()
            .unwrap()
            .contains("The current plan (carried out, by dev):\n1. delete one file")
    );
    let done = graph
        .resume_with("t", Resume::value(PlanDecision::Approve), cfg(&store, "t"))
        .await
        .unwrap();
    assert_eq!(done.messages.last().unwrap().text(), Some("nothing to do"));
    assert_eq!(log.calls(), ["delete one file"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_parallel_vote_only_the_winner_runs_side_effecting_tools() {
    let server = Scripted::start_keyed([
        (
            "alice",
            vec![
                calls(&[("a1", "lookup", json!({ "q": "alice" }))]),
                say("1. delete tmp"),
                calls(&[("x1", "delete", json!({ "q": "tmp" }))]),
                say("alice deleted tmp"),
            ],
        ),
        ("bob", vec![say("1. delete everything")]),
        ("carol", vec![say("1. Delete tmp.")]),
    ])
    .await;
    let log = Log::default();
    let planner = |key: &str| Member::new(key, agent(&server, key).tools(tools(&log)));
    let graph = Planning::new(planner("bob"))
        .planner(planner("alice"))
        .planner(planner("carol"))
        .read_only(ToolFilter::new().allow("lookup"))
        .pick(Aggregate::MajorityVote)
        .approval(false)
        .compile()
        .unwrap();
    let store = store();
    let done = graph
        .run_with(question("clean"), cfg(&store, "vote"))
        .await
        .unwrap();
    assert_eq!(done.winner.as_deref(), Some("alice"));
    assert_eq!(log.calls(), ["lookup alice", "delete tmp"]);
    assert_eq!(server.requests_for("bob").len(), 1);
    assert_eq!(server.requests_for("carol").len(), 1);
    for key in ["bob", "carol"] {
        assert_eq!(offered(&server.requests_for(key)[0]), ["lookup"]);
    }
    assert_eq!(
        offered(&server.requests_for("alice")[2]),
        ["lookup", "delete"]
    );
    assert_eq!(
        done.messages.last().unwrap().text(),
        Some("alice deleted tmp")
    );
    assert_eq!(done.plan.unwrap().status, PlanStatus::Done);
    assert_paired(&server);
}
