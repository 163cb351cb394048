//! Values of every size, read back whole.

use super::*;

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
