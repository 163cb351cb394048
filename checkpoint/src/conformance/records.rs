//! Run records, checkpoints, blobs, pending writes, events, pruning.

use super::*;

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
