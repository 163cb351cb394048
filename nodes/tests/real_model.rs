//! End to end against a real model server: llama.cpp's OpenAI-compatible server
//! (`llama-cpp-python[server]`) running SmolLM2-135M-Instruct, started by
//! `scripts/model-server` (`scripts/test` starts it, runs these tests with its base URL in
//! `AGENTGRAPH_MODEL_BASE_URL`, and stops it). The tests check the protocol, not the wisdom
//! of a 135M model: a streamed answer arrives token by token as events and is checkpointed;
//! a forced tool call is parsed, its tool runs as a task of its own, and its result goes back
//! to the model in a second call; the runs resume to their final state and can be inspected;
//! a run stopped before its model call resumes from the sled store and streams the call.
//!
//! Built only with the crate's feature `real-model-tests`; without the server's URL the tests
//! fail, saying how to start one (they never skip).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_checkpoint::SledStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, Context, END, Event, EventKind, GraphBuilder, Packet, Route,
    RunConfig, RunStatus, START,
};
use agentgraph_nodes::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::model::{
    ChatFuture, ChatModel, ChatRequest, ChatResponse, StreamFuture, ToolChoice, model_node,
};
use agentgraph_nodes::tool::{ToolContext, ToolSet, tool_fn};
use futures_util::StreamExt;

#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, agentgraph_macros::State,
)]
#[state(crate = agentgraph_engine)]
struct Chat {
    #[reducer(with = agentgraph_nodes::add_messages)]
    messages: Vec<Message>,
}

/// The server's base URL, or a failure that says how to start one.
fn base_url() -> String {
    match std::env::var("AGENTGRAPH_MODEL_BASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "AGENTGRAPH_MODEL_BASE_URL is not set: these tests need a real model server. \
             Start one with `scripts/model-server start` (it prints the URL to set; \
             `scripts/model-server stop` stops it), or run `scripts/test`, which does both"
        ),
    }
}

/// The server's model, recording the requests it is sent.
#[derive(Debug)]
struct Recorded {
    inner: OpenAiModel,
    requests: Mutex<Vec<ChatRequest>>,
}

impl Recorded {
    fn new() -> Arc<Self> {
        let inner = OpenAiModel::builder("smollm2")
            .base_url(base_url())
            .no_api_key()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Arc::new(Recorded {
            inner,
            requests: Mutex::new(Vec::new()),
        })
    }

    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl ChatModel for Recorded {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
        self.requests.lock().unwrap().push(request.clone());
        self.inner.chat(request)
    }
    fn stream(&self, request: ChatRequest) -> StreamFuture<'_> {
        self.requests.lock().unwrap().push(request.clone());
        self.inner.stream(request)
    }
}

/// Short, deterministic answers.
fn settle(request: ChatRequest) -> ChatRequest {
    request.temperature(0.0).seed(7).max_tokens(24)
}

fn store(dir: &tempfile::TempDir) -> Arc<dyn CheckpointStore> {
    Arc::new(SledStore::open(dir.path().join("db")).unwrap())
}

/// The text of the token events, per attempt, in order, checking their indexes.
fn token_text(events: &[Event], node: &str) -> String {
    let mut text = String::new();
    let mut next = 0;
    for e in events {
        if let EventKind::Token {
            node: n,
            attempt,
            index,
            count,
            text: t,
            ..
        } = &e.kind
            && &**n == node
        {
            assert_eq!(*attempt, 1, "no retries against a healthy server");
            assert_eq!(*index, next, "tokens come in order");
            next += u64::from(*count);
            text.push_str(t);
        }
    }
    text
}

