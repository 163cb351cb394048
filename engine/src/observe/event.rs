//! Typed, ordered run events and the stream that delivers them.

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context as TaskCx, Poll};
use std::time::Duration;

use futures_core::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::ids::{Fingerprint, TaskId};
use crate::run::config::Mode;

/// One event of a run, with its sequence number in the run.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{Event, EventKind};
/// # fn show(event: &Event) {
/// match &event.kind {
///     EventKind::NodeFinished { node, duration, .. } => println!("{node} took {duration:?}"),
///     _ => println!("{event}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// The position of the event in its run, from 0, without gaps (but a stored log leaves
    /// out the numbers of the tokens coalesced into a stored [`EventKind::Token`]).
    pub seq: u64,
    /// The run.
    pub run_id: Arc<str>,
    /// What happened.
    pub kind: EventKind,
}

/// A task of a step, as listed in [`EventKind::StepStarted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The node.
    pub node: Arc<str>,
    /// The task id.
    pub task: TaskId,
    /// The packet index for dynamic tasks (`None` for a node triggered by edges).
    pub packet: Option<u32>,
}

/// What happened. New kinds may be added, so match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The run started.
    RunStarted {
        /// The execution mode.
        mode: Mode,
        /// The seed of weighted choices.
        seed: u64,
        /// The graph's fingerprint.
        graph: Fingerprint,
    },
    /// A run resumed from its checkpoint of `step`.
    RunResumed {
        /// The step of the checkpoint it resumed from.
        step: u64,
        /// How many tasks of the next step had already finished (their pending writes are
        /// applied; they do not run again).
        restored: usize,
        /// The graph's fingerprint.
        graph: Fingerprint,
    },
    /// A thread took its next input (an invocation of
    /// [`CompiledGraph::invoke_thread`](crate::CompiledGraph::invoke_thread)): the checkpoint of
    /// `step` holds the input applied to the state the thread's last invocation left.
    ThreadInvoked {
        /// The invocation, from 1: the thread's turn.
        invocation: u32,
        /// The step of the checkpoint that holds the input.
        step: u64,
        /// The fields the input wrote, in declaration order.
        fields: Vec<Cow<'static, str>>,
        /// The graph's fingerprint.
        graph: Fingerprint,
    },
    /// A step started; its tasks are listed in merge order.
    StepStarted {
        /// The step, from 1.
        step: u64,
        /// The tasks.
        tasks: Vec<TaskInfo>,
    },
    /// A node started a task.
    NodeStarted {
        /// The step.
        step: u64,
        /// The node.
        node: Arc<str>,
        /// The task.
        task: TaskId,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// A node finished a task.
    NodeFinished {
        /// The step.
        step: u64,
        /// The node.
        node: Arc<str>,
        /// The task.
        task: TaskId,
        /// How long the node ran.
        duration: Duration,
    },
    /// An attempt of a node's task failed (a [`RetryScheduled`](EventKind::RetryScheduled)
    /// follows if it will be retried).
    NodeFailed {
        /// The step.
        step: u64,
        /// The node.
        node: Arc<str>,
        /// The task.
        task: TaskId,
        /// The attempt, from 1.
        attempt: u32,
        /// The error, as text, with its cause chain.
        error: String,
    },
    /// A failed attempt will be retried after `delay`.
    RetryScheduled {
        /// The step.
        step: u64,
        /// The node.
        node: Arc<str>,
        /// The task.
        task: TaskId,
        /// The attempt that comes next.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// A task was cancelled before it finished: its step or run timed out, the run was
    /// cancelled, or a sibling failed under `FailurePolicy::CancelSiblings`.
    NodeCancelled {
        /// The step.
        step: u64,
        /// The node.
        node: Arc<str>,
        /// The task.
        task: TaskId,
    },
    /// An event of a subgraph's run, passed on by the subgraph node running it (nested
    /// subgraphs nest these).
    Subgraph {
        /// The parent's step.
        step: u64,
        /// The subgraph node.
        node: Arc<str>,
        /// The parent's task running it.
        task: TaskId,
        /// The child run's event (with the child's run id and sequence number).
        event: Box<Event>,
    },
    /// The run stopped at interrupts; it is checkpointed and waits to be resumed.
    RunInterrupted {
        /// The step.
        step: u64,
        /// What it waits on.
        interrupts: Vec<crate::run::interrupt::Interrupt>,
    },
    /// A node emitted an event of its own through [`Context::emit`](crate::Context::emit).
    Custom {
        /// The step.
        step: u64,
        /// The node.
        node: Arc<str>,
        /// The task.
        task: TaskId,
        /// The event's name, chosen by the node.
        name: Cow<'static, str>,
        /// The payload.
        payload: serde_json::Value,
    },
    /// A piece of text a node streamed while its task ran (a model's answer, token by token),
    /// published with [`Context::emit_token`](crate::Context::emit_token).
    ///
    /// Subscribers get one event per piece, as it comes. A run that stores its events
    /// ([`RunConfig::store_events`](crate::RunConfig::store_events)) stores them coalesced:
    /// consecutive pieces of one task's attempt become one stored event of up to
    /// [`TOKENS_PER_STORED_EVENT`] pieces, `text` their concatenation, `index` the first one's
    /// and `count` how many it holds (the sequence numbers of the others are not stored).
    Token {
        /// The step.
        step: u64,
        /// The node.
        node: Arc<str>,
        /// The task.
        task: TaskId,
        /// The task's attempt, from 1: a retried task streams its text again, from index 0.
        attempt: u32,
        /// The piece's place in the text of this attempt, from 0.
        index: u64,
        /// How many pieces `text` holds: 1 as published, more in a stored log.
        count: u32,
        /// The text.
        text: String,
    },
    /// A weighted edge chose a target.
    WeightedChoice {
        /// The step whose task's edge chose.
        step: u64,
        /// The source node (or `START`).
        from: Arc<str>,
        /// The target chosen (or `END`).
        to: Arc<str>,
        /// The target's weight.
        weight: f64,
    },
    /// The step's updates were merged into the state.
    StateUpdated {
        /// The step.
        step: u64,
        /// The fields written, in declaration order.
        fields: Vec<Cow<'static, str>>,
    },
    /// The checkpoint of a step was written (and, in `Sync` durability, flushed).
    CheckpointSaved {
        /// The step.
        step: u64,
        /// The bytes written: the checkpoint record and the blobs of the fields that changed.
        bytes: u64,
    },
    /// The graph the run runs, as data (with
    /// [`RunConfig::state_views`](crate::RunConfig::state_views), after the run started or
    /// resumed): a monitor draws it.
    Graph {
        /// The graph.
        graph: Arc<crate::plan::describe::GraphDescription>,
    },
    /// JSON views of the state's fields (with
    /// [`RunConfig::state_views`](crate::RunConfig::state_views)): every field after the run
    /// started or resumed, then the fields each step wrote. [`StateJson`](crate::StateJson)
    /// folds them into the state at any step.
    StateView {
        /// The step whose state this is (its checkpoint's step).
        step: u64,
        /// The fields that changed.
        fields: Vec<crate::observe::view::FieldView>,
    },
    /// The run finished.
    RunFinished {
        /// Steps run.
        steps: u64,
        /// Wall time of the run.
        duration: Duration,
    },
    /// The run failed.
    RunFailed {
        /// The step that failed.
        step: u64,
        /// The error, as text.
        error: String,
    },
    /// A node's task failed for good and its error edge caught the failure
    /// ([`GraphBuilder::on_error`](crate::GraphBuilder::on_error)): `handler` runs next, with
    /// the failure as its input.
    ErrorRouted {
        /// The step.
        step: u64,
        /// The node that failed.
        node: Arc<str>,
        /// Its task.
        task: TaskId,
        /// The node the failure goes to.
        handler: Arc<str>,
        /// The error, as text, with its cause chain.
        error: String,
    },
    /// The run failed for good and its compensations begin
    /// ([`GraphBuilder::compensate`](crate::GraphBuilder::compensate)): one step per
    /// compensation, whose tasks have the ordinary events.
    CompensationStarted {
        /// The step of the checkpoint that records the failure (the compensations' steps
        /// follow it).
        step: u64,
        /// The error that failed the run, as text.
        error: String,
        /// The nodes whose work is undone, in the order their compensations run.
        nodes: Vec<Arc<str>>,
    },
    /// The run used a limit of a budget (its own, its thread's or its tenant's) and stops
    /// before `step` (see [`BudgetExceeded`](crate::BudgetExceeded), whose amounts these are);
    /// a run over its tenant's runs in flight is refused before it starts.
    BudgetExceeded {
        /// The step the run stops before.
        step: u64,
        /// Whose budget.
        scope: crate::BudgetScope,
        /// Of what.
        budget: crate::BudgetKind,
        /// The limit.
        limit: u64,
        /// What was used.
        used: u64,
    },
}

impl EventKind {
    /// The kind's name: the `type` tag of its JSON form (`"node_finished"`, `"token"`, ...),
    /// without serializing it. What webhooks and filters match on.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::EventKind;
    /// let kind = EventKind::CheckpointSaved { step: 3, bytes: 120 };
    /// assert_eq!(kind.name(), "checkpoint_saved");
    /// assert_eq!(serde_json::to_value(&kind).unwrap()["type"], kind.name());
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::RunResumed { .. } => "run_resumed",
            EventKind::ThreadInvoked { .. } => "thread_invoked",
            EventKind::StepStarted { .. } => "step_started",
            EventKind::NodeStarted { .. } => "node_started",
            EventKind::NodeFinished { .. } => "node_finished",
            EventKind::NodeFailed { .. } => "node_failed",
            EventKind::RetryScheduled { .. } => "retry_scheduled",
            EventKind::NodeCancelled { .. } => "node_cancelled",
            EventKind::Subgraph { .. } => "subgraph",
            EventKind::RunInterrupted { .. } => "run_interrupted",
            EventKind::Custom { .. } => "custom",
            EventKind::Token { .. } => "token",
            EventKind::WeightedChoice { .. } => "weighted_choice",
            EventKind::StateUpdated { .. } => "state_updated",
            EventKind::CheckpointSaved { .. } => "checkpoint_saved",
            EventKind::Graph { .. } => "graph",
            EventKind::StateView { .. } => "state_view",
            EventKind::RunFinished { .. } => "run_finished",
            EventKind::RunFailed { .. } => "run_failed",
            EventKind::ErrorRouted { .. } => "error_routed",
            EventKind::CompensationStarted { .. } => "compensation_started",
            EventKind::BudgetExceeded { .. } => "budget_exceeded",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:<4} ", self.seq)?;
        match &self.kind {
            EventKind::RunStarted { mode, seed, .. } => {
                write!(f, "run {} started ({mode:?}, seed {seed})", self.run_id)
            }
            EventKind::RunResumed { step, restored, .. } => {
                write!(
                    f,
                    "run {} resumed after step {step} ({restored} finished tasks restored)",
                    self.run_id
                )
            }
            EventKind::ThreadInvoked {
                invocation,
                step,
                fields,
                ..
            } => write!(
                f,
                "thread {} invocation {invocation}: input written to {} (checkpoint {step})",
                self.run_id,
                if fields.is_empty() {
                    "nothing".to_owned()
                } else {
                    fields.join(", ")
                }
            ),
            EventKind::CheckpointSaved { step, bytes } => {
                write!(f, "checkpoint {step} saved ({bytes} bytes)")
            }
            EventKind::StepStarted { step, tasks } => {
                write!(f, "step {step} started:")?;
                for t in tasks {
                    match t.packet {
                        Some(i) => write!(f, " {}[{i}]", t.node)?,
                        None => write!(f, " {}", t.node)?,
                    }
                }
                Ok(())
            }
            EventKind::NodeStarted {
                step,
                node,
                attempt,
                ..
            } => {
                write!(f, "  {node} started (step {step}, attempt {attempt})")
            }
            EventKind::NodeFinished { node, duration, .. } => {
                write!(f, "  {node} finished in {duration:?}")
            }
            EventKind::NodeFailed {
                node,
                error,
                attempt,
                ..
            } => write!(f, "  {node} failed (attempt {attempt}): {error}"),
            EventKind::RetryScheduled {
                node,
                attempt,
                delay,
                ..
            } => write!(f, "  {node} retries in {delay:?} (attempt {attempt})"),
            EventKind::NodeCancelled { node, .. } => write!(f, "  {node} cancelled"),
            EventKind::Subgraph { node, event, .. } => write!(f, "  [{node}] {event}"),
            EventKind::RunInterrupted { step, interrupts } => {
                write!(f, "run interrupted at step {step}, waiting on:")?;
                for i in interrupts {
                    write!(f, " {} ({:?}, id {})", i.node, i.kind, i.id)?;
                }
                Ok(())
            }
            EventKind::Custom {
                node,
                name,
                payload,
                ..
            } => {
                write!(f, "  {node} says {name}: {payload}")
            }
            EventKind::Token {
                node, index, text, ..
            } => write!(f, "  {node} token {index}: {text:?}"),
            EventKind::WeightedChoice {
                from, to, weight, ..
            } => {
                write!(
                    f,
                    "  weighted edge from {from} chose {to} (weight {weight})"
                )
            }
            EventKind::StateUpdated { step, fields } if fields.is_empty() => {
                write!(f, "step {step} merged: nothing written")
            }
            EventKind::StateUpdated { step, fields } => {
                write!(f, "step {step} merged: {}", fields.join(", "))
            }
            EventKind::RunFinished { steps, duration } => {
                write!(f, "run finished after {steps} steps in {duration:?}")
            }
            EventKind::RunFailed { step, error } => write!(f, "run failed at step {step}: {error}"),
            EventKind::Graph { graph } => write!(
                f,
                "graph {} ({} nodes, {} edges)",
                graph.fingerprint,
                graph.nodes.len(),
                graph.edges.len()
            ),
            EventKind::StateView { step, fields } => {
                write!(f, "state view after step {step}:")?;
                for (i, view) in fields.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{}", view.field)?;
                }
                Ok(())
            }
            EventKind::ErrorRouted {
                node,
                handler,
                error,
                ..
            } => write!(f, "  {node} failed for good, routed to {handler}: {error}"),
            EventKind::CompensationStarted { step, error, nodes } => {
                let nodes: Vec<&str> = nodes.iter().map(|n| &**n).collect();
                write!(
                    f,
                    "compensating after step {step} ({}): {error}",
                    nodes.join(", ")
                )
            }
            EventKind::BudgetExceeded {
                step,
                scope,
                budget,
                limit,
                used,
            } => write!(
                f,
                "run stopped before step {step}: {} budget of {} used ({used} of {limit})",
                scope.as_str(),
                budget.as_str()
            ),
        }
    }
}

