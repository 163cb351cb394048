//! The OpenAI-compatible provider against a scripted server: whole and streamed answers,
//! tool calls streamed in pieces (the name after the arguments), retries on 429 (honouring
//! `Retry-After`) and 500, a whole answer that times out (not retried), malformed answers, cut
//! streams, unknown fields and values, the API key kept secret, structured output with
//! repairs, and the model node in a checkpointed graph streaming its text as events.

mod support;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
use agentgraph_engine::{END, EventKind, GraphBuilder, RunConfig, START};
use agentgraph_nodes::message::{Message, ToolArguments, ToolCall};
use agentgraph_nodes::model::openai::{ApiKey, OpenAiModel};
use agentgraph_nodes::model::{
    ChatChunk, ChatModel, ChatRequest, ChatResponse, FinishReason, ModelError, ResponseFormat,
    StructuredError, ToolChoice, ToolSpec, Usage, model_node, structured,
};
use futures_util::StreamExt;
use serde_json::json;
use support::{Reply, Scripted, completion, finish_chunk, text_chunk, tool_chunk, usage_chunk};

fn model(server: &Scripted) -> OpenAiModel {
    OpenAiModel::builder("scripted-model")
        .base_url(&server.base_url)
        .no_api_key()
        .retry_delay(Duration::from_millis(10))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn question() -> ChatRequest {
    ChatRequest::new([Message::system("Be brief."), Message::user("Hi!")])
}

#[tokio::test]
async fn a_plain_answer_and_the_request_sent() {
    let server = Scripted::start([Reply::json(completion("Hello!"))]).await;
    let history = vec![
        Message::system("Be brief."),
        Message::user("Weather in Paris?"),
        Message::assistant("").with_tool_calls([ToolCall::new(
            "c1",
            "weather",
            json!({ "city": "Paris" }),
        )]),
        Message::tool_result("c1", "18°C").with_name("weather"),
    ];
    let request = ChatRequest::new(history)
        .tool(ToolSpec::new(
            "weather",
            "The weather in a city.",
            json!({ "type": "object", "properties": { "city": { "type": "string" } } }),
        ))
        .tool_choice(ToolChoice::named("weather"))
        .response_format(ResponseFormat::JsonObject)
        .temperature(0.5)
        .max_tokens(32)
        .stop(["END"])
        .seed(42);
    let answer = model(&server).chat(request).await.unwrap();
    assert_eq!(answer.text(), "Hello!");
    assert_eq!(answer.finish_reason, Some(FinishReason::Stop));
    assert_eq!(answer.usage, Some(Usage::new(11, 3)));
    assert_eq!(answer.model.as_deref(), Some("scripted-model"));
    assert!(answer.tool_calls().is_empty());

    let sent = &server.requests()[0].body;
    assert_eq!(sent["model"], "scripted-model");
    assert_eq!(sent.get("stream"), None);
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"]);
    // "" rather than null: llama.cpp's server refuses a null content.
    assert_eq!(sent["messages"][2]["content"], json!(""));
    assert_eq!(
        sent["messages"][2]["tool_calls"][0],
        json!({ "id": "c1", "type": "function", "function": { "name": "weather", "arguments": r#"{"city":"Paris"}"# } })
    );
    assert_eq!(sent["messages"][3]["tool_call_id"], "c1");
    assert_eq!(sent["messages"][3]["content"], "18°C");
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(
        sent["tool_choice"],
        json!({ "type": "function", "function": { "name": "weather" } })
    );
    assert_eq!(sent["response_format"], json!({ "type": "json_object" }));
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["max_tokens"], 32);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["seed"], 42);
    assert_eq!(
        server.requests()[0].headers["content-type"],
        "application/json"
    );
}

#[tokio::test]
async fn an_unanswered_tool_call_is_refused_before_sending() {
    let server = Scripted::start([Reply::json(completion("never"))]).await;
    let request = ChatRequest::new([
        Message::user("2+2?"),
        Message::assistant("")
            .with_tool_calls([ToolCall::new("call_9", "add", json!({ "a": 2, "b": 2 }))])
            .with_id("m-2"),
    ]);
    let m = model(&server);
    for err in [
        m.chat(request.clone()).await.unwrap_err(),
        m.stream(request).await.unwrap_err(),
    ] {
        match err {
            ModelError::UnansweredToolCall {
                call_id,
                tool,
                message_id,
            } => {
                assert_eq!((call_id.as_str(), tool.as_str()), ("call_9", "add"));
                assert_eq!(message_id, "m-2");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_streamed_answer_arrives_in_chunks_and_whole() {
    let server = Scripted::start([Reply::sse([
        text_chunk("Hel"),
        text_chunk("lo"),
        text_chunk(" world"),
        finish_chunk("stop"),
        usage_chunk(7, 3),
    ])])
    .await;
    let m = OpenAiModel::builder("scripted-model")
        .base_url(&server.base_url)
        .no_api_key()
        .stream_usage(true)
        .build()
        .unwrap();
    let mut stream = m.stream(question()).await.unwrap();
    let mut texts = Vec::new();
    let mut done = None;
    while let Some(chunk) = stream.next().await {
        match chunk.unwrap() {
            ChatChunk::Text(t) => texts.push(t),
            ChatChunk::Done(r) => done = Some(*r),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(texts, ["Hel", "lo", " world"]);
    let done = done.unwrap();
    assert_eq!(done.text(), "Hello world");
    assert_eq!(done.finish_reason, Some(FinishReason::Stop));
    assert_eq!(done.usage, Some(Usage::new(7, 3)));
    let sent = &server.requests()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({ "include_usage": true }));
}

#[tokio::test]
async fn split_tool_call_deltas_are_assembled_by_index() {
    // Two calls, their pieces interleaved; the first's name comes after its arguments.
    let server = Scripted::start([Reply::sse([
        tool_chunk(0, Some("call_a"), None, ""),
        tool_chunk(0, None, None, r#"{"ci"#),
        tool_chunk(1, Some("call_b"), Some("time"), r#"{"zone""#),
        tool_chunk(0, None, None, r#"ty": "Par"#),
        tool_chunk(1, None, None, r#": "UTC"}"#),
        tool_chunk(0, None, None, r#"is"}"#),
        tool_chunk(0, None, Some("weather"), ""),
        finish_chunk("tool_calls"),
    ])])
    .await;
    let mut pieces = Vec::new();
    let response = model(&server)
        .stream(question())
        .await
        .unwrap()
        .response_with(|c| {
            if let ChatChunk::ToolCall {
                index, arguments, ..
            } = c
            {
                pieces.push((*index, arguments.clone()));
            }
        })
        .await
        .unwrap();
    assert_eq!(pieces.len(), 7);
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    let calls = response.tool_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str()),
        ("call_a", "weather")
    );
    assert_eq!(
        calls[0].arguments,
        ToolArguments::Json(json!({ "city": "Paris" }))
    );
    assert_eq!(
        (calls[1].id.as_str(), calls[1].name.as_str()),
        ("call_b", "time")
    );
    assert_eq!(
        calls[1].arguments,
        ToolArguments::Json(json!({ "zone": "UTC" }))
    );
    assert_eq!(response.text(), "");
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let server = Scripted::start([
        Reply::error(429, "rate limited").with_header("retry-after", "1"),
        Reply::json(completion("at last")),
    ])
    .await;
    let answer = model(&server).chat(question()).await.unwrap();
    assert_eq!(answer.text(), "at last");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    // The backoff alone would wait about 10 ms: the server's second is honoured.
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[tokio::test]
async fn a_500_is_retried_and_the_retries_are_bounded() {
    let server =
        Scripted::start([Reply::error(500, "oops"), Reply::json(completion("fine"))]).await;
    assert_eq!(
        model(&server).chat(question()).await.unwrap().text(),
        "fine"
    );
    assert_eq!(server.requests().len(), 2);

    let server = Scripted::start([
        Reply::error(503, "down"),
        Reply::error(502, "still down"),
        Reply::error(500, "never reached"),
    ])
    .await;
    let m = OpenAiModel::builder("m")
        .base_url(&server.base_url)
        .no_api_key()
        .retry_delay(Duration::from_millis(5))
        .max_retries(1)
        .build()
        .unwrap();
    match m.chat(question()).await.unwrap_err() {
        ModelError::Status {
            status,
            body,
            attempts,
        } => {
            assert_eq!((status, attempts), (502, 2));
            assert_eq!(body, "still down");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 2);
    // A 400 is not retried.
    let server = Scripted::start([
        Reply::error(400, "bad request"),
        Reply::json(completion("x")),
    ])
    .await;
    let err = model(&server).chat(question()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::Status {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn connection_failures_are_retried_then_reported() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = OpenAiModel::builder("m")
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .no_api_key()
        .retry_delay(Duration::from_millis(5))
        .max_retries(2)
        .build()
        .unwrap();
    match m.chat(question()).await.unwrap_err() {
        ModelError::Connection { attempts, .. } => assert_eq!(attempts, 3),
        other => panic!("{other:?}"),
    }
    // A base URL that is not one: a configuration error, not retried.
    let m = OpenAiModel::builder("m")
        .base_url("not a url")
        .no_api_key()
        .build()
        .unwrap();
    let err = m.chat(question()).await.unwrap_err();
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn malformed_json_is_a_typed_error_naming_what_failed() {
    let server = Scripted::start([
        Reply::raw(r#"{"choices": [{"message": "#),
        Reply::sse_raw(
            [text_chunk("ok").to_string(), "{not json".to_owned()],
            true,
            false,
        ),
    ])
    .await;
    let m = model(&server);
    match m.chat(question()).await.unwrap_err() {
        ModelError::Malformed { what, error } => {
            assert_eq!(what, "response");
            assert!(error.contains("EOF"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    match m
        .stream(question())
        .await
        .unwrap()
        .response()
        .await
        .unwrap_err()
    {
        ModelError::Malformed { what, .. } => assert_eq!(what, "stream chunk 2"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stream_cut_midway_is_an_error_not_an_answer() {
    let server = Scripted::start([
        // The connection breaks after two chunks.
        Reply::sse_raw(
            [
                text_chunk("The answer is").to_string(),
                text_chunk(" 4").to_string(),
            ],
            false,
            true,
        )
        .paced(Duration::from_millis(30)),
        // The connection ends cleanly, but without a finish reason or `[DONE]`.
        Reply::sse_raw([text_chunk("Half").to_string()], false, false),
    ])
    .await;
    let m = model(&server);
    let mut texts = Vec::new();
    let err = m
        .stream(question())
        .await
        .unwrap()
        .response_with(|c| texts.extend(c.text().map(str::to_owned)))
        .await
        .unwrap_err();
    assert_eq!(texts, ["The answer is", " 4"]);
    match &err {
        ModelError::StreamCut {
            chunks, text_len, ..
        } => assert_eq!((*chunks, *text_len), (2, 15)),
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
    let err = m
        .stream(question())
        .await
        .unwrap()
        .response()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::StreamCut { chunks: 1, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_fields_and_values_do_not_fail_an_answer() {
    let server = Scripted::start([
        Reply::json(json!({
            "id": "x",
            "object": "chat.completion",
            "system_fingerprint": null,
            "brand_new_field": { "nested": [1, 2] },
            "choices": [{
                "index": 0,
                "logprobs": null,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "reasoning_content": "thinking…",
                    "tool_calls": [
                        { "id": "c1", "type": "function", "extra": true,
                          "function": { "name": "add", "arguments": "{\"a\": 1," } },
                        { "id": "c2", "type": "function",
                          "function": { "name": "mul", "arguments": { "a": 2, "b": 3 } } },
                    ],
                },
                "finish_reason": "eos_token",
            }],
            "usage": { "prompt_tokens": 5, "completion_tokens": null,
                       "prompt_tokens_details": { "cached_tokens": 0 } },
        })),
        Reply::sse([
            json!({ "choices": [{ "delta": { "role": "assistant", "content": null, "refusal": null }, "finish_reason": null, "logprobs": null }], "x": 1 }),
            json!({ "choices": [{ "index": 0, "delta": { "content": "ok", "tool_calls": null, "function_call": null } }] }),
            json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "end_turn" }] }),
        ]),
    ])
    .await;
    let m = model(&server);
    let answer = m.chat(question()).await.unwrap();
    assert_eq!(
        answer.finish_reason,
        Some(FinishReason::Other("eos_token".into()))
    );
    assert_eq!(answer.text(), "");
    assert_eq!(answer.usage, Some(Usage::new(5, 0)));
    let calls = answer.tool_calls();
    assert_eq!(
        calls[0].arguments,
        ToolArguments::Malformed("{\"a\": 1,".into())
    );
    assert_eq!(
        calls[1].arguments,
        ToolArguments::Json(json!({ "a": 2, "b": 3 }))
    );

    let streamed = m
        .stream(question())
        .await
        .unwrap()
        .response()
        .await
        .unwrap();
    assert_eq!(streamed.text(), "ok");
    assert_eq!(
        streamed.finish_reason,
        Some(FinishReason::Other("end_turn".into()))
    );
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_and_kept_out_of_debug_and_errors() {
    const KEY: &str = "sk-test-0123456789";
    let server = Scripted::start([
        Reply::json(completion("hi")),
        // A server that echoes the key in its error.
        Reply::error(401, &format!("invalid key {KEY}")),
    ])
    .await;
    let m = OpenAiModel::builder("m")
        .base_url(&server.base_url)
        .api_key(ApiKey::new(KEY))
        .header("x-team", "research")
        .build()
        .unwrap();
    m.chat(question()).await.unwrap();
    let err = m.chat(question()).await.unwrap_err();
    let headers = &server.requests()[0].headers;
    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
    assert_eq!(headers["x-team"], "research");
    for text in [format!("{m:?}"), format!("{err}"), format!("{err:?}")] {
        assert!(!text.contains(KEY), "{text}");
        assert!(!text.contains("0123456789"), "{text}");
    }
    assert!(format!("{m:?}").contains("ApiKey(<redacted>)"));
    assert!(err.to_string().contains("invalid key <redacted>"), "{err}");

    // The key from a variable named by the user: cargo sets CARGO_PKG_NAME for tests.
    let server = Scripted::start([Reply::json(completion("hi"))]).await;
    let m = OpenAiModel::builder("m")
        .base_url(&server.base_url)
        .api_key_env("CARGO_PKG_NAME")
        .build()
        .unwrap();
    m.chat(question()).await.unwrap();
    assert_eq!(
        server.requests()[0].headers["authorization"],
        "Bearer agentgraph-nodes"
    );
    assert!(!format!("{m:?}").contains("agentgraph-nodes"));
    // Without a key, no header.
    let server = Scripted::start([Reply::json(completion("hi"))]).await;
    model(&server).chat(question()).await.unwrap();
    assert!(server.requests()[0].headers.get("authorization").is_none());
}

#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
struct Forecast {
    /// The city.
    city: String,
    /// Degrees Celsius.
    celsius: f64,
}

#[tokio::test]
async fn structured_output_is_checked_and_repaired_within_a_bound() {
    // Valid at once.
    let server = Scripted::start([Reply::json(completion(
        r#"{"city":"Paris","celsius":18.5}"#,
    ))])
    .await;
    let f: Forecast = structured(&model(&server), question(), 2).await.unwrap();
    assert_eq!(
        f,
        Forecast {
            city: "Paris".into(),
            celsius: 18.5
        }
    );
    let sent = &server.requests()[0].body;
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "Forecast");
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"]["properties"]["celsius"]["type"],
        "number"
    );

    // Invalid, then repaired.
    let server = Scripted::start([
        Reply::json(completion(r#"{"city":"Paris","celsius":"warm"}"#)),
        Reply::json(completion(r#"{"city":"Paris","celsius":21}"#)),
    ])
    .await;
    let f: Forecast = structured(&model(&server), question(), 2).await.unwrap();
    assert_eq!(f.celsius, 21.0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(
        messages[2]["content"],
        r#"{"city":"Paris","celsius":"warm"}"#
    );
    let repair = messages[3]["content"].as_str().unwrap();
    assert!(repair.contains("/celsius"), "{repair}");

    // Invalid past the bound: one repair, then the error with the last reasons.
    let server = Scripted::start([
        Reply::json(completion("sunny")),
        Reply::json(completion(r#"{"city":"Paris"}"#)),
        Reply::json(completion(r#"{"city":"Paris","celsius":1}"#)),
    ])
    .await;
    match structured::<Forecast>(&model(&server), question(), 1)
        .await
        .unwrap_err()
    {
        StructuredError::Invalid { attempts, errors } => {
            assert_eq!(attempts, 2);
            assert!(
                errors[0].contains("\"celsius\" is a required property"),
                "{errors:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.left(), 1);

    // For servers that take a schema only inside `json_object` (llama-cpp-python's).
    let server =
        Scripted::start([Reply::json(completion(r#"{"city":"Oslo","celsius":-3}"#))]).await;
    let llama = OpenAiModel::builder("m")
        .base_url(&server.base_url)
        .no_api_key()
        .json_schema_as_json_object(true)
        .build()
        .unwrap();
    let f: Forecast = structured(&llama, question(), 0).await.unwrap();
    assert_eq!(f.city, "Oslo");
    let format = &server.requests()[0].body["response_format"];
    assert_eq!(format["type"], "json_object");
    assert_eq!(format["schema"]["required"], json!(["city", "celsius"]));
}

#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, agentgraph_macros::State,
)]
#[state(crate = agentgraph_engine)]
struct Chat {
    #[reducer(with = agentgraph_nodes::add_messages)]
    messages: Vec<Message>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_node_streams_its_text_as_events_of_a_checkpointed_run() {
    let words = ["Once", " upon", " a", " time", "."];
    let server = Scripted::start([Reply::sse(
        words
            .iter()
            .map(|w| text_chunk(w))
            .chain([finish_chunk("stop")]),
    )
    .paced(Duration::from_millis(20))])
    .await;
    let model: Arc<dyn ChatModel> = Arc::new(model(&server));
    let mut b = GraphBuilder::<Chat>::new();
    b.add_node(
        "writer",
        model_node(
            model,
            |s: &Chat| ChatRequest::new(s.messages.clone()),
            |_, r: ChatResponse| ChatUpdate::new().messages(vec![r.message.with_id("story")]),
        ),
    )
    .add_edge(START, "writer")
    .add_edge("writer", END);
    let graph = b.compile().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let run = graph.run_with(
        Chat {
            messages: vec![Message::user("Tell a story.")],
        },
        RunConfig::new()
            .store(store.clone())
            .run_id("story-1")
            .store_events(true),
    );
    let mut events = run.events();
    let handle = run.spawn();
    let mut tokens = Vec::new();
    let mut finished_at = None;
    while let Some(event) = events.next().await {
        let event = event.unwrap();
        match &event.kind {
            EventKind::Token {
                node,
                attempt,
                index,
                count,
                text,
                ..
            } => {
                assert_eq!(&**node, "writer");
                assert_eq!(*attempt, 1);
                assert_eq!(*count, 1, "live tokens come one by one");
                assert!(finished_at.is_none(), "tokens come while the node runs");
                tokens.push((*index, text.clone()));
            }
            EventKind::NodeFinished { node, .. } if &**node == "writer" => {
                finished_at = Some(tokens.len());
            }
            _ => {}
        }
    }
    let done = handle.await.unwrap();
    let texts: Vec<&str> = tokens.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(texts, words);
    let indexes: Vec<u64> = tokens.iter().map(|t| t.0).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    assert_eq!(finished_at, Some(5));
    assert_eq!(done.messages[1].text(), Some("Once upon a time."));
    // The answer is in the checkpoint, the tokens in the stored event log, coalesced into
    // one event (index 0, 5 pieces) that comes before the node's end.
    let history = graph.history(store);
    assert_eq!(history.state("story-1", None).await.unwrap(), done);
    let stored = history.events("story-1", None, 1000).await.unwrap();
    let tokens: Vec<(u64, u32, &str)> = stored
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Token {
                index, count, text, ..
            } => Some((*index, *count, text.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(tokens, [(0, 5, "Once upon a time.")]);
    let at = |pred: &dyn Fn(&EventKind) -> bool| stored.iter().position(|e| pred(&e.kind));
    assert!(
        at(&|k| matches!(k, EventKind::Token { .. }))
            < at(&|k| matches!(k, EventKind::NodeFinished { .. }))
    );
    assert_eq!(server.requests()[0].body["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_fails_the_task_and_the_engine_retries_it() {
    use agentgraph_engine::RetryPolicy;

    let server = Scripted::start([
        Reply::sse_raw(
            [
                text_chunk("Lost").to_string(),
                text_chunk(" words").to_string(),
            ],
            false,
            true,
        )
        .paced(Duration::from_millis(30)),
        Reply::sse([text_chunk("Kept"), text_chunk("."), finish_chunk("stop")]),
    ])
    .await;
    let model: Arc<dyn ChatModel> = Arc::new(model(&server));
    let mut b = GraphBuilder::<Chat>::new();
    b.add_node(
        "writer",
        model_node(
            model,
            |s: &Chat| ChatRequest::new(s.messages.clone()),
            |_, r: ChatResponse| ChatUpdate::new().messages(vec![r.message]),
        ),
    )
    .add_edge(START, "writer")
    .add_edge("writer", END)
    .retry(
        "writer",
        RetryPolicy::new(3)
            .backoff(Duration::from_millis(1), Duration::from_millis(5))
            .retry_if(|e| {
                e.downcast_ref::<ModelError>()
                    .is_some_and(ModelError::is_retryable)
            }),
    );
    let graph = b.compile().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let run = graph.run_with(
        Chat {
            messages: vec![Message::user("Write.")],
        },
        RunConfig::new().store(store).run_id("retried"),
    );
    let mut events = run.events();
    let handle = run.spawn();
    let mut tokens = Vec::new();
    while let Some(event) = events.next().await {
        if let EventKind::Token {
            attempt,
            index,
            text,
            ..
        } = event.unwrap().kind
        {
            tokens.push((attempt, index, text));
        }
    }
    let done = handle.await.unwrap();
    assert_eq!(
        tokens,
        [
            (1, 0, "Lost".to_owned()),
            (1, 1, " words".to_owned()),
            (2, 0, "Kept".to_owned()),
            (2, 1, ".".to_owned()),
        ]
    );
    // Only the complete answer is in the state.
    assert_eq!(done.messages.len(), 2);
    assert_eq!(done.messages[1].text(), Some("Kept."));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_whole_answer_later_than_the_timeout_is_a_timeout_not_retried() {
    let server = Scripted::start([
        Reply::json(completion("too late")).delayed(Duration::from_secs(2)),
        Reply::json(completion("never asked for")),
    ])
    .await;
    // Retries are allowed, but they are for 429, 5xx and connection failures only.
    let impatient = |server: &Scripted| {
        OpenAiModel::builder("m")
            .base_url(&server.base_url)
            .no_api_key()
            .timeout(Duration::from_millis(200))
            .retry_delay(Duration::from_millis(5))
            .max_retries(3)
            .build()
            .unwrap()
    };
    let m = impatient(&server);
    let started = std::time::Instant::now();
    let err = m.chat(question()).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert!(
        matches!(err, ModelError::Timeout(after) if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "the model call timed out after 200ms");
    assert_eq!(server.requests().len(), 1, "not sent again");
    assert_eq!(server.left(), 1);
    // Whoever runs the call (the engine, for a model node) may try it again.
    assert!(err.is_retryable());

    // The timeout is of the whole answer: a body whose pieces each come sooner than it, but
    // that ends later, times out too.
    let server = Scripted::start([
        Reply::sse((0..10).map(|_| text_chunk("."))).paced(Duration::from_millis(50)),
        Reply::json(completion("never asked for")),
    ])
    .await;
    let err = impatient(&server).chat(question()).await.unwrap_err();
    assert!(matches!(err, ModelError::Timeout(_)), "{err:?}");
    assert_eq!(server.requests().len(), 1, "not sent again");
}

#[tokio::test]
async fn a_stalled_stream_times_out_as_a_cut() {
    let server =
        Scripted::start([
            Reply::sse([text_chunk("a"), text_chunk("b"), finish_chunk("stop")])
                .paced(Duration::from_millis(400)),
        ])
        .await;
    let m = OpenAiModel::builder("m")
        .base_url(&server.base_url)
        .no_api_key()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = m
        .stream(question())
        .await
        .unwrap()
        .response()
        .await
        .unwrap_err();
    match err {
        ModelError::StreamCut { chunks, reason, .. } => {
            assert_eq!(chunks, 1);
            assert!(
                reason.contains("timed out") || reason.contains("timeout"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn max_tokens_goes_as_max_completion_tokens_when_asked() {
    let server =
        Scripted::start([Reply::json(completion("a")), Reply::json(completion("b"))]).await;
    let reasoning = OpenAiModel::builder("scripted-model")
        .base_url(&server.base_url)
        .no_api_key()
        .max_completion_tokens(true)
        .build()
        .unwrap();
    let request = ChatRequest::new([Message::user("?")]).max_tokens(7);
    reasoning.chat(request.clone()).await.unwrap();
    model(&server).chat(request).await.unwrap();
    let (first, second) = (&server.requests()[0].body, &server.requests()[1].body);
    assert_eq!(first["max_completion_tokens"], 7);
    assert_eq!(first.get("max_tokens"), None);
    assert_eq!(second["max_tokens"], 7);
    assert_eq!(second.get("max_completion_tokens"), None);
}
