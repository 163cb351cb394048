//! What a checkpoint stores, as enveloped bincode records.
//!
//! The records are this module's own types: no public type is serialized into them, so a
//! public type can be renamed or reshaped without touching stored runs (a public type that a
//! record needs has a stored twin here, converted explicitly, as [`StoredInterruptKind`] is for
//! [`InterruptKind`]). Bincode encodes an enum's variant by its index: variants are only ever
//! added at the end.
//!
//! Byte strings are `ByteBuf`s (or `serde_bytes` fields): serde would otherwise encode them one
//! element at a time, which costs milliseconds for a large field.

use agentgraph_checkpoint::envelope::{self, FormatError, RecordKind};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::ids::TaskId;
use crate::run::interrupt::{Interrupt, InterruptKind};

/// A checkpoint: everything but the field values (which live in blobs) needed to resume after
/// `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CheckpointRecord {
    pub(super) step: u64,
    pub(super) parent: Option<u64>,
    pub(super) fingerprint: u128,
    pub(super) created_at_ms: u64,
    /// For each field: the version (step) of its last full value. Blobs of the field with
    /// later versions, up to `step`, are deltas to merge on top of it.
    pub(super) bases: Vec<u64>,
    /// The fields this step wrote.
    pub(super) written: Vec<u32>,
    /// The tasks of the next step: edge-triggered nodes in plan order, then packets.
    pub(super) next: Vec<TaskRecord>,
    /// Join bookkeeping of the current pass of every join.
    pub(super) joins: Vec<JoinRecord>,
    /// The bytes of the blobs written with this checkpoint.
    pub(super) blob_bytes: u64,
    /// The sequence number of the run's next event.
    pub(super) events: u64,
    /// The tasks of this step after which the run stopped (`interrupt_after`); a resume
    /// passes them.
    pub(super) interrupts: Vec<GateRecord>,
    /// Deferred tasks held until nothing else is left to run: nodes in plan order, then
    /// packets. Fields from here on were added after the first layout (issue 11): a record
    /// written before has none, and decodes through [`CheckpointRecordV1`].
    pub(super) deferred: Vec<TaskRecord>,
    /// For each join, in the order of `joins`: whether its pass fired early and the step it
    /// began.
    pub(super) passes: Vec<PassRecord>,
    /// The invocation of the run (its thread's turn, from 1) this checkpoint belongs to.
    /// Added after the second layout ([`CheckpointRecordV2`]): a record without it belongs to
    /// the first invocation.
    pub(super) invocation: u32,
    /// The saga of a graph with compensations: the nodes to compensate should the run fail,
    /// and, once it failed, the compensations still to run. `None` when there is nothing to
    /// compensate. Added with `invocation` (issue 11): a record written before has none, and
    /// decodes through [`CheckpointRecordV2`].
    pub(super) saga: Option<SagaRecord>,
    /// What the run used, for its budgets: its totals over every invocation, and the totals
    /// when this checkpoint's invocation began. Added after the third layout
    /// ([`CheckpointRecordV3`], issue 16): a record written before has none (nothing used).
    pub(super) usage: Option<UsageRecord>,
    /// The version of the state type that wrote the fields (`State::VERSION`). Added with
    /// `usage` (issue 16): a record without it is of version 1.
    pub(super) state_version: u32,
}

/// What a run used by a checkpoint: its totals, and the totals its invocation began with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UsageRecord {
    pub(super) total: UsageAmounts,
    pub(super) base: UsageAmounts,
}

/// Amounts used: steps, model tokens, their cost (nano-dollars), tool calls, wall time (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UsageAmounts {
    pub(super) steps: u64,
    pub(super) tokens: u64,
    pub(super) cost_nanos: u64,
    pub(super) tool_calls: u64,
    pub(super) wall_ms: u64,
}

impl From<&crate::run::budget::BudgetUsage> for UsageAmounts {
    fn from(u: &crate::run::budget::BudgetUsage) -> Self {
        UsageAmounts {
            steps: u.steps,
            tokens: u.tokens,
            cost_nanos: u.cost_nanos,
            tool_calls: u.tool_calls,
            wall_ms: u.wall_ms,
        }
    }
}

impl From<UsageAmounts> for crate::run::budget::BudgetUsage {
    fn from(u: UsageAmounts) -> Self {
        crate::run::budget::BudgetUsage {
            steps: u.steps,
            tokens: u.tokens,
            cost_nanos: u.cost_nanos,
            tool_calls: u.tool_calls,
            wall_ms: u.wall_ms,
        }
    }
}

