//! The conformance suite every [`CheckpointStore`] passes: run it against a new backend.
//!
//! Each check takes an **empty** store, panics with a message naming the check and the
//! expectation when the store misbehaves, and leaves the store empty again. [`run_all`] runs
//! them all; the others are public so that a failing one can be run alone.
//!
//! One check needs to damage a stored run record, which no trait method can do: the backend
//! hands [`run_all`] (and [`corrupt_run_record`]) a function that overwrites the raw bytes
//! stored for a run's record.
//!
//! # Examples
//!
//! ```
//! use agentgraph_checkpoint::{MemoryStore, conformance};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let store = MemoryStore::new();
//!     let raw = store.clone();
//!     conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
//!         raw.put_raw_run_record(run, bytes)
//!     })
//!     .await;
//! }
//! ```

use std::fmt::Debug;
use std::time::Duration;

use crate::envelope::{self, RecordKind};
use crate::error::{Result, StoreError};
use crate::store::{CheckpointStore, MAX_RUN_ID_LEN, Op, RunRecord, RunStatus, WriteBatch};

/// Overwrites the raw bytes a backend stores for a run's record (see the [module](self)).
pub type PutRawRun<'a> = &'a (dyn Fn(&str, Vec<u8>) + Sync);

/// Runs every check, in order, on an empty `store`.
///
/// # Panics
///
/// When the store breaks the contract; the message names the check and what went wrong.
pub async fn run_all(store: &dyn CheckpointStore, put_raw_run: PutRawRun<'_>) {
    run_records(store).await;
    checkpoints(store).await;
    blobs(store).await;
    pending_writes(store).await;
    events(store).await;
    prune(store).await;
    value_sizes(store).await;
    delete_run_isolation(store).await;
    batches_apply_in_order(store).await;
    invalid_run_ids(store).await;
    graph_names(store).await;
    run_leases(store).await;
    lease_expiry(store).await;
    corrupt_run_record(store, put_raw_run).await;
}

/// Unwraps `result`, panicking with `what` and the error.
fn ok<T>(result: Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

async fn commit(store: &dyn CheckpointStore, batch: WriteBatch, what: &str) {
    ok(store.commit(batch).await, what);
}

async fn expect_empty(store: &dyn CheckpointStore, check: &str) {
    let runs = ok(store.list_runs(None, usize::MAX).await, check);
    assert!(
        runs.is_empty(),
        "{check}: the store must be empty before (and is left empty after) each check, found runs {:?}",
        runs.iter().map(|r| &r.run_id).collect::<Vec<_>>()
    );
}

async fn delete_runs(store: &dyn CheckpointStore, runs: &[&str], check: &str) {
    let mut batch = WriteBatch::new();
    for run in runs {
        batch.delete_run(run);
    }
    commit(store, batch, &format!("{check}: deleting the check's runs")).await;
    expect_empty(store, check).await;
}

fn record(run: &str, status: RunStatus, now_ms: u64) -> RunRecord {
    RunRecord::new(run, status, 0xfeed_beef_u128 << 64 | 42, now_ms)
}

fn ids<T, U: Debug>(items: &[(T, U)]) -> Vec<&T> {
    items.iter().map(|(k, _)| k).collect()
}

fn bytes(tag: &str) -> Vec<u8> {
    envelope::seal(RecordKind::Checkpoint, tag.as_bytes())
}

/// Run records: round trip, replace (last wins), ordering and paging of `list_runs`.
pub async fn run_records(store: &dyn CheckpointStore) {
    const C: &str = "run_records";
    expect_empty(store, C).await;
    assert_eq!(
        ok(store.get_run("missing").await, C),
        None,
        "{C}: a missing run is None"
    );

    let mut full = record("b", RunStatus::Failed, 5);
    full.last_step = Some(9);
    full.updated_at_ms = 6;
    full.error = Some("boom".into());
    full.forked_from = Some(("a".into(), 3));
    let mut batch = WriteBatch::new();
    batch
        .put_run(record("c", RunStatus::Running, 1))
        .put_run(full.clone())
        .put_run(record("a", RunStatus::Pending, 2));
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.get_run("b").await, C),
        Some(full),
        "{C}: a run record reads back as written"
    );

    let mut replaced = record("c", RunStatus::Completed, 1);
    replaced.last_step = Some(4);
    let mut batch = WriteBatch::new();
    batch
        .put_run(record("c", RunStatus::Interrupted, 1))
        .put_run(replaced.clone());
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.get_run("c").await, C),
        Some(replaced),
        "{C}: the last record written for a run wins"
    );

    let all = ok(store.list_runs(None, usize::MAX).await, C);
    let names: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b", "c"],
        "{C}: list_runs lists each run once, by run id"
    );
    let page = |after, limit| async move {
        let runs = ok(store.list_runs(after, limit).await, C);
        runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2).await, ["a", "b"], "{C}: limit 2");
    assert_eq!(page(Some("b"), 2).await, ["c"], "{C}: after `b`");
    assert_eq!(
        page(Some("a0"), 5).await,
        ["b", "c"],
        "{C}: after a cursor that is no run"
    );
    assert_eq!(
        page(Some("c"), 5).await,
        [] as [&str; 0],
        "{C}: after the last"
    );
    assert_eq!(page(None, 0).await, [] as [&str; 0], "{C}: limit 0");
    delete_runs(store, &["a", "b", "c"], C).await;
}

