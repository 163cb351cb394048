//! Messages: constructors, both serialized forms (JSON, and the engine's binary codec that
//! checkpoints use), the `add_messages` reducer on a state field of a running graph, and the
//! unanswered tool call check.

use std::sync::Arc;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
use agentgraph_engine::{BoxError, Context, END, GraphBuilder, Mode, RunConfig, START, codec};
use agentgraph_nodes::add_messages;
use agentgraph_nodes::message::{
    Content, ContentPart, Message, MessageError, Role, ToolArguments, ToolCall,
};
use agentgraph_nodes::messages::{ensure_answered, unanswered_tool_calls};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Chat {
    #[reducer(with = agentgraph_nodes::add_messages)]
    messages: Vec<Message>,
    #[reducer(add)]
    turns: u32,
}

fn every_kind() -> Vec<Message> {
    vec![
        Message::system("Be brief.").with_id("s"),
        Message::user(Content::Parts(vec![
            ContentPart::Text("What is this?".into()),
            ContentPart::Image {
                url: "https://example.com/a.png".into(),
                detail: Some("low".into()),
            },
        ]))
        .with_id("u")
        .with_name("ada"),
        Message::assistant("").with_id("a").with_tool_calls([
            ToolCall::new(
                "c1",
                "lookup",
                json!({ "q": "cat", "n": 3, "deep": { "x": [1, 2.5, null] } }),
            ),
            ToolCall::from_raw("c2", "lookup", "{\"q\": "),
        ]),
        Message::tool_result("c1", json!({ "answer": "a cat" }))
            .with_id("t1")
            .with_name("lookup"),
        Message::tool_error("c2", "the arguments are not JSON").with_id("t2"),
        Message::assistant("A cat.").with_id("a2"),
    ]
}

#[test]
fn ids_are_generated_unique_and_time_ordered() {
    let ids: Vec<String> = (0..100).map(|_| Message::user("x").id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 100);
    // UUID v7: the version nibble is 7.
    assert!(ids.iter().all(|id| id.as_bytes()[14] == b'7'));
}

#[test]
fn messages_round_trip_through_the_checkpoint_codec() {
    // The engine's codec is bincode, which cannot decode a `serde_json::Value` as such: JSON
    // content and arguments are written as JSON text there.
    let messages = every_kind();
    let mut bytes = Vec::new();
    codec::encode_into(&messages, &mut bytes).unwrap();
    let back: Vec<Message> = codec::decode(&bytes).unwrap();
    assert_eq!(back, messages);
    // The malformed arguments stay as the model sent them.
    assert_eq!(
        back[2].tool_calls()[1].arguments,
        ToolArguments::Malformed("{\"q\": ".into())
    );
}

#[test]
fn messages_round_trip_through_json_in_a_flat_form() {
    let messages = every_kind();
    let text = serde_json::to_string(&messages).unwrap();
    let back: Vec<Message> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, messages);
    let json = serde_json::to_value(&messages).unwrap();
    assert_eq!(
        json[0],
        json!({ "id": "s", "role": "system", "content": "Be brief." })
    );
    assert_eq!(
        json[1],
        json!({
            "id": "u",
            "role": "user",
            "name": "ada",
            "content": [
                { "text": "What is this?" },
                { "image": { "url": "https://example.com/a.png", "detail": "low" } },
            ],
        })
    );
    assert_eq!(
        json[2],
        json!({
            "id": "a",
            "role": "assistant",
            "content": "",
            "tool_calls": [
                { "id": "c1", "name": "lookup", "arguments": { "json": { "q": "cat", "n": 3, "deep": { "x": [1, 2.5, null] } } } },
                { "id": "c2", "name": "lookup", "arguments": { "malformed": "{\"q\": " } },
            ],
        })
    );
    assert_eq!(
        json[3],
        json!({ "id": "t1", "role": "tool", "call_id": "c1", "name": "lookup", "content": { "json": { "answer": "a cat" } } })
    );
    assert_eq!(
        json[4],
        json!({ "id": "t2", "role": "tool", "call_id": "c2", "is_error": true, "content": "the arguments are not JSON" })
    );
    assert_eq!(
        serde_json::to_value(Message::remove("x")).unwrap(),
        json!({ "id": "x", "role": "remove", "content": "" })
    );
    // The monitor's view of a state goes through the engine's JSON codec.
    assert_eq!(codec::to_json(&messages).unwrap(), json);
}

