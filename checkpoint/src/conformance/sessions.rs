//! Sessions: run metadata and time to live on run records; sweeping expired runs.

use std::collections::BTreeMap;

use super::*;
use crate::session::RunMetadata;

/// A time to live for leases that must not expire during a check.
const LONG: Duration = Duration::from_secs(600);

/// A run record's metadata and time to live read back as written, from `get_run` and
/// `list_runs`; a record without them reads back without them.
pub async fn run_metadata(store: &dyn CheckpointStore) {
    const C: &str = "run_metadata";
    expect_empty(store, C).await;
    let mut labels = BTreeMap::new();
    labels.insert("channel".to_owned(), "email".to_owned());
    labels.insert("é".to_owned(), String::new());
    let meta = RunMetadata::from_parts(
        Some("ann".into()),
        Some("Refund for order 17".into()),
        vec!["vip".into(), "billing".into()],
        labels,
    );
    let with = record("with", RunStatus::Interrupted, 1_000)
        .with_metadata(meta)
        .with_ttl(Duration::from_secs(60));
    let without = record("without", RunStatus::Completed, 1_000);
    let mut batch = WriteBatch::new();
    batch.put_run(with.clone()).put_run(without.clone());
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.get_run("with").await, C),
        Some(with.clone()),
        "{C}: metadata, ttl_ms and expires_at_ms read back"
    );
    assert_eq!(
        ok(store.list_runs(None, 10).await, C),
        vec![with, without],
        "{C}: list_runs gives the metadata (or none) as written"
    );
    delete_runs(store, &["with", "without"], C).await;
}

/// [`CheckpointStore::sweep_expired`]: deletes the runs expired at `now_ms` with their
/// subgraph runs and returns their ids in order; keeps the runs not expired yet and those
/// without a time to live (and another run whose id begins like an expired one's); skips a
/// run whose lease is live, and deletes it at a later sweep once it is released.
pub async fn sweeps(store: &dyn CheckpointStore) {
    const C: &str = "sweeps";
    expect_empty(store, C).await;
    let ttl = Duration::from_millis(100);
    let at = |run: &str| record(run, RunStatus::Completed, 1_000).with_ttl(ttl);
    let mut batch = WriteBatch::new();
    batch
        .put_run(at("a"))
        .put_checkpoint("a", 0, bytes("a0"))
        .put_run(record("a/@sub/1", RunStatus::Completed, 1_000))
        .put_checkpoint("a/@sub/1", 0, bytes("a sub"))
        .put_run(record("a/@sub/1/@inner/2", RunStatus::Completed, 1_000))
        .put_run(record("a-b", RunStatus::Completed, 1_000))
        .put_run(at("busy"))
        .put_run(record("later", RunStatus::Completed, 1_050).with_ttl(ttl))
        .put_run(record("forever", RunStatus::Completed, 0))
        .put_run(at("z"));
    commit(store, batch, C).await;

    assert_eq!(
        ok(store.sweep_expired(1_099).await, C),
        Vec::<String>::new(),
        "{C}: nothing is expired before its expiry"
    );
    let lease = ok(store.acquire_lease("busy", LONG).await, C);
    assert_eq!(
        ok(store.sweep_expired(1_100).await, C),
        ["a", "z"],
        "{C}: the expired runs are deleted (in id order), not one in use"
    );
    for gone in ["a", "a/@sub/1", "a/@sub/1/@inner/2", "z"] {
        assert_eq!(
            ok(store.get_run(gone).await, C),
            None,
            "{C}: {gone} is deleted"
        );
    }
    assert!(
        ok(store.list_checkpoints("a/@sub/1", None, 10).await, C).is_empty(),
        "{C}: a subgraph run is deleted whole"
    );
    for kept in ["a-b", "busy", "later", "forever"] {
        assert!(
            ok(store.get_run(kept).await, C).is_some(),
            "{C}: {kept} is kept"
        );
    }
    // The owner still owns it: its writes go on.
    let mut batch = WriteBatch::new();
    batch
        .fence("busy", lease.epoch())
        .put_checkpoint("busy", 0, bytes("b0"));
    commit(
        store,
        batch,
        &format!("{C}: the owner of a skipped run writes"),
    )
    .await;
    ok(store.release_lease(lease).await, C);
    assert_eq!(
        ok(store.sweep_expired(1_200).await, C),
        ["busy", "later"],
        "{C}: a released run is swept at the next sweep"
    );
    assert!(
        ok(store.sweep_expired(u64::MAX).await, C).is_empty(),
        "{C}: runs without a time to live never expire"
    );
    delete_runs(store, &["a-b", "forever"], C).await;
}
