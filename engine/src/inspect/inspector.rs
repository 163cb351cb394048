//! [`StoreInspector`]: a store's runs, read without the program's types, for monitors and the
//! command-line tool.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use agentgraph_checkpoint::{CheckpointStore, IntoStore, RunFilter, RunRecord};

use crate::error::{Error, Result};
use crate::inspect::history::CheckpointInfo;
use crate::inspect::pending::PendingTask;
use crate::observe::event::{Event, EventKind};
use crate::observe::view::StateJson;
use crate::persist::reader::Reader;
use crate::persist::{prune, runs};
use crate::plan::describe::GraphDescription;
use crate::run::interrupt::Interrupt;

/// How many events a page of [`StoreInspector`] reads at a time.
const PAGE: usize = 1024;

/// How many of a run's last events [`StoreInspector::usage`] looks through for the
/// `BudgetExceeded` event that stopped it (the last it emits; streamed tokens' journal entries
/// may follow it).
const BUDGET_EVENT_WINDOW: u64 = 16;

/// The runs of a store, read without the state type of the program that made them: their
/// records, checkpoints, interrupts and events, the graph they ran and their state as JSON
/// (for runs with [`RunConfig::monitored`](crate::RunConfig::monitored)); and prune or
/// delete them. What the monitor server and the `agentgraph` command-line tool are built on;
/// a program that has the state type uses [`GraphHistory`](crate::GraphHistory), which adds typed
/// states and forks.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mut b = GraphBuilder::<Count>::new();
/// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) })
/// #     .add_edge(START, "one").add_edge("one", END);
/// # let graph = b.compile()?;
/// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let config = RunConfig::new().store(store.clone()).run_id("r").monitored();
/// graph.run_with(Count { n: 41 }, config).await?;
///
/// let inspector = StoreInspector::new(store);
/// assert_eq!(inspector.runs().await?[0].status, RunStatus::Completed);
/// assert_eq!(inspector.checkpoints("r").await?.len(), 2);
/// assert_eq!(inspector.state_json("r", Some(0)).await?, serde_json::json!({ "n": 41 }));
/// assert_eq!(inspector.state_json("r", None).await?, serde_json::json!({ "n": 42 }));
/// assert_eq!(inspector.graph("r").await?.unwrap().nodes[0].name, "one");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StoreInspector {
    reader: Reader,
    /// Who prunes, deletes and forks through it, for the audit trail.
    caller: Option<Arc<str>>,
}

impl fmt::Debug for StoreInspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreInspector")
            .field("store", self.reader.store())
            .finish()
    }
}

impl StoreInspector {
    /// An inspector of `store` (by value or shared: see [`IntoStore`]).
    pub fn new(store: impl IntoStore) -> Self {
        StoreInspector {
            reader: Reader::new(store.into_store()),
            caller: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        self.reader.store()
    }

    pub(crate) fn reader(&self) -> &Reader {
        &self.reader
    }

    /// The run whose subgraph node made `run`, when `run` is a subgraph run: subgraph runs are
    /// named `{parent}/@{node}/{task}`, and `/@` is reserved for them
    /// ([`Error::ReservedRunId`]), so a run a user named (`team/1`) is never taken for one.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::StoreInspector;
    ///
    /// let child = "team/1/@review/0196b0c4a1e07a3c9d5e6f708192a3b4";
    /// assert_eq!(StoreInspector::parent_run(child), Some("team/1"));
    /// assert_eq!(StoreInspector::parent_run("team/1"), None);
    /// ```
    pub fn parent_run(run: &str) -> Option<&str> {
        runs::parent_run(run)
    }

    /// The runs of `run`'s subgraphs, nested ones too (the runs named `{run}/@...`), in id
    /// order.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inner = GraphBuilder::<Count>::new();
    /// inner.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_edge(START, "one").add_edge("one", END);
    /// let mut outer = GraphBuilder::<Count>::new();
    /// outer.add_subgraph("sub", inner.compile()?, Count::clone, |c: Count| CountUpdate::new().n(c.n))
    ///     .add_edge(START, "sub").add_edge("sub", END);
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = RunConfig::new().store(store.clone()).run_id("team");
    /// outer.compile()?.run_with(Count { n: 1 }, config).await?;
    ///
    /// let inspector = StoreInspector::new(store);
    /// let children = inspector.subgraph_runs("team").await?;
    /// assert_eq!(children.len(), 1);
    /// assert!(children[0].starts_with("team/@sub/"));
    /// assert_eq!(StoreInspector::parent_run(&children[0]), Some("team"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn subgraph_runs(&self, run: &str) -> Result<Vec<String>> {
        self.reader.child_runs(run).await
    }