/// Checkpoints: round trip, duplicates, `latest_checkpoint`, ordering and paging.
pub async fn checkpoints(store: &dyn CheckpointStore) {
    const C: &str = "checkpoints";
    expect_empty(store, C).await;
    let r = "ck";
    assert_eq!(
        ok(store.latest_checkpoint(r).await, C),
        None,
        "{C}: none yet"
    );
    let mut batch = WriteBatch::new();
    batch
        .put_checkpoint(r, 2, bytes("two"))
        .put_checkpoint(r, 0, bytes("zero"))
        .put_checkpoint(r, 10, bytes("ten (old)"))
        .put_checkpoint(r, 256, bytes("256"))
        .put_checkpoint(r, u64::MAX, bytes("max"));
    commit(store, batch, C).await;
    let mut batch = WriteBatch::new();
    batch.put_checkpoint(r, 10, bytes("ten"));
    commit(store, batch, C).await;

    assert_eq!(
        ok(store.get_checkpoint(r, 2).await, C),
        Some(bytes("two")),
        "{C}: round trip"
    );
    assert_eq!(
        ok(store.get_checkpoint(r, 10).await, C),
        Some(bytes("ten")),
        "{C}: the last write of a step wins"
    );
    assert_eq!(
        ok(store.get_checkpoint(r, 3).await, C),
        None,
        "{C}: a missing step is None"
    );
    assert_eq!(
        ok(store.latest_checkpoint(r).await, C),
        Some((u64::MAX, bytes("max"))),
        "{C}: latest is the highest step (steps order as numbers, not as bytes)"
    );
    let all = ok(store.list_checkpoints(r, None, usize::MAX).await, C);
    assert_eq!(
        ids(&all),
        [&0, &2, &10, &256, &u64::MAX],
        "{C}: listed once each, by step"
    );
    assert_eq!(all[2].1, bytes("ten"), "{C}: listing gives the last write");
    let page = |after, limit| async move {
        let list = ok(store.list_checkpoints(r, after, limit).await, C);
        list.into_iter().map(|(s, _)| s).collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2).await, [0, 2], "{C}: limit 2");
    assert_eq!(page(Some(2), 2).await, [10, 256], "{C}: after step 2");
    assert_eq!(
        page(Some(3), 1).await,
        [10],
        "{C}: after a step with no checkpoint"
    );
    assert_eq!(
        page(Some(u64::MAX), 9).await,
        [] as [u64; 0],
        "{C}: after the last"
    );
    assert_eq!(page(None, 0).await, [] as [u64; 0], "{C}: limit 0");
    delete_runs(store, &[r], C).await;
    assert_eq!(
        ok(store.latest_checkpoint(r).await, C),
        None,
        "{C}: deleted with the run"
    );
}

/// Blobs: round trip, duplicates, inclusive version ranges, fields kept apart.
pub async fn blobs(store: &dyn CheckpointStore) {
    const C: &str = "blobs";
    expect_empty(store, C).await;
    let r = "blobs";
    let mut batch = WriteBatch::new();
    for v in [1, 3, 5, 7] {
        batch.put_blob(r, 1, v, bytes(&format!("f1 v{v}")));
    }
    batch
        .put_blob(r, 0, 4, bytes("f0 v4"))
        .put_blob(r, 2, 4, bytes("f2 v4"))
        .put_blob(r, u32::MAX, u64::MAX, bytes("max"))
        .put_blob(r, 1, 5, bytes("f1 v5 (new)"));
    commit(store, batch, C).await;
    let get = |field, from, to| async move { ok(store.get_blobs(r, field, from, to).await, C) };
    let f1 = get(1, 0, u64::MAX).await;
    assert_eq!(
        ids(&f1),
        [&1, &3, &5, &7],
        "{C}: one field's blobs, by version"
    );
    assert_eq!(f1[2].1, bytes("f1 v5 (new)"), "{C}: the last write wins");
    assert_eq!(f1[0].1, bytes("f1 v1"), "{C}: round trip");
    assert_eq!(
        ids(&get(1, 3, 5).await),
        [&3, &5],
        "{C}: from..=to includes both ends"
    );
    assert_eq!(
        ids(&get(1, 4, 4).await),
        [] as [&u64; 0],
        "{C}: a range holding no version"
    );
    assert_eq!(
        ids(&get(1, 7, 3).await),
        [] as [&u64; 0],
        "{C}: from > to is empty"
    );
    assert_eq!(
        ids(&get(0, 0, u64::MAX).await),
        [&4],
        "{C}: fields are kept apart"
    );
    assert_eq!(
        get(u32::MAX, u64::MAX, u64::MAX).await,
        [(u64::MAX, bytes("max"))],
        "{C}: the largest field and version"
    );
    assert_eq!(get(3, 0, u64::MAX).await, [], "{C}: a field never written");
    delete_runs(store, &[r], C).await;
    assert_eq!(get(1, 0, u64::MAX).await, [], "{C}: deleted with the run");
}

