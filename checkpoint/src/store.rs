//! The store trait: what the engine reads and writes, in atomic batches.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, AuditRecord};
use crate::error::{Result, StoreError};
use crate::items::{Hit, Item, ItemIndex, ItemQuery, Namespace};
use crate::session::RunMetadata;

/// A boxed future, as the object-safe store methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The longest run id accepted, in bytes.
pub const MAX_RUN_ID_LEN: usize = 512;

/// Where a run stands.
///
/// In JSON (the monitor's API, the command-line tool's `--json`) a status is its
/// [`as_str`](RunStatus::as_str) name: `"pending"`, `"running"`, `"completed"`, `"failed"`,
/// `"interrupted"`, `"cancelled"`, `"retry_scheduled"` or `"budget_exceeded"`.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::RunStatus;
///
/// assert_eq!(RunStatus::Interrupted.as_str(), "interrupted");
/// assert_eq!(RunStatus::Completed.to_string(), "completed");
/// assert_eq!("failed".parse::<RunStatus>(), Ok(RunStatus::Failed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Created (for example by a fork) but not started.
    Pending,
    /// Started and not ended, or ended by a crash.
    Running,
    /// Finished.
    Completed,
    /// Stopped by an error; resumable once the cause is fixed.
    Failed,
    /// Stopped at an interrupt, waiting for input.
    Interrupted,
    /// Cancelled from outside; resumable.
    Cancelled,
    /// Stopped until a failed task's retry is due, rather than sleeping on the run's lease
    /// (the engine's `RunConfig::max_inline_backoff`): its step is checkpointed with the
    /// finished tasks' writes and the retrying task's attempts; continue it (resume it) when
    /// the retry is due. The due time is the retrying pending write's `retry_at_ms`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::RunStatus;
    /// assert_eq!(RunStatus::RetryScheduled.as_str(), "retry_scheduled");
    /// assert_eq!("retry_scheduled".parse::<RunStatus>(), Ok(RunStatus::RetryScheduled));
    /// ```
    RetryScheduled,
    /// Stopped before a step because it used a limit of its budget (steps, tokens, cost,
    /// tool calls, wall time: the engine's `RunConfig::budget`): its last step is
    /// checkpointed; resume it with a higher budget to go on.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::RunStatus;
    /// assert_eq!(RunStatus::BudgetExceeded.as_str(), "budget_exceeded");
    /// assert_eq!("budget_exceeded".parse::<RunStatus>(), Ok(RunStatus::BudgetExceeded));
    /// ```
    BudgetExceeded,
}

impl RunStatus {
    /// Every status, in declaration order.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::Cancelled,
        RunStatus::RetryScheduled,
        RunStatus::BudgetExceeded,
    ];

    /// The status's name, as JSON spells it: `"pending"`, `"running"`, `"completed"`,
    /// `"failed"`, `"interrupted"`, `"cancelled"`, `"retry_scheduled"` or `"budget_exceeded"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::RunStatus;
    /// assert_eq!(RunStatus::Running.as_str(), "running");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
            RunStatus::RetryScheduled => "retry_scheduled",
            RunStatus::BudgetExceeded => "budget_exceeded",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`RunStatus`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown run status `{}` (expected one of: pending, running, completed, failed, interrupted, cancelled, retry_scheduled, budget_exceeded)",
            self.0
        )
    }
}

impl std::error::Error for UnknownStatus {}

impl std::str::FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What a store keeps about a run, updated with each checkpoint.
///
/// Its serde shape is the API's: the monitor's `/api/runs` and the command-line tool's
/// `--json` print it as is. The fingerprint is 32 hex digits (JSON numbers cannot carry 128
/// bits), `forked_from` is `{"run_id": .., "step": ..}` or `null`, the status is its
/// [`RunStatus::as_str`] name, `metadata` is a [`RunMetadata`]'s JSON, and `ttl_ms` and
/// `expires_at_ms` are numbers or `null`. Stores keep their own, binary form of it.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{RunRecord, RunStatus};
///
/// let mut record = RunRecord::new("run-1", RunStatus::Completed, 0xabc, 1_700_000_000_000);
/// record.forked_from = Some(("run-0".into(), 3));
/// let json = serde_json::to_value(&record).unwrap();
/// assert_eq!(json["status"], "completed");
/// assert_eq!(json["fingerprint"], "00000000000000000000000000000abc");
/// assert_eq!(json["forked_from"]["run_id"], "run-0");
/// assert_eq!(json["forked_from"]["step"], 3);
/// assert_eq!(json["metadata"]["tags"], serde_json::json!([]));
/// assert_eq!(json["expires_at_ms"], serde_json::Value::Null);
/// let back: RunRecord = serde_json::from_value(json).unwrap();
/// assert_eq!(back, record);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The fingerprint of the graph that runs it.
    #[serde(with = "json_shape::fingerprint")]
    pub fingerprint: u128,
    /// When the run was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When the record was last written, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// The step of the latest checkpoint, if any.
    pub last_step: Option<u64>,
    /// The error that stopped the run, for failed runs.
    pub error: Option<String>,
    /// The run and step this run was forked from.
    #[serde(with = "json_shape::forked_from")]
    pub forked_from: Option<(String, u64)>,
    /// The name of the graph that runs it, when the graph has one
    /// (`GraphBuilder::named`). Records written before graphs had names read back
    /// with `None`.
    pub graph: Option<String>,
    /// What the run says about itself: user, title, tags, labels (`RunConfig::metadata`).
    /// Records written before sessions read back with none.
    #[serde(default)]
    pub metadata: RunMetadata,
    /// How long the run is kept after it was last written, in milliseconds
    /// (`RunConfig::ttl`); `None` keeps it until it is deleted.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// When the run may be deleted by a sweep
    /// ([`CheckpointStore::sweep_expired`]), in milliseconds since the Unix epoch:
    /// `updated_at_ms + ttl_ms`, moved on each time the record is written.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// The tenant the run belongs to (`RunConfig::tenant`); `None` for a run of no tenant,
    /// which only an all-tenants reader sees. Records written before tenants read back with
    /// `None`. See [`TenantStore`](crate::TenantStore).
    #[serde(default)]
    pub tenant: Option<crate::TenantId>,
}

