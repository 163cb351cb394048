//! What every backend does the same way: checking operations, enveloping run records.

use serde::{Deserialize, Serialize};

use crate::envelope::{self, RecordKind};
use crate::error::{Result, StoreError};
use crate::session::RunMetadata;
use crate::store::{Op, RunRecord, RunStatus, check_run_id};

/// A run record as stores keep it: its own type, so that the public [`RunRecord`] and
/// [`RunStatus`] (whose serde shape is the JSON API's) can change without changing stored
/// bytes. Fields are encoded in this order, with bincode.
#[derive(Serialize, Deserialize)]
struct StoredRun {
    run_id: String,
    status: StoredStatus,
    fingerprint: u128,
    created_at_ms: u64,
    updated_at_ms: u64,
    last_step: Option<u64>,
    error: Option<String>,
    forked_from: Option<(String, u64)>,
    /// Added after the first layout, at the end: see [`StoredRunV1`].
    graph: Option<String>,
    /// Added with sessions, at the end: see [`StoredRunV2`].
    metadata: StoredMetadata,
    ttl_ms: Option<u64>,
    expires_at_ms: Option<u64>,
    /// Added with tenants, at the end: see [`StoredRunV3`].
    tenant: Option<String>,
}

/// A run record as written before tenants: [`StoredRun`] but `tenant`, which it lacks at the
/// end of its payload (so no payload reads as both). Read only.
#[derive(Deserialize)]
struct StoredRunV3 {
    run_id: String,
    status: StoredStatus,
    fingerprint: u128,
    created_at_ms: u64,
    updated_at_ms: u64,
    last_step: Option<u64>,
    error: Option<String>,
    forked_from: Option<(String, u64)>,
    graph: Option<String>,
    metadata: StoredMetadata,
    ttl_ms: Option<u64>,
    expires_at_ms: Option<u64>,
}

impl From<StoredRunV3> for StoredRun {
    fn from(r: StoredRunV3) -> Self {
        StoredRun {
            run_id: r.run_id,
            status: r.status,
            fingerprint: r.fingerprint,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            last_step: r.last_step,
            error: r.error,
            forked_from: r.forked_from,
            graph: r.graph,
            metadata: r.metadata,
            ttl_ms: r.ttl_ms,
            expires_at_ms: r.expires_at_ms,
            tenant: None,
        }
    }
}

/// A run's [`RunMetadata`] as stores keep it.
#[derive(Serialize, Deserialize)]
struct StoredMetadata {
    user: Option<String>,
    title: Option<String>,
    tags: Vec<String>,
    labels: Vec<(String, String)>,
}

impl From<&RunMetadata> for StoredMetadata {
    fn from(m: &RunMetadata) -> Self {
        StoredMetadata {
            user: m.user().map(str::to_owned),
            title: m.title().map(str::to_owned),
            tags: m.tags().to_vec(),
            labels: m
                .labels()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

impl From<StoredMetadata> for RunMetadata {
    fn from(m: StoredMetadata) -> Self {
        RunMetadata::from_parts(m.user, m.title, m.tags, m.labels.into_iter().collect())
    }
}

/// A run record as written before sessions: [`StoredRun`] but `metadata`, `ttl_ms` and
/// `expires_at_ms`, which it lacks at the end of its payload (so no payload reads as both).
/// Read only.
#[derive(Deserialize)]
struct StoredRunV2 {
    run_id: String,
    status: StoredStatus,
    fingerprint: u128,
    created_at_ms: u64,
    updated_at_ms: u64,
    last_step: Option<u64>,
    error: Option<String>,
    forked_from: Option<(String, u64)>,
    graph: Option<String>,
}

impl From<StoredRunV2> for StoredRun {
    fn from(r: StoredRunV2) -> Self {
        StoredRun::from(StoredRunV3 {
            run_id: r.run_id,
            status: r.status,
            fingerprint: r.fingerprint,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            last_step: r.last_step,
            error: r.error,
            forked_from: r.forked_from,
            graph: r.graph,
            metadata: StoredMetadata::from(&RunMetadata::new()),
            ttl_ms: None,
            expires_at_ms: None,
        })
    }
}

/// A run record as written before graphs had names: [`StoredRun`] but `graph`, which it lacks
/// at the end of its payload (so no payload reads as both). Read only.
#[derive(Deserialize)]
struct StoredRunV1 {
    run_id: String,
    status: StoredStatus,
    fingerprint: u128,
    created_at_ms: u64,
    updated_at_ms: u64,
    last_step: Option<u64>,
    error: Option<String>,
    forked_from: Option<(String, u64)>,
}

impl From<StoredRunV1> for StoredRun {
    fn from(r: StoredRunV1) -> Self {
        StoredRun::from(StoredRunV2 {
            run_id: r.run_id,
            status: r.status,
            fingerprint: r.fingerprint,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            last_step: r.last_step,
            error: r.error,
            forked_from: r.forked_from,
            graph: None,
        })
    }
}

/// A run status as stores keep it: the variant's index is the stored tag, so variants are
/// only ever added at the end.
#[derive(Serialize, Deserialize)]
enum StoredStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Interrupted,
    Cancelled,
    RetryScheduled,
    BudgetExceeded,
}

impl From<RunStatus> for StoredStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Pending => StoredStatus::Pending,
            RunStatus::Running => StoredStatus::Running,
            RunStatus::Completed => StoredStatus::Completed,
            RunStatus::Failed => StoredStatus::Failed,
            RunStatus::Interrupted => StoredStatus::Interrupted,
            RunStatus::Cancelled => StoredStatus::Cancelled,
            RunStatus::RetryScheduled => StoredStatus::RetryScheduled,
            RunStatus::BudgetExceeded => StoredStatus::BudgetExceeded,
        }
    }
}

