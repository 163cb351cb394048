//! Power-loss durability of the redb store: a simulated disk (`support/power_cut.rs`) loses
//! every write that was not synced when its power is cut, at any operation of a sequence of
//! fenced batches and flushes; torn, it also keeps a random subset of the unsynced sectors.
//! The store must open again on what survived, with every step whose flush returned (an
//! acknowledged step, as the engine's `Durability::Sync` waits for) there and intact, every
//! batch whole or absent, and the steps a prefix.
#![cfg(feature = "redb")]

#[path = "support/power_cut.rs"]
mod power_cut;

use std::time::Duration;

use agentgraph_checkpoint::{
    CheckpointStore, RedbStore, RunRecord, RunStatus, StoreError, WriteBatch,
};
use power_cut::Disk;
use proptest::prelude::*;

const RUN: &str = "run/1";
const STEPS: u64 = 24;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// The checkpoint of step `step`: some steps' are large (several redb pages).
fn payload(step: u64, what: u8) -> Vec<u8> {
    let len = if step % 5 == 3 {
        20_000
    } else {
        100 + step as usize
    };
    (0..len)
        .map(|i| (i as u64 ^ step.wrapping_mul(31) ^ u64::from(what)) as u8)
        .collect()
}

/// Runs steps until the power goes (or all are done); returns the last acknowledged step.
async fn workload(store: &RedbStore) -> Option<u64> {
    let mut acked = None;
    let Ok(lease) = store.acquire_lease(RUN, Duration::from_secs(600)).await else {
        return acked;
    };
    for step in 0..STEPS {
        // A task's pending write, then the step's checkpoint superseding it, as the engine
        // writes them.
        let mut batch = WriteBatch::new();
        batch
            .fence(RUN, lease.epoch())
            .put_pending_write(RUN, step, 0, payload(step, b'w'));
        if store.commit(batch).await.is_err() {
            return acked;
        }
        let mut record = RunRecord::new(RUN, RunStatus::Running, 7, 0);
        record.last_step = Some(step);
        let mut batch = WriteBatch::new();
        batch
            .fence(RUN, lease.epoch())
            .put_checkpoint(RUN, step, payload(step, b'c'))
            .put_blob(RUN, 0, step, payload(step, b'b'))
            .put_event(RUN, step, payload(step, b'e'))
            .delete_pending_writes(RUN, step)
            .put_run(record);
        if step >= 4 {
            batch.delete_checkpoints_before(RUN, step - 3);
        }
        if store.commit(batch).await.is_err() || store.flush().await.is_err() {
            return acked;
        }
        acked = Some(step);
    }
    acked
}

/// Checks what the store holds after the cut against the steps acknowledged before it.
async fn check(store: &RedbStore, acked: Option<u64>) -> Result<(), TestCaseError> {
    let latest = store.latest_checkpoint(RUN).await.unwrap();
    let Some((last, bytes)) = latest else {
        prop_assert_eq!(
            acked,
            None,
            "acknowledged steps are missing after the power cut"
        );
        prop_assert!(store.get_run(RUN).await.unwrap().is_none());
        return Ok(());
    };
    if let Some(acked) = acked {
        prop_assert!(
            last >= acked,
            "step {acked} was acknowledged, only step {last} survived"
        );
    }
    // At most the step in flight when the power went, on top of the acknowledged ones.
    prop_assert!(last <= acked.map_or(0, |a| a + 1));
    prop_assert_eq!(bytes, payload(last, b'c'));
    let record = store.get_run(RUN).await.unwrap().expect("the run's record");
    prop_assert_eq!(
        record.last_step,
        Some(last),
        "the record is of the same batch"
    );
    // The kept checkpoints (pruned to the last four), blobs and events of every step.
    let kept = store.list_checkpoints(RUN, None, usize::MAX).await.unwrap();
    let first = if last >= 4 { last - 3 } else { 0 };
    prop_assert_eq!(
        kept.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (first..=last).collect::<Vec<_>>()
    );
    for (step, bytes) in &kept {
        prop_assert_eq!(bytes, &payload(*step, b'c'));
    }
    let blobs = store.get_blobs(RUN, 0, 0, u64::MAX).await.unwrap();
    prop_assert_eq!(blobs.len() as u64, last + 1);
    for (step, bytes) in &blobs {
        prop_assert_eq!(bytes, &payload(*step, b'b'));
    }
    prop_assert_eq!(store.last_event(RUN).await.unwrap(), Some(last));
    for step in 0..=last {
        prop_assert!(
            store
                .get_pending_writes(RUN, step)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let next = store.get_pending_writes(RUN, last + 1).await.unwrap();
    prop_assert!(next.is_empty() || next == vec![(0, payload(last + 1, b'w'))]);
    Ok(())
}

/// A store on a fresh disk whose power goes after `ops` operations of the workload, torn or
/// not; then the store opens on what survived and is checked, and takes new writes.
fn cut_and_check(ops: u64, torn: Option<u64>) -> Result<(), TestCaseError> {
    let rt = rt();
    let disk = Disk::default();
    let store = RedbStore::with_backend(disk.backend()).unwrap();
    disk.cut_after(ops);
    let acked = rt.block_on(workload(&store));
    drop(store);
    let survived = disk.survivors(torn);
    let disk = Disk::with(survived);
    let store = match RedbStore::with_backend(disk.backend()) {
        Ok(store) => store,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "the store does not open after a power cut at operation {ops} (torn: {torn:?}, acknowledged: {acked:?}): {e}"
            )));
        }
    };
    rt.block_on(async {
        check(&store, acked).await?;
        // It takes writes again, under a new lease.
        let lease = store
            .acquire_lease(RUN, Duration::from_secs(1))
            .await
            .unwrap();
        let mut batch = WriteBatch::new();
        batch
            .fence(RUN, lease.epoch())
            .put_checkpoint(RUN, STEPS, vec![1]);
        store.commit(batch).await.unwrap();
        store.flush().await.unwrap();
        Ok(())
    })
}

