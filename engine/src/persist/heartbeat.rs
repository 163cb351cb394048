//! The heartbeats of the runs' leases: one thread of the process renews every lease that is
//! due, on the runtime of the run that took it, instead of a task spawned, aborted and joined
//! per run. A run that ends before its first renewal (a third of its lease's time to live:
//! most runs) costs no task, no wake-up and no join: its beat is a queue entry, dropped once
//! the run released it.
//!
//! The keeper wakes when the earliest beat is due, and at least every [`IDLE_CHECK`] (when it
//! also drops the entries of released runs), so a run registers its beat without waking it,
//! unless the beat is due before the keeper's next wake (a lease of a few seconds or less).
//!
//! A beat holds its lease and its store weakly: only a renewal under way holds the store, and
//! a run's release waits for that one (see [`Beat::release`]), so a run that returned holds no
//! handle of its store (sled keeps a file lock while a handle lives).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use agentgraph_checkpoint::{CheckpointStore, Lease, StoreError};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// How long the keeper sleeps at most: it drops the entries of released runs then.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How many heartbeats fit in a lease's time to live: a lease is renewed every third of it,
/// so that two renewals can fail (a slow store, a busy runtime) before it expires.
const BEATS_PER_TTL: u32 = 3;

/// The heartbeat of one run's lease, shared by the run's owner and the keeper.
#[derive(Debug)]
pub(crate) struct Beat {
    lease: Weak<Lease>,
    store: Weak<dyn CheckpointStore>,
    ttl: Duration,
    period: Duration,
    /// The runtime of the run, where renewals run.
    runtime: Handle,
    /// Set by the owner's release (or drop): no renewal starts after it.
    released: AtomicBool,
    /// The renewal under way or last made; changed under this lock with `released` checked,
    /// so that a release sees every renewal that may still hold the store.
    renewal: Mutex<Option<JoinHandle<()>>>,
    /// The lease was lost (fenced): no more renewals.
    lost: AtomicBool,
}

impl Beat {
    /// Renews `lease` in `store` every third of `ttl` on `runtime`, until released.
    pub(crate) fn start(
        store: &Arc<dyn CheckpointStore>,
        lease: &Arc<Lease>,
        ttl: Duration,
        runtime: Handle,
    ) -> Arc<Beat> {
        let beat = Arc::new(Beat {
            lease: Arc::downgrade(lease),
            store: Arc::downgrade(store),
            ttl,
            period: (ttl / BEATS_PER_TTL).max(Duration::from_millis(1)),
            runtime,
            released: AtomicBool::new(false),
            renewal: Mutex::new(None),
            lost: AtomicBool::new(false),
        });
        Keeper::get().add(Instant::now() + beat.period, beat.clone());
        beat
    }

    /// Stops the beat, and waits until no renewal of it holds the store.
    pub(crate) async fn release(&self) {
        if let Some(renewal) = self.stop() {
            // Ended or under way: either way its future (and its handle of the store) is
            // dropped once this returns.
            renewal.abort();
            let _ = renewal.await;
        }
    }

    /// Stops the beat (no renewal starts after this) and hands back the last renewal.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        let mut renewal = self.renewal();
        self.released.store(true, Ordering::SeqCst);
        renewal.take()
    }

    fn renewal(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.renewal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ended(&self) -> bool {
        self.released.load(Ordering::SeqCst) || self.lost.load(Ordering::SeqCst)
    }

    /// Starts a renewal on the run's runtime, unless the beat ended or the previous one is
    /// still under way. `false` when the beat is over (nothing to schedule again).
    fn renew(self: &Arc<Self>) -> bool {
        let mut renewal = self.renewal();
        if self.ended() {
            return false;
        }
        if renewal.as_ref().is_some_and(|r| !r.is_finished()) {
            return true;
        }
        let (Some(lease), Some(store)) = (self.lease.upgrade(), self.store.upgrade()) else {
            return false;
        };
        let beat = Arc::downgrade(self);
        let ttl = self.ttl;
        *renewal = Some(self.runtime.spawn(async move {
            match store.renew_lease(&lease, ttl).await {
                Ok(()) => {}
                Err(e @ StoreError::Fenced { .. }) => {
                    // A lost lease only stops the beat: the run's next write is refused as
                    // fenced.
                    tracing::warn!(run = lease.run(), error = %e, "run lease lost");
                    if let Some(beat) = beat.upgrade() {
                        beat.lost.store(true, Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    tracing::warn!(run = lease.run(), error = %e, "run lease renewal failed; retrying");
                }
            }
        }));
        true
    }
}

/// A beat in the keeper's queue, ordered by when it is due.
struct Due(Instant, Arc<Beat>);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// The queue of beats, earliest first, and when the keeper wakes next.
struct Queue {
    beats: BinaryHeap<Reverse<Due>>,
    wakes_at: Option<Instant>,
}

/// The process's one lease keeper (started with the first beat).
struct Keeper {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Keeper {
    fn get() -> &'static Keeper {
        static KEEPER: OnceLock<&'static Keeper> = OnceLock::new();
        KEEPER.get_or_init(|| {
            let keeper: &'static Keeper = Box::leak(Box::new(Keeper {
                queue: Mutex::new(Queue {
                    beats: BinaryHeap::new(),
                    wakes_at: None,
                }),
                wake: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("agentgraph-leases".into())
                .spawn(move || keeper.run())
                .expect("the lease keeper thread starts");
            keeper
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `beat`, due at `due`; wakes the keeper only if it would wake later than that.
    fn add(&self, due: Instant, beat: Arc<Beat>) {
        let mut queue = self.lock();
        queue.beats.push(Reverse(Due(due, beat)));
        if queue.wakes_at.is_none_or(|at| due < at) {
            drop(queue);
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut queue = self.lock();
        let mut purged = Instant::now();
        loop {
            let now = Instant::now();
            while let Some(Reverse(Due(at, _))) = queue.beats.peek() {
                if *at > now {
                    break;
                }
                let Some(Reverse(Due(_, beat))) = queue.beats.pop() else {
                    break;
                };
                // A renewal that cannot start (a panic in the runtime's spawn) ends its beat,
                // not the keeper.
                let renewed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| beat.renew()));
                if renewed.unwrap_or(false) {
                    queue.beats.push(Reverse(Due(now + beat.period, beat)));
                }
            }
            if now.duration_since(purged) >= IDLE_CHECK {
                queue.beats.retain(|Reverse(Due(_, beat))| !beat.ended());
                purged = now;
            }
            let next = queue
                .beats
                .peek()
                .map_or(now + IDLE_CHECK, |Reverse(Due(at, _))| {
                    (*at).min(now + IDLE_CHECK)
                });
            queue.wakes_at = Some(next);
            queue = self
                .wake
                .wait_timeout(queue, next.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentgraph_checkpoint::MemoryStore;

    /// A released beat holds no handle of its store, though the keeper still queues it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_released_beat_holds_nothing_of_its_store() {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let ttl = Duration::from_millis(150);
        let lease = Arc::new(store.acquire_lease("r", ttl).await.unwrap());
        let beat = Beat::start(&store, &lease, ttl, Handle::current());
        // Renewed past its TTL while it beats: nobody else can take the run.
        tokio::time::sleep(ttl * 4).await;
        assert!(matches!(
            store.acquire_lease("r", ttl).await,
            Err(StoreError::RunBusy { .. })
        ));
        beat.release().await;
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "only the test holds the store"
        );
        // No renewal after the release: the lease, still held, expires.
        tokio::time::sleep(ttl * 2).await;
        assert!(store.acquire_lease("r", ttl).await.is_ok());
        drop(lease);
    }
}