/// Pending writes: round trip, task order, duplicates, and [`Op::DeletePendingWrites`]
/// (every step up to and including the given one) in a new checkpoint's batch.
pub async fn pending_writes(store: &dyn CheckpointStore) {
    const C: &str = "pending_writes";
    expect_empty(store, C).await;
    let r = "pw";
    let get = |step| async move { ok(store.get_pending_writes(r, step).await, C) };
    let mut batch = WriteBatch::new();
    batch
        .put_pending_write(r, 4, 2, bytes("4.2"))
        .put_pending_write(r, 4, 0, bytes("4.0"))
        .put_pending_write(r, 4, 256, bytes("4.256"))
        .put_pending_write(r, 3, 0, bytes("3.0"))
        .put_pending_write(r, 5, 0, bytes("5.0"))
        .put_pending_write(r, 4, 0, bytes("4.0 (retry)"));
    commit(store, batch, C).await;
    let step4 = get(4).await;
    assert_eq!(
        ids(&step4),
        [&0, &2, &256],
        "{C}: a step's writes, by task, once each"
    );
    assert_eq!(step4[0].1, bytes("4.0 (retry)"), "{C}: the last write wins");
    assert_eq!(step4[1].1, bytes("4.2"), "{C}: round trip");
    assert_eq!(get(6).await, [], "{C}: a step with no writes");

    let mut batch = WriteBatch::new();
    batch
        .put_checkpoint(r, 4, bytes("checkpoint 4"))
        .delete_pending_writes(r, 4);
    commit(store, batch, C).await;
    assert_eq!(
        get(4).await,
        [],
        "{C}: the checkpoint's batch deleted step 4's pending writes"
    );
    assert_eq!(
        get(3).await,
        [],
        "{C}: DeletePendingWrites deletes earlier steps too"
    );
    assert_eq!(
        ids(&get(5).await),
        [&0],
        "{C}: DeletePendingWrites keeps later steps"
    );
    assert_eq!(
        ok(store.get_checkpoint(r, 4).await, C),
        Some(bytes("checkpoint 4")),
        "{C}: the checkpoint of the same batch"
    );
    let mut batch = WriteBatch::new();
    batch.delete_pending_writes(r, u64::MAX);
    commit(store, batch, C).await;
    assert_eq!(get(5).await, [], "{C}: DeletePendingWrites up to u64::MAX");
    delete_runs(store, &[r], C).await;
}

/// Events: round trip, ordering and paging by sequence number, the last one, replacement,
/// isolation between runs whose ids share a prefix, kept by every deletion but the run's.
pub async fn events(store: &dyn CheckpointStore) {
    const C: &str = "events";
    expect_empty(store, C).await;
    let (r, other) = ("ev", "ev/child");
    let get = |after, limit| async move { ok(store.get_events(r, after, limit).await, C) };
    assert_eq!(get(None, 10).await, [], "{C}: a run with no events");
    assert_eq!(ok(store.last_event(r).await, C), None, "{C}: no last event");
    let mut batch = WriteBatch::new();
    batch
        .put_run(record(r, RunStatus::Running, 1))
        .put_event(r, 2, bytes("e2"))
        .put_event(r, 0, bytes("e0"))
        .put_event(r, 1, bytes("e1"))
        .put_event(r, 256, bytes("e256"))
        .put_event(other, 7, bytes("other"))
        .put_event(r, 1, bytes("e1 again"));
    commit(store, batch, C).await;
    let all = get(None, usize::MAX).await;
    assert_eq!(
        ids(&all),
        [&0, &1, &2, &256],
        "{C}: in sequence order, once each"
    );
    assert_eq!(all[1].1, bytes("e1 again"), "{C}: the last write wins");
    assert_eq!(all[3].1, bytes("e256"), "{C}: round trip");
    assert_eq!(
        ids(&get(Some(0), 2).await),
        [&1, &2],
        "{C}: paging after a number"
    );
    assert_eq!(
        ids(&get(Some(2), 10).await),
        [&256],
        "{C}: after skips a gap"
    );
    assert_eq!(get(Some(256), 10).await, [], "{C}: after the last");
    assert_eq!(get(Some(u64::MAX), 10).await, [], "{C}: after u64::MAX");
    assert_eq!(get(None, 0).await, [], "{C}: a limit of 0");
    assert_eq!(
        ok(store.last_event(r).await, C),
        Some(256),
        "{C}: the last event"
    );
    assert_eq!(
        ok(store.last_event(other).await, C),
        Some(7),
        "{C}: another run's last"
    );

    let mut batch = WriteBatch::new();
    batch
        .delete_pending_writes(r, u64::MAX)
        .delete_after(r, 0)
        .delete_checkpoints_before(r, u64::MAX);
    commit(store, batch, C).await;
    assert_eq!(
        get(None, usize::MAX).await.len(),
        4,
        "{C}: only deleting the run deletes its events"
    );
    let mut batch = WriteBatch::new();
    batch.delete_run(r);
    commit(store, batch, C).await;
    assert_eq!(get(None, 10).await, [], "{C}: DeleteRun deletes the events");
    assert_eq!(ok(store.last_event(r).await, C), None, "{C}: none left");
    assert_eq!(
        ids(&ok(store.get_events(other, None, 10).await, C)),
        [&7],
        "{C}: DeleteRun keeps a run whose id it prefixes"
    );
    let mut batch = WriteBatch::new();
    batch.delete_run(other);
    commit(store, batch, C).await;
    expect_empty(store, C).await;
}

