//! Tenant budgets over a shared ledger (`TenantBudget::shared`): two budgets of one tenant
//! (as two processes would hold) count into one set of totals; a run of one stops at the
//! totals the other's runs pushed; a task's tool-call charge reads them too, exact within a
//! process; a run without a shared budget never calls the ledger. (PostgreSQL's ledger, with
//! runs on two pools and two workers: `postgres/tests/tenant_ledger.rs`.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agentgraph_checkpoint::{BoxFuture, TenantId};
use agentgraph_engine::{
    BoxError, Budget, BudgetKind, BudgetScope, BudgetUsage, Context, END, Error, GraphBuilder,
    RunConfig, START, TenantBudget, TenantLedger,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Work {
    #[reducer(add)]
    calls: u64,
}

/// Tenants' totals in this process's memory, counting its adds.
#[derive(Debug, Default)]
struct Ledger {
    totals: Mutex<HashMap<String, BudgetUsage>>,
    adds: AtomicU64,
}

impl TenantLedger for Ledger {
    fn add<'a>(
        &'a self,
        tenant: &'a str,
        delta: BudgetUsage,
    ) -> BoxFuture<'a, Result<BudgetUsage, BoxError>> {
        Box::pin(async move {
            self.adds.fetch_add(1, Ordering::SeqCst);
            let mut totals = self.totals.lock().unwrap();
            let t = totals.entry(tenant.to_owned()).or_default();
            t.steps += delta.steps;
            t.tokens += delta.tokens;
            t.cost_nanos += delta.cost_nanos;
            t.tool_calls += delta.tool_calls;
            t.wall_ms += delta.wall_ms;
            Ok(*t)
        })
    }
}

/// 10 steps, each charging two tool calls before it "makes" them.
fn calling() -> agentgraph_engine::CompiledGraph<Work> {
    let mut b = GraphBuilder::<Work>::new();
    b.add_node("call", |_, ctx: Context| async move {
        ctx.charge_tool_calls(2)?;
        Ok(WorkUpdate::new().calls(1))
    })
    .add_edge(START, "call")
    .add_conditional_edges("call", ["call", END], |w: &Work| {
        if w.calls < 10 { "call" } else { END }
    });
    b.compile().unwrap()
}

#[tokio::test]
async fn two_shared_budgets_of_a_tenant_count_into_one_total() {
    let ledger = Arc::new(Ledger::default());
    let acme = TenantId::new("acme").unwrap();
    let limits = Budget::new().max_tool_calls(5);
    let here = TenantBudget::shared(limits, &acme, ledger.clone());
    let there = TenantBudget::shared(limits, &acme, ledger.clone());
    assert!(here.is_shared() && !TenantBudget::new(limits).is_shared());
    let graph = calling();

    // The first run charges 2 calls a step: the third step's charge would make 6, and the
    // tenant's budget refuses it (the ledger's totals and this process's use since, as one).
    let err = graph
        .run_with(
            Work::default(),
            RunConfig::new().run_id("a").tenant_budget(here.clone()),
        )
        .await
        .err()
        .expect("the tenant's budget stops it");
    let Error::BudgetExceeded(stop) = err else {
        panic!("{err}");
    };
    assert_eq!(
        (stop.scope, stop.budget, stop.limit, stop.used, stop.step),
        (BudgetScope::Tenant, BudgetKind::ToolCalls, 5, 4, 3)
    );
    let total = ledger.totals.lock().unwrap()["acme"];
    assert_eq!(
        total.tool_calls, 4,
        "exact within a process; pushed at the run's end"
    );
    assert_eq!(here.usage().tool_calls, 4);

    // The other budget (another process's) knows nothing until it asks; its run's first
    // charge reads the totals the ledger returned before the step, and is refused.
    assert_eq!(there.usage().tool_calls, 0);
    let err = graph
        .run_with(
            Work::default(),
            RunConfig::new().run_id("b").tenant_budget(there.clone()),
        )
        .await
        .err()
        .expect("the tenant's budget was used up elsewhere");
    let Error::BudgetExceeded(stop) = err else {
        panic!("{err}");
    };
    assert_eq!(
        (stop.scope, stop.budget, stop.used, stop.step),
        (BudgetScope::Tenant, BudgetKind::ToolCalls, 4, 1)
    );
    assert_eq!(there.sync().await.unwrap().tool_calls, 4);

    // A run without a shared budget (an in-process one) never calls the ledger.
    let adds = ledger.adds.load(Ordering::SeqCst);
    graph
        .run_with(
            Work::default(),
            RunConfig::new()
                .run_id("c")
                .tenant_budget(TenantBudget::new(Budget::new().max_tool_calls(100))),
        )
        .await
        .unwrap();
    assert_eq!(ledger.adds.load(Ordering::SeqCst), adds);
}
