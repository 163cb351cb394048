//! [`Persister`]: the checkpoint writer of one run.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::audit::{AuditAction, AuditRecord};
use agentgraph_checkpoint::envelope::{self, RecordKind};
use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, WriteBatch};

use super::blob::{self, FieldTrack};
use super::events::put_events;
use super::load::{Loaded, load, newest_record, stored_fields};
use super::packing::Packing;
use super::pending::{caught_failure, route_record};
use super::record::{
    CheckpointRecord, CompensatingRecord, GateRecord, JoinRecord, MemoryRecord, PassRecord,
    PendingOutcome, PendingWriteRecord, SagaRecord, TaskRecord, UsageAmounts, UsageRecord,
};
use super::runs::child_runs;
use super::{RunOwnership, Session, encode_error, format_encode_error, lease, now_ms};
use crate::codec;
use crate::define::route::Command;
use crate::define::state::State;
use crate::error::{Error, Result};
use crate::ids::{Fingerprint, NodeId, TaskId};
use crate::observe::event::{Event, EventKind};
use crate::plan::Plan;
use crate::run::budget::BudgetUsage;
use crate::run::config::Durability;
use crate::run::interrupt::Interrupt;
use crate::run::scheduler::{JoinPass, Saga};

/// Where a run stands after a step, besides its state: the next step's tasks, the joins'
/// bookkeeping, the number of its next event, and the `interrupt_after` gates it stops at.
/// The scheduler's own terms: the records are built from it only when a checkpoint is written.
pub(crate) struct Position<'a, S: State> {
    /// The plan, for the nodes' names.
    pub(crate) plan: &'a Plan<S>,
    /// The edge-triggered nodes of the next step, in plan order.
    pub(crate) nodes: &'a [NodeId],
    /// The packets of the next step, in the order they were emitted.
    pub(crate) packets: &'a [(NodeId, Arc<[u8]>)],
    /// The deferred nodes held until nothing else is left, in plan order.
    pub(crate) held: &'a [NodeId],
    /// The packets to deferred nodes held, in the order they were emitted.
    pub(crate) held_packets: &'a [(NodeId, Arc<[u8]>)],
    /// Every join's current pass.
    pub(crate) joins: &'a [JoinPass],
    pub(crate) events: u64,
    /// The `interrupt_after` interrupts of this step's tasks, after which the run stops.
    pub(crate) interrupts: &'a [Interrupt],
    /// The events since the last checkpoint, for a run that stores its events.
    pub(crate) log: Vec<Event>,
    /// The run's invocation (its thread's turn, from 1).
    pub(crate) invocation: u32,
    /// The run's saga: what to compensate, and the compensations still to run.
    pub(crate) saga: &'a Saga,
    /// What the run used: its totals, and the totals its invocation began with.
    pub(crate) usage: (BudgetUsage, BudgetUsage),
}

impl<S: State> Position<'_, S> {
    /// The next step's tasks as stored: nodes in plan order, then packets.
    fn next(&self) -> Vec<TaskRecord> {
        self.tasks(self.nodes, self.packets)
    }

    /// The held deferred tasks as stored: nodes in plan order, then packets.
    fn deferred(&self) -> Vec<TaskRecord> {
        self.tasks(self.held, self.held_packets)
    }

    fn tasks(&self, nodes: &[NodeId], packets: &[(NodeId, Arc<[u8]>)]) -> Vec<TaskRecord> {
        let name = |n: NodeId| self.plan.nodes[n as usize].name.to_string();
        let nodes = nodes.iter().map(|n| TaskRecord {
            node: name(*n),
            input: None,
        });
        let packets = packets.iter().map(|(n, input)| TaskRecord {
            node: name(*n),
            input: Some(input.to_vec().into()),
        });
        nodes.chain(packets).collect()
    }

    fn joins(&self) -> Vec<JoinRecord> {
        self.joins
            .iter()
            .map(|j| JoinRecord {
                arrived: j.arrived.clone(),
                active: j.active,
            })
            .collect()
    }

    /// The joins' passes besides their arrivals; none when no pass fired early or began
    /// (what a graph without quorum or timeout joins stores).
    fn passes(&self) -> Vec<PassRecord> {
        if self.joins.iter().all(|j| !j.fired && !j.active) {
            return Vec::new();
        }
        self.joins
            .iter()
            .map(|j| PassRecord {
                fired: j.fired,
                began: j.began,
            })
            .collect()
    }

    /// The saga as stored; none when there is nothing to compensate (what a graph without
    /// compensations stores).
    fn saga(&self) -> Option<SagaRecord> {
        let saga = self.saga;
        if saga.finished.is_empty() && saga.compensating.is_none() {
            return None;
        }
        let names = |nodes: &[NodeId]| -> Vec<String> {
            nodes
                .iter()
                .map(|n| self.plan.nodes[*n as usize].name.to_string())
                .collect()
        };
        Some(SagaRecord {
            finished: names(&saga.finished),
            compensating: saga.compensating.as_ref().map(|c| CompensatingRecord {
                error: c.error.clone(),
                done: names(&c.done),
                remaining: names(&c.remaining),
            }),
        })
    }

    fn gates(&self) -> Vec<GateRecord> {
        self.interrupts
            .iter()
            .map(|i| GateRecord {
                node: i.node.clone(),
                task: i.task.as_u128(),
            })
            .collect()
    }
}