/// Pruning: [`Op::DeleteCheckpointsBefore`] and [`Op::DeleteBlobsBefore`].
pub async fn prune(store: &dyn CheckpointStore) {
    const C: &str = "prune";
    expect_empty(store, C).await;
    let r = "prune";
    let mut batch = WriteBatch::new();
    for s in 0..6 {
        batch.put_checkpoint(r, s, bytes(&format!("c{s}")));
        batch.put_blob(r, 0, s, bytes(&format!("f0 v{s}")));
        batch.put_blob(r, 1, s, bytes(&format!("f1 v{s}")));
    }
    commit(store, batch, C).await;
    let steps = || async {
        ids(&ok(store.list_checkpoints(r, None, usize::MAX).await, C))
            .into_iter()
            .copied()
            .collect::<Vec<u64>>()
    };
    let versions = |field| async move {
        let blobs = ok(store.get_blobs(r, field, 0, u64::MAX).await, C);
        blobs.into_iter().map(|(v, _)| v).collect::<Vec<u64>>()
    };

    let mut batch = WriteBatch::new();
    batch
        .delete_checkpoints_before(r, 0)
        .delete_blobs_before(r, 0, 0);
    commit(store, batch, C).await;
    assert_eq!(
        steps().await,
        [0, 1, 2, 3, 4, 5],
        "{C}: before step 0 deletes nothing"
    );
    assert_eq!(
        versions(0).await,
        [0, 1, 2, 3, 4, 5],
        "{C}: before version 0 deletes nothing"
    );

    let mut batch = WriteBatch::new();
    batch
        .delete_checkpoints_before(r, 3)
        .delete_blobs_before(r, 0, 4);
    commit(store, batch, C).await;
    assert_eq!(
        steps().await,
        [3, 4, 5],
        "{C}: DeleteCheckpointsBefore(3) keeps step 3 on"
    );
    assert_eq!(
        ok(store.latest_checkpoint(r).await, C).map(|(s, _)| s),
        Some(5),
        "{C}: the latest survives"
    );
    assert_eq!(
        versions(0).await,
        [4, 5],
        "{C}: DeleteBlobsBefore(4) keeps version 4 on"
    );
    assert_eq!(
        versions(1).await,
        [0, 1, 2, 3, 4, 5],
        "{C}: DeleteBlobsBefore touches only its field"
    );

    let mut batch = WriteBatch::new();
    batch
        .delete_checkpoints_before(r, u64::MAX)
        .delete_blobs_before(r, 1, u64::MAX);
    commit(store, batch, C).await;
    assert_eq!(steps().await, [] as [u64; 0], "{C}: before u64::MAX");
    assert_eq!(versions(1).await, [] as [u64; 0], "{C}: before u64::MAX");
    delete_runs(store, &[r], C).await;
}

/// The sizes [`value_sizes`] stores: empty, small, and around the sizes where backends are
/// likely to store values differently (sled keeps values of 64 KiB and more in files of their
/// own), up to a few MiB.
const VALUE_SIZES: [usize; 8] = [0, 1, 4_000, 65_535, 65_536, 65_537, 300_000, 3 << 20];

/// A value of `len` bytes that differs from every other one of `value_sizes`.
fn sized(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Values of many sizes, from empty through 64 KiB ± 1 to 3 MiB, read back byte for byte by
/// every read; a large value replaced by a small one and back, in one batch and across
/// batches; every deletion ([`Op::DeleteCheckpointsBefore`], [`Op::DeleteBlobsBefore`],
/// [`Op::DeletePendingWrites`], [`Op::DeleteAfter`], [`Op::DeleteRun`]) removes large values
/// as it removes small ones.
pub async fn value_sizes(store: &dyn CheckpointStore) {
    const C: &str = "value_sizes";
    expect_empty(store, C).await;
    let r = "sizes";
    let n = VALUE_SIZES.len() as u64;
    // Entry `i` (step, version or task `i`) holds `sized(VALUE_SIZES[(i + shift) % n], ..)`.
    let value = |kind: u64, i: u64, shift: u64| {
        let len = VALUE_SIZES[((i + shift) % n) as usize];
        sized(len, kind << 32 | shift << 16 | i)
    };
    let expected = |kind: u64, shift: u64, range: std::ops::Range<u64>| {
        range
            .map(|i| (i, value(kind, i, shift)))
            .collect::<Vec<_>>()
    };
    let check = |shift: u64, what: &'static str| async move {
        let what = format!("{C}: {what}");
        for i in 0..n {
            assert!(
                ok(store.get_checkpoint(r, i).await, &what) == Some(value(0, i, shift)),
                "{what}: checkpoint {i} ({} bytes) reads back as written",
                VALUE_SIZES[((i + shift) % n) as usize]
            );
        }
        let listed = ok(store.list_checkpoints(r, None, usize::MAX).await, &what);
        assert!(
            listed == expected(0, shift, 0..n),
            "{what}: list_checkpoints gives every value as written"
        );
        assert!(
            ok(store.latest_checkpoint(r).await, &what) == Some((n - 1, value(0, n - 1, shift))),
            "{what}: latest_checkpoint gives its value as written"
        );
        let blobs = ok(store.get_blobs(r, 0, 0, u64::MAX).await, &what);
        assert!(
            blobs == expected(1, shift, 0..n),
            "{what}: get_blobs gives every value as written"
        );
        let some = ok(store.get_blobs(r, 0, 2, 5).await, &what);
        assert!(
            some == expected(1, shift, 2..6),
            "{what}: get_blobs of a range"
        );
        let pending = ok(store.get_pending_writes(r, 1).await, &what);
        let pending: Vec<(u64, Vec<u8>)> =
            pending.into_iter().map(|(t, v)| (t.into(), v)).collect();
        assert!(
            pending == expected(2, shift, 0..n),
            "{what}: get_pending_writes gives every value as written"
        );
    };
    let write = |shift: u64| {
        let mut batch = WriteBatch::new();
        for i in 0..n {
            batch
                .put_checkpoint(r, i, value(0, i, shift))
                .put_blob(r, 0, i, value(1, i, shift))
                .put_pending_write(r, 1, i as u32, value(2, i, shift));
        }
        batch
    };
    let mut batch = write(0);
    batch.put_run(record(r, RunStatus::Running, 0));
    commit(store, batch, C).await;
    check(0, "written").await;
    // Every entry changes size: large ones become small and small ones large.
    for shift in [n / 2, 3, 0] {
        commit(store, write(shift), C).await;
        check(shift, "replaced").await;
    }

    // In one batch: a large value replaced by a small one, and one written then deleted.
    let big = sized(300_000, 99);
    let mut batch = WriteBatch::new();
    batch
        .put_checkpoint(r, n, big.clone())
        .put_checkpoint(r, n, b"small".to_vec())
        .put_blob(r, 1, 0, big.clone())
        .delete_blobs_before(r, 1, 1)
        .put_pending_write(r, 0, 0, big.clone())
        .delete_pending_writes(r, 0);
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.get_checkpoint(r, n).await, C),
        Some(b"small".to_vec()),
        "{C}: the small value written after a large one in the same batch wins"
    );
    assert_eq!(
        ok(store.get_blobs(r, 1, 0, u64::MAX).await, C),
        [],
        "{C}: a large blob deleted in its own batch is gone"
    );
    assert_eq!(
        ok(store.get_pending_writes(r, 0).await, C),
        [],
        "{C}: a large pending write deleted in its own batch is gone"
    );
    let mut batch = WriteBatch::new();
    batch.put_checkpoint(r, n, big.clone());
    commit(store, batch, C).await;
    assert!(
        ok(store.get_checkpoint(r, n).await, C) == Some(big.clone()),
        "{C}: a small value replaced by a large one"
    );

    // Deletions, each leaving the entries it must keep intact.
    let mut batch = WriteBatch::new();
    batch
        .delete_checkpoints_before(r, 5)
        .delete_blobs_before(r, 0, 6)
        .delete_after(r, 6);
    commit(store, batch, C).await;
    let listed = ok(store.list_checkpoints(r, None, usize::MAX).await, C);
    assert!(
        listed == expected(0, 0, 5..7),
        "{C}: DeleteCheckpointsBefore(5) and DeleteAfter(6) keep steps 5 and 6, as written"
    );
    let blobs = ok(store.get_blobs(r, 0, 0, u64::MAX).await, C);
    assert!(
        blobs == expected(1, 0, 6..7),
        "{C}: DeleteBlobsBefore(6) and DeleteAfter(6) keep version 6, as written"
    );
    assert_eq!(
        ok(store.get_pending_writes(r, 1).await, C).len() as u64,
        n,
        "{C}: DeleteAfter(6) keeps the pending writes of step 1"
    );
    let mut batch = WriteBatch::new();
    batch.delete_pending_writes(r, 1);
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.get_pending_writes(r, 1).await, C),
        [],
        "{C}: DeletePendingWrites removes large pending writes"
    );
    delete_runs(store, &[r], C).await;
    assert_eq!(
        ok(store.list_checkpoints(r, None, usize::MAX).await, C),
        [],
        "{C}: DeleteRun removes large checkpoints"
    );
    assert_eq!(
        ok(store.get_blobs(r, 0, 0, u64::MAX).await, C),
        [],
        "{C}: DeleteRun removes large blobs"
    );
}