impl From<StoredStatus> for RunStatus {
    fn from(status: StoredStatus) -> Self {
        match status {
            StoredStatus::Pending => RunStatus::Pending,
            StoredStatus::Running => RunStatus::Running,
            StoredStatus::Completed => RunStatus::Completed,
            StoredStatus::Failed => RunStatus::Failed,
            StoredStatus::Interrupted => RunStatus::Interrupted,
            StoredStatus::Cancelled => RunStatus::Cancelled,
            StoredStatus::RetryScheduled => RunStatus::RetryScheduled,
            StoredStatus::BudgetExceeded => RunStatus::BudgetExceeded,
        }
    }
}

impl From<&RunRecord> for StoredRun {
    fn from(r: &RunRecord) -> Self {
        StoredRun {
            run_id: r.run_id.clone(),
            status: r.status.into(),
            fingerprint: r.fingerprint,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            last_step: r.last_step,
            error: r.error.clone(),
            forked_from: r.forked_from.clone(),
            graph: r.graph.clone(),
            metadata: StoredMetadata::from(&r.metadata),
            ttl_ms: r.ttl_ms,
            expires_at_ms: r.expires_at_ms,
            tenant: r.tenant.as_ref().map(|t| t.as_str().to_owned()),
        }
    }
}

impl From<StoredRun> for RunRecord {
    fn from(r: StoredRun) -> Self {
        let mut record = RunRecord::new(r.run_id, r.status.into(), r.fingerprint, r.created_at_ms);
        record.updated_at_ms = r.updated_at_ms;
        record.last_step = r.last_step;
        record.error = r.error;
        record.forked_from = r.forked_from;
        record.graph = r.graph;
        record.metadata = r.metadata.into();
        record.ttl_ms = r.ttl_ms;
        record.expires_at_ms = r.expires_at_ms;
        // A stored tenant id that is no longer valid reads as its nearest valid form: ids
        // are checked when they are made, so this only guards against damage.
        record.tenant = r.tenant.map(crate::TenantId::from_stored);
        record
    }
}

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
        | Op::Fence { run, .. }
        | Op::PutAudit { run, .. } => check_run_id(run),
        Op::PutItem(item) => crate::items::check_target(&item.namespace, &item.key),
        Op::DeleteItem { namespace, key, .. } => crate::items::check_target(namespace, key),
    }
}

/// Encodes a run record as stores keep it: its own binary form (independent of
/// [`RunRecord`]'s serde shape, which is the JSON API's), in an [envelope](crate::envelope).
/// For backends; [`decode_run`] reads it back.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when the record does not encode (larger than a record may be).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{RunRecord, RunStatus, decode_run, encode_run};
///
/// let record = RunRecord::new("run-1", RunStatus::Running, 7, 0);
/// let bytes = encode_run(&record)?;
/// assert_eq!(decode_run("run-1", &bytes)?, record);
/// // A record stored under another run's id is damage.
/// assert!(decode_run("run-2", &bytes).is_err());
/// # Ok::<(), agentgraph_checkpoint::StoreError>(())
/// ```
pub fn encode_run(record: &RunRecord) -> Result<Vec<u8>> {
    envelope::encode(RecordKind::Run, &StoredRun::from(record)).map_err(|source| {
        StoreError::Corrupt {
            what: run_what(&record.run_id),
            source,
        }
    })
}

