//! The background writer of [`Durability::Async`](crate::Durability::Async): a group commit
//! that keeps draining. Writes queue up while a group is being committed; the writer commits
//! whatever has queued, until nothing has, so a finished step never waits in memory for the
//! run's next write, only for the delay below (a node that runs for an hour leaves the steps
//! before it in the store, and a monitor sees them).
//!
//! **Commits and flushes are grouped by time.** A flush makes everything committed before it
//! durable, and stalls the commits that overlap it (sled's do); a sled commit also writes its
//! log on both sides of the batch, so each commit costs synced writes of its own. The writer
//! therefore commits a group once its oldest write is [`FLUSH_DELAY`] old, and flushes right
//! after: a run whose steps come faster than that is committed and flushed once per delay,
//! and a run that ends sooner is written once, by its end (`Persister::end_async`), which
//! takes back the group the writer has not committed, commits it with its last writes in one
//! batch and flushes. So a killed process loses at most the steps of the last
//! [`FLUSH_DELAY`] plus one commit and flush, never reorders them, and a finished run is
//! durable when it returns. A monitor sees a step at most that long after it ended, whatever
//! the run does next.
//!
//! On a multi-threaded runtime, the writer waits for its first group to be due on the
//! runtime's timer (a task, not a thread), and takes a thread of the blocking pool only then,
//! for the commits and flushes (stores may block: sled does): a run that ends within
//! [`FLUSH_DELAY`] wakes no thread. On a current-thread runtime, where a node that blocks
//! holds the one thread, it waits on the blocking pool from the start.
//!
//! The writer holds the run's lease only while it has a group to commit (a flush writes
//! nothing new), so a resume never races a group still being written.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agentgraph_checkpoint::{CheckpointStore, StoreError, WriteBatch};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// How long a write of an `Async` run may wait to be committed and flushed: the longest a
/// killed process may lose of it, beyond the commit and flush under way.
pub(crate) const FLUSH_DELAY: Duration = Duration::from_millis(2);

/// What waits to be written, and what became of the writes so far.
#[derive(Default)]
struct Queue {
    /// The next group, in write order.
    held: WriteBatch,
    /// The newest checkpoint step in `held`.
    held_step: Option<u64>,
    /// When the oldest write in `held` was queued.
    held_since: Option<Instant>,
    /// Whether a writer is running (it drains `held` before it stops).
    running: bool,
    /// Whether the writer took a group it has not committed yet.
    committing: bool,
    /// The run is ending (or must see its writes committed now): the writer stops without
    /// committing or flushing anything more; `close` takes back what is queued.
    closing: bool,
    /// The run's ownership while a group waits to be committed (`None` otherwise).
    lease: Option<Arc<super::RunOwnership>>,
    /// The newest checkpoint step committed.
    committed: Option<u64>,
    /// A group failed: nothing after it is written.
    error: Option<StoreError>,
    /// The writer panicked: nothing more is written, and `drain` says how it ended.
    lost: bool,
}

impl Queue {
    /// A group or a flush failed: nothing queued after it is written, and the run is released.
    fn fail(&mut self, e: StoreError) {
        self.error = Some(e);
        self.held = WriteBatch::new();
        self.held_step = None;
        self.held_since = None;
        self.running = false;
        self.committing = false;
        self.lease = None;
    }
}

/// The queue, with what wakes the writer (new work, the end) and what wakes the run (a
/// group committed, the writer stopped).
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    /// Wakes a writer that waits for its first group to be due (`wait_due`) when the run
    /// closes it.
    closed: Notify,
    progress: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Queues groups of writes for a background writer on the blocking pool (stores may block:
/// sled does), at most one at a time per run, so groups are committed in order.
#[derive(Default)]
pub(crate) struct GroupWriter {
    shared: Arc<Shared>,
    /// The writer running or last run.
    handle: Option<JoinHandle<()>>,
}

/// Wakes the run when the writer stops, however it stops; when it panicked, marks it lost
/// first (`drain` then reports how it ended).
struct WakeOnDrop<'a>(&'a Shared);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.lock();
            q.lost = true;
            q.committing = false;
            q.held = WriteBatch::new();
            q.lease = None;
        }
        self.0.progress.notify_waiters();
    }
}

