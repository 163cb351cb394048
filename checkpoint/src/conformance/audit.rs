//! Audit trails: entries numbered and chained in the commit, kept when their run is deleted,
//! applied with their batch or not at all.

use std::time::Duration;

use super::{commit, ok, record};
use crate::audit::{self, AuditAction, AuditRecord};
use crate::error::StoreError;
use crate::store::{CheckpointStore, RunStatus, WriteBatch};

/// A store that keeps audit trails ([`CheckpointStore::supports_audit`]) numbers each run's
/// entries from 1 in commit order (several in one batch in their order), links each to the
/// one before ([`audit::verify`] passes), keeps them through [`Op::DeleteRun`](crate::Op::DeleteRun),
/// lists the run in [`audited_runs`](CheckpointStore::audited_runs), pages
/// [`get_audit`](CheckpointStore::get_audit) after a number, and applies nothing of a batch
/// refused by its fence. A store that keeps none is not checked. The check's runs may have
/// entries already (a store checked twice): it counts from what it finds.
pub async fn audit_trails(store: &dyn CheckpointStore) {
    const CHECK: &str = "audit_trails";
    if !store.supports_audit() {
        return;
    }
    let run = "conformance-audit";
    let before = ok(store.audit(run).await, CHECK).len() as u64;
    let entry = |action, n: u64| {
        AuditRecord::new("conformance", action)
            .with_details(serde_json::json!({ "n": n }))
            .at(n)
    };
    let mut batch = WriteBatch::new();
    batch
        .put_run(record(run, RunStatus::Running, 1))
        .put_audit(run, entry(AuditAction::Started, 1));
    commit(store, batch, CHECK).await;
    let mut batch = WriteBatch::new();
    batch
        .put_audit(run, entry(AuditAction::InterruptAnswered, 2))
        .put_audit(run, entry(AuditAction::StateEdited, 3));
    commit(store, batch, CHECK).await;
    let mut batch = WriteBatch::new();
    batch
        .delete_run(run)
        .put_audit(run, entry(AuditAction::Deleted, 4));
    commit(store, batch, CHECK).await;

    assert!(
        ok(store.get_run(run).await, CHECK).is_none(),
        "{CHECK}: the run is deleted"
    );
    let entries = ok(store.audit(run).await, CHECK);
    let new: Vec<_> = entries[before as usize..]
        .iter()
        .map(|e| (e.seq, e.record.action, e.record.details["n"].as_u64()))
        .collect();
    assert_eq!(
        new,
        [
            (before + 1, AuditAction::Started, Some(1)),
            (before + 2, AuditAction::InterruptAnswered, Some(2)),
            (before + 3, AuditAction::StateEdited, Some(3)),
            (before + 4, AuditAction::Deleted, Some(4)),
        ],
        "{CHECK}: entries numbered in commit order, kept when the run is deleted"
    );
    for w in entries.windows(2) {
        assert_eq!(
            w[1].prev, w[0].hash,
            "{CHECK}: entry {} links to the one before",
            w[1].seq
        );
    }
    let head = ok(audit::verify(store, run).await, CHECK)
        .unwrap_or_else(|broken| panic!("{CHECK}: the chain verifies: {broken}"));
    assert_eq!(head.entries, before + 4, "{CHECK}: every entry verified");
    let page = ok(store.get_audit(run, Some(before + 1), 2).await, CHECK);
    assert_eq!(
        page.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [before + 2, before + 3],
        "{CHECK}: get_audit pages after a number"
    );
    assert!(
        ok(store.audited_runs().await, CHECK).contains(&run.to_owned()),
        "{CHECK}: a deleted run with entries is listed"
    );

    // A batch refused by its fence writes no entry.
    let fenced = "conformance-audit-fenced";
    let had = ok(store.audit(fenced).await, CHECK).len();
    let ttl = Duration::from_secs(30);
    let stale = ok(store.acquire_lease(fenced, ttl).await, CHECK);
    let stale_epoch = stale.epoch();
    ok(store.release_lease(stale).await, CHECK);
    let lease = ok(store.acquire_lease(fenced, ttl).await, CHECK);
    let mut batch = WriteBatch::new();
    batch
        .fence(fenced, stale_epoch)
        .put_audit(fenced, entry(AuditAction::StateEdited, 5));
    assert!(
        matches!(store.commit(batch).await, Err(StoreError::Fenced { .. })),
        "{CHECK}: a stale epoch fails the batch"
    );
    assert_eq!(
        ok(store.audit(fenced).await, CHECK).len(),
        had,
        "{CHECK}: a refused batch writes no entry"
    );
    ok(store.release_lease(lease).await, CHECK);
}