/// The runs [`delete_run_isolation`] uses: prefixes of each other, and ids with NUL, `/`,
/// the highest code point and the longest length.
fn isolation_runs() -> Vec<String> {
    let mut runs: Vec<String> = [
        "r",
        "run",
        "run2",
        "run\0",
        "run\0\0",
        "run/",
        "run/x",
        "run\u{ff}",
        "run\u{10ffff}",
        "\0",
        "\u{10ffff}",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    runs.push("run".repeat(MAX_RUN_ID_LEN / 3) + &"x".repeat(MAX_RUN_ID_LEN % 3));
    runs
}

/// Everything readable about `run`, for comparisons.
async fn snapshot(store: &dyn CheckpointStore, run: &str, check: &str) -> String {
    let what = &format!("{check}: reading run {run:?}");
    let record = ok(store.get_run(run).await, what);
    let cps = ok(store.list_checkpoints(run, None, usize::MAX).await, what);
    let blobs = ok(store.get_blobs(run, 1, 0, u64::MAX).await, what);
    let pending = ok(store.get_pending_writes(run, 1).await, what);
    format!("{record:?} {cps:?} {blobs:?} {pending:?}")
}

fn fill(batch: &mut WriteBatch, run: &str) {
    batch
        .put_run(record(run, RunStatus::Running, 1))
        .put_checkpoint(run, 1, bytes(run))
        .put_blob(run, 1, 1, bytes(run))
        .put_pending_write(run, 1, 1, bytes(run));
}

/// [`Op::DeleteRun`] removes everything of its run and nothing of any other, even runs whose
/// ids share a prefix with it or contain NUL, `/` or high code points; each run's reads see
/// only its own entries.
pub async fn delete_run_isolation(store: &dyn CheckpointStore) {
    const C: &str = "delete_run_isolation";
    expect_empty(store, C).await;
    let runs = isolation_runs();
    let mut batch = WriteBatch::new();
    for run in &runs {
        fill(&mut batch, run);
    }
    commit(store, batch, C).await;
    let mut expected = Vec::new();
    for run in &runs {
        let cps = ok(store.list_checkpoints(run, None, usize::MAX).await, C);
        assert_eq!(
            cps,
            [(1, bytes(run))],
            "{C}: run {run:?} sees exactly its own checkpoints"
        );
        let pending = ok(store.get_pending_writes(run, 1).await, C);
        assert_eq!(
            pending,
            [(1, bytes(run))],
            "{C}: run {run:?} sees exactly its own pending writes"
        );
        let blobs = ok(store.get_blobs(run, 1, 0, u64::MAX).await, C);
        assert_eq!(
            blobs,
            [(1, bytes(run))],
            "{C}: run {run:?} sees exactly its own blobs"
        );
        expected.push(snapshot(store, run, C).await);
    }
    let mut sorted = runs.clone();
    sorted.sort();
    let listed: Vec<String> = ok(store.list_runs(None, usize::MAX).await, C)
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, sorted, "{C}: list_runs orders run ids as bytes");

    for (i, victim) in runs.iter().enumerate() {
        let mut batch = WriteBatch::new();
        batch.delete_run(victim);
        commit(store, batch, C).await;
        let gone = snapshot(store, victim, C).await;
        assert_eq!(
            gone, "None [] [] []",
            "{C}: DeleteRun({victim:?}) leaves nothing of it"
        );
        for (j, other) in runs.iter().enumerate().skip(i + 1) {
            assert_eq!(
                snapshot(store, other, C).await,
                expected[j],
                "{C}: DeleteRun({victim:?}) must not touch run {other:?}"
            );
        }
    }
    expect_empty(store, C).await;
}