/// Decodes a run record that [`encode_run`] encoded and a backend stored under `run`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming the run when the bytes are damaged, foreign, too new, or
/// the record of another run.
pub fn decode_run(run: &str, bytes: &[u8]) -> Result<RunRecord> {
    let corrupt = |source| StoreError::Corrupt {
        what: run_what(run),
        source,
    };
    let stored = match envelope::decode::<StoredRun>(RecordKind::Run, bytes) {
        Ok(stored) => stored,
        Err(e @ envelope::FormatError::Decode(_)) => {
            // The older layouts, newest first: each lacks fields at the end of the next.
            envelope::decode::<StoredRunV3>(RecordKind::Run, bytes)
                .map(StoredRun::from)
                .or_else(|_| {
                    envelope::decode::<StoredRunV2>(RecordKind::Run, bytes).map(StoredRun::from)
                })
                .or_else(|_| {
                    envelope::decode::<StoredRunV1>(RecordKind::Run, bytes).map(StoredRun::from)
                })
                .map_err(|_| corrupt(e))?
        }
        Err(e) => return Err(corrupt(e)),
    };
    let record = RunRecord::from(stored);
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

    /// Statuses keep their stored tags (a variant's index); `BudgetExceeded` was added last.
    #[test]
    fn status_tags_are_stable() {
        let config = bincode::config::standard();
        for (i, status) in RunStatus::ALL.into_iter().enumerate() {
            let bytes = bincode::serde::encode_to_vec(StoredStatus::from(status), config).unwrap();
            assert_eq!(
                bytes,
                bincode::serde::encode_to_vec(i as u32, config).unwrap()
            );
            let (back, _): (StoredStatus, _) =
                bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(RunStatus::from(back), status);
        }
        assert_eq!(RunStatus::ALL[6], RunStatus::RetryScheduled);
        assert_eq!(RunStatus::ALL[7], RunStatus::BudgetExceeded);
    }

    /// The layout of run records before graph names, as it was written.
    #[derive(Serialize)]
    struct Old {
        run_id: String,
        status: u32,
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
            status: 3,
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

    /// The layout of run records before sessions (graph names, no metadata), as it was
    /// written.
    #[derive(Serialize)]
    struct BeforeSessions {
        run_id: String,
        status: u32,
        fingerprint: u128,
        created_at_ms: u64,
        updated_at_ms: u64,
        last_step: Option<u64>,
        error: Option<String>,
        forked_from: Option<(String, u64)>,
        graph: Option<String>,
    }

    #[test]
    fn records_without_metadata_still_decode() {
        let old = BeforeSessions {
            run_id: "r".into(),
            status: 4,
            fingerprint: 9,
            created_at_ms: 1,
            updated_at_ms: 2,
            last_step: Some(3),
            error: None,
            forked_from: Some(("p".into(), 4)),
            graph: Some("g".into()),
        };
        let bytes = envelope::encode(RecordKind::Run, &old).unwrap();
        // Bytes of that layout, as stores hold them today (a pinned copy: the layout must not
        // drift with this test's struct).
        assert_eq!(
            &bytes[envelope::HEADER_LEN..],
            &[1, b'r', 4, 9, 1, 2, 1, 3, 0, 1, 1, b'p', 4, 1, 1, b'g']
        );
        let record = decode_run("r", &bytes).unwrap();
        let mut expected = RunRecord::new("r", RunStatus::Interrupted, 9, 1).with_graph("g");
        expected.updated_at_ms = 2;
        expected.last_step = Some(3);
        expected.forked_from = Some(("p".into(), 4));
        assert_eq!(record, expected);
        assert!(record.metadata.is_empty());
        assert_eq!((record.ttl_ms, record.expires_at_ms), (None, None));

        // The current layout round-trips metadata and time to live.
        let mut current = expected
            .clone()
            .with_metadata(
                RunMetadata::new()
                    .with_user("ann")
                    .with_title("t")
                    .with_tags(["b", "a"])
                    .with_label("k", "v"),
            )
            .with_ttl(std::time::Duration::from_millis(40));
        assert_eq!(current.expires_at_ms, Some(42));
        let encoded = encode_run(&current).unwrap();
        assert_eq!(decode_run("r", &encoded).unwrap(), current);
        current.metadata = RunMetadata::new();
        current.set_ttl(None);
        assert_eq!(
            decode_run("r", &encode_run(&current).unwrap()).unwrap(),
            current
        );
        // A current record cut short is damage, not an older layout.
        let payload = &encoded[envelope::HEADER_LEN..];
        for cut in 1..payload.len() {
            let sealed = envelope::seal(RecordKind::Run, &payload[..cut]);
            if let Ok(r) = decode_run("r", &sealed) {
                // Only a cut at the end of an older layout reads, as that layout: the last
                // byte is the tenant's (`None`), added after sessions.
                let before_tenants = cut == payload.len() - 1;
                assert!(
                    before_tenants || (r.metadata.is_empty() && r.ttl_ms.is_none()),
                    "cut at {cut}"
                );
                assert!(r.tenant.is_none());
            }
        }
        assert!(decode_run("r", &bytes[..bytes.len() - 1]).is_err());
    }

    /// A run's metadata as records before tenants held it: user, title, tags, labels.
    type OldMetadata = (
        Option<String>,
        Option<String>,
        Vec<String>,
        Vec<(String, String)>,
    );

    /// The layout of run records before tenants (sessions, no tenant), as it was written.
    #[derive(Serialize)]
    struct BeforeTenants {
        run_id: String,
        status: u32,
        fingerprint: u128,
        created_at_ms: u64,
        updated_at_ms: u64,
        last_step: Option<u64>,
        error: Option<String>,
        forked_from: Option<(String, u64)>,
        graph: Option<String>,
        metadata: OldMetadata,
        ttl_ms: Option<u64>,
        expires_at_ms: Option<u64>,
    }

    #[test]
    fn records_without_a_tenant_still_decode() {
        let old = BeforeTenants {
            run_id: "r".into(),
            status: 2,
            fingerprint: 9,
            created_at_ms: 1,
            updated_at_ms: 2,
            last_step: Some(3),
            error: None,
            forked_from: None,
            graph: Some("g".into()),
            metadata: (Some("ann".into()), None, vec!["t".into()], vec![]),
            ttl_ms: Some(5),
            expires_at_ms: Some(7),
        };
        let bytes = envelope::encode(RecordKind::Run, &old).unwrap();
        // Bytes of that layout, as stores hold them today (pinned: the layout must not drift
        // with this test's struct).
        assert_eq!(
            &bytes[envelope::HEADER_LEN..],
            &[
                1, b'r', 2, 9, 1, 2, 1, 3, 0, 0, 1, 1, b'g', 1, 3, b'a', b'n', b'n', 0, 1, 1, b't',
                0, 1, 5, 1, 7
            ]
        );
        let record = decode_run("r", &bytes).unwrap();
        let mut expected = RunRecord::new("r", RunStatus::Completed, 9, 1)
            .with_graph("g")
            .with_metadata(RunMetadata::new().with_user("ann").with_tag("t"));
        expected.updated_at_ms = 2;
        expected.last_step = Some(3);
        expected.ttl_ms = Some(5);
        expected.expires_at_ms = Some(7);
        assert_eq!(record, expected);
        assert_eq!(record.tenant, None);

        // The current layout round-trips a tenant, and no tenant.
        let acme = crate::TenantId::new("acme").unwrap();
        let current = expected.clone().with_tenant(acme.clone());
        let encoded = encode_run(&current).unwrap();
        assert_eq!(decode_run("r", &encoded).unwrap().tenant, Some(acme));
        assert_eq!(
            decode_run("r", &encode_run(&expected).unwrap()).unwrap(),
            expected
        );
        // The tenant is the payload's last field: an old payload plus `Some` is the new one.
        let payload = &encoded[envelope::HEADER_LEN..];
        assert_eq!(
            &payload[..bytes.len() - envelope::HEADER_LEN],
            &bytes[envelope::HEADER_LEN..]
        );
        assert_eq!(
            &payload[bytes.len() - envelope::HEADER_LEN..],
            &[1, 4, b'a', b'c', b'm', b'e']
        );
        // A current record cut short reads only as an older layout, or not at all.
        for cut in 1..payload.len() {
            let sealed = envelope::seal(RecordKind::Run, &payload[..cut]);
            if let Ok(r) = decode_run("r", &sealed) {
                assert!(r.tenant.is_none(), "cut at {cut}");
            }
        }
    }
}
