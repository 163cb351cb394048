//! [`LiveTokens`]: streamed tokens handed to the monitor while a node runs, before they reach
//! the store with the step's checkpoint.

use std::fmt;

use agentgraph_engine::{Event, EventKind, EventStream};
use futures_util::StreamExt;
use tokio::sync::broadcast;

/// How many live tokens a slow event stream may fall behind by before it loses the oldest
/// (they reach it later from the store, coalesced, with the step's checkpoint).
const CAPACITY: usize = 4096;

/// The streamed tokens ([`EventKind::Token`]) of the runs of this process, delivered to the
/// monitor's event streams as they come, while the node that streams them runs.
///
/// The monitor reads everything else from the store, where a step's events arrive with its
/// checkpoint: a model's answer would show only once its node has finished. Give the monitor
/// a `LiveTokens` ([`Monitor::live`](crate::Monitor::live)) and [`watch`](LiveTokens::watch)
/// a run's events, and its event streams also send each token as a `live_token` event
/// (`data:` the event as JSON, no `id:`, so that `Last-Event-ID` stays the last stored
/// event's): the page shows the node's text growing, and `agentgraph events --follow
/// --monitor URL` prints it. The stored, coalesced token events still follow.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use agentgraph_engine::{BoxError, Context, END, GraphBuilder, RunConfig, START};
/// use agentgraph_monitor::{LiveTokens, Monitor};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Answer { text: String }
///
/// let store: Arc<dyn agentgraph_engine::CheckpointStore> =
///     Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let live = LiveTokens::new();
/// let server = Monitor::new(store.clone())
///     .bind(([127, 0, 0, 1], 0).into())
///     .live(live.clone())
///     .serve()
///     .await?;
///
/// let mut b = GraphBuilder::<Answer>::new();
/// b.add_node("model", |_, ctx: Context| async move {
///     ctx.emit_token(0, "Hello");
///     Ok::<_, BoxError>(AnswerUpdate::new().text("Hello".to_owned()))
/// })
/// .add_edge(START, "model")
/// .add_edge("model", END);
/// let run = b.compile()?.run_with(
///     Answer::default(),
///     RunConfig::new().store(store.clone()).run_id("hello").monitored(),
/// );
/// live.watch(run.events());
/// assert_eq!(run.await?.text, "Hello");
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LiveTokens {
    tx: broadcast::Sender<Event>,
}

impl fmt::Debug for LiveTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTokens")
            .field("streams", &self.tx.receiver_count())
            .finish()
    }
}

impl Default for LiveTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveTokens {
    /// A feed with no run watched yet.
    ///
    /// # Examples
    ///
    /// See [`LiveTokens`].
    pub fn new() -> Self {
        LiveTokens {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    /// Passes the tokens of `events` (a run's [`events`](agentgraph_engine::Run::events)) on
    /// to the monitor's event streams of that run, on a tokio task that ends with the run.
    /// Needs a tokio runtime.
    ///
    /// # Examples
    ///
    /// See [`LiveTokens`].
    pub fn watch(&self, events: EventStream) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut events = events;
            while let Some(item) = events.next().await {
                if let Ok(event) = item
                    && matches!(event.kind, EventKind::Token { .. })
                {
                    // An error only means no event stream listens now.
                    let _ = tx.send(event);
                }
            }
        });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
