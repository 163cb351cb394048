//! Tools: schemas derived from argument types, arguments checked before the call (every
//! failure listed, the function not called), allow and deny lists applied alike to what is
//! offered and what is called, refusals answered to the model and recorded, timeouts and
//! retries, and the idempotency key of the task.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_engine::{BoxError, Context, END, GraphBuilder, START};
use agentgraph_nodes::message::{Message, ToolCall};
use agentgraph_nodes::tool::{
    Refusal, Tool, ToolContext, ToolError, ToolFilter, ToolOptions, ToolSet, tool_fn,
    tool_fn_with_context,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Booking {
    /// The city to stay in.
    city: String,
    /// Nights, at least one.
    #[schemars(range(min = 1))]
    nights: u32,
    /// The room.
    room: Room,
    /// Optional notes for the hotel.
    notes: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Room {
    Single,
    Double,
}

fn counted_booking(calls: &Arc<AtomicU32>) -> impl Tool + use<> {
    let calls = calls.clone();
    tool_fn("book", "Books a hotel room.", move |b: Booking| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(format!("{} nights in {}", b.nights, b.city)) }
    })
}

#[test]
fn the_schema_is_derived_from_the_argument_type() {
    let tool = counted_booking(&Arc::default());
    let schema = tool.parameters();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["city"]["type"], "string");
    assert_eq!(
        schema["properties"]["city"]["description"],
        "The city to stay in."
    );
    assert_eq!(schema["properties"]["nights"]["minimum"], 1);
    assert_eq!(schema["additionalProperties"], false);
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["city", "nights", "room"]);
    assert_eq!(tool.name(), "book");
    assert_eq!(tool.description(), "Books a hotel room.");
}

#[tokio::test]
async fn invalid_arguments_are_listed_and_the_function_is_not_called() {
    let calls = Arc::new(AtomicU32::new(0));
    let tool = counted_booking(&calls);
    let ctx = ToolContext::new("k");

    let ok = tool
        .call(
            json!({ "city": "Oslo", "nights": 2, "room": "double" }),
            ctx.clone(),
        )
        .await
        .unwrap();
    assert_eq!(ok.content.as_text(), Some("2 nights in Oslo"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let bad = json!({ "city": 7, "nights": 0, "room": "suite", "pool": true });
    let e = tool.call(bad, ctx).await.unwrap_err();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "not called with invalid arguments"
    );
    let ToolError::InvalidArguments { tool: name, errors } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(name, "book");
    let mut failed: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.pointer.as_str(), e.keyword.as_str()))
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [
            ("", "additionalProperties"),
            ("/city", "type"),
            ("/nights", "minimum"),
            ("/room", "enum")
        ],
        "{errors:#?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with("invalid arguments for tool `book`: "),
        "{text}"
    );
    assert!(
        text.contains("/city: 7 is not of type \"string\""),
        "{text}"
    );
    assert!(!e.is_retryable());
}

#[derive(Deserialize, JsonSchema)]
struct Loose {
    // The schema accepts any value; serde wants a small number.
    #[schemars(with = "Value")]
    n: u8,
}

