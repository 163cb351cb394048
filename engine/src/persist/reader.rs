//! [`Reader`]: a read-only view of a store's runs, decoded from their records. What
//! [`StoreInspector`](crate::StoreInspector) and [`GraphHistory`](crate::GraphHistory) read through.

use std::borrow::Cow;
use std::sync::Arc;

use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus};

use super::events::decode_event;
use super::load::{
    decode_record, load, load_pending, newest_record, state_at, stored_fields, upgrade_pending,
};
use super::pending::{pending_interrupts, pending_task, split_next, written_fields};
use super::record::{CheckpointRecord, PendingOutcome, PendingWriteRecord};
use super::runs::child_runs;
use crate::define::migrate::Migrations;
use crate::define::state::State;
use crate::error::{Error, Result};
use crate::inspect::history::CheckpointInfo;
use crate::inspect::pending::{PendingTask, Tentative};
use crate::observe::event::Event;
use crate::run::interrupt::Interrupt;

/// Reads a store's runs; never writes.
#[derive(Clone)]
pub(crate) struct Reader {
    store: Arc<dyn CheckpointStore>,
}

impl Reader {
    pub(crate) fn new(store: Arc<dyn CheckpointStore>) -> Self {
        Reader { store }
    }

    pub(crate) fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    /// The record of `run`, or [`Error::RunNotFound`].
    pub(crate) async fn run(&self, run: &str) -> Result<RunRecord> {
        self.store
            .get_run(run)
            .await?
            .ok_or_else(|| Error::RunNotFound(run.to_owned()))
    }

