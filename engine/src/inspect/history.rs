//! [`GraphHistory`]: the stored runs of a graph, to list, inspect, fork and prune: a typed view over
//! an [`StoreInspector`], which adds the graph's state type (typed states, forks).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use agentgraph_checkpoint::{CheckpointStore, RunRecord};

use crate::define::state::State;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::inspect::inspector::StoreInspector;
use crate::inspect::pending::{PendingTask, Tentative};
use crate::observe::event::Event;
use crate::persist::fork;
use crate::plan::compiled::CompiledGraph;
use crate::run::interrupt::Interrupt;

/// One checkpoint of a run, as listed by [`GraphHistory::checkpoints`].
///
/// Its serde shape is the API's (the monitor's `/api/runs/{run}/checkpoints`, the
/// command-line tool's `history --json`): `{"step", "parent", "created_at_ms", "written",
/// "next", "finished", "blob_bytes", "invocation"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// The step it follows (0 is the input).
    pub step: u64,
    /// The previous checkpoint's step.
    pub parent: Option<u64>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The fields the step wrote.
    pub written: Vec<Cow<'static, str>>,
    /// The nodes the next step runs (one entry per task), in the step's order. For the newest
    /// checkpoint of a run that stopped (or is running) in the middle of that step, only the
    /// tasks that will still run: those that finished are in
    /// [`finished`](CheckpointInfo::finished).
    pub next: Vec<String>,
    /// The nodes of the next step whose tasks finished before the run stopped (one entry per
    /// task): their writes are saved but not committed (see
    /// [`GraphHistory::pending`]), and a resume applies them without running the tasks again.
    /// Empty but for the newest checkpoint of a stopped or running run.
    #[serde(default)]
    pub finished: Vec<String>,
    /// The bytes of the blobs written with it.
    pub blob_bytes: u64,
    /// The invocation it belongs to: the thread's turn, from 1 (see
    /// [`CompiledGraph::invoke_thread`](crate::CompiledGraph::invoke_thread)). An invocation's
    /// first checkpoint holds its input; a run that is not a thread has only invocation 1.
    #[serde(default = "first_invocation")]
    pub invocation: u32,
}

fn first_invocation() -> u32 {
    1
}

/// The runs a store holds for a graph: list them and their checkpoints, read the state at any
/// checkpoint, fork a new run from one (optionally editing the state), prune old checkpoints,
/// delete runs. Made by [`CompiledGraph::history`].
///
/// The typed view of a store: what does not need the state type is the
/// [`inspector`](GraphHistory::inspector)'s, to which it delegates.
pub struct GraphHistory<S: State> {
    graph: CompiledGraph<S>,
    inspector: StoreInspector,
}

impl<S: State> fmt::Debug for GraphHistory<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphHistory")
            .field("store", self.inspector.store())
            .finish_non_exhaustive()
    }
}

impl<S: State> GraphHistory<S> {
    pub(crate) fn new(graph: CompiledGraph<S>, store: Arc<dyn CheckpointStore>) -> Self {
        GraphHistory {
            graph,
            inspector: StoreInspector::new(store),
        }
    }

