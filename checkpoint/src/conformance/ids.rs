//! Invalid run ids are refused everywhere.

use super::*;

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