#[test]
fn json_written_by_hand_reads_with_defaults_and_is_checked() {
    let m: Message = serde_json::from_value(json!({ "role": "user", "content": "hi" })).unwrap();
    assert_eq!(m.role, Role::User);
    assert_eq!(m.text(), Some("hi"));
    assert_eq!(m.id.len(), 36);
    assert_eq!(m.name, None);

    let m: Message =
        serde_json::from_value(json!({ "role": "assistant", "content": null })).unwrap();
    assert_eq!(m.content, Content::empty());
    let m: Message = serde_json::from_value(json!({ "role": "tool", "call_id": "c1" })).unwrap();
    assert_eq!(m.call_id(), Some("c1"));
    assert!(!m.is_error());

    let refused = [
        (
            json!({ "role": "tool", "content": "x" }),
            "a tool message needs `call_id`",
        ),
        (
            json!({ "role": "user", "tool_calls": [{ "id": "c", "name": "t", "arguments": { "json": {} } }] }),
            "only an assistant message has `tool_calls`",
        ),
        (
            json!({ "role": "user", "is_error": true }),
            "only a tool message has `call_id` and `is_error`",
        ),
        (
            json!({ "role": "user", "text": "typo" }),
            "unknown field `text`",
        ),
        (json!({ "role": "robot" }), "unknown variant `robot`"),
        (
            json!({ "role": "user", "content": 7 }),
            "content is a string, an array of parts or {\"json\": value}",
        ),
        (
            json!({ "role": "user", "content": { "json": 1, "more": 2 } }),
            "content is a string",
        ),
    ];
    for (input, expected) in refused {
        let e = serde_json::from_value::<Message>(input.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{input}: {e}");
    }
}

#[test]
fn the_reducer_appends_replaces_in_place_and_removes() {
    let mut history = vec![
        Message::user("1").with_id("a"),
        Message::user("2").with_id("b"),
        Message::user("3").with_id("c"),
    ];
    add_messages(
        &mut history,
        vec![
            Message::user("2'").with_id("b"),
            Message::user("4").with_id("d"),
        ],
    );
    let texts: Vec<_> = history.iter().map(|m| m.text().unwrap()).collect();
    assert_eq!(texts, ["1", "2'", "3", "4"]);

    add_messages(
        &mut history,
        vec![Message::remove("a"), Message::remove("missing")],
    );
    let ids: Vec<_> = history.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["b", "c", "d"]);

    // A removed id may come back: at the end.
    add_messages(&mut history, vec![Message::user("1 again").with_id("a")]);
    let ids: Vec<_> = history.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["b", "c", "d", "a"]);

    // Within one update, messages are taken in order.
    add_messages(
        &mut history,
        vec![
            Message::user("e1").with_id("e"),
            Message::user("e2").with_id("e"),
            Message::remove("e"),
        ],
    );
    assert!(history.iter().all(|m| m.id != "e"));
    assert!(history.iter().all(|m| !m.is_removal()));
}

#[test]
fn large_updates_go_through_the_index_with_the_same_result() {
    let base: Vec<Message> = (0..20)
        .map(|i| Message::user(format!("m{i}")).with_id(format!("{i}")))
        .collect();
    let update: Vec<Message> = (0..20)
        .map(|i| match i % 4 {
            0 => Message::remove(format!("{}", i + 1)),
            1 => Message::user(format!("new{i}")).with_id(format!("n{i}")),
            2 => Message::user(format!("replaced{i}")).with_id(format!("{i}")),
            _ => Message::remove("nothing"),
        })
        .collect();
    let mut indexed = base.clone();
    add_messages(&mut indexed, update.clone());
    let mut one_by_one = base;
    for m in update {
        add_messages(&mut one_by_one, vec![m]);
    }
    assert_eq!(indexed, one_by_one);
}