/// A batch applies its operations in order, all of them: later operations see the earlier
/// ones of the same batch.
pub async fn batches_apply_in_order(store: &dyn CheckpointStore) {
    const C: &str = "batches_apply_in_order";
    expect_empty(store, C).await;
    let (a, b) = ("order-a", "order-b");
    let mut batch = WriteBatch::new();
    fill(&mut batch, a);
    fill(&mut batch, b);
    batch
        .put_checkpoint(a, 0, bytes("a0"))
        .delete_checkpoints_before(a, 1)
        .put_pending_write(a, 2, 0, bytes("a2"))
        .delete_pending_writes(a, 2)
        .put_blob(a, 1, 0, bytes("a v0"))
        .delete_blobs_before(a, 1, 1)
        .delete_run(b)
        .put_run(record(b, RunStatus::Completed, 2))
        .put_checkpoint(b, 7, bytes("b7"));
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.list_checkpoints(a, None, usize::MAX).await, C),
        [(1, bytes(a))],
        "{C}: a prune removes the checkpoints written earlier in its batch, keeps step 1"
    );
    assert_eq!(
        ok(store.get_pending_writes(a, 2).await, C),
        [],
        "{C}: DeletePendingWrites removes the writes of its own batch"
    );
    assert_eq!(
        ok(store.get_pending_writes(a, 1).await, C),
        [],
        "{C}: DeletePendingWrites removes the earlier steps' writes of its own batch"
    );
    assert_eq!(
        ok(store.get_blobs(a, 1, 0, u64::MAX).await, C),
        [(1, bytes(a))],
        "{C}: DeleteBlobsBefore removes the blobs of its own batch, keeps version 1"
    );
    assert_eq!(
        ok(store.get_run(b).await, C).map(|r| r.status),
        Some(RunStatus::Completed),
        "{C}: a record put after DeleteRun in the same batch stays"
    );
    assert_eq!(
        ok(store.list_checkpoints(b, None, usize::MAX).await, C),
        [(7, bytes("b7"))],
        "{C}: DeleteRun removed what came before it in the batch, not what came after"
    );
    assert_eq!(
        ok(store.get_pending_writes(b, 1).await, C),
        [],
        "{C}: DeleteRun removed the pending writes of its own batch"
    );
    assert_eq!(
        ok(store.get_run(a).await, C).map(|r| r.status),
        Some(RunStatus::Running),
        "{C}: every operation of the batch is visible after commit"
    );
    commit(store, WriteBatch::new(), &format!("{C}: an empty batch")).await;
    delete_runs(store, &[a, b], C).await;
}

fn expect_invalid<T: Debug>(result: Result<T>, what: &str) {
    match result {
        Err(StoreError::InvalidRunId { .. }) => {}
        other => panic!("invalid_run_ids: {what} must fail with InvalidRunId, got {other:?}"),
    }
}

/// Run ids that are empty or longer than [`MAX_RUN_ID_LEN`] are rejected by every write,
/// read, fence and [`acquire_lease`](CheckpointStore::acquire_lease), and a batch holding one
/// applies nothing.
pub async fn invalid_run_ids(store: &dyn CheckpointStore) {
    const C: &str = "invalid_run_ids";
    expect_empty(store, C).await;
    let long = "x".repeat(MAX_RUN_ID_LEN + 1);
    for bad in ["", long.as_str()] {
        let ops = [
            Op::PutRun(record(bad, RunStatus::Running, 0)),
            Op::PutCheckpoint {
                run: bad.into(),
                step: 0,
                bytes: bytes("x"),
            },
            Op::PutBlob {
                run: bad.into(),
                field: 0,
                version: 0,
                bytes: bytes("x"),
            },
            Op::PutPendingWrite {
                run: bad.into(),
                step: 0,
                task: 0,
                bytes: bytes("x"),
            },
            Op::DeletePendingWrites {
                run: bad.into(),
                step: 0,
            },
            Op::DeleteCheckpointsBefore {
                run: bad.into(),
                step: 0,
            },
            Op::DeleteBlobsBefore {
                run: bad.into(),
                field: 0,
                version: 0,
            },
            Op::DeleteRun { run: bad.into() },
            Op::Fence {
                run: bad.into(),
                epoch: 1,
            },
        ];
        for op in ops {
            let mut batch = WriteBatch::new();
            batch
                .put_run(record("valid", RunStatus::Running, 0))
                .put_checkpoint("valid", 0, bytes("x"));
            let what = format!("a batch with {op:?}");
            batch.push(op);
            expect_invalid(store.commit(batch).await, &what);
            assert_eq!(
                ok(store.get_run("valid").await, C),
                None,
                "{C}: {what} applied its valid operations"
            );
            assert_eq!(
                ok(store.get_checkpoint("valid", 0).await, C),
                None,
                "{C}: {what} applied its valid operations"
            );
        }
        let n = bad.len();
        expect_invalid(store.get_run(bad).await, &format!("get_run of {n} bytes"));
        expect_invalid(store.get_checkpoint(bad, 0).await, "get_checkpoint");
        expect_invalid(store.latest_checkpoint(bad).await, "latest_checkpoint");
        expect_invalid(
            store.list_checkpoints(bad, None, 9).await,
            "list_checkpoints",
        );
        expect_invalid(store.get_blobs(bad, 0, 0, 9).await, "get_blobs");
        expect_invalid(store.get_pending_writes(bad, 0).await, "get_pending_writes");
        expect_invalid(
            store.acquire_lease(bad, Duration::from_secs(60)).await,
            "acquire_lease",
        );
    }
    let longest = "y".repeat(MAX_RUN_ID_LEN);
    let mut batch = WriteBatch::new();
    batch.put_run(record(&longest, RunStatus::Running, 0));
    commit(
        store,
        batch,
        &format!("{C}: a run id of {MAX_RUN_ID_LEN} bytes is valid"),
    )
    .await;
    assert!(
        ok(store.get_run(&longest).await, C).is_some(),
        "{C}: the longest valid id reads back"
    );
    delete_runs(store, &[&longest], C).await;
}