    /// The stored checkpoints of `run` (step and bytes), oldest first.
    async fn raw_checkpoints(&self, run: &str) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        loop {
            let after = out.last().map(|(step, _)| *step);
            let page = self.store.list_checkpoints(run, after, 1000).await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    /// The checkpoint records of `run`, oldest first.
    pub(super) async fn records(&self, run: &str) -> Result<Vec<CheckpointRecord>> {
        self.raw_checkpoints(run)
            .await?
            .iter()
            .map(|(_, bytes)| decode_record(run, bytes))
            .collect()
    }

    /// The checkpoints of `run`, oldest first, with the written fields named by `name` (given
    /// the version of the state type that stored the checkpoint, and the field's index). The
    /// newest one's `next` leaves out the tasks that finished (their writes are pending), which
    /// its `finished` lists.
    pub(crate) async fn checkpoints(
        &self,
        run: &str,
        name: impl Fn(u32, u32) -> Cow<'static, str>,
    ) -> Result<Vec<CheckpointInfo>> {
        let records = self.records(run).await?;
        let pending = match records.last() {
            Some(last) => load_pending(&*self.store, run, last.step + 1).await?,
            None => Vec::new(),
        };
        let newest = records.len().checked_sub(1);
        Ok(records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (next, finished) = if Some(i) == newest {
                    split_next(&r.next, &pending)
                } else {
                    (r.next.iter().map(|t| t.node.clone()).collect(), Vec::new())
                };
                CheckpointInfo {
                    step: r.step,
                    parent: r.parent,
                    created_at_ms: r.created_at_ms,
                    written: r
                        .written
                        .iter()
                        .map(|f| name(r.state_version, *f))
                        .collect(),
                    next,
                    finished,
                    blob_bytes: r.blob_bytes,
                    invocation: r.invocation,
                }
            })
            .collect())
    }

    /// The pending writes of the step after `run`'s newest intact checkpoint, with that
    /// checkpoint's step, by task index.
    async fn newest_pending(
        &self,
        run: &str,
    ) -> Result<(CheckpointRecord, Vec<(u32, PendingWriteRecord)>)> {
        let (_, checkpoint) = newest_record(&*self.store, run).await?;
        let mut pending = load_pending(&*self.store, run, checkpoint.step + 1).await?;
        pending.sort_by_key(|(index, _)| *index);
        Ok((checkpoint, pending))
    }

    /// What the tasks of the step after `run`'s newest checkpoint came to, in the step's
    /// order, without naming the fields finished tasks wrote.
    pub(crate) async fn pending(&self, run: &str) -> Result<Vec<PendingTask>> {
        let (checkpoint, pending) = self.newest_pending(run).await?;
        Ok(pending
            .iter()
            .map(|(_, p)| pending_task(checkpoint.step + 1, p, None))
            .collect())
    }

    /// What the tasks of the step after `run`'s newest checkpoint came to, in the step's
    /// order, with the fields finished tasks wrote named after `S`'s.
    pub(crate) async fn pending_typed<S: State>(
        &self,
        run: &str,
        schema: &S::Schema,
        migrations: &Migrations<S>,
    ) -> Result<Vec<PendingTask>> {
        let (checkpoint, mut pending) = self.newest_pending(run).await?;
        let step = checkpoint.step;
        stored_fields::<S>(run, &checkpoint, schema, migrations)?;
        upgrade_pending::<S>(run, &checkpoint, schema, migrations, &mut pending)?;
        pending
            .iter()
            .map(|(_, p)| {
                Ok(pending_task(
                    step + 1,
                    p,
                    written_fields::<S>(run, p, schema)?,
                ))
            })
            .collect()
    }

    /// The state of `run` as the loader restores it for a resume (its newest intact
    /// checkpoint), with the writes of the next step's finished tasks merged in, in the step's
    /// order.
    pub(crate) async fn pending_state<S: State>(
        &self,
        run: &str,
        schema: &S::Schema,
        migrations: &Migrations<S>,
    ) -> Result<Tentative<S>> {
        let loaded = load::<S>(&*self.store, run, schema, migrations).await?;
        let step = loaded.step();
        let mut state = loaded.state;
        let mut pending = loaded.pending;
        pending.sort_by_key(|(index, _)| *index);
        let mut applied = Vec::new();
        for (_, p) in &pending {
            let (update, goto) = match &p.outcome {
                PendingOutcome::Done { update, goto }
                | PendingOutcome::DoneWithMemory { update, goto, .. } => (update, goto),
                // A caught failure finished, writing nothing.
                PendingOutcome::Caught { .. } => {
                    applied.push(pending_task(step + 1, p, Some(Vec::new())));
                    continue;
                }
                _ => continue,
            };
            let cmd = super::pending::command_from::<S>(run, &p.node, update, goto.as_ref())?;
            let mut names = Vec::new();
            S::for_each_written(&cmd.update, |f| {
                names.push(Cow::Borrowed(S::fields(schema)[f].name))
            });
            let update = cmd.update;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.apply(update)))
                .map_err(|panic| Error::Panicked {
                    what: format!("a reducer, applying the pending write of `{}`", p.node),
                    message: crate::error::panic_message(panic),
                })?;
            applied.push(pending_task(step + 1, p, Some(names)));
        }
        Ok(Tentative {
            state,
            step,
            applied,
        })
    }

    /// The step of `run`'s newest intact checkpoint and the totals stored with it (`None`
    /// for a checkpoint written before usage was stored).
    pub(crate) async fn usage(
        &self,
        run: &str,
    ) -> Result<Option<(u64, crate::run::budget::BudgetUsage)>> {
        let (_, checkpoint) = newest_record(&*self.store, run).await?;
        let Some(usage) = checkpoint.usage else {
            return Ok(None);
        };
        let pending = load_pending(&*self.store, run, checkpoint.step + 1).await?;
        let total = super::pending::with_refused_step(usage.total.into(), &pending);
        Ok(Some((checkpoint.step, total)))
    }

    /// The interrupts `run` waits on.
    pub(crate) async fn interrupts(&self, run: &str) -> Result<Vec<Interrupt>> {
        let (record, checkpoint) = newest_record(&*self.store, run).await?;
        let pending = load_pending(&*self.store, run, checkpoint.step + 1).await?;
        let gates = record.status == RunStatus::Interrupted;
        Ok(pending_interrupts(&checkpoint, &pending, gates)
            .into_iter()
            .map(|(i, _)| i)
            .collect())
    }

    /// Up to `limit` stored events of `run` after number `after`.
    pub(crate) async fn events(
        &self,
        run: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.store
            .get_events(run, after, limit)
            .await?
            .into_iter()
            .map(|(seq, bytes)| decode_event(run, seq, &bytes))
            .collect()
    }

    /// The step of `run`'s checkpoint `step`, or of its newest one for `None`:
    /// [`Error::CheckpointNotFound`] when the run has no such checkpoint,
    /// [`Error::RunNotFound`] when there is no such run (or, for `None`, no checkpoint).
    pub(crate) async fn checkpoint_step(&self, run: &str, step: Option<u64>) -> Result<u64> {
        match step {
            Some(step) => {
                if self.store.get_checkpoint(run, step).await?.is_some() {
                    return Ok(step);
                }
                self.run(run).await?;
                Err(Error::CheckpointNotFound {
                    run: run.to_owned(),
                    step,
                })
            }
            None => match self.store.latest_checkpoint(run).await? {
                Some((step, _)) => Ok(step),
                None => Err(Error::RunNotFound(run.to_owned())),
            },
        }
    }

    /// The typed state of `run` after `step` (the newest checkpoint for `None`).
    pub(crate) async fn state<S: State>(
        &self,
        run: &str,
        step: Option<u64>,
        schema: &S::Schema,
        migrations: &Migrations<S>,
    ) -> Result<S> {
        Ok(self
            .state_and_record::<S>(run, step, schema, migrations)
            .await?
            .0)
    }

    /// The typed state of `run` after `step` (the newest checkpoint for `None`), with the
    /// checkpoint's record.
    pub(super) async fn state_and_record<S: State>(
        &self,
        run: &str,
        step: Option<u64>,
        schema: &S::Schema,
        migrations: &Migrations<S>,
    ) -> Result<(S, CheckpointRecord)> {
        let step = self.checkpoint_step(run, step).await?;
        state_at::<S>(&*self.store, run, step, schema, migrations).await
    }

    /// The runs of `run`'s subgraphs (nested ones too).
    pub(crate) async fn child_runs(&self, run: &str) -> Result<Vec<String>> {
        child_runs(&*self.store, run).await
    }
}