/// `START -> model -> END`: one call of `model` on the conversation, its answer appended.
fn one_call(model: &Arc<Recorded>) -> GraphBuilder<Chat> {
    let mut b = GraphBuilder::<Chat>::new();
    b.add_node(
        "model",
        model_node(
            model.clone() as Arc<dyn ChatModel>,
            |s: &Chat| settle(ChatRequest::new(s.messages.clone())),
            |_, r: ChatResponse| ChatUpdate::new().messages(vec![r.message]),
        ),
    )
    .add_edge(START, "model")
    .add_edge("model", END);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_arrives_token_by_token_and_is_checkpointed() {
    let model = Recorded::new();
    let graph = one_call(&model).compile().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("story")
            .store_events(true)
    };
    let input = Chat {
        messages: vec![Message::user("Say hello and tell me your name.")],
    };
    let run = graph.run_with(input, config());
    let events = run.events();
    let done = run.await.unwrap();
    let live: Vec<Event> = events.map(Result::unwrap).collect().await;

    // Token by token, while the node ran.
    let tokens: Vec<&Event> = live
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Token { .. }))
        .collect();
    assert!(tokens.len() >= 2, "a streamed answer: {live:#?}");
    assert!(
        tokens
            .iter()
            .all(|e| matches!(e.kind, EventKind::Token { count: 1, .. }))
    );
    let finished = live
        .iter()
        .position(|e| matches!(e.kind, EventKind::NodeFinished { .. }))
        .unwrap();
    assert!(tokens.iter().all(|t| t.seq < live[finished].seq));
    let answer = done.messages[1].text().unwrap().to_owned();
    assert!(!answer.trim().is_empty());
    assert_eq!(token_text(&live, "model"), answer);
    assert_eq!(model.requests().len(), 1);

    // Checkpointed to sled, with its events (the tokens coalesced).
    let history = graph.history(store.clone());
    assert_eq!(history.state("story", None).await.unwrap(), done);
    let record = history.run("story").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Completed);
    let stored = history.events("story", None, 10_000).await.unwrap();
    assert_eq!(token_text(&stored, "model"), answer);
    assert!(
        stored
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Token { .. }))
            .count()
            < tokens.len()
    );

    // A completed run resumes to its final state without calling the model again.
    let resumed = graph.resume("story", config()).await.unwrap();
    assert_eq!(resumed, done);
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_before_its_model_call_resumes_and_streams_it() {
    let model = Recorded::new();
    let mut b = one_call(&model);
    b.interrupt_before(["model"]);
    let graph = b.compile().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        RunConfig::new()
            .store(store(&dir))
            .run_id("later")
            .store_events(true)
    };
    let input = Chat {
        messages: vec![Message::user("Name one colour.")],
    };
    // The first process stops before the call: nothing is asked of the model.
    graph.run_with(input, config()).await.unwrap_err();
    assert_eq!(model.requests().len(), 0);
    let record = graph
        .history(store(&dir))
        .run("later")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, RunStatus::Interrupted);

    // Resumed from the sled store (reopened, as another process would): the call streams its
    // answer as events of the resumed run, and the run completes, checkpointed.
    let run = graph.resume("later", config());
    let events = run.events();
    let done = run.await.unwrap();
    let live: Vec<Event> = events.map(Result::unwrap).collect().await;
    assert_eq!(model.requests().len(), 1);
    let answer = done.messages[1].text().unwrap().to_owned();
    assert!(!answer.trim().is_empty());
    assert_eq!(token_text(&live, "model"), answer);
    let history = graph.history(store(&dir));
    assert_eq!(history.state("later", None).await.unwrap(), done);
    assert_eq!(
        history.run("later").await.unwrap().unwrap().status,
        RunStatus::Completed
    );
}

