//! Runs whose ids are prefixes of each other stay apart; batches apply in order.

use super::*;

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
