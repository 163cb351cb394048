//! [`Inspector`]: a store's runs, read without the program's types, for monitors and the
//! command-line tool.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, WriteBatch};

use crate::describe::GraphDescription;
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};
use crate::history::CheckpointInfo;
use crate::interrupt::Interrupt;
use crate::persist::lease::{RunOwnership, SHORT_TTL};
use crate::persist::record::CheckpointRecord;
use crate::persist::{child_runs, decode_event, decode_record, load_pending, pending_interrupts};
use crate::view::StateJson;

/// How many events a page of [`Inspector`] reads at a time.
const PAGE: usize = 1024;

/// The runs of a store, read without the state type of the program that made them: their
/// records, checkpoints, interrupts and events, the graph they ran and their state as JSON
/// (for runs with [`RunConfig::monitored`](crate::RunConfig::monitored)); and prune or
/// delete them. What the monitor server and the `agentgraph` command-line tool are built on;
/// a program that has the state type uses [`History`](crate::History), which adds typed
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
/// let config = RunConfig::new().shared_store(store.clone()).run_id("r").monitored();
/// graph.run_with(Count { n: 41 }, config).await?;
///
/// let inspector = Inspector::new(store);
/// assert_eq!(inspector.runs().await?[0].status, RunStatus::Completed);
/// assert_eq!(inspector.checkpoints("r").await?.len(), 2);
/// assert_eq!(inspector.state_json("r", Some(0)).await?, serde_json::json!({ "n": 41 }));
/// assert_eq!(inspector.state_json("r", None).await?, serde_json::json!({ "n": 42 }));
/// assert_eq!(inspector.graph("r").await?.unwrap().nodes[0].name, "one");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Inspector {
    store: Arc<dyn CheckpointStore>,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector")
            .field("store", &self.store)
            .finish()
    }
}

impl Inspector {
    /// An inspector of `store`.
    pub fn new(store: Arc<dyn CheckpointStore>) -> Self {
        Inspector { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    /// Every run in the store, ordered by run id (time-ordered for generated ids). Subgraph
    /// runs are listed too, as `{run}/{node}/{task}`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        let mut out: Vec<RunRecord> = Vec::new();
        loop {
            let after = out.last().map(|r| r.run_id.clone());
            let page = self.store.list_runs(after.as_deref(), 1000).await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    /// Up to `limit` runs after run id `after`, in run id order: a page of
    /// [`runs`](Inspector::runs).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn runs_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        Ok(self.store.list_runs(after, limit).await?)
    }

    /// The record of one run.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn run(&self, run: &str) -> Result<Option<RunRecord>> {
        Ok(self.store.get_run(run).await?)
    }

    /// The checkpoints of `run`, oldest first. Written fields are named after the run's
    /// stored graph ([`graph`](Inspector::graph)), or `#index` when it has none.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], or [`Error::Corrupt`] for a damaged checkpoint.
    pub async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        let graph = self.graph(run).await?;
        let names: Vec<String> = graph
            .map(|g| g.fields.into_iter().map(|f| f.name).collect())
            .unwrap_or_default();
        let records = records(&*self.store, run).await?;
        Ok(records
            .iter()
            .map(|r| {
                info(r, |f| match names.get(f as usize) {
                    Some(name) => Cow::Owned(name.clone()),
                    None => Cow::Owned(format!("#{f}")),
                })
            })
            .collect())
    }