    /// Every run in the store, ordered by run id (time-ordered for generated ids). Subgraph
    /// runs are listed too, as `{run}/@{node}/{task}`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        let mut out: Vec<RunRecord> = Vec::new();
        loop {
            let after = out.last().map(|r| r.run_id.clone());
            let page = self.store().list_runs(after.as_deref(), 1000).await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    /// Up to `limit` runs after run id `after`, in run id order: a page of
    /// [`runs`](StoreInspector::runs).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn runs_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        Ok(self.store().list_runs(after, limit).await?)
    }

    /// Up to `limit` runs after run id `after` that `filter` takes (by metadata, status,
    /// graph: see [`RunFilter`]), in run id order: a page of the runs that match. The next
    /// page starts after the last run returned; fewer than `limit` means there are no more.
    /// Reads the store's runs a page at a time until it has `limit` matches (stores have no
    /// index of metadata: this is a scan).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Count>::new();
    /// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) }).add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// for (run, user) in [("c1", "ann"), ("c2", "bob"), ("c3", "ann")] {
    ///     let meta = RunMetadata::new().with_user(user).with_tag("support");
    ///     let config = RunConfig::new().store(store.clone()).run_id(run).metadata(meta);
    ///     graph.run_with(Count::default(), config).await?;
    /// }
    /// let inspector = StoreInspector::new(store);
    /// let anns = RunFilter::new().user("ann").tag("support");
    /// let first = inspector.runs_matching(&anns, None, 1).await?;
    /// assert_eq!(first[0].run_id, "c1");
    /// let rest = inspector.runs_matching(&anns, Some("c1"), 10).await?;
    /// assert_eq!(rest.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["c3"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn runs_matching(
        &self,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_owned);
        while out.len() < limit {
            let page = self.store().list_runs(cursor.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.run_id.clone());
            out.extend(
                page.into_iter()
                    .filter(|r| filter.matches(r))
                    .take(limit - out.len()),
            );
        }
        Ok(out)
    }

    /// The record of one run.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn run(&self, run: &str) -> Result<Option<RunRecord>> {
        Ok(self.store().get_run(run).await?)
    }

    /// The checkpoints of `run`, oldest first. Written fields are named after the run's
    /// stored graph ([`graph`](StoreInspector::graph)), or `#index` when it has none.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], or [`Error::Corrupt`] for a damaged checkpoint.
    pub async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        let graph = self.graph(run).await?;
        let names: Vec<String> = graph
            .map(|g| g.fields.into_iter().map(|f| f.name).collect())
            .unwrap_or_default();
        self.reader
            .checkpoints(run, |_, f| match names.get(f as usize) {
                Some(name) => Cow::Owned(name.clone()),
                None => Cow::Owned(format!("#{f}")),
            })
            .await
    }

    /// The interrupts `run` waits on (empty unless it stopped at some).
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`] when no checkpoint of the run decodes,
    /// [`Error::Store`].
    pub async fn interrupts(&self, run: &str) -> Result<Vec<Interrupt>> {
        self.reader.interrupts(run).await
    }

    /// What the tasks of the step after `run`'s newest checkpoint came to, in the step's order:
    /// empty unless the run stopped (or is running) in the middle of a step. A
    /// [`Done`](crate::PendingStatus::Done) task's write is saved but not committed; its
    /// [`written`](PendingTask::written) fields are `None` here (naming them needs the state
    /// type: [`GraphHistory::pending`](crate::GraphHistory::pending)).
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
    /// let pending = StoreInspector::new(store).pending("r").await?;
    /// let status: Vec<_> = pending.iter().map(|t| (t.node.as_str(), t.status)).collect();
    /// assert_eq!(status, [("ask", PendingStatus::Interrupted), ("write", PendingStatus::Done)]);
    /// assert_eq!(pending[1].written, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`] when no checkpoint of the run decodes,
    /// [`Error::Store`].
    pub async fn pending(&self, run: &str) -> Result<Vec<PendingTask>> {
        self.reader.pending(run).await
    }

    /// Up to `limit` stored events of `run` (see
    /// [`RunConfig::store_events`](crate::RunConfig::store_events)), in sequence order, after
    /// number `after`: a monitor that saw event `n` asks for `Some(n)` and misses nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for an event that does not decode, [`Error::Store`].
    pub async fn events(&self, run: &str, after: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        self.reader.events(run, after, limit).await
    }

    /// What `run` used, as stored with its newest checkpoint (steps, model tokens, cost, tool
    /// calls, wall time), and, for a run stopped by a budget that stores its events, which
    /// budget: see [`RunUsage`](crate::RunUsage), whose example shows it. `None` for a run
    /// without a checkpoint, or whose newest checkpoint was written before usage was stored.
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`] when no checkpoint of the run decodes,
    /// [`Error::Store`].
    pub async fn usage(&self, run: &str) -> Result<Option<crate::run::budget::RunUsage>> {
        let record = self.reader.run(run).await?;
        if record.last_step.is_none() {
            return Ok(None);
        }
        let Some((step, total)) = self.reader.usage(run).await? else {
            return Ok(None);
        };
        let stopped_by = if record.status == agentgraph_checkpoint::RunStatus::BudgetExceeded {
            self.budget_stop(run).await?
        } else {
            None
        };
        Ok(Some(crate::run::budget::RunUsage {
            step,
            total,
            stopped_by,
        }))
    }

    /// The newest `BudgetExceeded` event of `run`, among its last few events (it is the last
    /// one a run stopped by its budget emits; `None` when it stored none).
    async fn budget_stop(&self, run: &str) -> Result<Option<crate::run::budget::BudgetExceeded>> {
        let Some(last) = self.last_event(run).await? else {
            return Ok(None);
        };
        let after = last.checked_sub(BUDGET_EVENT_WINDOW);
        let events = self
            .events(run, after, BUDGET_EVENT_WINDOW as usize + 1)
            .await?;
        Ok(events.into_iter().rev().find_map(|e| match e.kind {
            EventKind::BudgetExceeded {
                step,
                scope,
                budget,
                limit,
                used,
            } => Some(crate::run::budget::BudgetExceeded {
                run_id: run.to_owned(),
                scope,
                budget,
                limit,
                used,
                step,
            }),
            _ => None,
        }))
    }

    /// The sequence number of the newest stored event of `run`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn last_event(&self, run: &str) -> Result<Option<u64>> {
        Ok(self.store().last_event(run).await?)
    }

    /// The graph `run` ran, as its newest [`EventKind::Graph`] event says (runs with
    /// [`RunConfig::state_views`](crate::RunConfig::state_views) and
    /// [`store_events`](crate::RunConfig::store_events) store it); `None` for a run that
    /// stored none.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for an event that does not decode, [`Error::Store`].
    pub async fn graph(&self, run: &str) -> Result<Option<GraphDescription>> {
        let mut found = None;
        self.each_event(run, |event| {
            if let EventKind::Graph { graph } = &event.kind {
                found = Some(graph.clone());
            }
        })
        .await?;
        Ok(found.map(Arc::unwrap_or_clone))
    }

    /// The state of `run` after `step` (the newest checkpoint when `None`), as a JSON object
    /// of its fields, rebuilt from the run's stored
    /// [`StateView`](crate::EventKind::StateView) events.
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`] when there is no such run (or it has no checkpoint),
    /// [`Error::CheckpointNotFound`] when it has no checkpoint at `step`,
    /// [`Error::NoStateViews`] when the run did not store views of its state (run it with
    /// [`RunConfig::monitored`](crate::RunConfig::monitored)), [`Error::Corrupt`] for an event
    /// that does not decode, [`Error::Store`].
    pub async fn state_json(&self, run: &str, step: Option<u64>) -> Result<serde_json::Value> {
        let step = self.reader.checkpoint_step(run, step).await?;
        let mut state = StateJson::new();
        let mut seen = false;
        self.each_event(run, |event| {
            seen |= matches!(event.kind, EventKind::StateView { .. });
            state.apply_events([event], Some(step));
        })
        .await?;
        if !seen {
            return Err(Error::NoStateViews(run.to_owned()));
        }
        Ok(state.into_value())
    }

    /// Keeps the newest `keep` checkpoints of `run` (at least one) and deletes the older ones,
    /// with the field values only they needed. Returns how many checkpoints were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], [`Error::Corrupt`]; `StoreError::RunBusy` when the run is running.
    pub async fn prune(&self, run: &str, keep: usize) -> Result<usize> {
        prune::prune(&self.reader, run, keep, self.caller_name()).await
    }

    /// Deletes `run` and everything stored for it, with the runs of its subgraphs (the runs
    /// named `{run}/@...`).
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; `StoreError::RunBusy` when the run is running.
    pub async fn delete(&self, run: &str) -> Result<()> {
        prune::delete(&self.reader, run, self.caller_name()).await
    }

    /// Calls `f` with every stored event of `run`, in order, a page at a time.
    async fn each_event(&self, run: &str, mut f: impl FnMut(&Event)) -> Result<()> {
        let mut pages = self.event_pages(run, None);
        while let Some(page) = pages.next_page().await? {
            page.iter().for_each(&mut f);
        }
        Ok(())
    }

    /// The stored events of `run` after sequence number `after` (all of them for `None`), read
    /// a page at a time: the one pager of events, for the monitor, the command-line tool and
    /// whoever reads a run's log.
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::*;
    /// # async fn show(inspector: &StoreInspector) -> Result<()> {
    /// let mut pages = inspector.event_pages("run-1", None);
    /// while let Some(page) = pages.next_page().await? {
    ///     for event in page {
    ///         println!("{event}");
    ///     }
    /// }
    /// // The cursor remembers where it stopped: later events come with the next call.
    /// let _last = pages.after();
    /// # Ok(()) }
    /// ```
    pub fn event_pages(&self, run: &str, after: Option<u64>) -> EventPages<'_> {
        EventPages {
            inspector: self,
            run: run.to_owned(),
            after,
            page_size: PAGE,
        }
    }
}