/// How [`RunRecord`]'s fields that JSON cannot spell as Rust holds them are written.
mod json_shape {
    /// A 128-bit fingerprint as 32 hex digits.
    pub(super) mod fingerprint {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        pub(crate) fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("{value:032x}"))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
            let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
            u128::from_str_radix(&text, 16)
                .map_err(|e| D::Error::custom(format!("fingerprint {text:?}: {e}")))
        }
    }

    /// The run and step a run was forked from, as `{"run_id": .., "step": ..}`.
    pub(super) mod forked_from {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        #[derive(Serialize, Deserialize)]
        struct Fork<R> {
            run_id: R,
            step: u64,
        }

        pub(crate) fn serialize<S: Serializer>(
            value: &Option<(String, u64)>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            value
                .as_ref()
                .map(|(run_id, step)| Fork {
                    run_id: run_id.as_str(),
                    step: *step,
                })
                .serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<(String, u64)>, D::Error> {
            let fork = Option::<Fork<String>>::deserialize(d)?;
            Ok(fork.map(|f| (f.run_id, f.step)))
        }
    }
}

impl RunRecord {
    /// A record of a run with no checkpoint yet.
    pub fn new(
        run_id: impl Into<String>,
        status: RunStatus,
        fingerprint: u128,
        now_ms: u64,
    ) -> Self {
        RunRecord {
            run_id: run_id.into(),
            status,
            fingerprint,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            last_step: None,
            error: None,
            forked_from: None,
            graph: None,
            metadata: RunMetadata::new(),
            tenant: None,
            ttl_ms: None,
            expires_at_ms: None,
        }
    }

    /// Sets the name of the graph that runs the run.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{RunRecord, RunStatus};
    /// let record = RunRecord::new("run-1", RunStatus::Running, 7, 0).with_graph("triage");
    /// assert_eq!(record.graph.as_deref(), Some("triage"));
    /// ```
    pub fn with_graph(mut self, graph: impl Into<String>) -> Self {
        self.graph = Some(graph.into());
        self
    }

    /// Sets the run's metadata.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{RunMetadata, RunRecord, RunStatus};
    /// let record = RunRecord::new("run-1", RunStatus::Running, 7, 0)
    ///     .with_metadata(RunMetadata::new().with_user("ann"));
    /// assert_eq!(record.metadata.user(), Some("ann"));
    /// ```
    pub fn with_metadata(mut self, metadata: RunMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the run's time to live (`None`: none), and its expiry from
    /// [`updated_at_ms`](RunRecord::updated_at_ms): call it after setting that.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{RunRecord, RunStatus};
    /// let mut record = RunRecord::new("run-1", RunStatus::Completed, 7, 1_000);
    /// record.set_ttl(Some(500));
    /// assert_eq!(record.expires_at_ms, Some(1_500));
    /// assert!(!record.is_expired(1_499));
    /// assert!(record.is_expired(1_500));
    /// record.set_ttl(None);
    /// assert!(!record.is_expired(u64::MAX));
    /// ```
    pub fn set_ttl(&mut self, ttl_ms: Option<u64>) {
        self.ttl_ms = ttl_ms;
        self.expires_at_ms = ttl_ms.map(|ttl| self.updated_at_ms.saturating_add(ttl));
    }

    /// Sets the run's time to live, and its expiry: see [`set_ttl`](RunRecord::set_ttl).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_checkpoint::{RunRecord, RunStatus};
    /// let record = RunRecord::new("run-1", RunStatus::Completed, 7, 1_000)
    ///     .with_ttl(Duration::from_secs(60));
    /// assert_eq!((record.ttl_ms, record.expires_at_ms), (Some(60_000), Some(61_000)));
    /// ```
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.set_ttl(Some(duration_ms(ttl)));
        self
    }