/// The arguments of `get_weather`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Weather {
    /// The city.
    city: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_tool_call_runs_as_a_task_and_its_result_goes_back_to_the_model() {
    let model = Recorded::new();
    let cities = Arc::new(Mutex::new(Vec::new()));
    let tool_runs = Arc::new(AtomicUsize::new(0));
    let tools =
        {
            let cities = cities.clone();
            let tool_runs = tool_runs.clone();
            Arc::new(ToolSet::new().with(tool_fn(
                "get_weather",
                "The current weather of a city.",
                move |w: Weather| {
                    tool_runs.fetch_add(1, Ordering::SeqCst);
                    cities.lock().unwrap().push(w.city.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(format!("Sunny, 21 C in {}.", w.city))
                    }
                },
            )))
        };

    // model -> (one `tools` task per call) -> model -> END. The first call must call
    // `get_weather`; the second, which sees the tool's result, may not call tools.
    let offered = tools.clone();
    let mut b = GraphBuilder::<Chat>::new();
    b.add_node(
        "model",
        model_node(
            model.clone() as Arc<dyn ChatModel>,
            move |s: &Chat| {
                let request = ChatRequest::new(s.messages.clone());
                let answered = s.messages.iter().any(|m| m.call_id().is_some());
                settle(if answered {
                    request
                } else {
                    request
                        .tools_from(&offered)
                        .tool_choice(ToolChoice::named("get_weather"))
                })
            },
            |_, r: ChatResponse| ChatUpdate::new().messages(vec![r.message]),
        ),
    )
    .add_node("tools", move |state: Arc<Chat>, ctx: Context| {
        let tools = tools.clone();
        async move {
            let index: usize = ctx.input()?;
            let calls = state
                .messages
                .last()
                .map(|m| m.tool_calls())
                .unwrap_or_default();
            let answer = tools
                .answer(&calls[index], ToolContext::from_context(&ctx))
                .await;
            Ok::<_, BoxError>(ChatUpdate::new().messages(vec![answer]))
        }
    })
    .add_edge(START, "model")
    .add_conditional_edges("model", ["tools", END], |s: &Chat| {
        let calls = s.messages.last().map(|m| m.tool_calls().len()).unwrap_or(0);
        if calls == 0 {
            Route::end()
        } else {
            Route::packets((0..calls).map(|i| Packet::new("tools", &i)))
        }
    })
    .add_edge("tools", "model");
    let graph = b.compile().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("weather")
            .store_events(true)
    };
    let input = Chat {
        messages: vec![Message::user("What is the weather in Paris?")],
    };
    let run = graph.run_with(input, config());
    let events = run.events();
    let done = run.await.unwrap();
    let live: Vec<Event> = events.map(Result::unwrap).collect().await;

    // The forced call, parsed: `get_weather` with a city.
    let call = &done.messages[1].tool_calls()[0];
    assert_eq!(call.name, "get_weather");
    assert_eq!(
        done.messages[1].tool_calls().len(),
        1,
        "{:#?}",
        done.messages
    );
    let city = cities.lock().unwrap().clone();
    assert_eq!(city.len(), 1);
    assert!(!city[0].trim().is_empty());
    assert_eq!(tool_runs.load(Ordering::SeqCst), 1);

    // Its tool ran as a task of its own (a packet of `tools`), answering the call by its id.
    let tool_tasks: Vec<_> = live
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeFinished { node, task, .. } if &**node == "tools" => Some(*task),
            _ => None,
        })
        .collect();
    assert_eq!(tool_tasks.len(), 1);
    let result = &done.messages[2];
    assert_eq!(result.call_id(), Some(call.id.as_str()));
    assert!(!result.is_error(), "{result:?}");
    assert_eq!(
        result.content.to_text(),
        format!("Sunny, 21 C in {}.", city[0])
    );

    // The result went back to the model, in a second call, which answered in text.
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].tool_choice,
        Some(ToolChoice::named("get_weather"))
    );
    assert_eq!(requests[1].messages, done.messages[..3]);
    let last = done.messages.last().unwrap();
    assert_eq!(done.messages.len(), 4);
    assert!(last.tool_calls().is_empty());
    assert!(!last.text().unwrap_or_default().trim().is_empty());

    // Inspected: its checkpoints (the input, model, tools, model) and its state at each.
    let history = graph.history(store.clone());
    let checkpoints = history.checkpoints("weather").await.unwrap();
    assert_eq!(checkpoints.len(), 4, "{checkpoints:#?}");
    assert_eq!(history.state("weather", None).await.unwrap(), done);
    let after_call = history.state("weather", Some(1)).await.unwrap();
    assert_eq!(after_call.messages, done.messages[..2]);
    let after_tool = history.state("weather", Some(2)).await.unwrap();
    assert_eq!(after_tool.messages, done.messages[..3]);
    assert!(
        history
            .events("weather", None, 10_000)
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(&e.kind, EventKind::NodeFinished { node, .. } if &**node == "tools"))
    );

    // Resumed: the final state, no model call and no tool call again.
    let resumed = graph.resume("weather", config()).await.unwrap();
    assert_eq!(resumed, done);
    assert_eq!(model.requests().len(), 2);
    assert_eq!(tool_runs.load(Ordering::SeqCst), 1);
}