/// The third layout of [`CheckpointRecord`], before usage and state versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CheckpointRecordV3 {
    step: u64,
    parent: Option<u64>,
    fingerprint: u128,
    created_at_ms: u64,
    bases: Vec<u64>,
    written: Vec<u32>,
    next: Vec<TaskRecord>,
    joins: Vec<JoinRecord>,
    blob_bytes: u64,
    events: u64,
    interrupts: Vec<GateRecord>,
    deferred: Vec<TaskRecord>,
    passes: Vec<PassRecord>,
    invocation: u32,
    saga: Option<SagaRecord>,
}

impl From<CheckpointRecordV3> for CheckpointRecord {
    fn from(r: CheckpointRecordV3) -> Self {
        CheckpointRecord {
            step: r.step,
            parent: r.parent,
            fingerprint: r.fingerprint,
            created_at_ms: r.created_at_ms,
            bases: r.bases,
            written: r.written,
            next: r.next,
            joins: r.joins,
            blob_bytes: r.blob_bytes,
            events: r.events,
            interrupts: r.interrupts,
            deferred: r.deferred,
            passes: r.passes,
            invocation: r.invocation,
            saga: r.saga,
            usage: None,
            state_version: 1,
        }
    }
}

impl CheckpointRecord {
    /// Decodes a checkpoint record, of this layout or of an earlier one (the first has no held
    /// deferred tasks or join passes; records of both belong to the first invocation and have
    /// no saga; records of all three are of state version 1).
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        match envelope::decode(RecordKind::Checkpoint, bytes) {
            Ok(record) => Ok(record),
            Err(FormatError::Decode(e)) => {
                envelope::decode::<CheckpointRecordV3>(RecordKind::Checkpoint, bytes)
                    .map(CheckpointRecord::from)
                    .or_else(|_| {
                        envelope::decode::<CheckpointRecordV2>(RecordKind::Checkpoint, bytes)
                            .map(CheckpointRecord::from)
                    })
                    .or_else(|_| {
                        envelope::decode::<CheckpointRecordV1>(RecordKind::Checkpoint, bytes)
                            .map(CheckpointRecordV2::from)
                            .map(CheckpointRecord::from)
                    })
                    .map_err(|_| FormatError::Decode(e))
            }
            Err(e) => Err(e),
        }
    }
}

/// Where a run with compensations stands (`GraphBuilder::compensate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SagaRecord {
    /// The nodes with a compensation whose tasks finished, each once, in the order of their
    /// last completion.
    pub(super) finished: Vec<String>,
    /// Set once the run failed for good and its compensations began.
    pub(super) compensating: Option<CompensatingRecord>,
}

/// A run that compensates a failure: the failure, the nodes whose compensations ran and
/// those whose compensations are still to run, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CompensatingRecord {
    pub(super) error: String,
    pub(super) done: Vec<String>,
    pub(super) remaining: Vec<String>,
}

/// The second layout of [`CheckpointRecord`], before the saga.
/// The second layout of [`CheckpointRecord`], before invocations (threads) and the saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CheckpointRecordV2 {
    step: u64,
    parent: Option<u64>,
    fingerprint: u128,
    created_at_ms: u64,
    bases: Vec<u64>,
    written: Vec<u32>,
    next: Vec<TaskRecord>,
    joins: Vec<JoinRecord>,
    blob_bytes: u64,
    events: u64,
    interrupts: Vec<GateRecord>,
    deferred: Vec<TaskRecord>,
    passes: Vec<PassRecord>,
}

impl From<CheckpointRecordV2> for CheckpointRecord {
    fn from(r: CheckpointRecordV2) -> Self {
        CheckpointRecord {
            step: r.step,
            parent: r.parent,
            fingerprint: r.fingerprint,
            created_at_ms: r.created_at_ms,
            bases: r.bases,
            written: r.written,
            next: r.next,
            joins: r.joins,
            blob_bytes: r.blob_bytes,
            events: r.events,
            interrupts: r.interrupts,
            deferred: r.deferred,
            passes: r.passes,
            invocation: 1,
            saga: None,
            usage: None,
            state_version: 1,
        }
    }
}

/// The first layout of [`CheckpointRecord`], before deferred tasks and join passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CheckpointRecordV1 {
    step: u64,
    parent: Option<u64>,
    fingerprint: u128,
    created_at_ms: u64,
    bases: Vec<u64>,
    written: Vec<u32>,
    next: Vec<TaskRecord>,
    joins: Vec<JoinRecord>,
    blob_bytes: u64,
    events: u64,
    interrupts: Vec<GateRecord>,
}