    /// Sets the tenant the run belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{RunRecord, RunStatus, TenantId};
    /// let acme = TenantId::new("acme").unwrap();
    /// let record = RunRecord::new("run-1", RunStatus::Running, 7, 0).with_tenant(acme.clone());
    /// assert_eq!(record.tenant, Some(acme));
    /// assert_eq!(serde_json::to_value(&record).unwrap()["tenant"], "acme");
    /// ```
    pub fn with_tenant(mut self, tenant: crate::TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Whether a sweep at `now_ms` deletes the run: it has an expiry, and it is not after
    /// `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Inserts or replaces a run's record.
    PutRun(RunRecord),
    /// Inserts or replaces the checkpoint of `run` at `step` (an encoded record).
    PutCheckpoint {
        /// The run.
        run: String,
        /// The step.
        step: u64,
        /// The encoded checkpoint.
        bytes: Vec<u8>,
    },
    /// Inserts or replaces a blob: the value, or a delta, of field `field` written at `version`.
    PutBlob {
        /// The run.
        run: String,
        /// The field index.
        field: u32,
        /// The version (the step that wrote it).
        version: u64,
        /// The encoded blob.
        bytes: Vec<u8>,
    },
    /// Inserts or replaces the pending write of task `task` of step `step`.
    PutPendingWrite {
        /// The run.
        run: String,
        /// The step the task belongs to.
        step: u64,
        /// The task's index in its step.
        task: u32,
        /// The encoded write.
        bytes: Vec<u8>,
    },
    /// Inserts or replaces event number `seq` of `run` (an encoded record). Events are kept
    /// until the run is deleted.
    PutEvent {
        /// The run.
        run: String,
        /// The event's sequence number.
        seq: u64,
        /// The encoded event.
        bytes: Vec<u8>,
    },
    /// Deletes every pending write of `run` for steps up to and including `step`.
    DeletePendingWrites {
        /// The run.
        run: String,
        /// The last step whose pending writes go.
        step: u64,
    },
    /// Deletes the checkpoints of `run` before `step`.
    DeleteCheckpointsBefore {
        /// The run.
        run: String,
        /// The first step kept.
        step: u64,
    },
    /// Deletes the blobs of `run`'s field `field` with versions before `version`.
    DeleteBlobsBefore {
        /// The run.
        run: String,
        /// The field index.
        field: u32,
        /// The first version kept.
        version: u64,
    },
    /// Deletes what `run` wrote after `step`: checkpoints of later steps, blobs of later
    /// versions, pending writes of later steps (resuming from an older checkpoint past damage
    /// drops the timeline that followed it).
    DeleteAfter {
        /// The run.
        run: String,
        /// The last step kept.
        step: u64,
    },
    /// Deletes everything of `run`: record, checkpoints, blobs, pending writes, events. The
    /// run's lease epoch is kept, so that a run created again under the same id never reuses
    /// an epoch.
    DeleteRun {
        /// The run.
        run: String,
    },
    /// Applies the batch only if `epoch` is the current lease epoch of `run` (see
    /// [`CheckpointStore::acquire_lease`]). Every fence of a batch is checked before anything
    /// of it is applied, in the same atomic commit: a stale epoch fails the whole batch with
    /// [`StoreError::Fenced`] and applies nothing. Where the fence stands in the batch does
    /// not matter.
    Fence {
        /// The run.
        run: String,
        /// The lease epoch the writer holds.
        epoch: u64,
    },
    /// Inserts or replaces a long-term memory item (under its namespace and key): see
    /// [`items`](crate::items). Not tied to a run: a fenced batch applies it with the rest.
    PutItem(Item),
    /// Deletes the item under `key` in `namespace`; with `if_expired_at`, only if the stored
    /// item is expired at that time (what a sweep deletes).
    DeleteItem {
        /// The namespace.
        namespace: Namespace,
        /// The key.
        key: String,
        /// Deletes only an item expired at this time (milliseconds since the Unix epoch).
        if_expired_at: Option<u64>,
    },
    /// Appends an entry to `run`'s audit trail ([`audit`](crate::audit)): the store numbers
    /// it after the run's newest entry and links it to that entry's hash, in the same atomic
    /// commit as the rest of the batch. Entries are never replaced nor deleted, not even by
    /// [`Op::DeleteRun`]. A store that keeps no audit trail
    /// ([`CheckpointStore::supports_audit`]) is never sent one by the engine.
    PutAudit {
        /// The run.
        run: String,
        /// What was done, by whom.
        record: AuditRecord,
    },
}

/// Operations applied together by [`CheckpointStore::commit`]: all of them or none.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{RunRecord, RunStatus, WriteBatch};
/// let mut batch = WriteBatch::new();
/// batch
///     .put_run(RunRecord::new("run-1", RunStatus::Running, 7, 0))
///     .put_checkpoint("run-1", 0, vec![1, 2, 3]);
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// The operations, in the order they were added.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Takes the operations out.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// How many operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds an operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// See [`Op::PutRun`].
    pub fn put_run(&mut self, record: RunRecord) -> &mut Self {
        self.push(Op::PutRun(record))
    }

