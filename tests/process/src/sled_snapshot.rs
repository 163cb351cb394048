//! What the sled snapshot crash test (`tests/sled_snapshot.rs`) and its child process
//! (`src/bin/sled_snapshot_child.rs`) share: the run they write and the lines the child prints.

#![allow(dead_code, unreachable_pub)]

use agentgraph::store::{CheckpointStore, RunRecord, RunStatus, SledStore, WriteBatch};

pub const RUN: &str = "snap";

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn step_bytes(step: u64) -> Vec<u8> {
    format!("checkpoint of step {step}").into_bytes()
}

/// Commits and flushes the checkpoints `steps` of [`RUN`].
pub fn write_steps(store: &SledStore, steps: std::ops::Range<u64>) {
    block_on(async {
        for step in steps {
            let mut batch = WriteBatch::new();
            let mut record = RunRecord::new(RUN, RunStatus::Running, 1, 0);
            record.last_step = Some(step);
            batch
                .put_run(record)
                .put_checkpoint(RUN, step, step_bytes(step));
            store.commit(batch).await.unwrap();
            store.flush().await.unwrap();
        }
    });
}

pub const CHILD_DIR: &str = "AGENTGRAPH_SNAPSHOT_CHILD_DIR";
/// The child's lines: before it opens the store, once it is open, after each durable step.
pub const OPENING: &str = "opening";
pub const OPEN: &str = "open";
pub const ACKED: &str = "acked ";
