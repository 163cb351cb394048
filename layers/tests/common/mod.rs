//! What the layers' integration tests share: a small state, a gauge of calls in flight, and a
//! node wrapper that reports how calls end even when the engine drops them.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentgraph_engine::{Context, Node, NodeFuture};
use agentgraph_layers::{Error, Limit};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// The state of the tests' graphs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
pub struct Tally {
    /// Set by the input; what cached nodes read.
    pub query: String,
    /// Anything else the state holds.
    pub other: u64,
    #[reducer(append)]
    pub log: Vec<String>,
    #[reducer(add)]
    pub calls: u64,
}

impl TallyUpdate {
    /// An update appending one entry to the log.
    pub fn note(item: impl Into<String>) -> Self {
        TallyUpdate::new().log(vec![item.into()])
    }
}

/// Counts calls in flight and remembers the most there were at once.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

impl Gauge {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A call starts.
    pub fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
    }

    /// A call ends.
    pub fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    /// The most calls in flight at once.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// How many calls started.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

/// How a call of a [`Shielded`] node ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// The node returned a command.
    Done,
    /// A layer's wait was cancelled.
    Cancelled { node: String, limit: Limit },
    /// Any other error, as text.
    Failed(String),
}

/// Runs the node it wraps on a tokio task of its own, as a node that hands its work to a task
/// would, and reports when each call starts and how it ends. When the engine drops the call (a
/// timeout, a cancelled run), the inner call goes on, and sees its context cancelled.
pub struct Shielded<N> {
    inner: Arc<N>,
    started: mpsc::UnboundedSender<()>,
    ended: mpsc::UnboundedSender<Report>,
}

/// What a [`Shielded`] node reports.
pub struct Probe {
    started: mpsc::UnboundedReceiver<()>,
    ended: mpsc::UnboundedReceiver<Report>,
}

impl<N> Shielded<N> {
    /// `inner`, and the probe of its calls.
    pub fn new(inner: N) -> (Self, Probe) {
        let (started, started_rx) = mpsc::unbounded_channel();
        let (ended, ended_rx) = mpsc::unbounded_channel();
        let node = Shielded {
            inner: Arc::new(inner),
            started,
            ended,
        };
        let probe = Probe {
            started: started_rx,
            ended: ended_rx,
        };
        (node, probe)
    }
}

impl<N: Node<Tally>> Node<Tally> for Shielded<N> {
    fn call(&self, state: Arc<Tally>, ctx: Context) -> NodeFuture<Tally> {
        let (inner, ended) = (self.inner.clone(), self.ended.clone());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let result = inner.call(state, ctx).await;
            let report = match &result {
                Ok(_) => Report::Done,
                Err(e) => match e.downcast_ref::<Error>() {
                    Some(Error::Cancelled { node, limit }) => Report::Cancelled {
                        node: node.clone(),
                        limit: *limit,
                    },
                    _ => Report::Failed(e.to_string()),
                },
            };
            let _ = ended.send(report);
            let _ = tx.send(result);
        });
        // Sent once the inner call is on its own task: from here on it reports how it ends,
        // whatever the engine does with this call.
        let _ = self.started.send(());
        Box::pin(async move { rx.await.map_err(|_| "the shielded call was lost")? })
    }
}

impl Probe {
    /// Waits until `n` more calls have started, failing the test rather than hanging.
    pub async fn started(&mut self, n: usize) {
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(60), self.started.recv())
                .await
                .expect("no call started within a minute")
                .expect("the node is gone");
        }
    }

    /// How the next call to end ended, failing the test rather than hanging if none does.
    pub async fn next(&mut self) -> Report {
        tokio::time::timeout(Duration::from_secs(60), self.ended.recv())
            .await
            .expect("no call ended within a minute")
            .expect("the node is gone")
    }
}