    /// See [`Op::PutCheckpoint`].
    pub fn put_checkpoint(&mut self, run: &str, step: u64, bytes: Vec<u8>) -> &mut Self {
        self.push(Op::PutCheckpoint {
            run: run.to_owned(),
            step,
            bytes,
        })
    }

    /// See [`Op::PutBlob`].
    pub fn put_blob(&mut self, run: &str, field: u32, version: u64, bytes: Vec<u8>) -> &mut Self {
        self.push(Op::PutBlob {
            run: run.to_owned(),
            field,
            version,
            bytes,
        })
    }

    /// See [`Op::PutPendingWrite`].
    pub fn put_pending_write(
        &mut self,
        run: &str,
        step: u64,
        task: u32,
        bytes: Vec<u8>,
    ) -> &mut Self {
        self.push(Op::PutPendingWrite {
            run: run.to_owned(),
            step,
            task,
            bytes,
        })
    }

    /// See [`Op::PutEvent`].
    pub fn put_event(&mut self, run: &str, seq: u64, bytes: Vec<u8>) -> &mut Self {
        self.push(Op::PutEvent {
            run: run.to_owned(),
            seq,
            bytes,
        })
    }

    /// See [`Op::DeletePendingWrites`].
    pub fn delete_pending_writes(&mut self, run: &str, step: u64) -> &mut Self {
        self.push(Op::DeletePendingWrites {
            run: run.to_owned(),
            step,
        })
    }

    /// See [`Op::DeleteCheckpointsBefore`].
    pub fn delete_checkpoints_before(&mut self, run: &str, step: u64) -> &mut Self {
        self.push(Op::DeleteCheckpointsBefore {
            run: run.to_owned(),
            step,
        })
    }

    /// See [`Op::DeleteBlobsBefore`].
    pub fn delete_blobs_before(&mut self, run: &str, field: u32, version: u64) -> &mut Self {
        self.push(Op::DeleteBlobsBefore {
            run: run.to_owned(),
            field,
            version,
        })
    }

    /// See [`Op::DeleteAfter`].
    pub fn delete_after(&mut self, run: &str, step: u64) -> &mut Self {
        self.push(Op::DeleteAfter {
            run: run.to_owned(),
            step,
        })
    }

    /// See [`Op::DeleteRun`].
    pub fn delete_run(&mut self, run: &str) -> &mut Self {
        self.push(Op::DeleteRun {
            run: run.to_owned(),
        })
    }

    /// See [`Op::PutItem`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::{Item, Namespace};
    /// use agentgraph_checkpoint::WriteBatch;
    /// let mut batch = WriteBatch::new();
    /// batch.put_item(Item::new(Namespace::new(["users", "ann"]), "tz", serde_json::json!("UTC")));
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn put_item(&mut self, item: Item) -> &mut Self {
        self.push(Op::PutItem(item))
    }

    /// See [`Op::DeleteItem`] (unconditional).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::Namespace;
    /// use agentgraph_checkpoint::WriteBatch;
    /// let mut batch = WriteBatch::new();
    /// batch.delete_item(&Namespace::new(["users", "ann"]), "tz");
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn delete_item(&mut self, namespace: &Namespace, key: &str) -> &mut Self {
        self.push(Op::DeleteItem {
            namespace: namespace.clone(),
            key: key.to_owned(),
            if_expired_at: None,
        })
    }

    /// See [`Op::PutAudit`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::audit::{AuditAction, AuditRecord};
    /// use agentgraph_checkpoint::WriteBatch;
    /// let mut batch = WriteBatch::new();
    /// batch.put_audit("run-1", AuditRecord::new("alice", AuditAction::Started));
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn put_audit(&mut self, run: &str, record: AuditRecord) -> &mut Self {
        self.push(Op::PutAudit {
            run: run.to_owned(),
            record,
        })
    }

    /// Makes the batch conditional on `epoch` being `run`'s current lease epoch: see
    /// [`Op::Fence`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{Op, WriteBatch};
    /// let mut batch = WriteBatch::new();
    /// batch.fence("run-1", 3).put_checkpoint("run-1", 0, vec![1]);
    /// assert_eq!(batch.ops()[0], Op::Fence { run: "run-1".into(), epoch: 3 });
    /// ```
    pub fn fence(&mut self, run: &str, epoch: u64) -> &mut Self {
        self.push(Op::Fence {
            run: run.to_owned(),
            epoch,
        })
    }
}

