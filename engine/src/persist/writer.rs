//! The background writer of [`Durability::Async`](crate::Durability::Async): a group commit
//! that keeps draining. Writes queue up while a group is being committed; the writer commits
//! and flushes whatever has queued, until nothing has, so a finished step never waits in
//! memory for the run's next write (a node that runs for an hour leaves the steps before it
//! on disk, and a monitor sees them).

use std::sync::{Arc, Mutex, MutexGuard};

use agentgraph_checkpoint::{CheckpointStore, StoreError, WriteBatch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// What waits to be written, and what became of the writes so far.
#[derive(Default)]
struct Queue {
    /// The next group, in write order.
    held: WriteBatch,
    /// The newest checkpoint step in `held`.
    held_step: Option<u64>,
    /// Whether a writer is running (it drains `held` before it stops).
    running: bool,
    /// The newest checkpoint step committed.
    committed: Option<u64>,
    /// A group failed: nothing after it is written.
    error: Option<StoreError>,
}

/// Queues groups of writes for a background writer on the blocking pool (stores may block:
/// sled does), at most one at a time per run, so groups are committed in order.
#[derive(Default)]
pub(crate) struct GroupWriter {
    queue: Arc<Mutex<Queue>>,
    /// The writer running or last run.
    handle: Option<JoinHandle<()>>,
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupWriter {
    /// Queues `batch` (with the newest checkpoint step it holds), and starts a writer if none
    /// is running. Fails, queuing nothing, when an earlier group failed.
    pub(crate) fn push(
        &mut self,
        batch: WriteBatch,
        step: Option<u64>,
        store: &Arc<dyn CheckpointStore>,
        lease: &Arc<super::RunOwnership>,
    ) -> Result<()> {
        let mut queue = lock(&self.queue);
        if let Some(e) = queue.error.take() {
            return Err(e.into());
        }
        queue.held.extend(batch.into_ops());
        if step.is_some() {
            queue.held_step = step;
        }
        if queue.running || queue.held.is_empty() {
            return Ok(());
        }
        queue.running = true;
        drop(queue);
        let queue = self.queue.clone();
        let store = store.clone();
        // The run is released only when the writer is done too, so that a resume never races
        // a group still being written.
        let lease = lease.clone();
        let runtime = tokio::runtime::Handle::current();
        self.handle = Some(tokio::task::spawn_blocking(move || {
            let _lease = lease;
            loop {
                let (group, step) = {
                    let mut q = lock(&queue);
                    if q.held.is_empty() {
                        q.running = false;
                        return;
                    }
                    (std::mem::take(&mut q.held), q.held_step.take())
                };
                let result = runtime.block_on(async {
                    store.commit(group).await?;
                    store.flush().await
                });
                let mut q = lock(&queue);
                match result {
                    Ok(()) => q.committed = step.or(q.committed),
                    Err(e) => {
                        // What queued after the failed group is dropped, never written.
                        q.error = Some(e);
                        q.held = WriteBatch::new();
                        q.held_step = None;
                        q.running = false;
                        return;
                    }
                }
            }
        }));
        Ok(())
    }

    /// Waits until everything queued is written, and reports a failed group.
    pub(crate) async fn drain(&mut self) -> Result<()> {
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .map_err(|e| Error::WriterLost { end: e.into() })?;
        }
        match lock(&self.queue).error.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The newest checkpoint step the writer committed.
    pub(crate) fn committed(&self) -> Option<u64> {
        lock(&self.queue).committed
    }
}