impl From<CheckpointRecordV1> for CheckpointRecordV2 {
    fn from(r: CheckpointRecordV1) -> Self {
        CheckpointRecordV2 {
            step: r.step,
            parent: r.parent,
            fingerprint: r.fingerprint,
            created_at_ms: r.created_at_ms,
            bases: r.bases,
            written: r.written,
            next: r.next,
            joins: r.joins,
            blob_bytes: r.blob_bytes,
            events: r.events,
            interrupts: r.interrupts,
            deferred: Vec::new(),
            passes: Vec::new(),
        }
    }
}

/// Where a join's pass stands besides its arrivals: whether it fired early (a quorum or a
/// timeout) and the step its first predecessor finished in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PassRecord {
    pub(super) fired: bool,
    pub(super) began: u64,
}

/// A task of a step whose node is gated by `interrupt_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GateRecord {
    pub(super) node: String,
    pub(super) task: u128,
}

/// A task to run, by node name (names are stable across builds; ids are not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TaskRecord {
    pub(super) node: String,
    /// The packet's input, for dynamic tasks.
    pub(super) input: Option<ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct JoinRecord {
    pub(super) arrived: Vec<bool>,
    pub(super) active: bool,
}

/// The value of one field at a version, or the values written to it (merged with its reducer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum BlobRecord {
    Full(ByteBuf),
    Deltas(Vec<ByteBuf>),
}

/// Where a task of a step that has no checkpoint yet stands: finished (its result), waiting
/// to be retried, failed for good, or stopped at an interrupt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PendingWriteRecord {
    pub(super) task: u128,
    pub(super) node: String,
    /// The attempts made so far.
    pub(super) attempts: u32,
    pub(super) outcome: PendingOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum PendingOutcome {
    /// The task finished: its encoded update and go-to.
    Done {
        #[serde(with = "serde_bytes")]
        update: Vec<u8>,
        goto: Option<RouteRecord>,
    },
    /// An attempt failed and the next one is due at `retry_at_ms` (Unix ms). `answers` keeps
    /// the answers the task was given (see `Interrupted`): the next attempt needs them too.
    Retrying {
        error: String,
        retry_at_ms: u64,
        answers: Vec<(String, String)>,
    },
    /// The task failed for good; a resume starts it afresh.
    Failed { error: String },
    /// The task waits at interrupts: before its node ran (one `Before`), raised by the node,
    /// or raised inside the subgraph it runs. `answers` holds the JSON answers given so far,
    /// by interrupt id.
    Interrupted {
        raised: Vec<RaisedRecord>,
        answers: Vec<(String, String)>,
    },
    /// The task failed for good and its error edge caught the failure: it goes to `handler`,
    /// with `failure` (an encoded `NodeFailure`) as its input; the task wrote nothing.
    Caught {
        handler: String,
        #[serde(with = "serde_bytes")]
        failure: Vec<u8>,
    },
    /// As `Done`, with the task's long-term memory writes, committed with its step's
    /// checkpoint. (Written only for a task that wrote memory: records of other tasks, and
    /// those written before memory existed, are `Done`.)
    DoneWithMemory {
        #[serde(with = "serde_bytes")]
        update: Vec<u8>,
        goto: Option<RouteRecord>,
        memory: Vec<MemoryRecord>,
    },
    /// The task was refused by a budget before a costly call (issue 16): it did not finish,
    /// and a resume runs it again with `answers`, the answers it was given. `used` holds the
    /// run's totals when its step stopped, with what the step's finished tasks used (which a
    /// resume does not run again): a resume counts on from them, not from the checkpoint's.
    OverBudget {
        answers: Vec<(String, String)>,
        used: UsageAmounts,
    },
}

/// A long-term memory write of a finished task, as its pending write keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum MemoryRecord {
    Put {
        namespace: Vec<String>,
        key: String,
        /// JSON.
        value: String,
        updated_at_ms: u64,
        expires_at_ms: Option<u64>,
        embedding: Option<Vec<f32>>,
    },
    Delete {
        namespace: Vec<String>,
        key: String,
    },
}

impl MemoryRecord {
    pub(super) fn from_write(w: &agentgraph_checkpoint::items::ItemWrite) -> Self {
        use agentgraph_checkpoint::items::ItemWrite;
        match w {
            ItemWrite::Put(item) => MemoryRecord::Put {
                namespace: item.namespace.segments().to_vec(),
                key: item.key.clone(),
                value: item.value.to_string(),
                updated_at_ms: item.updated_at_ms,
                expires_at_ms: item.expires_at_ms,
                embedding: item.embedding.clone(),
            },
            ItemWrite::Delete { namespace, key } => MemoryRecord::Delete {
                namespace: namespace.segments().to_vec(),
                key: key.clone(),
            },
            _ => unreachable!("every memory write is a put or a delete"),
        }
    }

