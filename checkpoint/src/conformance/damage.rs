//! A damaged run record is reported, never half-read.

use super::*;

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