#[tokio::test]
async fn what_passes_the_schema_but_not_the_type_is_an_argument_error_too() {
    let tool = tool_fn("loose", "", |l: Loose| async move {
        Ok::<_, std::io::Error>(l.n)
    });
    let e = tool
        .call(json!({ "n": "many" }), ToolContext::new("k"))
        .await
        .unwrap_err();
    let ToolError::InvalidArguments { errors, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(errors[0].keyword, "deserialize");
    assert!(errors[0].message.contains("invalid type"), "{errors:?}");
}

#[derive(Serialize)]
struct Forecast {
    city: String,
    celsius: i32,
}

#[derive(Deserialize, JsonSchema)]
struct City {
    city: String,
}

#[tokio::test]
async fn results_are_text_for_strings_and_json_otherwise() {
    let tool = tool_fn("weather", "", |c: City| async move {
        Ok::<_, std::io::Error>(Forecast {
            city: c.city,
            celsius: 18,
        })
    });
    let out = tool
        .call(json!({ "city": "Paris" }), ToolContext::new("k"))
        .await
        .unwrap();
    assert_eq!(
        out.content,
        json!({ "city": "Paris", "celsius": 18 }).into()
    );
}

fn named(name: &str) -> impl Tool + use<> {
    #[derive(Deserialize, JsonSchema)]
    struct NoArgs {}
    let owned = name.to_owned();
    tool_fn(name, "", move |_: NoArgs| {
        let owned = owned.clone();
        async move { Ok::<_, std::io::Error>(format!("ran {owned}")) }
    })
}

const NAMES: [&str; 8] = [
    "fs_read",
    "fs_write",
    "fs_delete",
    "web_search",
    "web_fetch",
    "shell",
    "github.issues.list",
    "github.repos.delete",
];

fn all_tools() -> ToolSet {
    NAMES
        .iter()
        .fold(ToolSet::new(), |set, n| set.with(named(n)))
}

/// For each filter: what is offered, and that a call is refused exactly when not offered.
#[tokio::test]
async fn allow_and_deny_lists_apply_alike_to_offering_and_calling() {
    let cases: Vec<(ToolFilter, Vec<&str>)> = vec![
        // An empty allow list allows everything.
        (ToolFilter::new(), NAMES.to_vec()),
        (
            ToolFilter::new()
                .allow("shell")
                .allow_pattern("web_*")
                .unwrap(),
            vec!["web_search", "web_fetch", "shell"],
        ),
        // Deny wins over allow, by name and by pattern.
        (
            ToolFilter::new()
                .allow_pattern("fs_*")
                .unwrap()
                .allow("shell")
                .deny("shell")
                .deny_pattern("*_delete")
                .unwrap(),
            vec!["fs_read", "fs_write"],
        ),
        // Deny only: everything else.
        (
            ToolFilter::new().deny_pattern("*delete*").unwrap(),
            vec![
                "fs_read",
                "fs_write",
                "web_search",
                "web_fetch",
                "shell",
                "github.issues.list",
            ],
        ),
        // Alternatives, `?` and classes; `*` also crosses dots.
        (
            ToolFilter::new()
                .allow_pattern("github.{issues,pulls}.*")
                .unwrap()
                .allow_pattern("fs_writ?")
                .unwrap()
                .allow_pattern("[sw]he*")
                .unwrap(),
            vec!["fs_write", "shell", "github.issues.list"],
        ),
        (
            ToolFilter::new().allow_pattern("github*").unwrap(),
            vec!["github.issues.list", "github.repos.delete"],
        ),
        // Exact names are exact.
        (ToolFilter::new().allow("fs"), vec![]),
    ];
    for (filter, expected) in cases {
        let tools = all_tools().with_filter(filter.clone());
        let offered: Vec<&str> = tools.offered().map(|t| t.name()).collect();
        assert_eq!(offered, expected, "{filter:?}");
        for name in NAMES {
            let result = tools.call(name, json!({}), ToolContext::new("k")).await;
            match result {
                Ok(out) => {
                    assert!(expected.contains(&name), "{name} ran under {filter:?}");
                    assert_eq!(out.content.to_text(), format!("ran {name}"));
                }
                Err(ToolError::NotAllowed { tool, refusal }) => {
                    assert!(!expected.contains(&name), "{name} refused: {refusal}");
                    assert_eq!(tool, name);
                    assert_eq!(Err(refusal), filter.check(name));
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
}

#[test]
fn refusals_name_their_rule() {
    let f = ToolFilter::new()
        .allow_pattern("fs_*")
        .unwrap()
        .deny("fs_delete")
        .deny_pattern("fs_*_all")
        .unwrap();
    assert_eq!(
        f.check("fs_delete"),
        Err(Refusal::Denied {
            rule: "fs_delete".into()
        })
    );
    assert_eq!(
        f.check("fs_delete_all"),
        Err(Refusal::Denied {
            rule: "fs_*_all".into()
        })
    );
    assert_eq!(f.check("shell"), Err(Refusal::NotAllowed));
    assert_eq!(f.check("fs_read"), Ok(()));
    let e = ToolFilter::new().allow_pattern("fs_[").unwrap_err();
    assert_eq!(e.pattern, "fs_[");
    assert!(
        e.to_string()
            .starts_with("invalid tool name pattern `fs_[`")
    );
}

/// The events of the `agentgraph_nodes::tool` target (message and fields), and the fields of
/// the `execute_tool` spans, in the order they opened.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<(u64, String)>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorded {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        if event.metadata().target() == "agentgraph_nodes::tool" {
            let mut fields = Fields(format!("{}", event.metadata().level()));
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: LayerContext<'_, S>,
    ) {
        if attrs.metadata().name() == "execute_tool" {
            let mut fields = Fields(String::new());
            attrs.record(&mut fields);
            self.1.lock().unwrap().push((id.into_u64(), fields.0));
        }
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: LayerContext<'_, S>,
    ) {
        let mut spans = self.1.lock().unwrap();
        if let Some((_, fields)) = spans.iter_mut().rev().find(|(s, _)| *s == id.into_u64()) {
            let mut more = Fields(String::new());
            values.record(&mut more);
            fields.push_str(&more.0);
        }
    }
}

#[tokio::test]
async fn refused_and_unknown_calls_are_answered_as_errors_and_recorded() {
    let recorded = Recorded::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorded.clone()));
    let tools = all_tools()
        .deny_pattern("*delete*")
        .unwrap()
        .deny("shell")
        .allow_pattern("fs_*")
        .unwrap();
    let ctx = ToolContext::new("run-1:3:agent");

    let denied = tools
        .answer(&ToolCall::new("c1", "fs_delete", json!({})), ctx.clone())
        .await;
    assert!(denied.is_error());
    assert_eq!(denied.call_id(), Some("c1"));
    assert_eq!(denied.name.as_deref(), Some("fs_delete"));
    assert_eq!(
        denied.content.to_text(),
        "tool `fs_delete` is not allowed: it is denied by `*delete*`"
    );

    let outside = tools
        .answer(&ToolCall::new("c2", "web_search", json!({})), ctx.clone())
        .await;
    assert_eq!(
        outside.content.to_text(),
        "tool `web_search` is not allowed: it is not in the allow list"
    );

    // Unknown (but allowed by the lists): the model is told which tools it may call.
    let unknown = tools
        .answer(&ToolCall::new("c3", "fs_list", json!({})), ctx.clone())
        .await;
    assert!(unknown.is_error());
    assert_eq!(
        unknown.content.to_text(),
        "tool `fs_list` does not exist; the tools are: fs_read, fs_write"
    );

    // Malformed arguments are kept and reported, not lost.
    let malformed = tools
        .answer(
            &ToolCall::from_raw("c4", "fs_read", "{\"path\": "),
            ctx.clone(),
        )
        .await;
    assert!(malformed.is_error());
    let text = malformed.content.to_text();
    assert!(
        text.starts_with("the arguments of tool `fs_read` are not valid JSON (EOF while parsing"),
        "{text}"
    );
    assert!(text.ends_with(": {\"path\": "), "{text}");

    // An allowed call answers with the result, named.
    let fine = tools
        .answer(&ToolCall::new("c5", "fs_read", json!({})), ctx)
        .await;
    assert!(!fine.is_error());
    assert_eq!(
        fine,
        Message::tool_result("c5", "ran fs_read")
            .with_name("fs_read")
            .with_id(fine.id.clone())
    );

    let events = recorded.0.lock().unwrap().clone();
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(events[0].starts_with("WARN message=tool call refused tool=fs_delete refusal=it is denied by `*delete*` key=run-1:3:agent/c1"), "{events:#?}");
    assert!(
        events[1].contains("refusal=it is not in the allow list"),
        "{events:#?}"
    );
    assert!(
        events[2].contains("no such tool tool=fs_list"),
        "{events:#?}"
    );
    assert!(
        events[3].contains("malformed arguments tool=fs_read key=run-1:3:agent/c4"),
        "{events:#?}"
    );

    // Each call ran in an `execute_tool` span with the GenAI attributes; a failed one says
    // how it failed.
    let spans: Vec<String> = recorded
        .1
        .lock()
        .unwrap()
        .iter()
        .map(|(_, f)| f.clone())
        .collect();
    let expected = [
        ("fs_delete", "c1", Some("not_allowed")),
        ("web_search", "c2", Some("not_allowed")),
        ("fs_list", "c3", Some("unknown")),
        ("fs_read", "c4", Some("malformed_arguments")),
        ("fs_read", "c5", None),
    ];
    assert_eq!(spans.len(), expected.len(), "{spans:#?}");
    for (span, (tool, call, error)) in spans.iter().zip(expected) {
        let head = format!(
            " otel.name=execute_tool {tool} gen_ai.operation.name=execute_tool gen_ai.tool.name={tool} gen_ai.tool.call.id={call}"
        );
        let whole = match error {
            Some(kind) => format!("{head} error.type={kind} otel.status_code=ERROR"),
            None => head,
        };
        assert_eq!(span, &whole);
    }
}

#[derive(Deserialize, JsonSchema)]
struct Wait {
    millis: u64,
}

/// Sleeps `millis` on its first `slow_attempts` attempts, then answers at once; counts its
/// attempts and keeps the keys it saw.
fn sleeper(
    slow_attempts: u32,
    attempts: &Arc<AtomicU32>,
    keys: &Arc<Mutex<Vec<String>>>,
) -> impl Tool + use<> {
    let (attempts, keys) = (attempts.clone(), keys.clone());
    tool_fn_with_context("wait", "Waits.", move |w: Wait, ctx: ToolContext| {
        attempts.fetch_add(1, Ordering::SeqCst);
        keys.lock()
            .unwrap()
            .push(format!("{}#{}", ctx.idempotency_key(), ctx.attempt()));
        async move {
            if ctx.attempt() <= slow_attempts {
                tokio::time::sleep(Duration::from_millis(w.millis)).await;
            }
            Ok::<_, std::io::Error>(format!("attempt {}", ctx.attempt()))
        }
    })
}

/// `elapsed` is `millis` of tokio's paused clock, give or take the millisecond it rounds each
/// timer up by.
fn within(elapsed: Duration, millis: u64) {
    let expected = Duration::from_millis(millis);
    assert!(
        elapsed >= expected && elapsed < expected + Duration::from_millis(10),
        "{elapsed:?}, expected {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_that_takes_too_long_times_out_and_is_retried() {
    let attempts = Arc::new(AtomicU32::new(0));
    let keys = Arc::new(Mutex::new(Vec::new()));
    let options = ToolOptions::new()
        .timeout(Duration::from_secs(1))
        .retries(2)
        .retry_delay(Duration::from_millis(100));
    let tools = ToolSet::new().with_options(sleeper(2, &attempts, &keys), options.clone());
    let start = tokio::time::Instant::now();
    let answer = tools
        .answer(
            &ToolCall::new("c1", "wait", json!({ "millis": 60_000 })),
            ToolContext::new("task"),
        )
        .await;
    // Two timeouts (1 s each) with 100 ms and 200 ms between them, then the third attempt.
    assert_eq!(answer.content.to_text(), "attempt 3");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    within(start.elapsed(), 2300);
    // The same key for every attempt.
    assert_eq!(
        *keys.lock().unwrap(),
        ["task/c1#1", "task/c1#2", "task/c1#3"]
    );

    // Without retries left: the timeout is the answer.
    let attempts = Arc::new(AtomicU32::new(0));
    let tools = ToolSet::new().with_options(sleeper(5, &attempts, &keys), options);
    let e = tools
        .call(
            "wait",
            json!({ "millis": 60_000 }),
            ToolContext::new("task"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, ToolError::TimedOut { ref tool, after } if tool == "wait" && after == Duration::from_secs(1))
    );
    assert_eq!(e.to_string(), "tool `wait` timed out after 1s");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_backoff_and_bad_arguments_are_not() {
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let failing = tool_fn("flaky", "", move |_: Wait| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>("the service is down") }
    });
    let tools = ToolSet::new().with_options(
        failing,
        ToolOptions::new()
            .retries(3)
            .retry_delay(Duration::from_millis(100)),
    );
    let start = tokio::time::Instant::now();
    let e = tools
        .call("flaky", json!({ "millis": 1 }), ToolContext::new("k"))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "tool `flaky` failed: the service is down");
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    // 100 + 200 + 400 ms between the four attempts.
    within(start.elapsed(), 700);

    // Arguments that fail the schema fail every time: no retry, no call.
    attempts.store(0, Ordering::SeqCst);
    let e = tools
        .call("flaky", json!({ "millis": "soon" }), ToolContext::new("k"))
        .await
        .unwrap_err();
    assert!(matches!(e, ToolError::InvalidArguments { .. }));
    assert_eq!(attempts.load(Ordering::SeqCst), 0);
}