/// The graph's name on a run record reads back as written, from `get_run` and `list_runs`,
/// and a record without one reads back without one.
pub async fn graph_names(store: &dyn CheckpointStore) {
    const C: &str = "graph_names";
    expect_empty(store, C).await;
    let named = record("named", RunStatus::Running, 1).with_graph("triage/v2");
    let unnamed = record("unnamed", RunStatus::Running, 1);
    let mut batch = WriteBatch::new();
    batch.put_run(named.clone()).put_run(unnamed.clone());
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.get_run("named").await, C),
        Some(named.clone()),
        "{C}: the graph's name reads back"
    );
    assert_eq!(
        ok(store.list_runs(None, 10).await, C),
        vec![named, unnamed],
        "{C}: list_runs gives the graph's name (or none) as written"
    );
    delete_runs(store, &["named", "unnamed"], C).await;
}

/// A long time to live, for leases that must not expire during a check.
const LONG: Duration = Duration::from_secs(600);

/// Whether `result` is [`StoreError::Fenced`] of `run` with `epoch` against `current`.
fn expect_fenced<T: Debug>(result: Result<T>, run: &str, epoch: u64, current: u64, what: &str) {
    match result {
        Err(StoreError::Fenced {
            run: r,
            epoch: e,
            current: c,
        }) => assert_eq!(
            (r.as_str(), e, c),
            (run, epoch, current),
            "{what}: Fenced names the run, the stale epoch and the current one"
        ),
        other => panic!("{what}: must fail with Fenced, got {other:?}"),
    }
}

/// Run leases ([`acquire_lease`](CheckpointStore::acquire_lease)): one live lease per run;
/// each new lease has a greater epoch (after a release, and after the run was deleted); a
/// batch fenced with the current epoch applies, one fenced with a stale epoch applies nothing
/// and fails with [`StoreError::Fenced`]; releasing a lease frees the run.
pub async fn run_leases(store: &dyn CheckpointStore) {
    const C: &str = "run_leases";
    expect_empty(store, C).await;
    let run = "leased";
    let first = ok(store.acquire_lease(run, LONG).await, C);
    assert_eq!(first.run(), run, "{C}: the lease names its run");
    assert!(first.epoch() >= 1, "{C}: epochs start at 1");
    match store.acquire_lease(run, LONG).await {
        Err(StoreError::RunBusy { run: r }) => assert_eq!(r, run, "{C}: RunBusy names the run"),
        other => panic!("{C}: a second acquire_lease must fail with RunBusy, got {other:?}"),
    }
    let other = ok(
        store.acquire_lease("leased2", LONG).await,
        &format!("{C}: another run is free"),
    );
    ok(
        store.renew_lease(&first, LONG).await,
        &format!("{C}: renew"),
    );

    let mut batch = WriteBatch::new();
    batch
        .fence(run, first.epoch())
        .put_run(record(run, RunStatus::Running, 1))
        .put_checkpoint(run, 0, bytes("step 0"));
    commit(
        store,
        batch,
        &format!("{C}: a batch with the current epoch"),
    )
    .await;

    let stale = first.epoch();
    ok(store.release_lease(first).await, &format!("{C}: release"));
    let second = ok(
        store.acquire_lease(run, LONG).await,
        &format!("{C}: acquire_lease after a release"),
    );
    assert!(
        second.epoch() > stale,
        "{C}: a new lease has a greater epoch ({} after {stale})",
        second.epoch()
    );

    // A stale epoch, wherever its fence stands in the batch, applies nothing of it.
    for fence_first in [true, false] {
        let mut batch = WriteBatch::new();
        if fence_first {
            batch.fence(run, stale);
        }
        batch
            .put_run(record(run, RunStatus::Failed, 2))
            .put_checkpoint(run, 1, bytes("step 1"))
            .delete_checkpoints_before(run, 1)
            .put_event(run, 0, bytes("event"));
        if !fence_first {
            batch.fence(run, stale);
        }
        let what = format!("{C}: a batch fenced with a stale epoch (fence first: {fence_first})");
        expect_fenced(store.commit(batch).await, run, stale, second.epoch(), &what);
        assert_eq!(
            ok(store.get_run(run).await, C),
            Some(record(run, RunStatus::Running, 1)),
            "{what}: the run record is unchanged"
        );
        assert_eq!(
            ids(&ok(store.list_checkpoints(run, None, 10).await, C)),
            [&0],
            "{what}: no checkpoint written or deleted"
        );
        assert_eq!(
            ok(store.last_event(run).await, C),
            None,
            "{what}: no event written"
        );
    }
    // A batch with a stale fence among current ones fails too; the current epoch writes.
    let mut batch = WriteBatch::new();
    batch
        .fence(run, second.epoch())
        .fence("leased2", other.epoch() + 1)
        .put_checkpoint(run, 1, bytes("step 1"));
    expect_fenced(
        store.commit(batch).await,
        "leased2",
        other.epoch() + 1,
        other.epoch(),
        &format!("{C}: a batch with one stale fence of two"),
    );
    let mut batch = WriteBatch::new();
    batch
        .fence(run, second.epoch())
        .put_checkpoint(run, 1, bytes("step 1"));
    commit(store, batch, &format!("{C}: the new owner writes")).await;

    // Deleting the run keeps its epoch: a run created again never reuses one.
    let mut batch = WriteBatch::new();
    batch.fence(run, second.epoch()).delete_run(run);
    commit(store, batch, &format!("{C}: the owner deletes the run")).await;
    let last = second.epoch();
    ok(store.release_lease(second).await, C);
    let third = ok(store.acquire_lease(run, LONG).await, C);
    assert!(
        third.epoch() > last,
        "{C}: a lease after the run was deleted has a greater epoch ({} after {last})",
        third.epoch()
    );
    ok(store.release_lease(third).await, C);
    ok(store.release_lease(other).await, C);
    let again = ok(store.acquire_lease("leased2", LONG).await, C);
    ok(store.release_lease(again).await, C);
    expect_empty(store, C).await;
}

