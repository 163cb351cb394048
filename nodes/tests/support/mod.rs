//! A scripted OpenAI-compatible server for the tests: axum on 127.0.0.1:0, answering
//! `POST /v1/chat/completions` (and `POST /v1/embeddings`) from a script of canned replies, in order, and recording every
//! request it got (headers, JSON body, arrival time).
//!
//! Keyed mode ([`Scripted::start_keyed`]), for agents that run in parallel (whose requests
//! arrive in no fixed order): one script per key, a request answered from the script of the
//! key that is its `model`, else of the first key that appears in its first system message.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

/// One canned reply.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A whole body with a status and headers, sent `delay` after the request arrived.
    Body {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    },
    /// An SSE stream: each item sent as `data: {item}\n\n`, `pause` apart; then `[DONE]`
    /// when `done`; then, when `cut`, the connection is broken instead of ended.
    Sse {
        data: Vec<String>,
        pause: Duration,
        done: bool,
        cut: bool,
    },
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: Value) -> Self {
        Reply::Body {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// A status with an OpenAI error body.
    pub fn error(status: u16, message: &str) -> Self {
        Reply::Body {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: json!({ "error": { "message": message, "type": "server_error" } }).to_string(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Reply::Body { headers, .. } = &mut self {
            headers.push((name, value.to_owned()));
        }
        self
    }

    /// 200 with raw text.
    pub fn raw(body: &str) -> Self {
        Reply::Body {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// Answers a whole body only this long after the request arrived (its arrival is recorded
    /// at once): a server slower than a client's timeout.
    pub fn delayed(mut self, by: Duration) -> Self {
        if let Reply::Body { delay, .. } = &mut self {
            *delay = by;
        }
        self
    }

    /// A complete stream of these chunks.
    pub fn sse(chunks: impl IntoIterator<Item = Value>) -> Self {
        Reply::Sse {
            data: chunks.into_iter().map(|c| c.to_string()).collect(),
            pause: Duration::ZERO,
            done: true,
            cut: false,
        }
    }

    /// A stream of raw data lines (to send text that is not JSON).
    pub fn sse_raw(data: impl IntoIterator<Item = String>, done: bool, cut: bool) -> Self {
        Reply::Sse {
            data: data.into_iter().collect(),
            pause: Duration::ZERO,
            done,
            cut,
        }
    }

    /// Pauses between the chunks of a stream.
    pub fn paced(mut self, every: Duration) -> Self {
        if let Reply::Sse { pause, .. } = &mut self {
            *pause = every;
        }
        self
    }
}

/// A request the server got.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The key that chose the reply (keyed mode).
    pub key: Option<String>,
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    /// Keyed mode: the scripts by key, in the order given.
    keyed: Mutex<Vec<(String, VecDeque<Reply>)>>,
    requests: Mutex<Vec<Recorded>>,
}

/// The running server; stops when dropped.
pub struct Scripted {
    /// `http://127.0.0.1:{port}/v1`
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// Starts a server that answers with `script`, in order (a 500 once it runs out).
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        Self::serve(Shared {
            script: Mutex::new(script.into_iter().collect()),
            ..Shared::default()
        })
        .await
    }

    /// Starts a server in keyed mode: a request is answered from the script of the key that
    /// is its `model`, else of the first key that appears in its first system message, in
    /// order (a 500 once that script runs out, or when no key matches).
    pub async fn start_keyed<K: Into<String>>(
        scripts: impl IntoIterator<Item = (K, Vec<Reply>)>,
    ) -> Self {
        Self::serve(Shared {
            keyed: Mutex::new(
                scripts
                    .into_iter()
                    .map(|(k, replies)| (k.into(), replies.into_iter().collect()))
                    .collect(),
            ),
            ..Shared::default()
        })
        .await
    }

    async fn serve(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            // The embeddings endpoint answers from the same script.
            .route("/v1/embeddings", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Scripted {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            shared,
            task,
        }
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests answered from `key`'s script (keyed mode), in arrival order.
    pub fn requests_for(&self, key: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .collect()
    }

    /// The keys of the requests, in arrival order (keyed mode): who spoke when.
    pub fn keys(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|r| r.key.unwrap_or_default())
            .collect()
    }

    /// Replies not used yet (all keys' in keyed mode).
    pub fn left(&self) -> usize {
        self.shared.script.lock().unwrap().len()
            + self
                .shared
                .keyed
                .lock()
                .unwrap()
                .iter()
                .map(|(_, r)| r.len())
                .sum::<usize>()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (key, reply) = {
        let mut keyed = shared.keyed.lock().unwrap();
        if keyed.is_empty() {
            (None, shared.script.lock().unwrap().pop_front())
        } else {
            let model = body["model"].as_str().unwrap_or_default();
            let system = body["messages"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["role"] == "system"))
                .map(|m| m["content"].to_string())
                .unwrap_or_default();
            // A key that is the model first; then one in the system prompt.
            let at = keyed
                .iter()
                .position(|(k, _)| model == k)
                .or_else(|| keyed.iter().position(|(k, _)| system.contains(k.as_str())));
            match at.map(|i| &mut keyed[i]) {
                Some((k, replies)) => (Some(k.clone()), replies.pop_front()),
                None => (None, None),
            }
        }
    };
    shared.requests.lock().unwrap().push(Recorded {
        key,
        at: Instant::now(),
        headers,
        body,
    });
    match reply.unwrap_or_else(|| Reply::error(500, "the script has no more replies")) {
        Reply::Body {
            status,
            headers,
            body,
            delay,
        } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(body)).unwrap()
        }
        Reply::Sse {
            data,
            pause,
            done,
            cut,
        } => {
            let mut items: Vec<Result<Bytes, std::io::Error>> = data
                .into_iter()
                .map(|d| Ok(Bytes::from(format!("data: {d}\n\n"))))
                .collect();
            if done {
                items.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
            }
            if cut {
                items.push(Err(std::io::Error::other("connection cut by the script")));
            }
            let stream = futures_util::stream::unfold(
                (items.into_iter(), true),
                move |(mut items, first)| async move {
                    let item = items.next()?;
                    if !first && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    Some((item, (items, false)))
                },
            );
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

/// A whole answer with this text.
pub fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "scripted-model",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop",
        }],
        "usage": { "prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14 },
    })
}

/// A stream chunk carrying a text delta.
pub fn text_chunk(text: &str) -> Value {
    json!({
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "model": "scripted-model",
        "choices": [{ "index": 0, "delta": { "content": text }, "finish_reason": null }],
    })
}

/// A stream chunk carrying a finish reason.
pub fn finish_chunk(reason: &str) -> Value {
    json!({
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "choices": [{ "index": 0, "delta": {}, "finish_reason": reason }],
    })
}

/// The usage chunk of `stream_options.include_usage`.
pub fn usage_chunk(prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion },
    })
}

/// A stream chunk carrying a piece of tool call `index`.
pub fn tool_chunk(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut function = json!({ "arguments": arguments });
    if let Some(name) = name {
        function["name"] = name.into();
    }
    let mut call = json!({ "index": index, "function": function });
    if let Some(id) = id {
        call["id"] = id.into();
        call["type"] = "function".into();
    }
    json!({
        "object": "chat.completion.chunk",
        "choices": [{ "index": 0, "delta": { "tool_calls": [call] }, "finish_reason": null }],
    })
}