impl Extend<Op> for WriteBatch {
    fn extend<I: IntoIterator<Item = Op>>(&mut self, ops: I) {
        self.ops.extend(ops);
    }
}

/// A checkpoint store. Object safe: the engine holds an `Arc<dyn CheckpointStore>`.
///
/// Writes go through [`commit`](CheckpointStore::commit), which applies a [`WriteBatch`]
/// atomically; [`flush`](CheckpointStore::flush) then makes every committed batch durable.
/// Checkpoints, blobs and pending writes are opaque, enveloped bytes to the store; run
/// records are typed, and a corrupt one is a [`StoreError::Corrupt`].
///
/// Every method that takes a run id (in an operation, a read or [`acquire_lease`]) rejects an
/// invalid one ([`check_run_id`]) with [`StoreError::InvalidRunId`]; a batch with one such
/// operation applies nothing. (The `after` cursor of [`list_runs`] is not a run id: any
/// string.) Reads of a run record that does not decode fail with
/// [`StoreError::Corrupt`] naming the run, never with a panic.
///
/// Every backend passes the same conformance suite ([`conformance`](crate::conformance)).
///
/// # Owning a run
///
/// One writer at a time owns a run, by a [`Lease`]: [`acquire_lease`] takes a free or expired
/// run and gives it a new **fencing epoch**, greater than every earlier epoch of the run (kept
/// by the store, across reopening, and through [`Op::DeleteRun`]); the owner renews the lease
/// before it expires ([`renew_lease`]) and stamps every batch it commits with its epoch
/// ([`WriteBatch::fence`]). Once another owner has taken the run over, the old owner's batches
/// fail whole with [`StoreError::Fenced`] and its renewals fail the same way. A lease that
/// expired but was not taken over still writes and renews: its epoch is still the run's.
/// Batches without a fence are not checked (tools and tests write that way); the engine
/// fences every write of a run.
///
/// Dropping a [`Lease`] without [`release_lease`] lets the store release it at once if it can
/// do so without waiting (the embedded stores do); otherwise the lease expires after its TTL.
///
/// [`acquire_lease`]: CheckpointStore::acquire_lease
/// [`renew_lease`]: CheckpointStore::renew_lease
/// [`release_lease`]: CheckpointStore::release_lease
/// [`list_runs`]: CheckpointStore::list_runs
#[allow(clippy::type_complexity)] // the tuple results read best spelled out
pub trait CheckpointStore: Send + Sync + fmt::Debug + 'static {
    /// Applies `batch` atomically, in order: after a crash either every operation took effect
    /// or none did. Not durable until [`flush`](CheckpointStore::flush).
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, Result<()>>;

    /// Makes every batch committed before the call durable (what "durable" means is the
    /// backend's: see its docs).
    fn flush(&self) -> BoxFuture<'_, Result<()>>;

    /// The record of `run`.
    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>>>;

    /// Up to `limit` run records, ordered by run id, starting after `after`.
    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>>>;

    /// The checkpoint of `run` at `step`.
    fn get_checkpoint<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;

    /// The checkpoint of `run` with the highest step, with its step.
    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>>>;

    /// Up to `limit` checkpoints of `run` in increasing step order, starting after step `after`.
    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>>;

    /// The blobs of `run`'s field `field` with versions in `from..=to`, in increasing version
    /// order.
    fn get_blobs<'a>(
        &'a self,
        run: &'a str,
        field: u32,
        from: u64,
        to: u64,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>>;

    /// The pending writes of `run` for `step`, in increasing task order.
    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Vec<(u32, Vec<u8>)>>>;

    /// Up to `limit` events of `run` in increasing sequence order, starting after `after`.
    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>>;

    /// The highest sequence number of `run`'s stored events.
    fn last_event<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;

    /// Takes `run` for `ttl`, with a new fencing epoch (see the trait's docs). A run whose
    /// last lease expired is free.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunBusy`] when another lease of the run is live,
    /// [`StoreError::InvalidRunId`].
    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Lease>>;

    /// Extends `lease` to `ttl` from now.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the run was taken over (its epoch is no longer the
    /// lease's): the holder must stop writing.
    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> BoxFuture<'a, Result<()>>;

    /// Gives `run` up at once. Releasing a lease that was taken over does nothing.
    fn release_lease(&self, lease: Lease) -> BoxFuture<'_, Result<()>>;

    /// Deletes the runs whose time to live is over at `now_ms` (milliseconds since the Unix
    /// epoch; [`RunRecord::is_expired`]), each with the runs of its subgraphs
    /// (`{run}/@{node}/{task}`), and returns their ids in id order.
    ///
    /// Each run is deleted under its lease, in one batch fenced with the lease's epoch (the
    /// subgraph runs' leases too): a run whose lease is live is in use, and is skipped until
    /// a later sweep, never deleted under its owner; a run written again since it was listed
    /// is kept if its new expiry is later. [`Sweeper`](crate::Sweeper) calls it periodically.
    ///
    /// Expired memory items ([`Item::is_expired`]) are deleted too, each only if it is still
    /// expired when its batch applies.
    ///
    /// Provided: it pages through [`list_runs`](CheckpointStore::list_runs). A backend that
    /// can find expired runs by an index may override it, keeping this behaviour (the
    /// conformance suite's [`sweeps`](crate::conformance::sweeps) checks it).
    ///
    /// # Errors
    ///
    /// The store's, for the first run that could not be read or deleted; the runs deleted
    /// before it stay deleted.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, RunRecord, RunStatus, WriteBatch};
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> agentgraph_checkpoint::Result<()> {
    ///     let store = MemoryStore::new();
    ///     let mut batch = WriteBatch::new();
    ///     batch
    ///         .put_run(RunRecord::new("old", RunStatus::Completed, 7, 1_000).with_ttl(Duration::from_secs(1)))
    ///         .put_run(RunRecord::new("kept", RunStatus::Completed, 7, 1_000));
    ///     store.commit(batch).await?;
    ///     assert!(store.sweep_expired(1_999).await?.is_empty());
    ///     assert_eq!(store.sweep_expired(2_000).await?, ["old"]);
    ///     assert!(store.get_run("old").await?.is_none());
    ///     assert!(store.get_run("kept").await?.is_some());
    ///     Ok(())
    /// }
    /// ```
    fn sweep_expired(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(crate::sweep::sweep_expired(self, now_ms))
    }

    /// Whether the store keeps long-term memory items ([`items`](crate::items)): the four
    /// stores of agentgraph do. A store that does not answers the item reads with
    /// [`StoreError::ItemsUnsupported`] and refuses batches with item operations.
    fn supports_items(&self) -> bool {
        false
    }

    /// The item under `key` in `namespace`, unless it is expired at `now_ms`.
    ///
    /// # Errors
    ///
    /// [`StoreError::ItemsUnsupported`] (the provided body), [`StoreError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::{Item, Namespace};
    /// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, WriteBatch};
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> agentgraph_checkpoint::Result<()> {
    ///     let store = MemoryStore::new();
    ///     let ns = Namespace::new(["users", "ann"]);
    ///     let mut batch = WriteBatch::new();
    ///     batch.put_item(Item::new(ns.clone(), "tz", serde_json::json!("UTC")).written_at(5));
    ///     store.commit(batch).await?;
    ///     assert_eq!(store.get_item(&ns, "tz", 10).await?.unwrap().value, "UTC");
    ///     assert!(store.get_item(&ns, "lang", 10).await?.is_none());
    ///     Ok(())
    /// }
    /// ```
    fn get_item<'a>(
        &'a self,
        namespace: &'a Namespace,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Item>>> {
        let _ = (namespace, key, now_ms);
        Box::pin(async { Err(StoreError::ItemsUnsupported) })
    }

    /// Every item under the namespace `prefix`, expired ones too, in namespace and key order:
    /// what the provided searches read. For store authors (and tools that export memory).
    ///
    /// # Errors
    ///
    /// [`StoreError::ItemsUnsupported`] (the provided body), [`StoreError::Corrupt`].
    fn scan_items<'a>(&'a self, prefix: &'a Namespace) -> BoxFuture<'a, Result<Vec<Item>>> {
        let _ = prefix;
        Box::pin(async { Err(StoreError::ItemsUnsupported) })
    }

    /// The store handle's in-process vector index, if it keeps one (the provided
    /// [`search_items`](CheckpointStore::search_items) then ranks semantic queries on it).
    fn item_index(&self) -> Option<&ItemIndex> {
        None
    }

    /// The items `query` finds: see [`ItemQuery`]. Provided: a semantic query (one with a
    /// vector) runs on the [`item_index`](CheckpointStore::item_index) when there is one,
    /// building it first from a scan; other queries filter a
    /// [`scan_items`](CheckpointStore::scan_items) of the prefix.
    ///
    /// # Errors
    ///
    /// The store's; [`StoreError::ItemsUnsupported`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::{Embedder, HashEmbedder, Item, ItemQuery, Namespace};
    /// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, WriteBatch};
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ///     let store = MemoryStore::new();
    ///     let embedder = HashEmbedder::new(32);
    ///     let ns = Namespace::new(["notes"]);
    ///     let texts = ["ann drinks green tea".to_owned(), "bob rides a red bike".to_owned()];
    ///     let vectors = embedder.embed(&texts).await?;
    ///     let mut batch = WriteBatch::new();
    ///     for (i, (text, v)) in texts.iter().zip(vectors).enumerate() {
    ///         batch.put_item(Item::new(ns.clone(), format!("n{i}"), text.as_str().into()).with_embedding(v));
    ///     }
    ///     store.commit(batch).await?;
    ///     let query = embedder.embed(&["what tea".to_owned()]).await?.remove(0);
    ///     let hits = store.search_items(&ItemQuery::new(ns).vector(query).limit(1)).await?;
    ///     assert_eq!(hits[0].item.key, "n0");
    ///     Ok(())
    /// }
    /// ```
    fn search_items<'a>(&'a self, query: &'a ItemQuery) -> BoxFuture<'a, Result<Vec<Hit>>> {
        Box::pin(crate::items::search_items(self, query))
    }

    /// The namespaces under `prefix` that hold items not expired at `now_ms`, sorted, each
    /// once.
    ///
    /// # Errors
    ///
    /// The store's; [`StoreError::ItemsUnsupported`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::{Item, Namespace};
    /// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, WriteBatch};
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> agentgraph_checkpoint::Result<()> {
    ///     let store = MemoryStore::new();
    ///     let mut batch = WriteBatch::new();
    ///     for user in ["bob", "ann", "ann"] {
    ///         let ns = Namespace::new(["users", user]);
    ///         batch.put_item(Item::new(ns, "k", serde_json::json!(1)));
    ///     }
    ///     store.commit(batch).await?;
    ///     let found = store.list_namespaces(&Namespace::new(["users"]), 0).await?;
    ///     assert_eq!(found, [Namespace::new(["users", "ann"]), Namespace::new(["users", "bob"])]);
    ///     Ok(())
    /// }
    /// ```
    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a Namespace,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Namespace>>> {
        Box::pin(async move {
            let items = self.scan_items(prefix).await?;
            Ok(crate::items::namespaces_in(&items, now_ms))
        })
    }

    /// Removes what the store keeps of deleted items only so that other handles of it catch
    /// up with their deletion (the PostgreSQL store's tombstones, older than its
    /// retention), and gives how many records went. [`sweep_expired`] calls it after deleting
    /// the expired items. A handle that has not caught up with a removed record does not miss
    /// the deletion: it reads every item again instead. Provided: nothing to remove (the
    /// embedded stores delete items outright).
    ///
    /// [`sweep_expired`]: CheckpointStore::sweep_expired
    ///
    /// # Errors
    ///
    /// The store's.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> agentgraph_checkpoint::Result<()> {
    ///     assert_eq!(MemoryStore::new().prune_deleted_items().await?, 0);
    ///     Ok(())
    /// }
    /// ```
    fn prune_deleted_items(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async { Ok(0) })
    }

    /// Whether the store keeps audit trails ([`audit`](crate::audit)): the four stores of
    /// agentgraph do. The engine writes [`Op::PutAudit`] only to a store that does; the
    /// provided reads of a store that does not find no entries.
    fn supports_audit(&self) -> bool {
        false
    }

    /// Up to `limit` stored entries of `run`'s audit trail, `(number, bytes)` in increasing
    /// number order, starting after `after`: the bytes as [`audit::seal`](crate::audit::seal)
    /// made them, for [`audit::verify`](crate::audit::verify). Entries of a deleted run are
    /// still there.
    ///
    /// # Errors
    ///
    /// The store's; [`StoreError::InvalidRunId`].
    fn get_audit<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        let _ = (after, limit);
        Box::pin(async move {
            check_run_id(run)?;
            Ok(Vec::new())
        })
    }

    /// The runs with an audit trail, deleted ones too, sorted by id.
    ///
    /// # Errors
    ///
    /// The store's.
    fn audited_runs(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Every entry of `run`'s audit trail, decoded, in order (without checking the chain:
    /// [`audit::verify`](crate::audit::verify) does). Provided: it pages through
    /// [`get_audit`](CheckpointStore::get_audit).
    ///
    /// # Errors
    ///
    /// The store's; [`StoreError::Corrupt`] for an entry that does not decode.
    ///
    /// # Examples
    ///
    /// See the [`audit`](crate::audit) module.
    fn audit<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Vec<AuditEntry>>> {
        Box::pin(crate::audit::read(self, run))
    }
}