/// An expired lease frees its run: another owner takes it with a greater epoch, after which
/// the old owner's renewals and batches fail with [`StoreError::Fenced`] (nothing of them
/// applied) and its release leaves the new lease alone. A lease that expired but was not
/// taken over still renews and writes.
pub async fn lease_expiry(store: &dyn CheckpointStore) {
    const C: &str = "lease_expiry";
    expect_empty(store, C).await;
    let run = "expiring";
    let short = Duration::from_millis(30);
    let old = ok(store.acquire_lease(run, short).await, C);
    tokio::time::sleep(short * 3).await;
    // Expired, not taken over: still the owner.
    ok(
        store.renew_lease(&old, short).await,
        &format!("{C}: renewing an expired lease nobody took over"),
    );
    let mut batch = WriteBatch::new();
    batch
        .fence(run, old.epoch())
        .put_run(record(run, RunStatus::Running, 1));
    commit(
        store,
        batch,
        &format!("{C}: writing with an expired lease nobody took over"),
    )
    .await;

    tokio::time::sleep(short * 3).await;
    let new = ok(
        store.acquire_lease(run, LONG).await,
        &format!("{C}: taking over an expired lease"),
    );
    assert!(
        new.epoch() > old.epoch(),
        "{C}: the new owner has a greater epoch ({} after {})",
        new.epoch(),
        old.epoch()
    );
    expect_fenced(
        store.renew_lease(&old, LONG).await,
        run,
        old.epoch(),
        new.epoch(),
        &format!("{C}: renewing a lease taken over"),
    );
    let mut batch = WriteBatch::new();
    batch
        .fence(run, old.epoch())
        .put_run(record(run, RunStatus::Failed, 2))
        .put_checkpoint(run, 0, bytes("stale"));
    expect_fenced(
        store.commit(batch).await,
        run,
        old.epoch(),
        new.epoch(),
        &format!("{C}: the old owner's batch"),
    );
    assert_eq!(
        ok(store.get_run(run).await, C),
        Some(record(run, RunStatus::Running, 1)),
        "{C}: nothing of the old owner's batch applied"
    );
    assert_eq!(
        ok(store.get_checkpoint(run, 0).await, C),
        None,
        "{C}: no checkpoint"
    );
    ok(
        store.release_lease(old).await,
        &format!("{C}: releasing a lease taken over"),
    );
    assert!(
        matches!(
            store.acquire_lease(run, LONG).await,
            Err(StoreError::RunBusy { .. })
        ),
        "{C}: releasing the old lease leaves the new one held"
    );
    let mut batch = WriteBatch::new();
    batch.fence(run, new.epoch()).delete_run(run);
    commit(store, batch, &format!("{C}: the new owner writes")).await;
    ok(store.release_lease(new).await, C);
    expect_empty(store, C).await;
}

/// A damaged run record is [`StoreError::Corrupt`] naming the run, from `get_run` and from
/// `list_runs`, never a panic; a record stored under another run's id is damage too; and
/// [`Op::DeleteRun`] still removes it.
///
/// `put_raw_run` overwrites the raw bytes stored for a run's record.
pub async fn corrupt_run_record(store: &dyn CheckpointStore, put_raw_run: PutRawRun<'_>) {
    const C: &str = "corrupt_run_record";
    expect_empty(store, C).await;
    let r = "damaged/run";
    let mut batch = WriteBatch::new();
    batch.put_run(record(r, RunStatus::Running, 0));
    commit(store, batch, C).await;
    let good =
        crate::record::encode_run(&record(r, RunStatus::Running, 0)).expect("a record encodes");
    let mut flipped = good.clone();
    *flipped.last_mut().expect("not empty") ^= 0x10;
    let foreign = crate::record::encode_run(&record("other", RunStatus::Running, 0))
        .expect("a record encodes");
    let damages: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("bit flip", flipped),
        ("foreign bytes", b"{\"run_id\": \"damaged/run\"}".to_vec()),
        ("another run's record", foreign),
    ];
    for (damage, raw) in damages {
        put_raw_run(r, raw);
        for (how, result) in [
            ("get_run", store.get_run(r).await.map(|_| ())),
            ("list_runs", store.list_runs(None, 10).await.map(|_| ())),
        ] {
            match result {
                Err(StoreError::Corrupt { what, .. }) => assert!(
                    what.contains(r),
                    "{C}: {how} of a record with damage `{damage}`: the error must name the run, got {what:?}"
                ),
                other => panic!(
                    "{C}: {how} of a record with damage `{damage}` must fail with Corrupt, got {other:?}"
                ),
            }
        }
    }
    delete_runs(store, &[r], C).await;
}
