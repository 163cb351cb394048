//! The group chat against the scripted OpenAI-compatible server: who spoke when, what each
//! agent was sent (from the recorded requests), the streamed tokens of each turn, the stop
//! conditions (rounds, keyword, token budget), the transition map (and its build errors), the
//! model's choice of the next speaker with its fallback, a model agent's tools inside its turn,
//! and a user agent answering through an interrupt.

mod support;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
use agentgraph_engine::{Error, EventKind, Resume, RunConfig};
use agentgraph_nodes::agent::Agent;
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::patterns::group_chat::{
    ChatAgent, Fallback, GroupChat, GroupChatError, GroupChatState, ModelSelector, SELECT_NODE,
    Selector, Stop, UserTurn,
};
use agentgraph_nodes::tool::{ToolSet, tool_fn};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use support::{Reply, Scripted, completion, finish_chunk, text_chunk, tool_chunk, usage_chunk};

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

/// A streamed answer in two pieces, reporting 10 + 5 tokens.
fn say(text: &str) -> Reply {
    let (a, b) = text.split_at(text.len() / 2);
    Reply::sse([
        text_chunk(a),
        text_chunk(b),
        finish_chunk("stop"),
        usage_chunk(10, 5),
    ])
}

/// A whole (not streamed) answer, as the selector asks for, reporting 14 tokens.
fn pick(text: &str) -> Reply {
    Reply::json(completion(text))
}

/// A model agent with a persona.
fn persona(server: &Scripted, name: &str) -> ChatAgent {
    ChatAgent::model(
        name,
        Agent::new(model(server)).system_prompt(format!("You are {name}.")),
    )
}