/// Where a task of a step that did not finish stands, to be kept as a pending write.
#[derive(Debug)]
pub(crate) enum Unfinished<'a> {
    /// An attempt failed (`error`) and the next one is due at `retry_at_ms` (Unix ms), with
    /// the answers the task was given.
    Retrying {
        error: String,
        retry_at_ms: u64,
        answers: &'a [(String, String)],
    },
    /// The task failed for good.
    Failed { error: String },
    /// The task waits at the interrupts it `raised` (or its gate raised), with the answers
    /// it was given.
    Interrupted {
        raised: &'a [Interrupt],
        answers: &'a [(String, String)],
    },
    /// A budget refused the task, with the answers it was given; `used` is what the run used
    /// by then.
    OverBudget {
        answers: &'a [(String, String)],
        used: &'a BudgetUsage,
    },
}

impl Unfinished<'_> {
    fn outcome(self) -> PendingOutcome {
        match self {
            Unfinished::Retrying {
                error,
                retry_at_ms,
                answers,
            } => PendingOutcome::Retrying {
                error,
                retry_at_ms,
                answers: answers.to_vec(),
            },
            Unfinished::Failed { error } => PendingOutcome::Failed { error },
            Unfinished::Interrupted { raised, answers } => PendingOutcome::Interrupted {
                raised: raised.iter().map(Interrupt::to_record).collect(),
                answers: answers.to_vec(),
            },
            Unfinished::OverBudget { answers, used } => PendingOutcome::OverBudget {
                answers: answers.to_vec(),
                used: used.into(),
            },
        }
    }
}

/// Where a write stands in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// A write of a running run, made as the durability mode says.
    Step,
    /// The run's last write: everything is committed and flushed.
    End,
    /// A completed run's last checkpoint, its events still to come (`store_log`, an `End`):
    /// everything is committed; an `Async` run leaves the flush to that write.
    EndBeforeLog,
}

/// The checkpoint writer of one run. Holds the run's lease: one owner at a time.
pub(crate) struct Persister<S: State> {
    store: Arc<dyn CheckpointStore>,
    run_id: Arc<str>,
    durability: Durability,
    fingerprint: Fingerprint,
    created_at_ms: u64,
    forked_from: Option<(String, u64)>,
    fields: Vec<FieldTrack>,
    last_step: Option<u64>,
    /// The background writer of [`Durability::Async`].
    writer: super::writer::GroupWriter,
    /// The newest checkpoint step in `held`.
    held_step: Option<u64>,
    /// The newest checkpoint step known to be committed.
    committed: Option<u64>,
    /// A write failed: nothing more is committed, so that nothing is stored on top of a
    /// missing step.
    broken: bool,
    /// Writes not committed yet: the next group of [`Durability::Async`], everything of
    /// [`Durability::Exit`].
    held: WriteBatch,
    /// Whether pending writes may exist for the step after the last checkpoint.
    pending: bool,
    /// Per field: the encoded values the current step's updates write.
    pub(crate) deltas: Vec<Vec<Vec<u8>>>,
    /// Ownership of the run, shared with the background writer: the run is released only when
    /// both are done, so a resume never races a group still being written.
    lease: Arc<RunOwnership>,
    /// The graph's name, for the run record.
    pub(crate) graph: Option<Arc<str>>,
    /// Whether the run's events are stored with its checkpoints.
    pub(crate) store_events: bool,
    /// The run's metadata and time to live (ms), for the run record.
    metadata: agentgraph_checkpoint::RunMetadata,
    ttl_ms: Option<u64>,
    /// The run's tenant, for the run record.
    tenant: Option<agentgraph_checkpoint::TenantId>,
    /// The memory writes of the current step's tasks, in task order: committed with its
    /// checkpoint.
    memory: Vec<agentgraph_checkpoint::items::ItemWrite>,
    /// How its records are stored (compressed or not).
    packing: Packing,
    /// What describes the state's fields.
    schema: S::Schema,
    /// Who runs this invocation, when its actions are audited (not for a subgraph run, nor
    /// with a store that keeps no audit trail).
    caller: Option<Arc<str>>,
    /// Audit entries to write with the run's next batch (`checkpoint`, `amend`, `finish`).
    audit: Vec<AuditRecord>,
    _state: PhantomData<fn() -> S>,
}

impl<S: State> std::fmt::Debug for Persister<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister")
            .field("run_id", &self.run_id)
            .field("durability", &self.durability)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