/// What a lease's holder runs when the lease is dropped (see [`Lease::on_drop`]).
type OnDrop = Box<dyn FnOnce(&str, u64) + Send + Sync>;

/// Ownership of a run for a while, with its fencing epoch: see
/// [`CheckpointStore::acquire_lease`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, StoreError, WriteBatch};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> agentgraph_checkpoint::Result<()> {
///     let store = MemoryStore::new();
///     let ttl = Duration::from_secs(30);
///     let lease = store.acquire_lease("run-1", ttl).await?;
///     assert!(matches!(
///         store.acquire_lease("run-1", ttl).await,
///         Err(StoreError::RunBusy { .. })
///     ));
///     let mut batch = WriteBatch::new();
///     batch.fence("run-1", lease.epoch()).put_checkpoint("run-1", 0, vec![1]);
///     store.commit(batch).await?;
///     store.renew_lease(&lease, ttl).await?;
///     store.release_lease(lease).await?;
///     Ok(())
/// }
/// ```
#[must_use = "the run is released when the lease is dropped"]
pub struct Lease {
    run: String,
    epoch: u64,
    ttl: Duration,
    vacant: bool,
    on_drop: Option<OnDrop>,
}

impl Lease {
    /// A lease of `run` with `epoch`, taken for `ttl`: for store authors.
    pub fn new(run: impl Into<String>, epoch: u64, ttl: Duration) -> Self {
        Lease {
            run: run.into(),
            epoch,
            ttl,
            vacant: false,
            on_drop: None,
        }
    }