/// Publishes a run's events. Never blocks: a subscriber that falls behind loses the oldest
/// events and is told how many.
#[derive(Debug)]
pub(crate) struct EventBus {
    run_id: Arc<str>,
    capacity: usize,
    /// Made on the first subscription: a run nobody watches allocates no channel.
    tx: OnceLock<broadcast::Sender<Event>>,
    /// The next sequence number. It advances with every event, watched or not.
    seq: AtomicU64,
    /// Held while numbering and sending a watched event, so that sequence order is delivery
    /// order; an unwatched event only advances `seq`.
    order: Mutex<()>,
    /// The events not stored yet, for a run that stores its events.
    journal: Option<Mutex<Vec<Event>>>,
}

impl EventBus {
    pub(crate) fn new(run_id: Arc<str>, capacity: usize) -> Self {
        EventBus {
            run_id,
            capacity: capacity.max(1),
            tx: OnceLock::new(),
            seq: AtomicU64::new(0),
            order: Mutex::new(()),
            journal: None,
        }
    }

    /// Whether anyone has subscribed (and so may subscribe again): a subgraph relays its
    /// child's events from then on, so that a subscriber that comes and goes, or a second
    /// one that joins later, still sees them.
    pub(crate) fn is_watched(&self) -> bool {
        self.tx.get().is_some()
    }