    /// The write; `None` if its JSON value does not parse.
    pub(super) fn to_write(&self) -> Option<agentgraph_checkpoint::items::ItemWrite> {
        use agentgraph_checkpoint::items::{Item, ItemWrite, Namespace};
        Some(match self {
            MemoryRecord::Put {
                namespace,
                key,
                value,
                updated_at_ms,
                expires_at_ms,
                embedding,
            } => {
                let mut item = Item::new(
                    Namespace::new(namespace.iter().cloned()),
                    key.clone(),
                    serde_json::from_str(value).ok()?,
                )
                .written_at(*updated_at_ms);
                item.expires_at_ms = *expires_at_ms;
                item.embedding = embedding.clone();
                ItemWrite::Put(item)
            }
            MemoryRecord::Delete { namespace, key } => ItemWrite::Delete {
                namespace: Namespace::new(namespace.iter().cloned()),
                key: key.clone(),
            },
        })
    }
}

/// An interrupt a task raised (or a subgraph it runs raised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RaisedRecord {
    pub(super) id: String,
    pub(super) kind: StoredInterruptKind,
    pub(super) node: String,
    pub(super) step: u64,
    pub(super) task: u128,
    pub(super) path: Vec<String>,
    /// JSON.
    pub(super) payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RouteRecord {
    pub(super) targets: Vec<String>,
    pub(super) packets: Vec<(String, ByteBuf)>,
}

/// The stored tag of an [`InterruptKind`] (by variant index in records, by name in stored
/// events' JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StoredInterruptKind {
    Before,
    After,
    Node,
}

impl From<InterruptKind> for StoredInterruptKind {
    fn from(kind: InterruptKind) -> Self {
        match kind {
            InterruptKind::Before => StoredInterruptKind::Before,
            InterruptKind::After => StoredInterruptKind::After,
            InterruptKind::Node => StoredInterruptKind::Node,
        }
    }
}

impl From<StoredInterruptKind> for InterruptKind {
    fn from(kind: StoredInterruptKind) -> Self {
        match kind {
            StoredInterruptKind::Before => InterruptKind::Before,
            StoredInterruptKind::After => InterruptKind::After,
            StoredInterruptKind::Node => InterruptKind::Node,
        }
    }
}

impl Interrupt {
    /// The record of a raised interrupt.
    pub(super) fn to_record(&self) -> RaisedRecord {
        RaisedRecord {
            id: self.id.clone(),
            kind: self.kind.into(),
            node: self.node.clone(),
            step: self.step,
            task: self.task.as_u128(),
            path: self.path.clone(),
            payload: self.payload.to_string(),
        }
    }