    /// Says that the store, once this lease was taken, held no record of the run and no run
    /// of its subgraphs (ids beginning with `{run}/@`, [`SUBGRAPH_MARK`](crate::SUBGRAPH_MARK)):
    /// for store authors whose lease answer can tell at no extra cost. The engine then starts
    /// a new run without reading the store first. Only what was true after the lease was
    /// granted may be said: every later write of the run is fenced by this lease.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::Lease;
    /// let lease = Lease::new("run-1", 1, std::time::Duration::from_secs(5));
    /// assert!(!lease.run_vacant());
    /// assert!(lease.with_vacant_run().run_vacant());
    /// ```
    pub fn with_vacant_run(mut self) -> Self {
        self.vacant = true;
        self
    }

    /// Whether the store said that it held neither the run nor its subgraphs' runs once the
    /// lease was taken ([`with_vacant_run`](Lease::with_vacant_run)); `false` when it does not
    /// know.
    ///
    /// # Examples
    ///
    /// See [`with_vacant_run`](Lease::with_vacant_run).
    pub fn run_vacant(&self) -> bool {
        self.vacant
    }

    /// Runs `f` with the run and the epoch when the lease is dropped (an embedded store
    /// releases the run there): for store authors.
    pub fn on_drop(mut self, f: impl FnOnce(&str, u64) + Send + Sync + 'static) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }

    /// The run.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The fencing epoch: stamp it on every batch of the run ([`WriteBatch::fence`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The time to live the lease was taken with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("run", &self.run)
            .field("epoch", &self.epoch)
            .field("ttl", &self.ttl)
            .field("vacant", &self.vacant)
            .finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f(&self.run, self.epoch);
        }
    }
}

