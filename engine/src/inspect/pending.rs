//! The state of a stopped step: [`PendingTask`], what a task of the step after a run's newest
//! checkpoint came to before the run stopped, and [`Tentative`], the state with the writes of
//! the tasks that finished applied (not committed).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::ids::TaskId;

/// What a task of the step after a run's newest checkpoint came to, as its saved (pending)
/// write says: the step began, this task got this far, and the run stopped (or is still
/// running) before the step's checkpoint. A task that is [`Done`](PendingStatus::Done) does
/// not run again when the run resumes: its write is applied as it was saved.
///
/// Listed by [`StoreInspector::pending`](crate::StoreInspector::pending) and
/// [`GraphHistory::pending`](crate::GraphHistory::pending). Its serde shape is the API's (the
/// monitor's `/api/runs/{run}/pending`, the command-line tool's `show --json`): `{"step",
/// "node", "task", "attempts", "status", "written", "error", "retry_at_ms", "interrupts"}`.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Notes { #[reducer(append)] log: Vec<String> }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `ask` and `write` run in one step: `write` finishes, `ask` stops at an interrupt.
/// let mut b = GraphBuilder::<Notes>::new();
/// b.add_node("ask", |_, ctx: Context| async move {
///     let answer: String = ctx.interrupt(&"name?")?;
///     Ok::<_, BoxError>(NotesUpdate::new().log(vec![answer]))
/// })
/// .add_node("write", |_, _| async { Ok(NotesUpdate::new().log(vec!["draft".into()])) })
/// .add_edge(START, "ask")
/// .add_edge(START, "write")
/// .add_edge("ask", END)
/// .add_edge("write", END);
/// let graph = b.compile()?;
/// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let config = RunConfig::new().store(store.clone()).run_id("r");
/// assert!(graph.run_with(Notes::default(), config).await.is_err());
///
/// let pending = StoreInspector::new(store.clone()).pending("r").await?;
/// assert_eq!(pending.len(), 2);
/// let write = pending.iter().find(|t| t.node == "write").unwrap();
/// assert_eq!(write.status, PendingStatus::Done);
/// assert_eq!(write.step, 1);
/// // Naming the written fields needs the state type: `GraphHistory::pending` does.
/// assert_eq!(write.written, None);
/// let typed = graph.history(store).pending("r").await?;
/// let write = typed.iter().find(|t| t.node == "write").unwrap();
/// assert_eq!(write.written.as_deref(), Some(&["log".into()][..]));
/// let ask = typed.iter().find(|t| t.node == "ask").unwrap();
/// assert_eq!(ask.status, PendingStatus::Interrupted);
/// assert_eq!(ask.interrupts.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingTask {
    /// The step the task belongs to (the step after the newest checkpoint).
    pub step: u64,
    /// The node.
    pub node: String,
    /// The task.
    pub task: TaskId,
    /// The attempts made so far.
    pub attempts: u32,
    /// Where it stands.
    pub status: PendingStatus,
    /// For a task that is [`Done`](PendingStatus::Done), the fields its write sets, in
    /// declaration order. `None` otherwise, and from a [`StoreInspector`](crate::StoreInspector)
    /// (naming them decodes the write, which needs the state type: see
    /// [`GraphHistory::pending`](crate::GraphHistory::pending)).
    pub written: Option<Vec<Cow<'static, str>>>,
    /// The error of its last attempt ([`Retrying`](PendingStatus::Retrying) and
    /// [`Failed`](PendingStatus::Failed) tasks).
    pub error: Option<String>,
    /// When its next attempt is due, in milliseconds since the Unix epoch
    /// ([`Retrying`](PendingStatus::Retrying) tasks).
    pub retry_at_ms: Option<u64>,
    /// The ids of the interrupts it waits on ([`Interrupted`](PendingStatus::Interrupted)
    /// tasks).
    pub interrupts: Vec<String>,
}

/// Where a [`PendingTask`] stands. Serialized in `snake_case` (`"done"`, `"retrying"`, ...).
/// New states may be added, so match with a wildcard arm.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::PendingStatus;
///
/// let json = serde_json::to_value(PendingStatus::Retrying).unwrap();
/// assert_eq!(json, "retrying");
/// assert_eq!(serde_json::from_value::<PendingStatus>(json).unwrap(), PendingStatus::Retrying);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PendingStatus {
    /// It finished: its write is saved and is applied, not run again, when the run resumes.
    Done,
    /// An attempt failed and another is due (at its `retry_at_ms`).
    Retrying,
    /// It failed for good; a resume starts it afresh.
    Failed,
    /// It waits at interrupts; a resume with answers runs it again.
    Interrupted,
    /// A budget refused it before a costly call
    /// ([`Context::charge_tool_calls`](crate::Context::charge_tool_calls)); a resume with a
    /// higher budget runs it again.
    OverBudget,
}

impl PendingStatus {
    /// Its name, as serialized: `done`, `retrying`, `failed`, `interrupted` or `over_budget`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::PendingStatus;
    ///
    /// assert_eq!(PendingStatus::Done.as_str(), "done");
    /// assert_eq!(PendingStatus::Interrupted.as_str(), "interrupted");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PendingStatus::Done => "done",
            PendingStatus::Retrying => "retrying",
            PendingStatus::Failed => "failed",
            PendingStatus::Interrupted => "interrupted",
            PendingStatus::OverBudget => "over_budget",
        }
    }
}

/// A run's state with the saved writes of the finished tasks of its stopped step applied: what
/// [`GraphHistory::pending_state`](crate::GraphHistory::pending_state) reads. It is **not
/// committed**: the step has no checkpoint, [`state`](crate::GraphHistory::state) does not
/// show it, and the run's other tasks of that step have yet to run (on resume) before the
/// step's checkpoint holds it.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, Debug, PartialEq, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Notes { #[reducer(append)] log: Vec<String> }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Notes>::new();
/// b.add_node("ask", |_, ctx: Context| async move {
///     let answer: String = ctx.interrupt(&"name?")?;
///     Ok::<_, BoxError>(NotesUpdate::new().log(vec![answer]))
/// })
/// .add_node("write", |_, _| async { Ok(NotesUpdate::new().log(vec!["draft".into()])) })
/// .add_edge(START, "ask")
/// .add_edge(START, "write")
/// .add_edge("ask", END)
/// .add_edge("write", END);
/// let graph = b.compile()?;
/// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let config = RunConfig::new().store(store.clone()).run_id("r");
/// assert!(graph.run_with(Notes::default(), config).await.is_err());
///
/// let history = graph.history(store);
/// // The checkpoint is the input's: `write`'s note is saved, not committed.
/// assert_eq!(history.state("r", None).await?, Notes::default());
/// let tentative = history.pending_state("r").await?;
/// assert_eq!(tentative.step, 0);
/// assert_eq!(tentative.state.log, ["draft"]);
/// assert_eq!(tentative.applied.len(), 1);
/// assert_eq!(tentative.applied[0].node, "write");
/// // `next` lists only what will run: `ask`.
/// assert_eq!(history.checkpoints("r").await?[0].next, ["ask"]);
/// assert_eq!(history.checkpoints("r").await?[0].finished, ["write"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Tentative<S> {
    /// The state after the checkpoint of [`step`](Tentative::step), with the writes of the
    /// [`applied`](Tentative::applied) tasks merged in, in the step's merge order.
    pub state: S,
    /// The step of the checkpoint it builds on.
    pub step: u64,
    /// The tasks of the next step whose writes it holds (all [`Done`](PendingStatus::Done)).
    pub applied: Vec<PendingTask>,
}
