//! Tenant totals kept in a shared place: the [`TenantLedger`] trait, and what a
//! [`TenantBudget`](crate::TenantBudget) made with
//! [`TenantBudget::shared`](crate::TenantBudget::shared) keeps of it.
//!
//! A shared tenant budget counts what its runs use in its own atomics, as an in-process one
//! does, and pushes those counts to the ledger at each step boundary of each of its runs (and
//! when a run ends): the ledger adds them to the tenant's totals and returns the new totals,
//! which the check before the run's next step reads. Other processes push to the same totals,
//! so a tenant's runs on several processes or workers share one budget. The check sees
//! another run's use once that run pushed it (at its next step boundary): the overshoot is at
//! most one step's use per run of the tenant running at the time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentgraph_checkpoint::BoxFuture;

use crate::error::BoxError;
use crate::run::budget::BudgetUsage;

/// A shared place where tenants' usage totals are kept: adds what a tenant's runs used since
/// they last said, and returns the tenant's new totals, in one step (so that concurrent adds
/// from several processes never lose one). Object safe: a
/// [`TenantBudget::shared`](crate::TenantBudget::shared) holds it as `Arc<dyn TenantLedger>`.
///
/// `agentgraph-postgres` implements it on a table (`PostgresLedger`); the engine does not
/// depend on any.
///
/// # Examples
///
/// A ledger in a process's memory (what a test might use; a real one is shared by processes):
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use agentgraph_engine::{BoxError, BudgetUsage, TenantLedger};
/// use agentgraph_checkpoint::BoxFuture;
///
/// #[derive(Debug, Default)]
/// struct InMemory(Mutex<HashMap<String, BudgetUsage>>);
///
/// impl TenantLedger for InMemory {
///     fn add<'a>(&'a self, tenant: &'a str, delta: BudgetUsage) -> BoxFuture<'a, Result<BudgetUsage, BoxError>> {
///         Box::pin(async move {
///             let mut totals = self.0.lock().unwrap();
///             let t = totals.entry(tenant.to_owned()).or_default();
///             t.steps += delta.steps;
///             t.tokens += delta.tokens;
///             t.cost_nanos += delta.cost_nanos;
///             t.tool_calls += delta.tool_calls;
///             t.wall_ms += delta.wall_ms;
///             Ok(*t)
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ledger = InMemory::default();
/// let delta = BudgetUsage { tokens: 10, ..BudgetUsage::default() };
/// ledger.add("acme", delta).await.unwrap();
/// assert_eq!(ledger.add("acme", delta).await.unwrap().tokens, 20);
/// # }
/// ```
pub trait TenantLedger: Send + Sync + fmt::Debug {
    /// Adds `delta` to `tenant`'s totals (starting from nothing for a tenant it does not know)
    /// and returns the totals with it.
    ///
    /// # Errors
    ///
    /// When the ledger cannot be reached or refuses the add; the delta must then not have
    /// been added (the budget keeps it and pushes it again with the next).
    fn add<'a>(
        &'a self,
        tenant: &'a str,
        delta: BudgetUsage,
    ) -> BoxFuture<'a, Result<BudgetUsage, BoxError>>;
}

/// Five counters in the shape of a [`BudgetUsage`].
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) steps: AtomicU64,
    pub(crate) tokens: AtomicU64,
    pub(crate) cost_nanos: AtomicU64,
    pub(crate) tool_calls: AtomicU64,
    pub(crate) wall_ms: AtomicU64,
}

impl Tally {
    pub(crate) fn load(&self) -> BudgetUsage {
        BudgetUsage {
            steps: self.steps.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
            cost_nanos: self.cost_nanos.load(Ordering::Relaxed),
            tool_calls: self.tool_calls.load(Ordering::Relaxed),
            wall_ms: self.wall_ms.load(Ordering::Relaxed),
        }
    }

    /// Takes what it holds, leaving 0.
    fn take(&self) -> BudgetUsage {
        BudgetUsage {
            steps: self.steps.swap(0, Ordering::AcqRel),
            tokens: self.tokens.swap(0, Ordering::AcqRel),
            cost_nanos: self.cost_nanos.swap(0, Ordering::AcqRel),
            tool_calls: self.tool_calls.swap(0, Ordering::AcqRel),
            wall_ms: self.wall_ms.swap(0, Ordering::AcqRel),
        }
    }

    fn add(&self, u: &BudgetUsage) {
        self.steps.fetch_add(u.steps, Ordering::AcqRel);
        self.tokens.fetch_add(u.tokens, Ordering::AcqRel);
        self.cost_nanos.fetch_add(u.cost_nanos, Ordering::AcqRel);
        self.tool_calls.fetch_add(u.tool_calls, Ordering::AcqRel);
        self.wall_ms.fetch_add(u.wall_ms, Ordering::AcqRel);
    }

