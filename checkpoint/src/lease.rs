//! Run leases of the embedded stores: held in the process (the store's file lock keeps every
//! other process out), their epochs kept by the store with its data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::store::{Lease, check_run_id};

/// The live leases of one store, shared by its clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holders {
    held: Arc<Mutex<HashMap<String, Held>>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    expires: Instant,
}

fn lock(held: &Mutex<HashMap<String, Held>>) -> MutexGuard<'_, HashMap<String, Held>> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `ttl` from now (a TTL too long for the clock is a century).
fn expiry(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

impl Holders {
    /// Takes `run` when it has no live lease. `bump` stores and returns the run's next epoch;
    /// it is called with the leases locked, so acquisitions are serial.
    pub(crate) fn acquire(
        &self,
        run: &str,
        ttl: Duration,
        bump: impl FnOnce() -> Result<u64>,
    ) -> Result<Lease> {
        check_run_id(run)?;
        let mut held = lock(&self.held);
        if held.get(run).is_some_and(|h| h.expires > Instant::now()) {
            return Err(StoreError::RunBusy {
                run: run.to_owned(),
            });
        }
        let epoch = bump()?;
        held.insert(
            run.to_owned(),
            Held {
                epoch,
                expires: expiry(ttl),
            },
        );
        // Dropping the lease releases the run at once, unless it was taken over since.
        let table = Arc::downgrade(&self.held);
        Ok(Lease::new(run, epoch, ttl).on_drop(move |run, epoch| {
            if let Some(table) = table.upgrade() {
                let mut held = lock(&table);
                if held.get(run).is_some_and(|h| h.epoch == epoch) {
                    held.remove(run);
                }
            }
        }))
    }

    /// Extends `lease` when its epoch is still the run's. `current` reads the stored epoch
    /// (for a lease this table does not hold, from a store opened before).
    pub(crate) fn renew(
        &self,
        lease: &Lease,
        ttl: Duration,
        current: impl FnOnce() -> Result<u64>,
    ) -> Result<()> {
        check_run_id(lease.run())?;
        let mut held = lock(&self.held);
        let now_current = match held.get(lease.run()) {
            Some(h) => h.epoch,
            None => current()?,
        };
        if now_current != lease.epoch() {
            return Err(StoreError::Fenced {
                run: lease.run().to_owned(),
                epoch: lease.epoch(),
                current: now_current,
            });
        }
        held.insert(
            lease.run().to_owned(),
            Held {
                epoch: lease.epoch(),
                expires: expiry(ttl),
            },
        );
        Ok(())
    }
}

/// Fails with [`StoreError::Fenced`] unless `epoch` is `current`.
pub(crate) fn check_fence(run: &str, epoch: u64, current: u64) -> Result<()> {
    if epoch == current {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            run: run.to_owned(),
            epoch,
            current,
        })
    }
}
