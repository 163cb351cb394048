//! What the monitor's tests share: a demo graph whose nodes wait for the test's permission,
//! a monitor over a store, and a small SSE reader.

#![allow(dead_code, unreachable_pub)]

pub mod control;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, GraphBuilder, START,
};
use agentgraph_monitor::{Monitor, Server};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// The demo state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
pub struct Doc {
    /// Shown by the page: the browser test puts markup here.
    pub title: String,
    /// Every node appends what it did.
    #[reducer(append)]
    pub notes: Vec<String>,
    /// Rounds of the loop done.
    #[reducer(add)]
    pub rounds: u32,
    /// Rounds to do.
    pub target: u32,
}

/// Lets the nodes run one at a time: each takes a permit first. A test adds permits to move
/// the run on, so what it observes does not depend on timing.
#[derive(Clone, Debug)]
pub struct Gate(pub Arc<Semaphore>);

impl Gate {
    pub fn closed() -> Self {
        Gate(Arc::new(Semaphore::new(0)))
    }

    pub fn open() -> Self {
        Gate(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)))
    }

    /// Lets `n` more node runs through.
    pub fn release(&self, n: usize) {
        self.0.add_permits(n);
    }

    async fn pass(&self) -> Result<(), BoxError> {
        self.0.acquire().await?.forget();
        Ok(())
    }
}

/// What a demo node returns.
type NodeFuture = std::pin::Pin<Box<dyn Future<Output = Result<DocUpdate, BoxError>> + Send>>;

/// A node that waits for the gate, then appends `text` to the notes.
fn note(
    gate: &Gate,
    text: &'static str,
) -> impl Fn(Arc<Doc>, Context) -> NodeFuture + Send + Sync + 'static {
    let gate = gate.clone();
    move |_state, _ctx| {
        let gate = gate.clone();
        Box::pin(async move {
            gate.pass().await?;
            Ok(DocUpdate::new().notes(vec![text.to_owned()]))
        })
    }
}

/// `plan -> [search, write] -> review (join) -> plan again until `target` rounds, then END`.
/// Steps: 1 plan, 2 search + write, 3 review, then again from plan.
pub fn demo(gate: &Gate) -> CompiledGraph<Doc> {
    let mut b = GraphBuilder::<Doc>::new();
    let review_gate = gate.clone();
    b.add_node("plan", note(gate, "planned"))
        .add_node("search", note(gate, "searched"))
        .add_node("write", note(gate, "wrote"))
        .add_node("review", move |_state: Arc<Doc>, _ctx: Context| {
            let gate = review_gate.clone();
            async move {
                gate.pass().await?;
                Ok(DocUpdate::new()
                    .notes(vec!["reviewed".to_owned()])
                    .rounds(1))
            }
        })
        .add_edge(START, "plan")
        .add_edges("plan", ["search", "write"])
        .add_join(["search", "write"], "review")
        .add_conditional_edges("review", ["plan", END], |s: &Doc| {
            if s.rounds < s.target { "plan" } else { END }
        });
    b.compile().expect("the demo graph compiles")
}

/// A memory store, as the monitor and the runs share it.
pub fn store() -> Arc<dyn CheckpointStore> {
    Arc::new(MemoryStore::new())
}

/// A monitor of `store` on a free loopback port, polling fast.
pub async fn monitor(store: Arc<dyn CheckpointStore>) -> Server {
    Monitor::new(store)
        .bind(([127, 0, 0, 1], 0).into())
        .poll_interval(Duration::from_millis(20))
        .serve()
        .await
        .expect("the monitor starts")
}

/// `http://{addr}{path}`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sse {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads server-sent events from a response body: `id:`, `event:` and `data:` fields, comment
/// lines skipped, events ended by a blank line.
pub struct SseReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "the event stream answers 200");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        SseReader {
            body: response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .boxed(),
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event, or `None` when the stream ends; fails after 20 s without one.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = Sse::default();
                let mut any = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    any = true;
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = Some(value.to_owned()),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        _ => {}
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("an event within 20 s");
            match chunk {
                Some(chunk) => self
                    .buf
                    .push_str(&String::from_utf8(chunk.expect("the body reads")).unwrap()),
                None => return None,
            }
        }
    }
}

/// A graph whose node `writer` streams the words of `text` as tokens, then notes it, with
/// `gate` letting it finish (`Gate::open()` for no wait).
pub fn streaming(text: &'static str, gate: &Gate) -> CompiledGraph<Doc> {
    let gate = gate.clone();
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("writer", move |_, ctx: Context| {
        let gate = gate.clone();
        async move {
            for (i, word) in text.split_inclusive(' ').enumerate() {
                ctx.emit_token(i as u64, word);
            }
            gate.pass().await?;
            Ok::<_, BoxError>(DocUpdate::new().notes(vec!["wrote".to_owned()]))
        }
    })
    .add_edge(START, "writer")
    .add_edge("writer", END);
    b.compile().expect("the streaming graph compiles")
}

/// A monitor of `store` that sends the tokens `live` passes on as they come.
pub async fn monitor_live(
    store: Arc<dyn CheckpointStore>,
    live: agentgraph_monitor::LiveTokens,
) -> Server {
    Monitor::new(store)
        .bind(([127, 0, 0, 1], 0).into())
        .poll_interval(Duration::from_millis(20))
        .live(live)
        .serve()
        .await
        .expect("the monitor starts")
}

/// A graph whose node `writer` streams `words` one by one, waiting for `gate` before each.
pub fn slow_writer(words: &'static [&'static str], gate: &Gate) -> CompiledGraph<Doc> {
    let gate = gate.clone();
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("writer", move |_, ctx: Context| {
        let gate = gate.clone();
        async move {
            for (i, word) in words.iter().enumerate() {
                gate.pass().await?;
                ctx.emit_token(i as u64, word);
            }
            Ok::<_, BoxError>(DocUpdate::new().notes(vec!["wrote".to_owned()]))
        }
    })
    .add_edge(START, "writer")
    .add_edge("writer", END);
    b.compile().expect("the slow writer compiles")
}