    /// Every run in the store, ordered by run id (time-ordered for generated ids).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        self.inspector.runs().await
    }

    /// The record of one run.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn run(&self, run: &str) -> Result<Option<RunRecord>> {
        self.inspector.run(run).await
    }

    /// The checkpoints of `run`, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], or [`Error::Corrupt`] for a damaged checkpoint.
    pub async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        let fields = S::fields(self.graph.schema());
        // A checkpoint stored by an older version of the state type names that version's
        // fields (when a migration step says which type it was).
        let name = |version: u32, f: u32| {
            let fields = if version == S::VERSION {
                fields
            } else {
                self.graph.migrations().fields_of(version).unwrap_or(&[])
            };
            Cow::Borrowed(fields.get(f as usize).map_or("?", |f| f.name))
        };
        self.inspector.reader().checkpoints(run, name).await
    }

    /// The interrupts `run` waits on (empty unless it stopped at some), to answer with
    /// [`Resume::answer`](crate::Resume::answer).
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`], [`Error::Store`].
    pub async fn interrupts(&self, run: &str) -> Result<Vec<Interrupt>> {
        self.inspector.interrupts(run).await
    }

    /// Up to `limit` stored events of `run` (see
    /// [`RunConfig::store_events`](crate::RunConfig::store_events)), in sequence order, after
    /// number `after`: a monitor that saw event `n` asks for `Some(n)` and misses nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for an event that does not decode, [`Error::Store`].
    pub async fn events(&self, run: &str, after: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        self.inspector.events(run, after, limit).await
    }

    /// The state of `run` after `step` (the newest checkpoint when `None`).
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`] when there is no such run (or it has no checkpoint),
    /// [`Error::CheckpointNotFound`] when it has no checkpoint at `step`, [`Error::Corrupt`]
    /// when the checkpoint is damaged, [`Error::Store`].
    pub async fn state(&self, run: &str, step: Option<u64>) -> Result<S> {
        self.inspector
            .reader()
            .state::<S>(run, step, self.graph.schema(), self.graph.migrations())
            .await
    }

    /// What the tasks of the step after `run`'s newest checkpoint came to, in the step's order:
    /// empty unless the run stopped (or is running) in the middle of a step. Those that are
    /// [`Done`](crate::PendingStatus::Done) name the fields they wrote; their writes are saved,
    /// not committed: [`pending_state`](GraphHistory::pending_state) shows the state with them.
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
    /// # let mut b = GraphBuilder::<Notes>::new();
    /// # b.add_node("ask", |_, ctx: Context| async move {
    /// #     let answer: String = ctx.interrupt(&"name?")?;
    /// #     Ok::<_, BoxError>(NotesUpdate::new().log(vec![answer]))
    /// # })
    /// # .add_node("write", |_, _| async { Ok(NotesUpdate::new().log(vec!["draft".into()])) })
    /// # .add_edge(START, "ask").add_edge(START, "write").add_edge("ask", END).add_edge("write", END);
    /// # let graph = b.compile()?;
    /// # let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// // `ask` and `write` run in step 1: `write` finishes, `ask` stops at an interrupt.
    /// let config = RunConfig::new().store(store.clone()).run_id("r");
    /// assert!(graph.run_with(Notes::default(), config).await.is_err());
    /// let pending = graph.history(store).pending("r").await?;
    /// assert_eq!(pending[1].node, "write");
    /// assert_eq!(pending[1].status, PendingStatus::Done);
    /// assert_eq!(pending[1].written.as_deref(), Some(&["log".into()][..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`] when no checkpoint of the run decodes or a
    /// saved write does not decode as this graph's update, [`Error::Store`].
    pub async fn pending(&self, run: &str) -> Result<Vec<PendingTask>> {
        self.inspector
            .reader()
            .pending_typed::<S>(run, self.graph.schema(), self.graph.migrations())
            .await
    }

    /// The state of `run` after its newest checkpoint with the saved writes of the next step's
    /// finished tasks merged in, as a resume would start from it: [`Tentative`], not
    /// committed. Equal to [`state`](GraphHistory::state)`(run, None)` when no task of the
    /// next step finished.
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
    /// # let mut b = GraphBuilder::<Notes>::new();
    /// # b.add_node("ask", |_, ctx: Context| async move {
    /// #     let answer: String = ctx.interrupt(&"name?")?;
    /// #     Ok::<_, BoxError>(NotesUpdate::new().log(vec![answer]))
    /// # })
    /// # .add_node("write", |_, _| async { Ok(NotesUpdate::new().log(vec!["draft".into()])) })
    /// # .add_edge(START, "ask").add_edge(START, "write").add_edge("ask", END).add_edge("write", END);
    /// # let graph = b.compile()?;
    /// # let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// // `ask` and `write` run in step 1: `write` finishes, `ask` stops at an interrupt.
    /// let config = RunConfig::new().store(store.clone()).run_id("r");
    /// assert!(graph.run_with(Notes::default(), config).await.is_err());
    /// let history = graph.history(store);
    /// let tentative = history.pending_state("r").await?;
    /// assert_eq!(tentative.state.log, ["draft"]);
    /// assert!(history.state("r", None).await?.log.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`] when no checkpoint decodes or a saved write
    /// does not, [`Error::Incompatible`] when the checkpoint is of another state type,
    /// [`Error::Panicked`] when a reducer panics, [`Error::Store`].
    pub async fn pending_state(&self, run: &str) -> Result<Tentative<S>> {
        self.inspector
            .reader()
            .pending_state::<S>(run, self.graph.schema(), self.graph.migrations())
            .await
    }

    /// Forks a new run `new_run` from the checkpoint of `run` at `step`, with the state
    /// changed by `edit` (pass `|_| {}` to keep it). The new run is pending: start it with
    /// [`CompiledGraph::resume`]. It runs the tasks the original would have run next.
    ///
    /// # Errors
    ///
    /// [`Error::RunExists`] when `new_run` is taken, [`Error::ReservedRunId`] when it contains
    /// `/@`, [`Error::RunNotFound`], [`Error::CheckpointNotFound`], [`Error::Corrupt`],
    /// [`Error::Encode`], [`Error::Store`].
    pub async fn fork(
        &self,
        run: &str,
        step: u64,
        new_run: &str,
        edit: impl FnOnce(&mut S),
    ) -> Result<()> {
        fork::fork(
            self.inspector.reader(),
            &self.graph,
            run,
            step,
            new_run,
            edit,
            self.inspector.caller_name(),
        )
        .await
    }

    /// Keeps the newest `keep` checkpoints of `run` and deletes the older ones, with the field
    /// values only they needed. Returns how many checkpoints were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], [`Error::Corrupt`]; `StoreError::RunBusy` when the run is running.
    pub async fn prune(&self, run: &str, keep: usize) -> Result<usize> {
        self.inspector.prune(run, keep).await
    }

    /// Deletes `run` and everything stored for it, with the runs of its subgraphs (the runs
    /// named `{run}/@...`).
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; `StoreError::RunBusy` when the run is running.
    pub async fn delete(&self, run: &str) -> Result<()> {
        self.inspector.delete(run).await
    }

    /// The graph.
    pub fn graph(&self) -> &CompiledGraph<S> {
        &self.graph
    }

    /// The same store, read without the state type (state as JSON, the stored graph).
    pub fn inspector(&self) -> StoreInspector {
        self.inspector.clone()
    }
}

impl<S: State> GraphHistory<S> {
    /// Names who forks, prunes and deletes runs through this history, for the runs' audit
    /// trails: see [`StoreInspector::caller`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # use agentgraph_checkpoint::audit::AuditAction;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Count>::new();
    /// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) }).add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// graph.run_with(Count::default(), RunConfig::new().store(store.clone()).run_id("r-1")).await?;
    ///
    /// let history = graph.history(store.clone()).caller("carol");
    /// history.fork("r-1", 1, "r-2", |count| count.n = 10).await?;
    /// let trail = store.audit("r-2").await?;
    /// assert_eq!(trail[0].record.action, AuditAction::Forked);
    /// assert_eq!(trail[0].record.details["run"], "r-1");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.inspector = self.inspector.caller(caller);
        self
    }
}