    /// The interrupt a record holds.
    pub(super) fn from_record(r: &RaisedRecord) -> Self {
        Interrupt {
            id: r.id.clone(),
            kind: r.kind.into(),
            node: r.node.clone(),
            step: r.step,
            task: TaskId::from_u128(r.task),
            path: r.path.clone(),
            payload: serde_json::from_str(&r.payload)
                .unwrap_or_else(|_| serde_json::Value::String(r.payload.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// Checkpoints of the earlier layouts still decode: the first with nothing deferred, both
    /// in the first invocation.
    #[test]
    fn earlier_layout_checkpoints_decode() {
        let old = CheckpointRecordV1 {
            step: 3,
            parent: Some(2),
            fingerprint: 7,
            created_at_ms: 1,
            bases: vec![0, 2],
            written: vec![1],
            next: vec![TaskRecord {
                node: "b".into(),
                input: None,
            }],
            joins: vec![JoinRecord {
                arrived: vec![true, false],
                active: true,
            }],
            blob_bytes: 10,
            events: 4,
            interrupts: Vec::new(),
        };
        let bytes = envelope::encode(RecordKind::Checkpoint, &old).unwrap();
        let record = CheckpointRecord::decode(&bytes).unwrap();
        assert_eq!(
            record,
            CheckpointRecord::from(CheckpointRecordV2::from(old))
        );
        assert!(record.deferred.is_empty() && record.passes.is_empty());
        assert_eq!(record.invocation, 1);
        let second = CheckpointRecordV2 {
            deferred: vec![TaskRecord {
                node: "d".into(),
                input: None,
            }],
            passes: vec![PassRecord {
                fired: true,
                began: 2,
            }],
            ..CheckpointRecordV2::from(CheckpointRecordV1 {
                step: 3,
                parent: Some(2),
                fingerprint: 7,
                created_at_ms: 1,
                bases: vec![0, 2],
                written: vec![1],
                next: Vec::new(),
                joins: Vec::new(),
                blob_bytes: 10,
                events: 4,
                interrupts: Vec::new(),
            })
        };
        let bytes = envelope::encode(RecordKind::Checkpoint, &second).unwrap();
        let decoded = CheckpointRecord::decode(&bytes).unwrap();
        assert_eq!(decoded, CheckpointRecord::from(second));
        assert_eq!((decoded.deferred.len(), decoded.invocation), (1, 1));
        assert!(record.saga.is_none());
        let new = CheckpointRecord {
            invocation: 4,
            deferred: vec![TaskRecord {
                node: "d".into(),
                input: None,
            }],
            passes: vec![PassRecord {
                fired: true,
                began: 2,
            }],
            ..record
        };
        let bytes = envelope::encode(RecordKind::Checkpoint, &new).unwrap();
        assert_eq!(CheckpointRecord::decode(&bytes).unwrap(), new);
        assert!(CheckpointRecord::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    /// A checkpoint of the second layout (before the saga) still decodes, without a saga; one
    /// with a saga reads back.
    #[test]
    fn second_layout_checkpoints_decode() {
        let old = CheckpointRecordV2 {
            step: 3,
            parent: Some(2),
            fingerprint: 7,
            created_at_ms: 1,
            bases: vec![0],
            written: vec![0],
            next: Vec::new(),
            joins: Vec::new(),
            blob_bytes: 10,
            events: 4,
            interrupts: Vec::new(),
            deferred: vec![TaskRecord {
                node: "d".into(),
                input: None,
            }],
            passes: Vec::new(),
        };
        let bytes = envelope::encode(RecordKind::Checkpoint, &old).unwrap();
        let record = CheckpointRecord::decode(&bytes).unwrap();
        assert_eq!(record, CheckpointRecord::from(old));
        assert!(record.saga.is_none());
        let new = CheckpointRecord {
            saga: Some(SagaRecord {
                finished: vec!["a".into(), "b".into()],
                compensating: Some(CompensatingRecord {
                    error: "boom".into(),
                    done: vec!["b".into()],
                    remaining: vec!["a".into()],
                }),
            }),
            ..record
        };
        let bytes = envelope::encode(RecordKind::Checkpoint, &new).unwrap();
        assert_eq!(CheckpointRecord::decode(&bytes).unwrap(), new);
    }

    /// A checkpoint of the third layout (before usage and state versions) still decodes, with
    /// no usage, as state version 1; one with both reads back.
    #[test]
    fn third_layout_checkpoints_decode() {
        let old = CheckpointRecordV3 {
            step: 3,
            parent: Some(2),
            fingerprint: 7,
            created_at_ms: 1,
            bases: vec![0],
            written: vec![0],
            next: Vec::new(),
            joins: Vec::new(),
            blob_bytes: 10,
            events: 4,
            interrupts: Vec::new(),
            deferred: Vec::new(),
            passes: Vec::new(),
            invocation: 2,
            saga: Some(SagaRecord {
                finished: vec!["a".into()],
                compensating: None,
            }),
        };
        let bytes = envelope::encode(RecordKind::Checkpoint, &old).unwrap();
        let record = CheckpointRecord::decode(&bytes).unwrap();
        assert_eq!(record, CheckpointRecord::from(old));
        assert_eq!(
            (record.invocation, record.usage, record.state_version),
            (2, None, 1)
        );
        let amounts = |n| UsageAmounts {
            steps: n,
            tokens: n * 10,
            cost_nanos: n * 100,
            tool_calls: n + 1,
            wall_ms: n * 1_000,
        };
        let new = CheckpointRecord {
            usage: Some(UsageRecord {
                total: amounts(5),
                base: amounts(2),
            }),
            state_version: 3,
            ..record
        };
        let bytes = envelope::encode(RecordKind::Checkpoint, &new).unwrap();
        assert_eq!(CheckpointRecord::decode(&bytes).unwrap(), new);
    }

    /// The stored tags are the bytes the public kinds were stored as before they had their own.
    #[test]
    fn interrupt_kinds_keep_their_stored_bytes() {
        for (kind, index) in [
            (InterruptKind::Before, 0u32),
            (InterruptKind::After, 1),
            (InterruptKind::Node, 2),
        ] {
            let stored = StoredInterruptKind::from(kind);
            let bytes = bincode::serde::encode_to_vec(stored, codec::config()).unwrap();
            assert_eq!(
                bytes,
                bincode::serde::encode_to_vec(index, codec::config()).unwrap()
            );
            assert_eq!(InterruptKind::from(stored), kind);
        }
    }
}