impl<S: State> Persister<S> {
    /// Starts a new run: fails if the id is taken.
    pub(crate) async fn create(
        store: Arc<dyn CheckpointStore>,
        run: RunSettings,
        schema: &S::Schema,
    ) -> Result<Self> {
        let lease = lease(&store, &run.run_id, run.lease_ttl).await?;
        if !lease.vacant() && lease.store().get_run(&run.run_id).await?.is_some() {
            return Err(Error::RunExists(run.run_id.to_string()));
        }
        Self::start_new(lease, run, schema, AuditAction::Started).await
    }

    /// Starts a new run whose lease is taken and whose id is free; `action` is audited with
    /// its first checkpoint.
    async fn start_new(
        lease: RunOwnership,
        run: RunSettings,
        schema: &S::Schema,
        action: AuditAction,
    ) -> Result<Self> {
        let RunSettings {
            run_id,
            durability,
            fingerprint,
            graph,
            lease_ttl,
            session,
            packing,
            caller,
            ..
        } = run;
        let store = lease.store().clone();
        // Subgraph runs are found by their id alone (`{run}/@{node}/{task}`, see `runs`): those
        // of an earlier run of this id that was lost (a crash under `Durability::Exit`, a freed
        // id) are not this run's.
        let children = if lease.vacant() {
            Vec::new()
        } else {
            child_runs(&*store, &run_id).await?
        };
        if !children.is_empty() {
            let mut leases = Vec::with_capacity(children.len());
            let mut batch = WriteBatch::new();
            for child in &children {
                let owner = super::lease(&store, child, lease_ttl).await?;
                owner.fence(&mut batch);
                leases.push(owner);
                batch.delete_run(child);
            }
            store.commit(batch).await?;
            store.flush().await?;
            for owner in leases {
                owner.release().await;
            }
        }
        let mut p = Persister::new(
            store,
            run_id,
            durability,
            fingerprint,
            lease,
            now_ms(),
            schema.clone(),
        );
        p.graph = graph;
        p.packing = packing;
        p.tenant = session.tenant_over(&p.run_id, None)?;
        (p.metadata, p.ttl_ms) = session.over(None);
        p.caller = caller.filter(|_| p.store.supports_audit());
        p.audit(action, serde_json::Value::Null);
        Ok(p)
    }

    fn new(
        store: Arc<dyn CheckpointStore>,
        run_id: Arc<str>,
        durability: Durability,
        fingerprint: Fingerprint,
        lease: RunOwnership,
        created_at_ms: u64,
        schema: S::Schema,
    ) -> Self {
        let fields = S::fields(&schema).len();
        Persister {
            store,
            run_id,
            durability,
            fingerprint,
            created_at_ms,
            forked_from: None,
            fields: vec![FieldTrack::default(); fields],
            last_step: None,
            writer: super::writer::GroupWriter::default(),
            held_step: None,
            committed: None,
            broken: false,
            held: WriteBatch::new(),
            pending: false,
            deltas: vec![Vec::new(); fields],
            lease: Arc::new(lease),
            graph: None,
            store_events: false,
            metadata: Default::default(),
            ttl_ms: None,
            tenant: None,
            memory: Vec::new(),
            packing: Packing::default(),
            schema,
            caller: None,
            audit: Vec::new(),
            _state: PhantomData,
        }
    }

    /// Records `action` with `details` in the run's audit trail, with its next batch (nothing
    /// when the run is not audited).
    pub(crate) fn audit(&mut self, action: AuditAction, details: serde_json::Value) {
        if let Some(caller) = &self.caller {
            self.audit
                .push(AuditRecord::new(&**caller, action).with_details(details));
        }
    }

    /// Records the run's cancellation: by `by` when the cancel handle named who cancelled
    /// (the invocation's caller then in the details as `invoked_by`), else by the
    /// invocation's caller.
    fn audit_cancelled(&mut self, by: Option<&str>) {
        let Some(caller) = self.caller.clone() else {
            return;
        };
        let mut details = serde_json::json!({ "step": self.last_step });
        let by = match by {
            Some(by) => {
                details["invoked_by"] = serde_json::Value::from(&*caller);
                by
            }
            None => &*caller,
        };
        self.audit
            .push(AuditRecord::new(by, AuditAction::Cancelled).with_details(details));
    }

    /// Moves the audit entries waiting into `batch`.
    fn put_audit(&mut self, batch: &mut WriteBatch) {
        for record in self.audit.drain(..) {
            batch.put_audit(&self.run_id, record);
        }
    }

    /// Opens an existing run for resuming, and loads it from its newest intact checkpoint.
    pub(crate) async fn open(
        store: Arc<dyn CheckpointStore>,
        run: RunSettings,
        plan: &Plan<S>,
    ) -> Result<(Self, Loaded<S>)> {
        let lease = lease(&store, &run.run_id, run.lease_ttl).await?;
        let Some(record) = lease.store().get_run(&run.run_id).await? else {
            return Err(Error::RunNotFound(run.run_id.to_string()));
        };
        run.open(lease, record, plan, AuditAction::Resumed, |_, _| Ok(()))
            .await
    }

