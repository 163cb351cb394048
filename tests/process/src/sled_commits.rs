//! What the sled commit crash test (`tests/sled_commits.rs`) and its child process
//! (`src/bin/sled_commits_child.rs`) share: the batches the child commits, the lines it
//! prints, and what the store must hold after a kill.

#![allow(dead_code, unreachable_pub)]

use agentgraph::store::{CheckpointStore, RunRecord, RunStatus, SledStore, WriteBatch};

pub const RUN: &str = "commits";
/// The pending writes of each step.
pub const TASKS: u32 = 8;
/// The child flushes after every this many batches (so most batches are not flushed yet
/// when a kill lands, and sled writes its log buffer when it fills, often inside a batch).
pub const FLUSH_EVERY: u64 = 100;
/// Every this many steps the checkpoint is too large for the store's journal (40 KiB), so
/// that batch goes through sled's own batch.
pub const LARGE_EVERY: u64 = 7;

pub const CHILD_DIR: &str = "AGENTGRAPH_COMMITS_CHILD_DIR";
/// The child's lines: once the store is open, and after each flush (with the last step).
pub const OPEN: &str = "open";
pub const ACKED: &str = "acked ";

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// `len` bytes that say which value they are (so a value of another step never passes).
fn filled(label: String, len: usize) -> Vec<u8> {
    label.into_bytes().into_iter().cycle().take(len).collect()
}

pub fn checkpoint_bytes(step: u64) -> Vec<u8> {
    let len = if step.is_multiple_of(LARGE_EVERY) {
        40 * 1024
    } else {
        200 + (step * 37 % 2000) as usize
    };
    filled(format!("checkpoint {step};"), len)
}

pub fn pending_bytes(step: u64, task: u32) -> Vec<u8> {
    filled(
        format!("write {step}/{task};"),
        100 + (step as usize * 13 + task as usize * 101) % 900,
    )
}

/// Step `step`'s batch: the run record, the checkpoint (the older one removed), the step's
/// pending writes (the previous step's removed).
pub fn batch(step: u64) -> WriteBatch {
    let mut record = RunRecord::new(RUN, RunStatus::Running, 1, 0);
    record.last_step = Some(step);
    let mut batch = WriteBatch::new();
    batch
        .put_run(record)
        .put_checkpoint(RUN, step, checkpoint_bytes(step))
        .delete_checkpoints_before(RUN, step);
    if step > 0 {
        batch.delete_pending_writes(RUN, step - 1);
    }
    for task in 0..TASKS {
        batch.put_pending_write(RUN, step, task, pending_bytes(step, task));
    }
    batch
}

/// The step whose batch the store holds whole, after checking that it holds exactly one
/// batch's writes: `None` before the first batch.
pub fn held_step(store: &SledStore) -> Result<Option<u64>, String> {
    block_on(async {
        let checkpoints = store
            .list_checkpoints(RUN, None, 10)
            .await
            .map_err(|e| e.to_string())?;
        let Some(record) = store.get_run(RUN).await.map_err(|e| e.to_string())? else {
            return if checkpoints.is_empty() {
                Ok(None)
            } else {
                Err(format!("checkpoints without a run record: {checkpoints:?}"))
            };
        };
        let step = record.last_step.ok_or("a run record without a step")?;
        let steps: Vec<u64> = checkpoints.iter().map(|(s, _)| *s).collect();
        if steps != [step] {
            return Err(format!(
                "the record says step {step}; the checkpoints are {steps:?}"
            ));
        }
        if checkpoints[0].1 != checkpoint_bytes(step) {
            return Err(format!("checkpoint {step} has other bytes"));
        }
        let writes = store
            .get_pending_writes(RUN, step)
            .await
            .map_err(|e| e.to_string())?;
        let expected: Vec<(u32, Vec<u8>)> =
            (0..TASKS).map(|t| (t, pending_bytes(step, t))).collect();
        if writes != expected {
            let tasks: Vec<u32> = writes.iter().map(|(t, _)| *t).collect();
            return Err(format!(
                "step {step}'s pending writes are tasks {tasks:?}, or other bytes"
            ));
        }
        if step > 0 {
            let older = store
                .get_pending_writes(RUN, step - 1)
                .await
                .map_err(|e| e.to_string())?;
            if !older.is_empty() {
                return Err(format!(
                    "step {}'s pending writes are still there",
                    step - 1
                ));
            }
        }
        Ok(Some(step))
    })
}