    /// Keeps every event from now on, for the checkpoint writer to store
    /// ([`take_journal`](EventBus::take_journal)).
    pub(crate) fn keep_journal(&mut self) {
        self.journal = Some(Mutex::new(Vec::new()));
    }

    /// The events kept since the last call, in sequence order.
    pub(crate) fn take_journal(&self) -> Vec<Event> {
        match &self.journal {
            Some(j) => std::mem::take(&mut *j.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }

    /// Whether events are kept for the store.
    pub(crate) fn journals(&self) -> bool {
        self.journal.is_some()
    }

    /// Publishes the event `kind()` builds, if anyone listens (or the run stores its events).
    /// The sequence number advances either way, so that it is the event's position in the run
    /// for every subscriber.
    #[inline]
    pub(crate) fn emit(&self, kind: impl FnOnce() -> EventKind) {
        self.publish(kind, true);
    }

    /// [`emit`](EventBus::emit) for an event the checkpoint writer stored itself.
    pub(crate) fn emit_stored(&self, kind: impl FnOnce() -> EventKind) {
        self.publish(kind, false);
    }

    fn publish(&self, kind: impl FnOnce() -> EventKind, journal: bool) {
        let journal = self.journal.as_ref().filter(|_| journal);
        let tx = self.tx.get().filter(|tx| tx.receiver_count() > 0);
        if tx.is_none() && journal.is_none() {
            self.seq.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The event is built before the lock is taken: building it may run user code (a custom
        // event's `Serialize`), which must not hold up, or re-enter, other tasks' events.
        let kind = kind();
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            run_id: self.run_id.clone(),
            kind,
        };
        if let Some(j) = journal {
            journal_push(&mut j.lock().unwrap_or_else(|e| e.into_inner()), &event);
        }
        if let Some(tx) = tx {
            // An error only means every subscriber left meanwhile.
            let _ = tx.send(event);
        }
    }

    /// The sequence number of the next event.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Continues the numbering of a resumed run.
    pub(crate) fn set_next_seq(&self, seq: u64) {
        self.seq.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn subscribe(&self) -> EventStream {
        let tx = self.tx.get_or_init(|| broadcast::channel(self.capacity).0);
        EventStream {
            inner: BroadcastStream::new(tx.subscribe()),
        }
    }

    /// A stream that has ended: the events of a run that is over.
    pub(crate) fn ended() -> EventStream {
        EventStream {
            inner: BroadcastStream::new(broadcast::channel(1).1),
        }
    }
}

/// How many streamed pieces of text ([`EventKind::Token`]) one stored event holds at most: a
/// run that stores its events coalesces consecutive pieces of a task's attempt into one
/// stored event, so that a streamed answer costs a record per this many tokens, not one per
/// token (an event record is about 200 bytes; a token is about 4 bytes of text).
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_engine::TOKENS_PER_STORED_EVENT, 64);
/// ```
pub const TOKENS_PER_STORED_EVENT: u32 = 64;

/// How far back in the journal a token looks for the stored token event of its task: past
/// the pieces other tasks streamed meanwhile, never past an event of another kind.
const COALESCE_WINDOW: usize = 32;

/// Keeps `event` for the store: a token joins the stored token event of its task's attempt
/// when the two are consecutive and only tokens came between them.
fn journal_push(journal: &mut Vec<Event>, event: &Event) {
    if let EventKind::Token {
        task,
        attempt,
        index,
        count: adding,
        text,
        ..
    } = &event.kind
    {
        for kept in journal.iter_mut().rev().take(COALESCE_WINDOW) {
            let EventKind::Token {
                task: t,
                attempt: a,
                index: i,
                count,
                text: kept_text,
                ..
            } = &mut kept.kind
            else {
                break;
            };
            if t != task || a != attempt {
                continue;
            }
            if count.saturating_add(*adding) <= TOKENS_PER_STORED_EVENT
                && *i + u64::from(*count) == *index
            {
                *count += adding;
                kept_text.push_str(text);
                return;
            }
            break;
        }
    }
    journal.push(event.clone());
}

/// A subscriber fell behind and lost events; it goes on with the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the subscriber fell behind and missed {0} events; subscribe with a larger event capacity to keep up"
)]
pub struct Missed(pub u64);

/// The events of one run, as a [`Stream`]. Ends when the run has ended and every event was
/// delivered.
///
/// Items are `Ok(event)`, or `Err(Missed(n))` when the subscriber fell behind by more than
/// the run's event capacity: publishing never waits for a subscriber.
///
/// # Examples
///
/// ```no_run
/// # async fn f(mut events: agentgraph_engine::EventStream) {
/// use futures_util::StreamExt;
/// while let Some(item) = events.next().await {
///     match item {
///         Ok(event) => println!("{event}"),
///         Err(missed) => eprintln!("{missed}"),
///     }
/// }
/// # }
/// ```
pub struct EventStream {
    inner: BroadcastStream<Event>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Missed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(|BroadcastStreamRecvError::Lagged(n)| Missed(n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::describe::GraphDescription;

    /// Every kind once; `name()` is exhaustive by its match, this checks each name against
    /// the serde tag.
    fn every_kind() -> Vec<EventKind> {
        let node: Arc<str> = Arc::from("a");
        let task = TaskId::from_u128(7);
        let graph = Fingerprint::from_u128(9);
        let inner = Event {
            seq: 0,
            run_id: Arc::from("child"),
            kind: EventKind::StateUpdated {
                step: 0,
                fields: vec![],
            },
        };
        vec![
            EventKind::RunStarted {
                mode: Mode::Sequential,
                seed: 1,
                graph,
            },
            EventKind::RunResumed {
                step: 1,
                restored: 0,
                graph,
            },
            EventKind::ThreadInvoked {
                invocation: 1,
                step: 2,
                fields: vec![],
                graph,
            },
            EventKind::StepStarted {
                step: 1,
                tasks: vec![],
            },
            EventKind::NodeStarted {
                step: 1,
                node: node.clone(),
                task,
                attempt: 1,
            },
            EventKind::NodeFinished {
                step: 1,
                node: node.clone(),
                task,
                duration: Duration::ZERO,
            },
            EventKind::NodeFailed {
                step: 1,
                node: node.clone(),
                task,
                attempt: 1,
                error: "e".into(),
            },
            EventKind::RetryScheduled {
                step: 1,
                node: node.clone(),
                task,
                attempt: 1,
                delay: Duration::ZERO,
            },
            EventKind::NodeCancelled {
                step: 1,
                node: node.clone(),
                task,
            },
            EventKind::Subgraph {
                step: 1,
                node: node.clone(),
                task,
                event: Box::new(inner),
            },
            EventKind::RunInterrupted {
                step: 1,
                interrupts: vec![],
            },
            EventKind::Custom {
                step: 1,
                node: node.clone(),
                task,
                name: "c".into(),
                payload: serde_json::Value::Null,
            },
            EventKind::Token {
                step: 1,
                node: node.clone(),
                task,
                attempt: 1,
                index: 0,
                count: 1,
                text: "t".into(),
            },
            EventKind::WeightedChoice {
                step: 1,
                from: node.clone(),
                to: node.clone(),
                weight: 1.0,
            },
            EventKind::StateUpdated {
                step: 1,
                fields: vec![],
            },
            EventKind::CheckpointSaved { step: 1, bytes: 1 },
            EventKind::Graph {
                graph: Arc::new(GraphDescription {
                    fingerprint: graph,
                    nodes: vec![],
                    edges: vec![],
                    fields: vec![],
                    joins: vec![],
                }),
            },
            EventKind::StateView {
                step: 1,
                fields: vec![],
            },
            EventKind::RunFinished {
                steps: 1,
                duration: Duration::ZERO,
            },
            EventKind::RunFailed {
                step: 1,
                error: "e".into(),
            },
            EventKind::ErrorRouted {
                step: 1,
                node: node.clone(),
                task,
                handler: node.clone(),
                error: "e".into(),
            },
            EventKind::CompensationStarted {
                step: 1,
                error: "e".into(),
                nodes: vec![node],
            },
            EventKind::BudgetExceeded {
                step: 1,
                scope: crate::BudgetScope::Run,
                budget: crate::BudgetKind::Tokens,
                limit: 1,
                used: 1,
            },
        ]
    }

    #[test]
    fn every_name_is_its_serde_tag() {
        let kinds = every_kind();
        let mut names: Vec<&str> = kinds.iter().map(EventKind::name).collect();
        for kind in &kinds {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json["type"], kind.name(), "{kind:?}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), kinds.len(), "every kind listed once");
    }
}