/// A cursor over the stored events of one run, a page at a time: made by
/// [`StoreInspector::event_pages`].
#[derive(Debug)]
pub struct EventPages<'a> {
    inspector: &'a StoreInspector,
    run: String,
    after: Option<u64>,
    page_size: usize,
}

impl EventPages<'_> {
    /// The events after the last one returned (at most a page), or `None` when there are none
    /// yet. A run that is still going may store more: calling again later returns them.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], [`Error::Corrupt`] for an event that does not decode.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Event>>> {
        let page = self
            .inspector
            .events(&self.run, self.after, self.page_size)
            .await?;
        match page.last() {
            Some(last) => {
                self.after = Some(last.seq);
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }

    /// The sequence number of the last event returned (or the `after` it started from).
    pub fn after(&self) -> Option<u64> {
        self.after
    }

    /// Sets how many events a page holds at most (1,024 by default).
    #[must_use]
    pub fn page_size(mut self, events: usize) -> Self {
        self.page_size = events.max(1);
        self
    }
}

impl StoreInspector {
    /// Names who prunes, deletes and forks runs through this inspector (and the
    /// [`GraphHistory`](crate::GraphHistory) made from it), for the runs' audit trails: each
    /// of these writes an entry (`pruned`, `deleted`, `forked`) in the same atomic batch as
    /// what it records, when the store keeps audit trails. Without a caller the entries name
    /// `"unknown"`. A deleted run's trail is kept, its deletion the last entry.
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
    /// StoreInspector::new(store.clone()).caller("bob").delete("r-1").await?;
    /// let trail = store.audit("r-1").await?;
    /// let last = trail.last().unwrap();
    /// assert_eq!((last.record.action, last.record.caller.as_str()), (AuditAction::Deleted, "bob"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(Arc::from(caller.into()));
        self
    }

    /// The caller given to [`caller`](StoreInspector::caller).
    pub(crate) fn caller_name(&self) -> Option<&str> {
        self.caller.as_deref()
    }
}