/// The operations the whole workload makes, without a cut.
fn total_ops() -> u64 {
    let rt = rt();
    let disk = Disk::default();
    let store = RedbStore::with_backend(disk.backend()).unwrap();
    disk.cut_after(u64::MAX);
    let acked = rt.block_on(workload(&store));
    assert_eq!(acked, Some(STEPS - 1));
    assert!(disk.syncs() > STEPS, "every flush syncs");
    drop(store);
    disk.ops()
}

#[test]
fn every_flushed_step_survives_a_power_cut_at_each_operation() {
    let total = total_ops();
    assert!(total > 100, "the workload makes {total} operations");
    eprintln!("cutting the power at each of {total} operations");
    for ops in 0..total {
        if let Err(e) = cut_and_check(ops, None) {
            panic!("{e}");
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Torn: the cut also keeps a random subset of the sectors written since the last sync.
    #[test]
    fn every_flushed_step_survives_a_torn_power_cut(ops in 0u64..500, seed in any::<u64>()) {
        cut_and_check(ops, Some(seed))?;
    }
}

/// A power cut while `RedbStore::with_backend` creates the store in place: what survives is
/// empty (the store is created again), a whole store, or a file the store refuses with
/// `StoreError::Corrupt` saying that a crash during creation leaves it so, never a panic or
/// another error. (`RedbStore::open` creates a store in a temporary file renamed once
/// complete, so a path never names such a file: see `store_redb_crash.rs`.)
#[test]
fn a_power_cut_while_creating_in_place_is_reported() {
    let creation_ops = {
        let disk = Disk::default();
        disk.cut_after(u64::MAX);
        drop(RedbStore::with_backend(disk.backend()).unwrap());
        disk.ops()
    };
    let mut refused = 0;
    for ops in 0..=creation_ops {
        for torn in [None, Some(ops * 7 + 1)] {
            let disk = Disk::default();
            disk.cut_after(ops);
            let created = RedbStore::with_backend(disk.backend());
            drop(created);
            let disk = Disk::with(disk.survivors(torn));
            match RedbStore::with_backend(disk.backend()) {
                Ok(store) => {
                    let rt = rt();
                    rt.block_on(async {
                        assert!(store.list_runs(None, 10).await.unwrap().is_empty());
                        let mut batch = WriteBatch::new();
                        batch.put_checkpoint(RUN, 0, vec![1]);
                        store.commit(batch).await.unwrap();
                        store.flush().await.unwrap();
                    });
                }
                Err(StoreError::Corrupt { what, .. }) => {
                    assert!(
                        what.contains("crash during its creation"),
                        "cut at {ops}: {what}"
                    );
                    refused += 1;
                }
                Err(e) => panic!("a power cut at operation {ops} of the creation: {e}"),
            }
        }
    }
    // redb's in-place creation is not atomic: some cut leaves a refused file.
    eprintln!(
        "{refused} of {} cuts left a refused file",
        2 * (creation_ops + 1)
    );
}