    /// Opens the thread `run_id` for its next invocation: the run's latest checkpoint, if the
    /// thread has one (`None` for a new thread, then started like a new run).
    ///
    /// # Errors
    ///
    /// `StoreError::RunBusy` (in [`Error::Store`]) while another invocation or a resume runs
    /// it; [`Error::ThreadNotReady`] when the thread's last invocation did not end (it waits at
    /// interrupts, failed, was cancelled, or stopped mid-step): it must be resumed first.
    pub(crate) async fn thread(
        store: Arc<dyn CheckpointStore>,
        run: RunSettings,
        plan: &Plan<S>,
    ) -> Result<(Self, Option<Loaded<S>>)> {
        let schema = &plan.schema;
        let lease = lease(&store, &run.run_id, run.lease_ttl).await?;
        if lease.vacant() {
            let p = Self::start_new(lease, run, schema, AuditAction::Invoked).await?;
            return Ok((p, None));
        }
        let Some(record) = lease.store().get_run(&run.run_id).await? else {
            let p = Self::start_new(lease, run, schema, AuditAction::Invoked).await?;
            return Ok((p, None));
        };
        let thread = run.run_id.clone();
        let (p, loaded) = run
            .open(
                lease,
                record,
                plan,
                AuditAction::Invoked,
                |stored, loaded| {
                    // A completed run, a fork (pending) of a checkpoint where a run ended, or a run
                    // whose failure was compensated in full (nothing is left to resume).
                    let ended = match stored.status {
                        RunStatus::Completed | RunStatus::Pending => true,
                        RunStatus::Failed => loaded.compensated(),
                        _ => false,
                    };
                    if ended && loaded.at_rest() {
                        Ok(())
                    } else {
                        Err(Error::ThreadNotReady {
                            thread: thread.to_string(),
                            status: stored.status,
                        })
                    }
                },
            )
            .await?;
        Ok((p, Some(loaded)))
    }
}

/// How a run is written: what starting or opening it needs besides its store, from its
/// graph and its configuration.
pub(crate) struct RunSettings {
    pub(crate) run_id: Arc<str>,
    pub(crate) durability: Durability,
    pub(crate) fingerprint: Fingerprint,
    /// Whether a stored run of another graph may be opened.
    pub(crate) allow_graph_change: bool,
    /// The graph's name, for the run record.
    pub(crate) graph: Option<Arc<str>>,
    pub(crate) lease_ttl: Duration,
    /// The metadata and time to live the configuration gives the run.
    pub(crate) session: Session,
    /// How the run's records are stored.
    pub(crate) packing: Packing,
    /// Who runs it, for its audit trail; `None`: not audited (a subgraph run).
    pub(crate) caller: Option<Arc<str>>,
}

impl RunSettings {
    /// Checks the run's graph, loads its newest intact checkpoint, checks it with `ready`
    /// (before anything is written: a refused run stays as it was), and marks the run running,
    /// auditing `action` in that batch.
    async fn open<S: State>(
        self,
        lease: RunOwnership,
        record: RunRecord,
        plan: &Plan<S>,
        action: AuditAction,
        ready: impl FnOnce(&RunRecord, &Loaded<S>) -> Result<()>,
    ) -> Result<(Persister<S>, Loaded<S>)> {
        let schema = &plan.schema;
        let RunSettings {
            run_id,
            durability,
            fingerprint,
            allow_graph_change,
            graph,
            session,
            packing,
            caller,
            ..
        } = self;
        let store = lease.store().clone();
        // The tenant before anything else: another tenant's run is not found, whatever it is.
        let tenant = session.tenant_over(&run_id, Some(&record))?;
        // The fingerprint first: a changed graph or state type is said as such, before any
        // attempt to decode its state.
        let stored = Fingerprint::from_u128(record.fingerprint);
        if stored != fingerprint
            && !allow_graph_change
            && !stored_by_this_graph(&*store, &run_id, plan, stored).await?
        {
            return Err(Error::GraphChanged {
                run: run_id.to_string(),
                stored,
                current: fingerprint,
            });
        }
        let mut loaded = load::<S>(&*store, &run_id, schema, &plan.migrations).await?;
        ready(&record, &loaded)?;
        let mut p = Persister::new(
            store,
            run_id,
            durability,
            fingerprint,
            lease,
            loaded.run.created_at_ms,
            schema.clone(),
        );
        p.forked_from.clone_from(&loaded.run.forked_from);
        p.graph = graph;
        p.packing = packing;
        (p.metadata, p.ttl_ms) = session.over(Some(&record));
        p.tenant = tenant;
        if loaded.fields.len() == p.fields.len() {
            p.fields.clone_from(&loaded.fields);
        }
        p.last_step = Some(loaded.record.step);
        p.committed = Some(loaded.record.step);
        p.pending = true;
        let mut batch = WriteBatch::new();
        if loaded.fell_back {
            batch.delete_after(&p.run_id, loaded.record.step);
        }
        p.upgrade_stored(&mut loaded, &mut batch)?;
        batch.put_run(p.run_record(RunStatus::Running, None));
        p.caller = caller.filter(|_| p.store.supports_audit());
        let from = serde_json::json!({ "step": loaded.record.step, "status": record.status });
        p.audit(action, from);
        p.put_audit(&mut batch);
        p.store.commit(batch).await?;
        // Marking the run running needs no flush of its own outside `Sync`: a crash that
        // loses it loses what was committed after it too (stores apply commits in order),
        // which leaves the run as it was. The run's next flush makes it durable.
        if durability == Durability::Sync {
            p.store.flush().await?;
        }
        Ok((p, loaded))
    }
}

