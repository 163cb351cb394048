//! Deleting runs whose time to live is over: [`CheckpointStore::sweep_expired`]'s provided
//! body, and the [`Sweeper`] that calls it periodically.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::{AuditAction, AuditRecord};
use crate::error::{Result, StoreError};
use crate::store::{CheckpointStore, IntoStore, Lease, WriteBatch};

/// The caller the audit entry of a run deleted by a sweep names.
pub(crate) const SWEEPER_CALLER: &str = "sweeper";

/// What separates a run's id from the node and task of one of its subgraph runs: the runs of
/// run `r`'s subgraphs are named `{r}/@{node}/{task}` (nested ones nest these), and the
/// engine refuses a new run whose id contains the mark.
///
/// # Examples
///
/// ```
/// assert!("chat-1/@summarize/0196".starts_with(&format!("chat-1{}", agentgraph_checkpoint::SUBGRAPH_MARK)));
/// ```
pub const SUBGRAPH_MARK: &str = "/@";

/// How long a sweep holds the lease of a run it deletes.
const SWEEP_LEASE: Duration = Duration::from_secs(30);

/// How many run records a sweep reads at a time.
const PAGE: usize = 256;

/// The body of [`CheckpointStore::sweep_expired`].
pub(crate) async fn sweep_expired<S: CheckpointStore + ?Sized>(
    store: &S,
    now_ms: u64,
) -> Result<Vec<String>> {
    // The expired runs first, then each deleted: deleting while paging would move the cursor
    // past nothing, but listing first keeps each page read once.
    let mut expired = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_runs(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.run_id.clone());
        expired.extend(
            page.into_iter()
                .filter(|r| r.is_expired(now_ms))
                .map(|r| r.run_id),
        );
    }
    let mut deleted = Vec::new();
    for run in expired {
        // A subgraph run deleted with its parent before is not found again.
        if sweep_one(store, &run, now_ms).await? {
            deleted.push(run);
        }
    }
    // Expired memory items go too (each only if still expired as the batch applies).
    crate::items::sweep_items(store, now_ms).await?;
    Ok(deleted)
}

/// Deletes `run` and its subgraph runs if it is still expired and no one holds it; whether
/// it did.
async fn sweep_one<S: CheckpointStore + ?Sized>(store: &S, run: &str, now_ms: u64) -> Result<bool> {
    let Some(lease) = take(store, run).await? else {
        return Ok(false);
    };
    let mut leases = vec![lease];
    let result = async {
        // Read again under the lease: the run may have been written (its expiry moved on) or
        // deleted since it was listed.
        match store.get_run(run).await? {
            Some(record) if record.is_expired(now_ms) => {}
            _ => return Ok(false),
        }
        let mut batch = WriteBatch::new();
        batch.fence(run, leases[0].epoch()).delete_run(run);
        for child in child_runs(store, run).await? {
            let Some(lease) = take(store, &child).await? else {
                // A subgraph run in use: its parent is too, in all but name.
                return Ok(false);
            };
            batch.fence(&child, lease.epoch()).delete_run(&child);
            leases.push(lease);
        }
        if store.supports_audit() {
            let expired = serde_json::json!({"expired": true, "children": leases.len() - 1});
            batch.put_audit(
                run,
                AuditRecord::new(SWEEPER_CALLER, AuditAction::Deleted)
                    .with_details(expired)
                    .at(now_ms),
            );
        }
        store.commit(batch).await?;
        store.flush().await?;
        Ok(true)
    }
    .await;
    for lease in leases {
        let id = lease.run().to_owned();
        if let Err(e) = store.release_lease(lease).await {
            // The lease expires on its own; the run is deleted or kept already.
            tracing::debug!(run = %id, error = %e, "sweep: releasing a lease failed");
        }
    }
    result
}

/// The lease of `run`, or `None` when it is in use.
async fn take<S: CheckpointStore + ?Sized>(store: &S, run: &str) -> Result<Option<Lease>> {
    match store.acquire_lease(run, SWEEP_LEASE).await {
        Ok(lease) => Ok(Some(lease)),
        Err(StoreError::RunBusy { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The ids of the runs of `run`'s subgraphs (nested ones too), in id order.
async fn child_runs<S: CheckpointStore + ?Sized>(store: &S, run: &str) -> Result<Vec<String>> {
    let prefix = format!("{run}{SUBGRAPH_MARK}");
    let mut after = prefix.clone();
    let mut out = Vec::new();
    loop {
        let page = store.list_runs(Some(&after), PAGE).await?;
        let read = page.len();
        let children: Vec<String> = page
            .into_iter()
            .map(|r| r.run_id)
            .take_while(|id| id.starts_with(&prefix))
            .collect();
        let more = read == PAGE && children.len() == read;
        out.extend(children);
        match out.last() {
            Some(last) if more => after.clone_from(last),
            _ => return Ok(out),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A background task that sweeps a store's expired runs
/// ([`CheckpointStore::sweep_expired`]) every so often: what the owner of a store starts
/// once, next to the program's runs. It sweeps once at once, then after each period; a sweep
/// that fails is reported with `tracing` (a warning) and tried again at the next period.
/// It stops when dropped (a sweep under way is abandoned between two runs: each run's
/// deletion is one atomic batch) or, after the sweep under way, with
/// [`stop`](Sweeper::stop).
///
/// Needs a tokio runtime.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, RunRecord, RunStatus, Sweeper, WriteBatch};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> agentgraph_checkpoint::Result<()> {
///     let store = Arc::new(MemoryStore::new());
///     let mut batch = WriteBatch::new();
///     // Written long ago, kept for a second.
///     batch.put_run(RunRecord::new("old", RunStatus::Completed, 7, 1_000).with_ttl(Duration::from_secs(1)));
///     store.commit(batch).await?;
///
///     let sweeper = Sweeper::spawn(store.clone(), Duration::from_millis(10));
///     while sweeper.swept() == 0 {
///         tokio::time::sleep(Duration::from_millis(5)).await;
///     }
///     assert!(store.get_run("old").await?.is_none());
///     sweeper.stop().await;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
#[must_use = "the sweeper stops when dropped"]
pub struct Sweeper {
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
    swept: Arc<AtomicU64>,
}

impl Sweeper {
    /// Starts sweeping `store` (by value or shared: see [`IntoStore`]) now and every `every`
    /// (at least a millisecond) after.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(store: impl IntoStore, every: Duration) -> Sweeper {
        let store = store.into_store();
        let every = every.max(Duration::from_millis(1));
        let swept = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = oneshot::channel();
        let count = swept.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tick.tick() => {}
                }
                match store.sweep_expired(now_ms()).await {
                    Ok(deleted) if deleted.is_empty() => {}
                    Ok(deleted) => {
                        tracing::info!(runs = ?deleted, "swept {} expired run(s)", deleted.len());
                        count.fetch_add(deleted.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "sweeping expired runs failed"),
                }
            }
        });
        Sweeper {
            task: Some(task),
            stop: Some(stop),
            swept,
        }
    }

    /// How many runs it has deleted so far (not counting their subgraph runs).
    pub fn swept(&self) -> u64 {
        self.swept.load(Ordering::Relaxed)
    }

    /// Stops sweeping, once the sweep under way (if any) is done.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
