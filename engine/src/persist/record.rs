//! What a checkpoint stores, as enveloped bincode records.

//!
//! Byte strings are `ByteBuf`s (or `serde_bytes` fields): serde would otherwise encode them one
//! element at a time, which costs milliseconds for a large field.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// A checkpoint: everything but the field values (which live in blobs) needed to resume after
/// `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckpointRecord {
    pub(crate) step: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) fingerprint: u128,
    pub(crate) created_at_ms: u64,
    /// For each field: the version (step) of its last full value. Blobs of the field with
    /// later versions, up to `step`, are deltas to merge on top of it.
    pub(crate) bases: Vec<u64>,
    /// The fields this step wrote.
    pub(crate) written: Vec<u32>,
    /// The tasks of the next step: edge-triggered nodes in plan order, then packets.
    pub(crate) next: Vec<TaskRecord>,
    /// Join bookkeeping of the current pass of every join.
    pub(crate) joins: Vec<JoinRecord>,
    /// The bytes of the blobs written with this checkpoint.
    pub(crate) blob_bytes: u64,
    /// The sequence number of the run's next event.
    pub(crate) events: u64,
}

/// A task to run, by node name (names are stable across builds; ids are not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskRecord {
    pub(crate) node: String,
    /// The packet's input, for dynamic tasks.
    pub(crate) input: Option<ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JoinRecord {
    pub(crate) arrived: Vec<bool>,
    pub(crate) active: bool,
}

/// The value of one field at a version, or the values written to it (merged with its reducer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum BlobRecord {
    Full(ByteBuf),
    Deltas(Vec<ByteBuf>),
}

/// The result of a finished task of a step that has no checkpoint yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingWriteRecord {
    pub(crate) task: u128,
    pub(crate) node: String,
    /// The encoded update.
    #[serde(with = "serde_bytes")]
    pub(crate) update: Vec<u8>,
    pub(crate) goto: Option<RouteRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RouteRecord {
    pub(crate) targets: Vec<String>,
    pub(crate) packets: Vec<(String, ByteBuf)>,
}