/// Checks a run id: 1 to [`MAX_RUN_ID_LEN`] bytes.
///
/// # Errors
///
/// [`StoreError::InvalidRunId`].
pub fn check_run_id(run: &str) -> Result<()> {
    if run.is_empty() || run.len() > MAX_RUN_ID_LEN {
        return Err(StoreError::InvalidRunId {
            run: run.chars().take(64).collect(),
            reason: format!(
                "a run id has 1 to {MAX_RUN_ID_LEN} bytes, this one {}",
                run.len()
            ),
        });
    }
    Ok(())
}

/// A store as the engine holds it, shared: `Arc<dyn CheckpointStore>`. Implemented for every
/// [`CheckpointStore`] by value, for an `Arc` of one, and for `Arc<dyn CheckpointStore>`, so
/// that `RunConfig::store`, `StoreInspector::new`, `CompiledGraph::history` and the monitor
/// take any of them.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_checkpoint::{CheckpointStore, IntoStore, MemoryStore};
///
/// let owned: Arc<dyn CheckpointStore> = MemoryStore::new().into_store();
/// let shared = Arc::new(MemoryStore::new());
/// let same = shared.clone().into_store();
/// let erased: Arc<dyn CheckpointStore> = shared;
/// assert!(Arc::ptr_eq(&erased.clone().into_store(), &erased));
/// # let _ = (owned, same);
/// ```
pub trait IntoStore {
    /// The store, shared.
    fn into_store(self) -> Arc<dyn CheckpointStore>;
}

impl<T: CheckpointStore> IntoStore for T {
    fn into_store(self) -> Arc<dyn CheckpointStore> {
        Arc::new(self)
    }
}

impl<T: CheckpointStore> IntoStore for Arc<T> {
    fn into_store(self) -> Arc<dyn CheckpointStore> {
        self
    }
}

impl IntoStore for Arc<dyn CheckpointStore> {
    fn into_store(self) -> Arc<dyn CheckpointStore> {
        self
    }
}

#[allow(dead_code)]
fn _object_safe(_: &dyn CheckpointStore) {}