/// The messages of a recorded request as (role, name, content).
fn sent(request: &Value) -> Vec<(String, Option<String>, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["name"].as_str().map(str::to_owned),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn msg(role: &str, name: Option<&str>, content: &str) -> (String, Option<String>, String) {
    (role.to_owned(), name.map(str::to_owned), content.to_owned())
}

/// The speakers of the transcript after the task.
fn speakers(state: &GroupChatState) -> Vec<&str> {
    state.messages[1..]
        .iter()
        .map(|m| m.name.as_deref().unwrap_or("?"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_who_spoke_what_each_saw_and_the_streamed_tokens() {
    let server = Scripted::start([
        say("Tabs are clearer."),
        say("Spaces align."),
        say("Use a formatter."),
        say("Still tabs."),
    ])
    .await;
    let graph = GroupChat::new()
        .agent(persona(&server, "alice"))
        .agent(persona(&server, "bob"))
        .agent(persona(&server, "carol"))
        .stop_when(Stop::max_rounds(4))
        .compile()
        .unwrap();
    let run = graph.run(GroupChatState::new("Tabs or spaces?"));
    let events = run.events();
    let done = run.await.unwrap();
    assert_eq!(speakers(&done), ["alice", "bob", "carol", "alice"]);
    assert_eq!(done.messages[4].text(), Some("Still tabs."));
    assert_eq!((done.turns, done.tokens), (4, 60));
    assert_eq!(done.speaker.as_deref(), Some("alice"));

    // Each turn's text streamed as tokens of the speaker's node, in order.
    let tokens: Vec<(String, String)> = events
        .filter_map(|e| async move {
            match e.ok()?.kind {
                EventKind::Token { node, text, .. } => Some((node.to_string(), text)),
                _ => None,
            }
        })
        .collect()
        .await;
    let by_node = |node: &str| -> Vec<String> {
        tokens
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, t)| t.clone())
            .collect()
    };
    assert_eq!(tokens.len(), 8, "two pieces per turn: {tokens:?}");
    assert_eq!(by_node("bob").concat(), "Spaces align.");
    assert_eq!(by_node("alice").concat(), "Tabs are clearer.Still tabs.");

    // What each agent was sent: its persona, the task, the others as named user messages,
    // its own earlier turn as an assistant message.
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        sent(&requests[1].body),
        [
            msg("system", None, "You are bob."),
            msg("user", None, "Tabs or spaces?"),
            msg("user", Some("alice"), "alice: Tabs are clearer."),
        ]
    );
    assert_eq!(
        sent(&requests[3].body),
        [
            msg("system", None, "You are alice."),
            msg("user", None, "Tabs or spaces?"),
            msg("assistant", Some("alice"), "Tabs are clearer."),
            msg("user", Some("bob"), "bob: Spaces align."),
            msg("user", Some("carol"), "carol: Use a formatter."),
        ]
    );
    assert_eq!(server.left(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_conditions_keyword_budget_function_and_combinations() {
    // A keyword ends the chat after the turn that says it.
    let server = Scripted::start([say("I think so."), say("Agreed. TERMINATE")]).await;
    let graph = GroupChat::new()
        .agent(persona(&server, "a"))
        .agent(persona(&server, "b"))
        .stop_when(Stop::keyword("TERMINATE") | Stop::max_rounds(10))
        .compile()
        .unwrap();
    let done = graph.invoke(GroupChatState::new("Agree?")).await.unwrap();
    assert_eq!(speakers(&done), ["a", "b"]);
    assert_eq!(server.left(), 0);

    // A budget of tokens: 15 a turn, so 40 is reached after the third.
    let server = Scripted::start([say("1"), say("2"), say("3"), say("4")]).await;
    let graph = GroupChat::new()
        .agent(persona(&server, "a"))
        .agent(persona(&server, "b"))
        .stop_when(Stop::tokens(40))
        .compile()
        .unwrap();
    let done = graph.invoke(GroupChatState::new("Count.")).await.unwrap();
    assert_eq!((done.turns, done.tokens), (3, 45));
    assert_eq!(server.left(), 1);

    // And: the keyword counts only from the third round on; a function over the transcript.
    let server = Scripted::start([say("DONE"), say("DONE"), say("DONE"), say("x")]).await;
    let graph = GroupChat::new()
        .agent(persona(&server, "a"))
        .agent(persona(&server, "b"))
        .stop_when(
            (Stop::keyword("DONE") & Stop::max_rounds(3)) | Stop::when(|s| s.messages.len() > 10),
        )
        .compile()
        .unwrap();
    let done = graph.invoke(GroupChatState::new("Go.")).await.unwrap();
    assert_eq!(speakers(&done), ["a", "b", "a"]);

    // No stop condition: the default number of rounds.
    let say_hi = |_: &[Message]| "hi".to_owned();
    let graph = GroupChat::new()
        .agent(ChatAgent::function("f", say_hi))
        .compile()
        .unwrap();
    let done = graph.invoke(GroupChatState::new("Go.")).await.unwrap();
    assert_eq!(done.turns, GroupChat::DEFAULT_MAX_ROUNDS);
}

fn echo(name: &'static str) -> ChatAgent {
    ChatAgent::function(name, move |_: &[Message]| format!("{name} speaks"))
}

#[tokio::test]
async fn the_transition_map_limits_who_speaks_after_whom() {
    // host -> (a | b), a -> host, b -> (host | b); round robin picks among them.
    let graph = GroupChat::new()
        .agent(echo("host"))
        .agent(echo("a"))
        .agent(echo("b"))
        .allow("a", ["host"])
        .deny("host", ["host"])
        .deny("b", ["a"])
        .stop_when(Stop::max_rounds(7))
        .compile()
        .unwrap();
    let done = graph.invoke(GroupChatState::new("Go.")).await.unwrap();
    assert_eq!(
        speakers(&done),
        ["host", "a", "host", "a", "host", "a", "host"]
    );

    // A function selector that names someone not allowed falls back to round robin: after
    // `a` only `host` may speak, whatever the function says.
    let graph = GroupChat::new()
        .agent(echo("host"))
        .agent(echo("a"))
        .agent(echo("b"))
        .allow("a", ["host"])
        .selector(Selector::function(|_, allowed| {
            Some(if allowed.contains(&"b") { "a" } else { "b" }.to_owned())
        }))
        .first_speaker("host")
        .stop_when(Stop::max_rounds(4))
        .compile()
        .unwrap();
    let done = graph.invoke(GroupChatState::new("Go.")).await.unwrap();
    assert_eq!(speakers(&done), ["host", "a", "host", "a"]);
}

#[test]
fn invalid_chats_are_build_errors_naming_the_agents() {
    let two = || GroupChat::new().agent(echo("a")).agent(echo("b"));
    let err = |chat: GroupChat| chat.compile().unwrap_err();
    assert!(matches!(err(GroupChat::new()), GroupChatError::NoAgents));
    assert!(matches!(
        err(two().agent(echo("a"))),
        GroupChatError::DuplicateAgent(n) if n == "a"
    ));
    for bad in ["", "has space", "select", "a.b"] {
        assert!(matches!(
            err(GroupChat::new().agent(ChatAgent::function(bad, |_: &[Message]| String::new()))),
            GroupChatError::InvalidName(n) if n == bad
        ));
    }
    assert!(matches!(
        err(two().allow("a", ["z"])),
        GroupChatError::UnknownAgent { rule, name } if rule == "a" && name == "z"
    ));
    assert!(matches!(
        err(two().deny("x", ["a"])),
        GroupChatError::UnknownAgent { rule, name } if rule == "x" && name == "x"
    ));
    assert!(matches!(
        err(two().allow("a", ["b"]).deny("a", ["b"])),
        GroupChatError::Contradiction { from, to } if from == "a" && to == "b"
    ));
    let e = err(two().deny("b", ["a", "b"]));
    assert!(matches!(&e, GroupChatError::NoSuccessor(n) if n == "b"));
    assert_eq!(
        e.to_string(),
        "no agent may speak after `b`: its transition rules deny everyone"
    );
    assert!(matches!(
        err(two().first_speaker("c")),
        GroupChatError::UnknownAgent { rule, name } if rule == "first speaker" && name == "c"
    ));
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Lookup {
    key: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_selector_chooses_among_the_allowed_and_falls_back() {
    // The selector's replies and the agents' interleave: select, speak, select, speak, ...
    let server = Scripted::start([
        pick(r#"{"speaker": "critic"}"#),
        say("This plan is flawed."),
        // After `critic` only `planner` may speak: the model is not asked.
        say("Then we fix it."),
        // A name that is no agent: the fallback, round robin after `planner`: `critic`.
        pick(r#"{"speaker": "dave"}"#),
        say("Fixed enough."),
    ])
    .await;
    let selector = ModelSelector::new(model(&server)).fallback(Fallback::RoundRobin);
    let graph = GroupChat::new()
        .agent(persona(&server, "planner").description("makes plans"))
        .agent(persona(&server, "critic").description("finds flaws"))
        .deny("critic", ["critic"])
        .selector(selector)
        .stop_when(Stop::max_rounds(3))
        .compile()
        .unwrap();
    let done = graph
        .invoke(GroupChatState::new("Plan a trip."))
        .await
        .unwrap();
    assert_eq!(speakers(&done), ["critic", "planner", "critic"]);
    assert_eq!(
        done.tokens,
        3 * 15 + 2 * 14,
        "the agents' and the selector's"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    // The first choice: every agent; the schema's enum lists the candidates.
    let first = &requests[0].body;
    let schema = &first["response_format"]["json_schema"]["schema"];
    assert_eq!(
        schema["properties"]["speaker"]["enum"],
        json!(["planner", "critic"])
    );
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("- critic: finds flaws"), "{system}");
    assert_eq!(
        sent(&requests[2].body)[0],
        msg("system", None, "You are planner.")
    );
    let third = &requests[3].body;
    assert_eq!(
        third["response_format"]["json_schema"]["schema"]["properties"]["speaker"]["enum"],
        json!(["planner", "critic"])
    );
    // The selector sees the transcript as an outsider, then the question.
    let seen = sent(third);
    assert_eq!(seen[1], msg("user", None, "Plan a trip."));
    assert_eq!(
        seen[2],
        msg("user", Some("critic"), "critic: This plan is flawed.")
    );
    assert!(seen.last().unwrap().2.starts_with("Who speaks next?"));

    // Fallback::Fail: an answer naming nobody fails the `select` node.
    let server = Scripted::start([pick("nobody")]).await;
    let graph = GroupChat::new()
        .agent(persona(&server, "a"))
        .agent(persona(&server, "b"))
        .selector(ModelSelector::new(model(&server)).fallback(Fallback::Fail))
        .compile()
        .unwrap();
    let err = graph.invoke(GroupChatState::new("Go.")).await.unwrap_err();
    let Error::NodeFailed { node, source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(node, SELECT_NODE);
    assert!(
        source.to_string().contains("names none of a, b"),
        "{source}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_agents_tools_run_inside_its_turn_and_stay_its_own() {
    let server = Scripted::start([
        Reply::sse([
            tool_chunk(0, Some("call-1"), Some("lookup"), r#"{"key":"tides"}"#),
            finish_chunk("tool_calls"),
        ]),
        say("The moon."),
        say("And the sun."),
        say("Both, then."),
    ])
    .await;
    let tools = ToolSet::new().with(tool_fn("lookup", "Looks up.", |x: Lookup| async move {
        Ok::<_, std::convert::Infallible>(format!("found {}", x.key))
    }));
    let researcher = ChatAgent::model(
        "researcher",
        Agent::new(model(&server))
            .tools(tools)
            .system_prompt("Research."),
    );
    let chat = GroupChat::new()
        .agent(researcher)
        .agent(persona(&server, "skeptic"))
        .stop_when(Stop::max_rounds(3));
    let done = chat
        .compile()
        .unwrap()
        .invoke(GroupChatState::new("Why tides?"))
        .await
        .unwrap();
    assert_eq!(done.turns, 3);
    // Task, the call, its result, the answer, the skeptic, the researcher again.
    assert_eq!(done.messages.len(), 6);
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    // The researcher's second call: its own call and result, and its tool offered.
    let second = sent(&requests[1].body);
    assert_eq!(second.len(), 4);
    assert_eq!(second[2].0, "assistant");
    assert_eq!(second[3], msg("tool", None, "found tides"));
    assert_eq!(requests[1].body["tools"][0]["function"]["name"], "lookup");
    // The skeptic sees the answer only, not the researcher's tool chatter, and no tools.
    assert_eq!(
        sent(&requests[2].body),
        [
            msg("system", None, "You are skeptic."),
            msg("user", None, "Why tides?"),
            msg("user", Some("researcher"), "researcher: The moon."),
        ]
    );
    assert!(requests[2].body.get("tools").is_none());
    // The researcher's next turn still has its call paired with its result.
    let third = sent(&requests[3].body);
    assert_eq!(third.len(), 6);
    assert_eq!(third[3].0, "tool");
    // With shared tool messages, the others see what was called and answered.
    let shared = chat
        .share_tool_messages(true)
        .seen_by("skeptic", &done.messages);
    let texts: Vec<String> = shared
        .iter()
        .map(|m| m.content.to_text().into_owned())
        .collect();
    assert_eq!(
        texts[1..4],
        [
            r#"researcher called `lookup` with {"key":"tides"}"#.to_owned(),
            "`lookup` answered researcher: found tides".to_owned(),
            "researcher: The moon.".to_owned(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_agent_answers_through_an_interrupt() {
    let server = Scripted::start([say("Cats are best."), say("Noted, human.")]).await;
    let graph = GroupChat::new()
        .agent(persona(&server, "pundit"))
        .agent(ChatAgent::user("human"))
        .stop_when(Stop::max_rounds(3))
        .compile()
        .unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let config = || RunConfig::new().run_id("chat-1").store(store.clone());
    let Err(Error::Interrupted(stop)) = graph
        .run_with(GroupChatState::new("Cats or dogs?"), config())
        .await
    else {
        panic!("the chat should wait for the human");
    };
    let asked: UserTurn = serde_json::from_value(stop.interrupts[0].payload.clone()).unwrap();
    assert_eq!(asked.kind, "group_chat_user");
    assert_eq!((asked.agent.as_str(), asked.turn), ("human", 1));
    assert_eq!(asked.last_speaker.as_deref(), Some("pundit"));
    assert_eq!(asked.last_text.as_deref(), Some("Cats are best."));
    let done = graph
        .resume_with("chat-1", Resume::value("Dogs, clearly."), config())
        .await
        .unwrap();
    assert_eq!(speakers(&done), ["pundit", "human", "pundit"]);
    assert_eq!(done.messages[2].role.as_str(), "user");
    let last = sent(&server.requests()[1].body);
    assert_eq!(last[3], msg("user", Some("human"), "human: Dogs, clearly."));
}

#[tokio::test]
async fn on_a_thread_the_next_invocation_goes_on_after_the_last_speaker() {
    use agentgraph_nodes::patterns::group_chat::GroupChatStateUpdate;
    // Stop after each turn of `c`: every invocation is one round of the three.
    let graph = GroupChat::new()
        .agent(echo("a"))
        .agent(echo("b"))
        .agent(echo("c"))
        .stop_when(Stop::when(|s| s.speaker.as_deref() == Some("c")))
        .compile()
        .unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let config = || RunConfig::new().store(store.clone());
    let first = graph
        .invoke_thread(
            "t",
            GroupChatStateUpdate::new().messages(vec![Message::user("One.")]),
            config(),
        )
        .await
        .unwrap();
    assert_eq!(speakers(&first), ["a", "b", "c"]);
    let second = graph
        .invoke_thread(
            "t",
            GroupChatStateUpdate::new().messages(vec![Message::user("Two.")]),
            config(),
        )
        .await
        .unwrap();
    assert_eq!(speakers(&second), ["a", "b", "c", "?", "a", "b", "c"]);
    assert_eq!(second.turns, 6);
}

#[tokio::test]
async fn a_model_agents_turn_is_retried_after_a_cut_stream() {
    let server = Scripted::start([
        Reply::sse_raw(
            [text_chunk("Lo").to_string(), text_chunk("st").to_string()],
            false,
            true,
        )
        .paced(Duration::from_millis(30)),
        say("Kept."),
    ])
    .await;
    let graph = GroupChat::new()
        .agent(ChatAgent::model(
            "writer",
            Agent::new(model(&server)).model_retry(
                Agent::default_model_retry()
                    .backoff(Duration::from_millis(1), Duration::from_millis(5)),
            ),
        ))
        .stop_when(Stop::max_rounds(1))
        .compile()
        .unwrap();
    let done = graph.invoke(GroupChatState::new("Write.")).await.unwrap();
    assert_eq!(speakers(&done), ["writer"]);
    assert_eq!(done.last_turn().and_then(Message::text), Some("Kept."));
    assert_eq!(server.requests().len(), 2);
}