/// Whether the run whose record holds the fingerprint `stored` was written by `plan`'s graph
/// over the state type of an older version (or one with fewer fields: fields added at the end
/// since): the fingerprint of `plan` over the fields of its newest checkpoint's state type.
/// [`Error::Migration`] when that version is newer than the state type's or no migration step
/// is registered from it.
async fn stored_by_this_graph<S: State>(
    store: &dyn CheckpointStore,
    run: &str,
    plan: &Plan<S>,
    stored: Fingerprint,
) -> Result<bool> {
    let Ok((_, checkpoint)) = newest_record(store, run).await else {
        return Ok(false);
    };
    if checkpoint.state_version == S::VERSION && checkpoint.bases.len() >= plan.fields().len() {
        return Ok(false);
    }
    let fields = stored_fields::<S>(run, &checkpoint, &plan.schema, &plan.migrations)?;
    let fields = &fields[..checkpoint.bases.len().min(fields.len())];
    Ok(plan.fingerprint_with(fields) == stored)
}

impl<S: State> Persister<S> {
    /// When the loaded checkpoint was stored by an older version of the state type (or with
    /// fewer fields), adds to `batch` the upgraded checkpoint, written over the loaded one as
    /// the current version (every field stored whole), and the upgraded pending writes: the
    /// migration is applied once, and what the run stores next is of the current version.
    fn upgrade_stored(&mut self, loaded: &mut Loaded<S>, batch: &mut WriteBatch) -> Result<()> {
        let fields = S::fields(&self.schema).len();
        if loaded.record.state_version == S::VERSION && loaded.record.bases.len() == fields {
            return Ok(());
        }
        let step = loaded.record.step;
        let mut blob_bytes = 0;
        for f in 0..fields {
            let (bytes, track) = blob::full(&loaded.state, &self.schema, f, step, 0)?;
            self.fields[f] = track;
            let bytes = self.packing.pack(bytes);
            blob_bytes += bytes.len() as u64;
            batch.put_blob(&self.run_id, f as u32, step, bytes);
        }
        let record = &mut loaded.record;
        record.state_version = S::VERSION;
        record.bases = vec![step; fields];
        record.written = (0..fields as u32).collect();
        record.blob_bytes = blob_bytes;
        let bytes = self
            .packing
            .pack(envelope::encode(RecordKind::Checkpoint, &*record).map_err(format_encode_error)?);
        batch.put_checkpoint(&self.run_id, step, bytes);
        loaded.fields.clone_from(&self.fields);
        for (index, pending) in &loaded.pending {
            self.put_pending(batch, step + 1, *index, pending)?;
        }
        Ok(())
    }

    fn run_record(&self, status: RunStatus, error: Option<String>) -> RunRecord {
        let mut r = RunRecord::new(
            self.run_id.to_string(),
            status,
            self.fingerprint.as_u128(),
            self.created_at_ms,
        );
        r.updated_at_ms = now_ms();
        r.last_step = self.last_step;
        r.error = error;
        r.forked_from.clone_from(&self.forked_from);
        r.graph = self.graph.as_deref().map(str::to_owned);
        r.metadata.clone_from(&self.metadata);
        r.tenant.clone_from(&self.tenant);
        // The expiry slides: the time to live from this write.
        r.set_ttl(self.ttl_ms);
        r
    }

    /// Records that the field `f` is written by an update, before the update is applied.
    pub(crate) fn capture(&mut self, update: &S::Update) -> Result<()> {
        let mut failure = None;
        S::for_each_written(update, |f| {
            if failure.is_some() || S::fields(&self.schema)[f].reducer.is_exclusive() {
                return;
            }
            let mut out = Vec::new();
            match S::encode_written(update, f, &mut out) {
                Ok(()) => self.deltas[f].push(out),
                Err(e) => failure = Some(e),
            }
        });
        match failure {
            Some(e) => Err(encode_error("an update", e)),
            None => Ok(()),
        }
    }

    /// Keeps a task's memory writes for the current step's checkpoint (nothing for a task
    /// that wrote none).
    pub(crate) fn remember(&mut self, writes: Vec<agentgraph_checkpoint::items::ItemWrite>) {
        if !writes.is_empty() {
            self.memory.extend(writes);
        }
    }

