//! Tenant totals shared through PostgreSQL (issue 16, item 7): two `TenantBudget`s of one
//! tenant, each over its own pool (as two processes would be), keep their totals in one
//! `PostgresLedger`: their runs together stop near the tenant's limit, each with
//! `Error::BudgetExceeded` of scope `Tenant`, and resumed with a higher limit they go on to
//! their end, each step counted once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use agentgraph::run::{Budget, BudgetKind, BudgetScope, TenantBudget};
use agentgraph_checkpoint::TenantId;
use agentgraph_engine::TenantLedger;
use agentgraph_postgres::{PostgresLedger, PostgresStore};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
struct Chat {
    #[reducer(add)]
    turns: u64,
}

/// 12 turns, each reporting 100 model tokens: 1,200 a run.
fn chat() -> CompiledGraph<Chat> {
    chat_meeting(None)
}

/// [`chat`], whose runs' first turns wait (30 s at most, else they fail) until `met` counts two
/// of them: the runs are running at once.
fn chat_meeting(met: Option<Arc<std::sync::atomic::AtomicUsize>>) -> CompiledGraph<Chat> {
    use std::sync::atomic::Ordering;

    let mut b = GraphBuilder::<Chat>::new();
    b.add_node("turn", move |chat: Arc<Chat>, ctx: Context| {
        let met = met.clone();
        async move {
            if let Some(met) = met.filter(|_| chat.turns == 0) {
                met.fetch_add(1, Ordering::SeqCst);
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while met.load(Ordering::SeqCst) < 2 {
                    if std::time::Instant::now() > deadline {
                        return Err::<ChatUpdate, BoxError>("the other run never started".into());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            ctx.record_model_usage("m", 60, 40);
            Ok(ChatUpdate::new().turns(1))
        }
    })
    .add_edge(START, "turn")
    .add_conditional_edges("turn", ["turn", END], |c: &Chat| {
        if c.turns < 12 { "turn" } else { END }
    });
    b.compile().unwrap()
}

fn config(store: &PostgresStore, run: &str, budget: TenantBudget) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(run)
        .tenant(TenantId::new("acme").unwrap())
        .tenant_budget(budget)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_share_a_tenants_totals_and_stop_together() {
    let schema = support::fresh_schema("ledger");
    let here = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let there = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let (ledger_here, ledger_there): (Arc<dyn TenantLedger>, Arc<dyn TenantLedger>) = (
        Arc::new(PostgresLedger::new(&here)),
        Arc::new(PostgresLedger::new(&there)),
    );
    let acme = TenantId::new("acme").unwrap();
    let limit = |tokens| Budget::new().max_tokens(tokens);
    let graph = chat();

    // Each run alone would use 1,200 tokens; the tenant may use 1,000.
    let a = TenantBudget::shared(limit(1_000), &acme, ledger_here.clone());
    let b = TenantBudget::shared(limit(1_000), &acme, ledger_there.clone());
    let (ra, rb) = tokio::join!(
        graph.run_with(Chat::default(), config(&here, "chat-a", a.clone())),
        graph.run_with(Chat::default(), config(&there, "chat-b", b.clone())),
    );
    for result in [ra, rb] {
        let Err(Error::BudgetExceeded(stop)) = result else {
            panic!("the tenant's budget stops both runs: {result:?}");
        };
        assert_eq!(
            (stop.scope, stop.budget),
            (BudgetScope::Tenant, BudgetKind::Tokens)
        );
        assert!(stop.used >= 1_000, "{stop:?}");
    }
    let ledger = PostgresLedger::new(&here);
    let total = ledger.usage(&acme).await.unwrap().unwrap();
    // Each run pushes its use at every step boundary and checks the totals returned: the
    // tenant goes over by at most one step (100 tokens) per run running.
    assert!(
        (1_000..1_200).contains(&total.tokens),
        "the two runs stopped together near the limit: {total:?}"
    );
    let history = graph.history(here.clone());
    let (ta, tb) = (
        history.state("chat-a", None).await.unwrap().turns,
        history.state("chat-b", None).await.unwrap().turns,
    );
    assert_eq!(
        (ta + tb) * 100,
        total.tokens,
        "every turn's tokens counted once"
    );
    assert!(ta < 12 && tb < 12, "neither finished: {ta} and {tb} turns");
    // Each budget knows the totals the ledger last returned to it, both runs' together.
    assert!(a.usage().tokens >= 1_000 && b.usage().tokens >= 1_000);

    // Raised, in new budgets over the same ledger: both runs go on to their end.
    let a = TenantBudget::shared(limit(10_000), &acme, ledger_here);
    let b = TenantBudget::shared(limit(10_000), &acme, ledger_there);
    let (ra, rb) = tokio::join!(
        graph.resume("chat-a", config(&here, "chat-a", a.clone())),
        graph.resume("chat-b", config(&there, "chat-b", b.clone())),
    );
    assert_eq!((ra.unwrap().turns, rb.unwrap().turns), (12, 12));
    let total = ledger.usage(&acme).await.unwrap().unwrap();
    assert_eq!(total.tokens, 2 * 1_200, "no turn ran (or counted) twice");
    assert_eq!(a.sync().await.unwrap().tokens, 2_400);
    assert!(ledger.reset(&acme).await.unwrap());
    assert!(ledger.usage(&acme).await.unwrap().is_none());
}

/// Two workers, each on a pool of its own, give the runs of acme's jobs a shared budget over
/// the ledger (`Worker::tenant_budget`): acme's two jobs stop together near its limit (their
/// jobs `failed` with the budget's message); with the limit raised, `Queue::resume` takes both
/// to their end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_give_a_tenants_runs_its_shared_budget() {
    use std::sync::atomic::{AtomicU64, Ordering};

    use agentgraph::run::{DynResume, GraphRegistry};
    use agentgraph_postgres::worker::{Queue, Worker};
    use serde_json::json;
    use support::wait_for;

    let schema = support::fresh_schema("ledger_workers");
    let limit = Arc::new(AtomicU64::new(1_000));
    let met = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for id in ["w1", "w2"] {
        let store = PostgresStore::connect_with(support::options(&schema))
            .await
            .unwrap();
        let ledger: Arc<dyn TenantLedger> = Arc::new(PostgresLedger::new(&store));
        let limit = limit.clone();
        let worker = Worker::new(
            store,
            GraphRegistry::new().with("chat", chat_meeting(Some(met.clone()))),
            id,
        )
        .concurrency(1)
        .lease_ttl(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(50))
        .tenant_budget(move |tenant| {
            let tokens = limit.load(Ordering::SeqCst);
            Some(TenantBudget::shared(
                Budget::new().max_tokens(tokens),
                tenant,
                ledger.clone(),
            ))
        });
        workers.push(support::spawn(worker));
    }
    let store = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let acme = TenantId::new("acme").unwrap();
    let queue = Queue::new(&store).tenant(acme.clone());
    for run in ["job-a", "job-b"] {
        queue.submit_with_id("chat", run, json!({})).await.unwrap();
    }
    let mut workers_of = std::collections::HashSet::new();
    for run in ["job-a", "job-b"] {
        let job = wait_for(&queue, run, "failed").await;
        let error = job.error.unwrap();
        assert!(
            error.contains("tenant budget of 1000 tokens"),
            "{run}: {error}"
        );
        workers_of.insert(job.worker.unwrap());
    }
    assert_eq!(
        workers_of.len(),
        2,
        "one job on each worker (they ran at once)"
    );
    let ledger = PostgresLedger::new(&store);
    let total = ledger.usage(&acme).await.unwrap().unwrap();
    assert!(
        (1_000..1_200).contains(&total.tokens),
        "the two workers' runs stopped together near the limit: {total:?}"
    );

    limit.store(10_000, Ordering::SeqCst);
    for run in ["job-a", "job-b"] {
        queue.resume(run, DynResume::default()).await.unwrap();
    }
    for run in ["job-a", "job-b"] {
        let job = wait_for(&queue, run, "done").await;
        assert_eq!(job.output.unwrap()["turns"], 12);
    }
    let total = ledger.usage(&acme).await.unwrap().unwrap();
    assert_eq!(total.tokens, 2_400, "each turn counted once");
    for worker in workers {
        worker.stop().await;
    }
}