#[test]
fn options_keep_the_limits_the_agent_enforces() {
    let tools = ToolSet::new().with_options(
        named("pay"),
        ToolOptions::new().max_calls_per_run(2).needs_approval(true),
    );
    let options = tools.options("pay").unwrap();
    assert_eq!(options.max_calls_per_run, Some(2));
    assert!(options.needs_approval);
    assert_eq!(options.retries, 0);
    assert_eq!(options.timeout, None);
}

#[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Agent {
    #[reducer(with = agentgraph_nodes::add_messages)]
    messages: Vec<Message>,
    key: String,
}

#[tokio::test]
async fn a_node_runs_the_calls_of_its_history_with_its_task_key() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let tools: Arc<ToolSet> = Arc::new(ToolSet::new().with(named("now")).with(sleeper(
        0,
        &Arc::default(),
        &keys,
    )));
    let mut b = GraphBuilder::<Agent>::new();
    b.add_node("tools", move |state: Arc<Agent>, ctx: Context| {
        let tools = tools.clone();
        async move {
            let last = state.messages.last().cloned().unwrap();
            let mut answers = Vec::new();
            for call in last.tool_calls() {
                answers.push(tools.answer(call, ToolContext::from_context(&ctx)).await);
            }
            Ok::<_, BoxError>(
                AgentUpdate::new()
                    .messages(answers)
                    .key(ctx.idempotency_key()),
            )
        }
    })
    .add_edge(START, "tools")
    .add_edge("tools", END);
    let graph = b.compile().unwrap();
    let ask = Message::assistant("").with_tool_calls([
        ToolCall::new("c1", "now", json!({})),
        ToolCall::new("c2", "wait", json!({ "millis": 0 })),
        ToolCall::new("c3", "rm", json!({})),
    ]);
    let done = graph
        .invoke(Agent {
            messages: vec![Message::user("go"), ask],
            key: String::new(),
        })
        .await
        .unwrap();
    assert!(agentgraph_nodes::messages::ensure_answered(&done.messages).is_ok());
    let answers: Vec<(&str, bool)> = done.messages[2..]
        .iter()
        .map(|m| (m.call_id().unwrap(), m.is_error()))
        .collect();
    assert_eq!(answers, [("c1", false), ("c2", false), ("c3", true)]);
    assert_eq!(*keys.lock().unwrap(), [format!("{}/c2#1", done.key)]);
}

#[test]
fn tools_are_object_safe_and_shared() {
    let shared: Vec<Arc<dyn Tool>> = vec![Arc::new(named("a")), Arc::new(named("b"))];
    let set = shared
        .iter()
        .cloned()
        .fold(ToolSet::new(), |s, t| s.with(t));
    assert_eq!(
        set.offered().map(|t| t.name()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(format!("{:?}", shared[0]), "Tool { name: \"a\" }");
}