    /// Writes the checkpoint of `step`: the fields in `written` (or every field for the
    /// first checkpoint of a run), the next tasks and the joins. `status` is the run's status
    /// if it changes with this checkpoint.
    pub(crate) async fn checkpoint(
        &mut self,
        step: u64,
        state: &S,
        written: &[bool],
        position: Position<'_, S>,
        status: Option<RunStatus>,
    ) -> Result<Option<u64>> {
        let (events, log) = (position.events, &position.log);
        let first = self.last_step.is_none();
        let mut batch = WriteBatch::new();
        let mut blob_bytes = 0u64;
        let mut written_fields = Vec::new();
        for (f, &was_written) in written.iter().enumerate() {
            if !(first || was_written) {
                continue;
            }
            written_fields.push(f as u32);
            let deltas = std::mem::take(&mut self.deltas[f]);
            let delta_len: usize = deltas.iter().map(Vec::len).sum();
            let track = &mut self.fields[f];
            let bytes = if !first
                && !S::fields(&self.schema)[f].reducer.is_exclusive()
                && track.takes_deltas(delta_len)
            {
                track.delta_len += delta_len;
                blob::deltas(deltas)?
            } else {
                // In a buffer sized for the last full value and the deltas since.
                let (bytes, new_track) =
                    blob::full(state, &self.schema, f, step, track.full_len + delta_len)?;
                *track = new_track;
                bytes
            };
            let bytes = self.packing.pack(bytes);
            blob_bytes += bytes.len() as u64;
            batch.put_blob(&self.run_id, f as u32, step, bytes);
        }
        let record = CheckpointRecord {
            step,
            parent: self.last_step,
            fingerprint: self.fingerprint.as_u128(),
            created_at_ms: now_ms(),
            bases: self.fields.iter().map(|t| t.base).collect(),
            written: written_fields,
            next: position.next(),
            joins: position.joins(),
            blob_bytes,
            // `CheckpointSaved` takes the next number, when it is emitted now.
            events: events + u64::from(self.durability != Durability::Exit || status.is_some()),
            interrupts: position.gates(),
            deferred: position.deferred(),
            passes: position.passes(),
            invocation: position.invocation,
            saga: position.saga(),
            usage: Some(UsageRecord {
                total: UsageAmounts::from(&position.usage.0),
                base: UsageAmounts::from(&position.usage.1),
            }),
            state_version: S::VERSION,
        };
        let bytes = self
            .packing
            .pack(envelope::encode(RecordKind::Checkpoint, &record).map_err(format_encode_error)?);
        let total = blob_bytes + bytes.len() as u64;
        batch.put_checkpoint(&self.run_id, step, bytes);
        if self.store_events {
            put_events(&mut batch, &self.run_id, log, &self.packing)?;
            if self.durability != Durability::Exit || status.is_some() {
                // The `CheckpointSaved` the run emits once this is written, with the number
                // reserved for it: stored in the same commit, so a crash leaves no gap.
                let saved = Event {
                    seq: events,
                    run_id: self.run_id.clone(),
                    kind: EventKind::CheckpointSaved { step, bytes: total },
                };
                put_events(
                    &mut batch,
                    &self.run_id,
                    std::slice::from_ref(&saved),
                    &self.packing,
                )?;
            }
        }
        if std::mem::take(&mut self.pending) {
            batch.delete_pending_writes(&self.run_id, step);
        }
        // The step's memory writes, in the batch that supersedes its pending writes: applied
        // once, with the checkpoint, or not at all.
        let remembers = !self.memory.is_empty();
        if remembers {
            batch.extend(self.memory.drain(..).map(agentgraph_checkpoint::Op::from));
        }
        if !self.audit.is_empty() {
            self.put_audit(&mut batch);
        }
        self.last_step = Some(step);
        batch.put_run(self.run_record(status.unwrap_or(RunStatus::Running), None));
        let last = status.is_some();
        let at = match status {
            // A completed run stores its `RunFinished` next (`store_log`), which flushes.
            Some(RunStatus::Completed) if self.store_events => At::EndBeforeLog,
            Some(_) => At::End,
            None => At::Step,
        };
        self.write(batch, at, Some(step)).await?;
        if remembers && at == At::Step {
            // The next step reads what this one remembered: its checkpoint is committed (not
            // necessarily flushed) before the next step starts, whatever the durability.
            self.commit_now().await?;
        }
        // Exit durability holds checkpoints back until the run ends.
        Ok((self.durability != Durability::Exit || last).then_some(total))
    }

    /// Persists the result of a finished task of `step` (the step after the last checkpoint).
    pub(crate) async fn pending_write(
        &mut self,
        step: u64,
        index: u32,
        task: TaskId,
        node: &str,
        attempts: u32,
        cmd: &Command<S>,
    ) -> Result<()> {
        let outcome = match caught_failure(cmd) {
            Some((handler, failure)) => PendingOutcome::Caught { handler, failure },
            None => {
                let mut update = Vec::new();
                codec::encode_into(&cmd.update, &mut update)
                    .map_err(|e| encode_error(&format!("the update of `{node}`"), e))?;
                let goto = cmd.goto.as_ref().map(route_record);
                if cmd.memory.is_empty() {
                    PendingOutcome::Done { update, goto }
                } else {
                    PendingOutcome::DoneWithMemory {
                        update,
                        goto,
                        memory: cmd.memory.iter().map(MemoryRecord::from_write).collect(),
                    }
                }
            }
        };
        self.pending_outcome(step, index, task, node, attempts, outcome)
            .await
    }