/// What the writer does next.
enum Next {
    /// Commit the group, then flush.
    Commit(WriteBatch, Option<u64>),
    Stop,
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
        let mut queue = self.shared.lock();
        if let Some(e) = queue.error.take() {
            return Err(e.into());
        }
        if queue.lost {
            // Reported by the run's end (`close`, `drain`).
            return Ok(());
        }
        let was_empty = queue.held.is_empty();
        queue.held.extend(batch.into_ops());
        if step.is_some() {
            queue.held_step = step;
        }
        if queue.held.is_empty() {
            return Ok(());
        }
        if was_empty {
            queue.held_since = Some(Instant::now());
        }
        queue.closing = false;
        if queue.lease.is_none() {
            queue.lease = Some(lease.clone());
        }
        if queue.running {
            drop(queue);
            if was_empty {
                // A writer waiting with nothing queued learns when this group is due.
                self.shared.work.notify_one();
            }
            return Ok(());
        }
        queue.running = true;
        drop(queue);
        let (shared, store) = (self.shared.clone(), store.clone());
        let runtime = tokio::runtime::Handle::current();
        // On a multi-threaded runtime, the writer waits for its first group to be due on the
        // runtime's timer, and takes a thread of the blocking pool only then: a run that ends
        // sooner (most runs of a few steps) wakes no thread and switches to none, its end
        // writing everything. On a current-thread runtime it waits on the blocking pool from
        // the start, so that a node that holds the one thread for long does not hold back the
        // commits of the steps before it.
        let on_timer = runtime.runtime_flavor() == RuntimeFlavor::MultiThread;
        self.handle = Some(if on_timer {
            tokio::spawn(async move {
                if !wait_due(&shared).await {
                    return;
                }
                let writing =
                    tokio::task::spawn_blocking(move || write_groups(&shared, &store, &runtime));
                if let Err(e) = writing.await
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            })
        } else {
            tokio::task::spawn_blocking(move || write_groups(&shared, &store, &runtime))
        });
        Ok(())
    }

    /// Stops the writer: waits until the group it is committing (if any) is committed, and
    /// hands back, in write order, what it had queued and not committed, with the newest
    /// checkpoint step in it: the caller commits that before anything else (with the run's
    /// last writes, in one batch) and flushes. Reports a failed group.
    pub(crate) async fn close(&mut self) -> Result<(WriteBatch, Option<u64>)> {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        self.shared.closed.notify_one();
        let shared = self.shared.clone();
        loop {
            let notified = shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lost = {
                let mut q = shared.lock();
                if let Some(e) = q.error.take() {
                    return Err(e.into());
                }
                if !q.lost && !q.committing {
                    let group = std::mem::take(&mut q.held);
                    let step = q.held_step.take();
                    q.held_since = None;
                    // The caller writes the group under its own ownership of the run.
                    let lease = q.lease.take();
                    drop(q);
                    drop(lease);
                    return Ok((group, step));
                }
                q.lost
            };
            if lost {
                return self.drain().await.map(|()| (WriteBatch::new(), None));
            }
            notified.await;
        }
    }

    /// Waits until everything queued is written, and reports a failed group.
    pub(crate) async fn drain(&mut self) -> Result<()> {
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .map_err(|e| Error::WriterLost { end: e.into() })?;
        }
        match self.shared.lock().error.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The newest checkpoint step the writer committed.
    pub(crate) fn committed(&self) -> Option<u64> {
        self.shared.lock().committed
    }
}

/// The writer's work on the blocking pool: commits each group once due, then flushes, until
/// nothing is queued or the run closes it.
fn write_groups(
    shared: &Shared,
    store: &Arc<dyn CheckpointStore>,
    runtime: &tokio::runtime::Handle,
) {
    let _wake = WakeOnDrop(shared);
    loop {
        match next(shared) {
            Next::Stop => return,
            Next::Commit(group, step) => {
                let committed = runtime.block_on(store.commit(group));
                let released = {
                    let mut q = shared.lock();
                    q.committing = false;
                    if let Err(e) = committed {
                        // What queued after the failed group is dropped, never written.
                        q.fail(e);
                        return;
                    }
                    q.committed = step.or(q.committed);
                    if q.held.is_empty() {
                        q.lease.take()
                    } else {
                        None
                    }
                };
                drop(released);
                shared.progress.notify_waiters();
                if let Err(e) = runtime.block_on(store.flush()) {
                    shared.lock().fail(e);
                    return;
                }
            }
        }
    }
}

/// Waits on the runtime's timer until the oldest queued write is [`FLUSH_DELAY`] old: `true`
/// then, `false` (the writer stopped) when the run closed the writer or took everything first.
async fn wait_due(shared: &Shared) -> bool {
    loop {
        let closed = shared.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        let due = {
            let mut q = shared.lock();
            if q.closing || q.held.is_empty() {
                q.running = false;
                drop(q);
                shared.progress.notify_waiters();
                return false;
            }
            q.held_since.map(|since| since + FLUSH_DELAY)
        };
        match due {
            Some(due) if due > Instant::now() => {
                // Due, or closed: either way the state says what is next.
                let _ = tokio::time::timeout_at(due.into(), &mut closed).await;
            }
            _ => return true,
        }
    }
}

/// The writer's next move: commit (and flush) what queued once its oldest write is
/// [`FLUSH_DELAY`] old, or stop when nothing is queued or the run is closing it (`close`
/// takes back what is queued then).
fn next(shared: &Shared) -> Next {
    let mut q = shared.lock();
    loop {
        if q.closing || q.held.is_empty() {
            q.running = false;
            return Next::Stop;
        }
        let left = q.held_since.map_or(Duration::ZERO, |since| {
            FLUSH_DELAY.saturating_sub(since.elapsed())
        });
        if left.is_zero() {
            q.committing = true;
            q.held_since = None;
            return Next::Commit(std::mem::take(&mut q.held), q.held_step.take());
        }
        q = shared
            .work
            .wait_timeout(q, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}
