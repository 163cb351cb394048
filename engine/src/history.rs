//! [`History`]: the stored runs of a graph, to list, inspect, fork and prune.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use agentgraph_checkpoint::envelope::{self, RecordKind};
use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, WriteBatch};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::graph::CompiledGraph;
use crate::inspect::Inspector;
use crate::interrupt::Interrupt;
use crate::persist::lease::{RunOwnership, SHORT_TTL};
use crate::persist::record::{BlobRecord, CheckpointRecord};
use crate::persist::{now_ms, state_at};
use crate::state::State;

/// One checkpoint of a run, as listed by [`History::checkpoints`].
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The nodes the next step runs (one entry per task).
    pub next: Vec<String>,
    /// The bytes of the blobs written with it.
    pub blob_bytes: u64,
}

/// The runs a store holds for a graph: list them and their checkpoints, read the state at any
/// checkpoint, fork a new run from one (optionally editing the state), prune old checkpoints,
/// delete runs. Made by [`CompiledGraph::history`].
pub struct History<S: State> {
    graph: CompiledGraph<S>,
    store: Arc<dyn CheckpointStore>,
}

impl<S: State> fmt::Debug for History<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<S: State> History<S> {
    pub(crate) fn new(graph: CompiledGraph<S>, store: Arc<dyn CheckpointStore>) -> Self {
        History { graph, store }
    }

    /// Every run in the store, ordered by run id (time-ordered for generated ids).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        self.inspector().runs().await
    }

    /// The record of one run.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn run(&self, run: &str) -> Result<Option<RunRecord>> {
        Ok(self.store.get_run(run).await?)
    }

    /// The checkpoints of `run`, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], or [`Error::Corrupt`] for a damaged checkpoint.
    pub async fn checkpoints(&self, run: &str) -> Result<Vec<CheckpointInfo>> {
        let name = |f: u32| Cow::Borrowed(S::FIELDS.get(f as usize).map_or("?", |f| f.name));
        Ok(crate::inspect::records(&*self.store, run)
            .await?
            .iter()
            .map(|r| crate::inspect::info(r, name))
            .collect())
    }

    /// The interrupts `run` waits on (empty unless it stopped at some), to answer with
    /// [`Resume::answer`](crate::Resume::answer).
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], [`Error::Corrupt`], [`Error::Store`].
    pub async fn interrupts(&self, run: &str) -> Result<Vec<Interrupt>> {
        self.inspector().interrupts(run).await
    }

    /// Up to `limit` stored events of `run` (see
    /// [`RunConfig::store_events`](crate::RunConfig::store_events)), in sequence order, after
    /// number `after`: a monitor that saw event `n` asks for `Some(n)` and misses nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for an event that does not decode, [`Error::Store`].
    pub async fn events(&self, run: &str, after: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        self.inspector().events(run, after, limit).await
    }

    /// The state of `run` after `step` (the newest checkpoint when `None`).
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`] when there is no such checkpoint, [`Error::Corrupt`] when it is
    /// damaged, [`Error::Store`].
    pub async fn state(&self, run: &str, step: Option<u64>) -> Result<S> {
        let step = match step {
            Some(step) => step,
            None => match self.store.latest_checkpoint(run).await? {
                Some((step, _)) => step,
                None => return Err(Error::RunNotFound(run.to_owned())),
            },
        };
        if self.store.get_checkpoint(run, step).await?.is_none() {
            return Err(Error::RunNotFound(format!("{run}` at step `{step}")));
        }
        Ok(state_at::<S>(&*self.store, run, step).await?.0)
    }

    /// Forks a new run `new_run` from the checkpoint of `run` at `step`, with the state
    /// changed by `edit` (pass `|_| {}` to keep it). The new run is pending: start it with
    /// [`CompiledGraph::resume`]. It runs the tasks the original would have run next.
    ///
    /// # Errors
    ///
    /// [`Error::RunExists`] when `new_run` is taken, [`Error::RunNotFound`],
    /// [`Error::Corrupt`], [`Error::Encode`], [`Error::Store`].
    pub async fn fork(
        &self,
        run: &str,
        step: u64,
        new_run: &str,
        edit: impl FnOnce(&mut S),
    ) -> Result<()> {
        let owner = RunOwnership::acquire(&self.store, new_run, SHORT_TTL).await?;
        if self.store.get_run(new_run).await?.is_some() {
            return Err(Error::RunExists(new_run.to_owned()));
        }
        let Some(source) = self.store.get_run(run).await? else {
            return Err(Error::RunNotFound(run.to_owned()));
        };
        let (mut state, record) = state_at::<S>(&*self.store, run, step).await?;
        edit(&mut state);
        let mut batch = WriteBatch::new();
        let mut blob_bytes = 0;
        for f in 0..S::FIELDS.len() {
            let mut full = Vec::new();
            state
                .encode_field(f, &mut full)
                .map_err(|source| Error::Encode {
                    what: format!("field `{}`", S::FIELDS[f].name),
                    source,
                })?;
            let bytes = envelope::encode(RecordKind::Blob, &BlobRecord::Full(full.into()))
                .map_err(record_error)?;
            blob_bytes += bytes.len() as u64;
            batch.put_blob(new_run, f as u32, step, bytes);
        }
        let forked = CheckpointRecord {
            parent: None,
            created_at_ms: now_ms(),
            bases: vec![step; S::FIELDS.len()],
            written: (0..S::FIELDS.len() as u32).collect(),
            blob_bytes,
            ..record
        };
        batch.put_checkpoint(
            new_run,
            step,
            envelope::encode(RecordKind::Checkpoint, &forked).map_err(record_error)?,
        );
        let mut rec = RunRecord::new(new_run, RunStatus::Pending, source.fingerprint, now_ms());
        rec.last_step = Some(step);
        rec.forked_from = Some((run.to_owned(), step));
        rec.graph = self.graph.name().map(str::to_owned);
        batch.put_run(rec);
        owner.store().commit(batch).await?;
        self.store.flush().await?;
        Ok(())
    }

    /// Keeps the newest `keep` checkpoints of `run` and deletes the older ones, with the field
    /// values only they needed. Returns how many checkpoints were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], [`Error::Corrupt`]; `StoreError::RunBusy` when the run is running.
    pub async fn prune(&self, run: &str, keep: usize) -> Result<usize> {
        self.inspector().prune(run, keep).await
    }

    /// Deletes `run` and everything stored for it, with the runs of its subgraphs (the runs
    /// named `{run}/...`).
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; `StoreError::RunBusy` when the run is running.
    pub async fn delete(&self, run: &str) -> Result<()> {
        self.inspector().delete(run).await
    }

    /// The graph.
    pub fn graph(&self) -> &CompiledGraph<S> {
        &self.graph
    }

    /// The same store, read without the state type (state as JSON, the stored graph).
    pub fn inspector(&self) -> Inspector {
        Inspector::new(self.store.clone())
    }
}

fn record_error(e: envelope::FormatError) -> Error {
    Error::Encode {
        what: "a record".to_owned(),
        source: crate::codec::CodecError::new(e.to_string()),
    }
}