    /// Persists where a task of `step` that did not finish stands: retrying, failed or
    /// interrupted.
    pub(crate) async fn unfinished(
        &mut self,
        step: u64,
        index: u32,
        task: TaskId,
        node: &str,
        attempts: u32,
        unfinished: Unfinished<'_>,
    ) -> Result<()> {
        let outcome = unfinished.outcome();
        self.pending_outcome(step, index, task, node, attempts, outcome)
            .await
    }

    /// Persists where a task of `step` stands.
    async fn pending_outcome(
        &mut self,
        step: u64,
        index: u32,
        task: TaskId,
        node: &str,
        attempts: u32,
        outcome: PendingOutcome,
    ) -> Result<()> {
        let record = PendingWriteRecord {
            task: task.as_u128(),
            node: node.to_owned(),
            attempts,
            outcome,
        };
        let mut batch = WriteBatch::new();
        self.put_pending(&mut batch, step, index, &record)?;
        self.write(batch, At::Step, None).await
    }

    fn put_pending(
        &mut self,
        batch: &mut WriteBatch,
        step: u64,
        index: u32,
        record: &PendingWriteRecord,
    ) -> Result<()> {
        let bytes = self
            .packing
            .pack(envelope::encode(RecordKind::PendingWrite, record).map_err(format_encode_error)?);
        batch.put_pending_write(&self.run_id, step, index, bytes);
        self.pending = true;
        Ok(())
    }

    /// Applies what a resume was given, durably, before anything runs: pending records with
    /// new answers (rewritten in place), and an edit of the state of the last checkpoint
    /// (`written` fields stored whole at that step, the checkpoint record rewritten, the
    /// results of the next step's finished tasks dropped).
    pub(crate) async fn amend(
        &mut self,
        loaded: &mut Loaded<S>,
        answered: &[usize],
        edited: Option<&[bool]>,
    ) -> Result<()> {
        let mut batch = WriteBatch::new();
        let step = loaded.record.step;
        if edited.is_some() {
            // The tasks of a step read one snapshot: results computed from the state before the
            // edit are dropped, and their tasks run again on the edited state (at-least-once).
            batch.delete_pending_writes(&self.run_id, step + 1);
            loaded.pending.retain(|(_, r)| {
                !matches!(
                    r.outcome,
                    PendingOutcome::Done { .. }
                        | PendingOutcome::DoneWithMemory { .. }
                        | PendingOutcome::Caught { .. }
                )
            });
            for (index, record) in &loaded.pending {
                self.put_pending(&mut batch, step + 1, *index, record)?;
            }
        } else {
            for &i in answered {
                let (index, record) = &loaded.pending[i];
                self.put_pending(&mut batch, step + 1, *index, record)?;
            }
        }
        if let Some(written) = edited {
            for (f, _) in written.iter().enumerate().filter(|(_, w)| **w) {
                let (bytes, track) = blob::full(&loaded.state, &self.schema, f, step, 0)?;
                self.fields[f] = track;
                batch.put_blob(&self.run_id, f as u32, step, self.packing.pack(bytes));
            }
            loaded.record.bases = self.fields.iter().map(|t| t.base).collect();
            let bytes = self.packing.pack(
                envelope::encode(RecordKind::Checkpoint, &loaded.record)
                    .map_err(format_encode_error)?,
            );
            batch.put_checkpoint(&self.run_id, step, bytes);
        }
        self.put_audit(&mut batch);
        self.store.commit(batch).await?;
        self.store.flush().await?;
        Ok(())
    }

    /// Records how the run ended (after its last checkpoint) and flushes everything. With
    /// `drop_pending`, the pending writes of that step are deleted (they would fail the same
    /// way again).
    pub(crate) async fn finish(
        &mut self,
        status: RunStatus,
        error: Option<String>,
        drop_pending: Option<u64>,
        log: Vec<Event>,
        cancelled_by: Option<&str>,
    ) -> Result<()> {
        let mut batch = WriteBatch::new();
        if self.store_events && !self.broken && self.last_step.is_some() {
            put_events(&mut batch, &self.run_id, &log, &self.packing)?;
        }
        if self.broken {
            // A write failed, so what was held after it is gone: record the failure at the
            // newest checkpoint that was committed (or free the id if there is none).
            self.wait_writer().await.ok();
            match self.committed {
                None => batch.delete_run(&self.run_id),
                Some(step) => {
                    let mut record = self.run_record(RunStatus::Failed, error);
                    record.last_step = Some(step);
                    batch.put_run(record)
                }
            };
            self.store.commit(batch).await?;
            self.store.flush().await?;
            return Ok(());
        }
        if self.last_step.is_none() {
            // Nothing was checkpointed: there is nothing to resume, and the id stays free
            // (nothing to audit either: no action on a run was made durable).
            self.audit.clear();
            batch.delete_run(&self.run_id);
            return self.write(batch, At::End, None).await;
        }
        if let Some(step) = drop_pending {
            batch.delete_pending_writes(&self.run_id, step);
        }
        if status == RunStatus::Cancelled {
            self.audit_cancelled(cancelled_by);
        }
        self.put_audit(&mut batch);
        batch.put_run(self.run_record(status, error));
        self.write(batch, At::End, None).await
    }

