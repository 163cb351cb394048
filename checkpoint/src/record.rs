//! What every backend does the same way: checking operations, enveloping run records.

use crate::envelope::{self, RecordKind};
use crate::error::{Result, StoreError};
use serde::Deserialize;

use crate::store::{Op, RunRecord, RunStatus, check_run_id};

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
        | Op::DeleteRun { run }
        | Op::Fence { run, .. } => check_run_id(run),
    }
}

/// Envelopes a run record.
pub(crate) fn encode_run(record: &RunRecord) -> Result<Vec<u8>> {
    envelope::encode(RecordKind::Run, record).map_err(|source| StoreError::Corrupt {
        what: run_what(&record.run_id),
        source,
    })
}

/// A run record as written before graphs had names: the current record's fields but `graph`,
/// which it lacks at the end of its payload. Read only.
#[derive(Deserialize)]
struct RunRecordV1 {
    run_id: String,
    status: RunStatus,
    fingerprint: u128,
    created_at_ms: u64,
    updated_at_ms: u64,
    last_step: Option<u64>,
    error: Option<String>,
    forked_from: Option<(String, u64)>,
}

impl From<RunRecordV1> for RunRecord {
    fn from(r: RunRecordV1) -> Self {
        let mut record = RunRecord::new(r.run_id, r.status, r.fingerprint, r.created_at_ms);
        record.updated_at_ms = r.updated_at_ms;
        record.last_step = r.last_step;
        record.error = r.error;
        record.forked_from = r.forked_from;
        record
    }
}

/// Opens an enveloped run record stored under `run`: the current layout, or the one before
/// graph names (its payload is a strict prefix of the current one, so no payload reads as
/// both).
pub(crate) fn decode_run(run: &str, bytes: &[u8]) -> Result<RunRecord> {
    let corrupt = |source| StoreError::Corrupt {
        what: run_what(run),
        source,
    };
    let record: RunRecord = match envelope::decode(RecordKind::Run, bytes) {
        Ok(record) => record,
        Err(e @ envelope::FormatError::Decode(_)) => {
            envelope::decode::<RunRecordV1>(RecordKind::Run, bytes)
                .map(RunRecord::from)
                .map_err(|_| corrupt(e))?
        }
        Err(e) => return Err(corrupt(e)),
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// The layout of run records before graph names, as it was written.
    #[derive(Serialize)]
    struct Old {
        run_id: String,
        status: RunStatus,
        fingerprint: u128,
        created_at_ms: u64,
        updated_at_ms: u64,
        last_step: Option<u64>,
        error: Option<String>,
        forked_from: Option<(String, u64)>,
    }

    #[test]
    fn records_without_a_graph_name_still_decode() {
        let old = Old {
            run_id: "r".into(),
            status: RunStatus::Failed,
            fingerprint: 9,
            created_at_ms: 1,
            updated_at_ms: 2,
            last_step: Some(3),
            error: Some("boom".into()),
            forked_from: Some(("p".into(), 4)),
        };
        let bytes = envelope::encode(RecordKind::Run, &old).unwrap();
        let record = decode_run("r", &bytes).unwrap();
        let mut expected = RunRecord::new("r", RunStatus::Failed, 9, 1);
        expected.updated_at_ms = 2;
        expected.last_step = Some(3);
        expected.error = Some("boom".into());
        expected.forked_from = Some(("p".into(), 4));
        assert_eq!(record, expected);
        // The current layout round-trips, with and without a name.
        for graph in [None, Some("g".to_owned())] {
            let mut current = expected.clone();
            current.graph = graph;
            assert_eq!(
                decode_run("r", &encode_run(&current).unwrap()).unwrap(),
                current
            );
        }
        // Damage is still damage.
        assert!(decode_run("r", &bytes[..bytes.len() - 1]).is_err());
    }
}