#[test]
fn unanswered_tool_calls_are_found_and_refused_by_name() {
    let ask = Message::assistant("").with_id("a1").with_tool_calls([
        ToolCall::new("c1", "weather", json!({ "city": "Paris" })),
        ToolCall::new("c2", "time", json!({})),
    ]);
    let mut history = vec![Message::user("?"), ask];
    // Appending the assistant message is fine: the check is for a model call.
    let open = unanswered_tool_calls(&history);
    assert_eq!(
        open.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    assert_eq!(
        ensure_answered(&history),
        Err(MessageError::UnansweredToolCall {
            call_id: "c1".into(),
            tool: "weather".into(),
            message_id: "a1".into()
        })
    );
    history.push(Message::tool_result("c2", "noon"));
    assert_eq!(unanswered_tool_calls(&history)[0].tool, "weather");
    history.push(Message::tool_error("c1", "no weather today"));
    assert_eq!(ensure_answered(&history), Ok(()));

    // A result before the call does not answer it.
    let early = vec![
        Message::tool_result("c9", "early"),
        Message::assistant("").with_tool_calls([ToolCall::new("c9", "t", json!({}))]),
    ];
    assert_eq!(unanswered_tool_calls(&early).len(), 1);
}

async fn model(state: Arc<Chat>, _ctx: Context) -> Result<ChatUpdate, BoxError> {
    // Replaces the draft written by `draft` in the same step, by id.
    let n = state.turns;
    Ok(ChatUpdate::new()
        .messages(vec![
            Message::assistant(format!("answer {n}")).with_id(format!("answer-{n}")),
        ])
        .turns(1))
}

async fn draft(state: Arc<Chat>, _ctx: Context) -> Result<ChatUpdate, BoxError> {
    let n = state.turns;
    Ok(ChatUpdate::new().messages(vec![
        Message::assistant("drafting…").with_id(format!("answer-{n}")),
        Message::remove("greeting"),
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reducer_on_a_checkpointed_graph_is_deterministic_in_both_modes() {
    // Each round: `draft` and `model` run in one step (draft first in plan order), joined by
    // `check`, which loops three times.
    let mut b = GraphBuilder::<Chat>::new();
    b.add_node("fan", |_: Arc<Chat>, _: Context| async {
        Ok::<_, BoxError>(ChatUpdate::new())
    })
    .add_node("draft", draft)
    .add_node("model", model)
    .add_node("check", |_: Arc<Chat>, _: Context| async {
        Ok::<_, BoxError>(ChatUpdate::new())
    })
    .add_edge(START, "fan")
    .add_edges("fan", ["draft", "model"])
    .add_join(["draft", "model"], "check")
    .add_conditional_edges(
        "check",
        ["fan", END],
        |s: &Chat| if s.turns < 3 { "fan" } else { END },
    );
    let graph = b.compile().unwrap();
    let input = Chat {
        messages: vec![
            Message::system("Be brief.").with_id("greeting"),
            Message::user("hi").with_id("q"),
        ],
        turns: 0,
    };
    let mut finals = Vec::new();
    for mode in [Mode::Sequential, Mode::Parallel] {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let run = format!("chat-{mode:?}");
        let done = graph
            .run_with(
                input.clone(),
                RunConfig::new()
                    .store(store.clone())
                    .run_id(&run)
                    .mode(mode),
            )
            .await
            .unwrap();
        // The stored state, decoded from the checkpoints, is the same.
        let stored = graph.history(store).state(&run, None).await.unwrap();
        assert_eq!(stored, done);
        finals.push(done);
    }
    assert_eq!(finals[0], finals[1]);
    let texts: Vec<_> = finals[0]
        .messages
        .iter()
        .map(|m| m.text().unwrap().to_owned())
        .collect();
    // In each round the draft is merged first and the model's answer replaces it in place;
    // the greeting is removed in the first round, and its removal later does nothing.
    assert_eq!(finals[0].turns, 3);
    assert!(finals[0].messages.iter().all(|m| m.id != "greeting"));
    let ids: Vec<_> = finals[0].messages.iter().map(|m| m.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids stay unique: {ids:?}");
    assert_eq!(texts, ["hi", "answer 0", "answer 1", "answer 2"]);
}