    /// Stores the events of a run that ended after its last checkpoint (its `RunFinished`),
    /// and flushes.
    pub(crate) async fn store_log(&mut self, log: Vec<Event>) -> Result<()> {
        if !self.store_events || log.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        put_events(&mut batch, &self.run_id, &log, &self.packing)?;
        self.write(batch, At::End, None).await
    }

    /// Writes `batch` as the durability mode says; at the run's end, commits everything and
    /// flushes (see [`At`]).
    ///
    /// Every write goes through `held`, in order, so a group commit never reorders writes:
    /// `Sync` commits and flushes at once; `Async` queues everything held for a background
    /// writer that commits whatever has queued until nothing has (group commit: the run never
    /// waits for the disk, and a finished step never waits for the run's next write);
    /// `Exit` holds everything until the end.
    ///
    /// After a failed write nothing more is committed (see `broken`).
    async fn write(&mut self, batch: WriteBatch, at: At, step: Option<u64>) -> Result<()> {
        if self.broken {
            return Err(Error::WritesStopped {
                run: self.run_id.to_string(),
            });
        }
        self.held.extend(batch.into_ops());
        if step.is_some() {
            self.held_step = step;
        }
        let result = self.write_held(at).await;
        if result.is_err() {
            self.broken = true;
            self.held = WriteBatch::new();
            self.held_step = None;
        }
        result
    }

    async fn write_held(&mut self, at: At) -> Result<()> {
        if at != At::Step && self.durability == Durability::Async {
            return self.end_async(at == At::End).await;
        }
        if at != At::Step {
            self.wait_writer().await?;
            return self.commit_held().await;
        }
        match self.durability {
            Durability::Sync => self.commit_held().await?,
            Durability::Async => {
                let group = std::mem::take(&mut self.held);
                let step = self.held_step.take();
                self.writer.push(group, step, &self.store, &self.lease)?;
            }
            Durability::Exit => {}
        }
        Ok(())
    }

    /// Commits everything written so far (the `Async` writer's groups, then what `Exit`
    /// holds), without flushing it.
    async fn commit_now(&mut self) -> Result<()> {
        let result = async {
            if self.durability == Durability::Async {
                self.reclaim().await?;
            }
            if !self.held.is_empty() {
                let held = std::mem::take(&mut self.held);
                self.store.commit(held).await?;
                self.committed = self.held_step.take().or(self.committed);
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Commits and flushes everything held.
    async fn commit_held(&mut self) -> Result<()> {
        let held = std::mem::take(&mut self.held);
        let step = self.held_step.take();
        self.store.commit(held).await?;
        self.store.flush().await?;
        self.committed = step.or(self.committed);
        Ok(())
    }

    /// Stops the `Async` writer and puts the writes it had queued and not committed back in
    /// front of `held`, so that they are committed with the run's next writes, in one batch.
    async fn reclaim(&mut self) -> Result<()> {
        let (mut group, step) = self.writer.close().await?;
        self.committed = self.writer.committed().or(self.committed);
        if !group.is_empty() {
            group.extend(std::mem::take(&mut self.held).into_ops());
            self.held = group;
            if self.held_step.is_none() {
                self.held_step = step;
            }
        }
        Ok(())
    }

    /// The last writes of an `Async` run: committed with what the writer had not committed
    /// yet, in one batch, then, with `flush`, flushed with everything the writer committed,
    /// once (see `writer`); the writer has stopped then, so no write of the run outlives it.
    async fn end_async(&mut self, flush: bool) -> Result<()> {
        self.reclaim().await?;
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.store.commit(held).await?;
        }
        self.committed = self.held_step.take().or(self.committed);
        if !flush {
            return Ok(());
        }
        // The flush first: the writer, stopped, only has to end its thread meanwhile.
        let flushed = self.store.flush().await;
        self.writer.drain().await?;
        Ok(flushed?)
    }

    /// Lets the run go, and waits until nothing it started holds the store any more: its
    /// background writer has stopped and its lease's heartbeat is gone (see
    /// [`RunOwnership::release`]). A run calls it before it returns, however it ended.
    pub(crate) async fn release(mut self) {
        // A writer still running (a run that ended without its last write) stops once what
        // it holds is written; its error was or will be reported by the run's own.
        let _ = self.writer.drain().await;
        self.lease.release().await;
    }

    /// Waits for the background writer, and reports its error.
    async fn wait_writer(&mut self) -> Result<()> {
        let result = self.writer.drain().await;
        self.committed = self.writer.committed().or(self.committed);
        result
    }
}
