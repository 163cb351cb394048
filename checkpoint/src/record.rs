//! What every backend does the same way: checking operations, enveloping run records.

use crate::envelope::{self, RecordKind};
use crate::error::{Result, StoreError};
use crate::store::{Op, RunRecord, check_run_id};

/// Checks the run id of an operation.
pub(crate) fn check_op(op: &Op) -> Result<()> {
    match op {
        Op::PutRun(record) => check_run_id(&record.run_id),
        Op::PutCheckpoint { run, .. }
        | Op::PutBlob { run, .. }
        | Op::PutPendingWrite { run, .. }
        | Op::PutEvent { run, .. }
        | Op::DeletePendingWrites { run, .. }
        | Op::DeleteCheckpointsBefore { run, .. }
        | Op::DeleteBlobsBefore { run, .. }
        | Op::DeleteAfter { run, .. }
        | Op::DeleteRun { run } => check_run_id(run),
    }
}

/// Envelopes a run record.
pub(crate) fn encode_run(record: &RunRecord) -> Result<Vec<u8>> {
    envelope::encode(RecordKind::Run, record).map_err(|source| StoreError::Corrupt {
        what: run_what(&record.run_id),
        source,
    })
}

/// Opens an enveloped run record stored under `run`.
pub(crate) fn decode_run(run: &str, bytes: &[u8]) -> Result<RunRecord> {
    let corrupt = |source| StoreError::Corrupt {
        what: run_what(run),
        source,
    };
    let record: RunRecord = envelope::decode(RecordKind::Run, bytes).map_err(corrupt)?;
    if record.run_id != run {
        return Err(corrupt(envelope::FormatError::Decode(format!(
            "the record names run {:?}",
            record.run_id
        ))));
    }
    Ok(record)
}

/// How errors name the record of `run`.
pub(crate) fn run_what(run: &str) -> String {
    format!("the record of run {run:?}")
}