    fn sub(&self, u: &BudgetUsage) {
        self.steps.fetch_sub(u.steps, Ordering::AcqRel);
        self.tokens.fetch_sub(u.tokens, Ordering::AcqRel);
        self.cost_nanos.fetch_sub(u.cost_nanos, Ordering::AcqRel);
        self.tool_calls.fetch_sub(u.tool_calls, Ordering::AcqRel);
        self.wall_ms.fetch_sub(u.wall_ms, Ordering::AcqRel);
    }

    /// Raises each counter to `u`'s when that is higher (totals only grow: a push answered
    /// late never takes them back).
    fn raise(&self, u: &BudgetUsage) {
        self.steps.fetch_max(u.steps, Ordering::AcqRel);
        self.tokens.fetch_max(u.tokens, Ordering::AcqRel);
        self.cost_nanos.fetch_max(u.cost_nanos, Ordering::AcqRel);
        self.tool_calls.fetch_max(u.tool_calls, Ordering::AcqRel);
        self.wall_ms.fetch_max(u.wall_ms, Ordering::AcqRel);
    }
}

/// A shared tenant budget's side of its ledger: the ledger, the tenant's key in it, the totals
/// it last returned and what is being pushed.
#[derive(Debug)]
pub(crate) struct SharedTotals {
    ledger: Arc<dyn TenantLedger>,
    tenant: String,
    /// The ledger's totals, as last returned.
    known: Tally,
    /// Taken from the budget's own counters and not yet in `known`.
    pushing: Tally,
}

impl SharedTotals {
    pub(crate) fn new(ledger: Arc<dyn TenantLedger>, tenant: String) -> Self {
        SharedTotals {
            ledger,
            tenant,
            known: Tally::default(),
            pushing: Tally::default(),
        }
    }

    /// The totals as far as this process knows: the ledger's last answer, what is being
    /// pushed, and `pending` (counted here, not pushed yet). Counted twice for an instant
    /// rather than missed: a push's answer is taken in before its delta leaves `pushing`.
    pub(crate) fn total(&self, pending: BudgetUsage) -> BudgetUsage {
        self.known.load().plus(&self.pushing.load()).plus(&pending)
    }

    /// Pushes what `pending` holds to the ledger and takes in the totals it returns. On
    /// failure the delta goes back to `pending`, to be pushed with the next.
    pub(crate) async fn push(&self, pending: &Tally) -> Result<BudgetUsage, BoxError> {
        let delta = pending.take();
        self.pushing.add(&delta);
        match self.ledger.add(&self.tenant, delta).await {
            Ok(totals) => {
                self.known.raise(&totals);
                self.pushing.sub(&delta);
                Ok(self.total(pending.load()))
            }
            Err(e) => {
                pending.add(&delta);
                self.pushing.sub(&delta);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A ledger in memory that refuses adds while `down` is set.
    #[derive(Debug, Default)]
    struct Flaky {
        totals: Mutex<BudgetUsage>,
        down: AtomicBool,
    }

    impl TenantLedger for Flaky {
        fn add<'a>(
            &'a self,
            _tenant: &'a str,
            delta: BudgetUsage,
        ) -> BoxFuture<'a, Result<BudgetUsage, BoxError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err("the ledger is down".into());
                }
                let mut t = self.totals.lock().unwrap();
                *t = t.plus(&delta);
                Ok(*t)
            })
        }
    }

    fn tokens(n: u64) -> BudgetUsage {
        BudgetUsage {
            tokens: n,
            steps: 1,
            ..BudgetUsage::default()
        }
    }

    /// A push the ledger refuses keeps its counts for the next, which carries both; the
    /// totals read meanwhile are what this process knows, and other processes' adds show
    /// after the next push.
    #[tokio::test]
    async fn a_refused_push_is_kept_for_the_next() {
        let ledger = Arc::new(Flaky::default());
        let shared = SharedTotals::new(ledger.clone(), "acme".into());
        let pending = Tally::default();
        pending.add(&tokens(100));
        assert_eq!(shared.push(&pending).await.unwrap().tokens, 100);
        assert_eq!(pending.load(), BudgetUsage::default());

        ledger.down.store(true, Ordering::SeqCst);
        pending.add(&tokens(30));
        assert!(shared.push(&pending).await.is_err());
        assert_eq!(pending.load(), tokens(30), "kept");
        assert_eq!(shared.total(pending.load()).tokens, 130);
        assert_eq!(ledger.totals.lock().unwrap().tokens, 100, "not added");

        // Another process adds 500; the next push carries the 30 kept and 20 more.
        ledger.down.store(false, Ordering::SeqCst);
        ledger.add("acme", tokens(500)).await.unwrap();
        pending.add(&tokens(20));
        let total = shared.push(&pending).await.unwrap();
        assert_eq!((total.tokens, total.steps), (650, 4));
        assert_eq!(ledger.totals.lock().unwrap().tokens, 650);
        assert_eq!(shared.total(pending.load()), total);
    }
}
