//! Tenants' usage totals in the database: [`PostgresLedger`], the
//! [`TenantLedger`] that lets the [`TenantBudget`](agentgraph_engine::TenantBudget)s of
//! several processes (workers, servers) bound one tenant's runs together.

use agentgraph_checkpoint::{BoxFuture, Result, TenantId};
use agentgraph_engine::{BoxError, BudgetUsage, TenantLedger};

use crate::PostgresStore;

/// Adds a delta to a tenant's totals and returns them, in one statement (concurrent adds from
/// any number of processes each land once: the row is locked by the update).
const ADD: &str = "INSERT INTO tenant_usage AS u (tenant, steps, tokens, cost_nanos, tool_calls, wall_ms) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (tenant) DO UPDATE SET steps = u.steps + EXCLUDED.steps, \
         tokens = u.tokens + EXCLUDED.tokens, cost_nanos = u.cost_nanos + EXCLUDED.cost_nanos, \
         tool_calls = u.tool_calls + EXCLUDED.tool_calls, wall_ms = u.wall_ms + EXCLUDED.wall_ms, \
         updated_at = clock_timestamp() \
     RETURNING u.steps, u.tokens, u.cost_nanos, u.tool_calls, u.wall_ms";
const USAGE: &str =
    "SELECT steps, tokens, cost_nanos, tool_calls, wall_ms FROM tenant_usage WHERE tenant = $1";
const RESET: &str = "DELETE FROM tenant_usage WHERE tenant = $1 RETURNING tenant";

fn amount(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn usage(row: &tokio_postgres::Row) -> BudgetUsage {
    let get = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    BudgetUsage {
        steps: get(0),
        tokens: get(1),
        cost_nanos: get(2),
        tool_calls: get(3),
        wall_ms: get(4),
    }
}

/// Tenants' usage totals in a PostgreSQL table (`tenant_usage`, migration 10), shared by every
/// process that reaches the database: give it to
/// [`TenantBudget::shared`](agentgraph_engine::TenantBudget::shared) in each, and the tenant's
/// limits bound the totals of all their runs. Each push of a run (one per step, see
/// `TenantBudget::shared`) is one statement: `INSERT .. ON CONFLICT DO UPDATE SET tokens =
/// tenant_usage.tokens + EXCLUDED.tokens .. RETURNING` the totals.
///
/// The totals never reset by themselves: [`reset`](PostgresLedger::reset) starts a tenant's
/// again (a new billing period), [`usage`](PostgresLedger::usage) reads them.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use agentgraph_checkpoint::TenantId;
/// use agentgraph_engine::{Budget, RunConfig, TenantBudget};
/// use agentgraph_postgres::{PostgresLedger, PostgresStore};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@db/app").await?;
/// let ledger = Arc::new(PostgresLedger::new(&store));
/// let acme = TenantId::new("acme")?;
/// // In every process that runs acme's runs:
/// let budget = TenantBudget::shared(Budget::new().max_tokens(5_000_000), &acme, ledger.clone());
/// let config = RunConfig::new().store(store.clone()).tenant(acme.clone()).tenant_budget(budget);
/// # let _ = config;
/// // What acme used, all processes together:
/// let used = ledger.usage(&acme).await?.unwrap_or_default();
/// println!("{} tokens", used.tokens);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresLedger {
    store: PostgresStore,
}

impl PostgresLedger {
    /// The ledger in `store`'s schema, over its pool.
    ///
    /// # Examples
    ///
    /// See [`PostgresLedger`].
    pub fn new(store: &PostgresStore) -> PostgresLedger {
        PostgresLedger {
            store: store.clone(),
        }
    }

    /// `tenant`'s totals, every process's pushes together; `None` before its first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`](agentgraph_checkpoint::StoreError::Unavailable) when the
    /// server cannot be reached.
    ///
    /// # Examples
    ///
    /// See [`PostgresLedger`].
    pub async fn usage(&self, tenant: &TenantId) -> Result<Option<BudgetUsage>> {
        let rows = self.store.query(USAGE, &[&tenant.as_str()], true).await?;
        Ok(rows.first().map(usage))
    }

    /// Starts `tenant`'s totals again from 0 (a budget's next pushes count from there; what a
    /// process counted before and did not push yet is added). Returns whether it had any.
    ///
    /// # Errors
    ///
    /// As [`usage`](PostgresLedger::usage)'s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(ledger: agentgraph_postgres::PostgresLedger) -> Result<(), Box<dyn std::error::Error>> {
    /// let acme = agentgraph_checkpoint::TenantId::new("acme")?;
    /// ledger.reset(&acme).await?; // a new month
    /// assert!(ledger.usage(&acme).await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn reset(&self, tenant: &TenantId) -> Result<bool> {
        let rows = self.store.query(RESET, &[&tenant.as_str()], true).await?;
        Ok(!rows.is_empty())
    }
}

impl TenantLedger for PostgresLedger {
    fn add<'a>(
        &'a self,
        tenant: &'a str,
        delta: BudgetUsage,
    ) -> BoxFuture<'a, std::result::Result<BudgetUsage, BoxError>> {
        Box::pin(async move {
            // Not retried: an add whose answer was lost may have been made.
            let rows = self
                .store
                .query(
                    ADD,
                    &[
                        &tenant,
                        &amount(delta.steps),
                        &amount(delta.tokens),
                        &amount(delta.cost_nanos),
                        &amount(delta.tool_calls),
                        &amount(delta.wall_ms),
                    ],
                    false,
                )
                .await?;
            rows.first()
                .map(usage)
                .ok_or_else(|| BoxError::from("the tenant's usage row was not returned"))
        })
    }
}