    /// The interrupts `run` waits on (empty unless it stopped at some).
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`] when no checkpoint of the run decodes,
    /// [`Error::Store`].
    pub async fn interrupts(&self, run: &str) -> Result<Vec<Interrupt>> {
        let Some(record) = self.store.get_run(run).await? else {
            return Err(Error::RunNotFound(run.to_owned()));
        };
        let checkpoint = newest_record(&*self.store, run).await?;
        let pending = load_pending(&*self.store, run, checkpoint.step + 1).await?;
        let gates = record.status == RunStatus::Interrupted;
        Ok(pending_interrupts(&checkpoint, &pending, gates)
            .into_iter()
            .map(|(i, _)| i)
            .collect())
    }

    /// Up to `limit` stored events of `run` (see
    /// [`RunConfig::store_events`](crate::RunConfig::store_events)), in sequence order, after
    /// number `after`: a monitor that saw event `n` asks for `Some(n)` and misses nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for an event that does not decode, [`Error::Store`].
    pub async fn events(&self, run: &str, after: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        self.store
            .get_events(run, after, limit)
            .await?
            .into_iter()
            .map(|(seq, bytes)| decode_event(run, seq, &bytes))
            .collect()
    }

    /// The sequence number of the newest stored event of `run`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn last_event(&self, run: &str) -> Result<Option<u64>> {
        Ok(self.store.last_event(run).await?)
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
    /// [`Error::RunNotFound`] when there is no such run or checkpoint,
    /// [`Error::NoStateViews`] when the run did not store views of its state (run it with
    /// [`RunConfig::monitored`](crate::RunConfig::monitored)), [`Error::Corrupt`] for an event
    /// that does not decode, [`Error::Store`].
    pub async fn state_json(&self, run: &str, step: Option<u64>) -> Result<serde_json::Value> {
        let step = match step {
            Some(step) => {
                if self.store.get_checkpoint(run, step).await?.is_none() {
                    return Err(Error::RunNotFound(format!("{run}` at step `{step}")));
                }
                step
            }
            None => match self.store.latest_checkpoint(run).await? {
                Some((step, _)) => step,
                None => return Err(Error::RunNotFound(run.to_owned())),
            },
        };
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
        let owner = RunOwnership::acquire(&self.store, run, SHORT_TTL).await?;
        let all = records(&*self.store, run).await?;
        let keep = keep.max(1);
        if all.len() <= keep {
            return Ok(0);
        }
        let oldest_kept = &all[all.len() - keep];
        let mut batch = WriteBatch::new();
        batch.delete_checkpoints_before(run, oldest_kept.step);
        for (f, base) in oldest_kept.bases.iter().enumerate() {
            batch.delete_blobs_before(run, f as u32, *base);
        }
        owner.store().commit(batch).await?;
        self.store.flush().await?;
        Ok(all.len() - keep)
    }

    /// Deletes `run` and everything stored for it, with the runs of its subgraphs (the runs
    /// named `{run}/...`).
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; `StoreError::RunBusy` when the run is running.
    pub async fn delete(&self, run: &str) -> Result<()> {
        let owner = RunOwnership::acquire(&self.store, run, SHORT_TTL).await?;
        let mut batch = WriteBatch::new();
        batch.delete_run(run);
        for child in child_runs(&*self.store, run).await? {
            batch.delete_run(&child);
        }
        owner.store().commit(batch).await?;
        self.store.flush().await?;
        Ok(())
    }

    /// Calls `f` with every stored event of `run`, in order, a page at a time.
    async fn each_event(&self, run: &str, mut f: impl FnMut(&Event)) -> Result<()> {
        let mut after = None;
        loop {
            let page = self.events(run, after, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.seq);
            page.iter().for_each(&mut f);
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }
}

/// The stored checkpoints of `run` (step and bytes), oldest first.
async fn raw_checkpoints(store: &dyn CheckpointStore, run: &str) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    loop {
        let after = out.last().map(|(step, _)| *step);
        let page = store.list_checkpoints(run, after, 1000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// The checkpoint records of `run`, oldest first.
pub(crate) async fn records(
    store: &dyn CheckpointStore,
    run: &str,
) -> Result<Vec<CheckpointRecord>> {
    raw_checkpoints(store, run)
        .await?
        .iter()
        .map(|(_, bytes)| decode_record(run, bytes))
        .collect()
}

/// The newest checkpoint record of `run` that decodes (resume falls back past a damaged
/// newest one the same way).
async fn newest_record(store: &dyn CheckpointStore, run: &str) -> Result<CheckpointRecord> {
    let Some((_, bytes)) = store.latest_checkpoint(run).await? else {
        return Err(Error::Corrupt {
            run: run.to_owned(),
            reason: "it has no checkpoint".to_owned(),
        });
    };
    let damaged = match decode_record(run, &bytes) {
        Ok(record) => return Ok(record),
        Err(e) => e,
    };
    raw_checkpoints(store, run)
        .await?
        .iter()
        .rev()
        .find_map(|(_, bytes)| decode_record(run, bytes).ok())
        .ok_or(damaged)
}

/// A checkpoint record as listed, with the written fields named by `name`.
pub(crate) fn info(
    r: &CheckpointRecord,
    name: impl Fn(u32) -> Cow<'static, str>,
) -> CheckpointInfo {
    CheckpointInfo {
        step: r.step,
        parent: r.parent,
        created_at_ms: r.created_at_ms,
        written: r.written.iter().map(|f| name(*f)).collect(),
        next: r.next.iter().map(|t| t.node.clone()).collect(),
        blob_bytes: r.blob_bytes,
    }
}
