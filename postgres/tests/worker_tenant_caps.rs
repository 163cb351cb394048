//! A tenant's cap on its jobs in flight, across workers (issue 16, item 7): workers with pools
//! of their own on one queue never run more of a capped tenant's runs at once than its cap,
//! every job of it finishes, and another tenant's jobs are not held back; a job over the cap
//! waits `queued` (and says so) until a place frees or the cap is raised. (A worker killed while
//! it holds a place: `tests/process/tests/worker_processes.rs`.)

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use agentgraph::run::GraphRegistry;
use agentgraph_checkpoint::{StoreError, TenantId};
use agentgraph_postgres::PostgresStore;
use agentgraph_postgres::worker::{Queue, TenantScoped, Worker};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{Running, wait_for};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Work {
    /// Whose run it is (what the node counts its runs at once by).
    who: String,
    #[reducer(append)]
    done: Vec<String>,
}

/// Runs at once, and the most seen, per tenant: counted by the node itself.
#[derive(Default)]
struct Live {
    now: HashMap<String, usize>,
    peak: HashMap<String, usize>,
}

type Shared = Arc<Mutex<Live>>;

fn peak(live: &Shared, who: &str) -> usize {
    live.lock().unwrap().peak.get(who).copied().unwrap_or(0)
}

/// `work`: one node that counts itself among its tenant's runs at once while it runs. A run of
/// `globex` waits (30 s at most, else it fails) until 4 of globex's runs ran at once: its jobs
/// are claimed together or the test fails. Others sleep `pause`.
fn registry(live: Shared, pause: Duration) -> GraphRegistry {
    let mut g = GraphBuilder::<Work>::new();
    g.add_node("work", move |state: Arc<Work>, _| {
        let live = live.clone();
        async move {
            let who = state.who.clone();
            {
                let mut l = live.lock().unwrap();
                let now = l.now.entry(who.clone()).or_default();
                *now += 1;
                let now = *now;
                let peak = l.peak.entry(who.clone()).or_default();
                *peak = (*peak).max(now);
            }
            let result = if who == "globex" {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if peak(&live, "globex") >= 4 {
                        break Ok(());
                    }
                    if Instant::now() > deadline {
                        break Err("4 of globex's runs never ran at once");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } else {
                tokio::time::sleep(pause).await;
                Ok(())
            };
            *live.lock().unwrap().now.get_mut(&who).unwrap() -= 1;
            result?;
            Ok::<_, BoxError>(WorkUpdate::new().done(vec![who]))
        }
    })
    .add_edge(START, "work")
    .add_edge("work", END);
    GraphRegistry::new().with("work", g.compile().unwrap())
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// A worker on a pool of its own (a store connected for it) in `schema`.
async fn start_worker(schema: &str, registry: GraphRegistry, id: &str) -> Running {
    let store = PostgresStore::connect_with(support::options(schema))
        .await
        .unwrap();
    support::spawn(
        Worker::new(store, registry, id)
            .concurrency(4)
            .lease_ttl(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(50))
            .shutdown_timeout(Duration::from_secs(5)),
    )
}

/// `workers` workers (4 runs at once each), acme capped at 2 with 10 jobs, globex uncapped
/// with 4 jobs that must run at once.
async fn cap_holds_across(workers: usize) {
    let schema = support::fresh_schema(&format!("caps{workers}"));
    let store = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let queue = Queue::new(&store);
    queue.set_tenant_limit(&tenant("acme"), 2).await.unwrap();
    let acme = queue.clone().tenant(tenant("acme"));
    let globex = queue.clone().tenant(tenant("globex"));
    let mut acme_runs = Vec::new();
    for i in 0..10 {
        let run = format!("acme-{i}");
        acme.submit_with_id("work", &run, json!({ "who": "acme" }))
            .await
            .unwrap();
        acme_runs.push(run);
    }
    let mut globex_runs = Vec::new();
    for i in 0..4 {
        let run = format!("globex-{i}");
        globex
            .submit_with_id("work", &run, json!({ "who": "globex" }))
            .await
            .unwrap();
        globex_runs.push(run);
    }
    let live = Shared::default();
    let mut running = Vec::new();
    for w in 0..workers {
        let registry = registry(live.clone(), Duration::from_millis(60));
        running.push(start_worker(&schema, registry, &format!("w{w}")).await);
    }
    // globex's 4 runs ran at once (each waited for the others), beside acme's 2.
    for run in &globex_runs {
        let job = wait_for(&globex, run, "done").await;
        assert_eq!(job.output.unwrap()["done"], json!(["globex"]));
    }
    let mut by = std::collections::HashSet::new();
    for run in &acme_runs {
        let job = wait_for(&acme, run, "done").await;
        assert_eq!(job.attempts, 1, "{job:?}");
        assert!(!job.held_by_tenant_cap);
        by.insert(job.worker.unwrap());
    }
    assert!(
        peak(&live, "acme") <= 2,
        "acme's runs at once went over its cap of 2: {}",
        peak(&live, "acme")
    );
    assert_eq!(peak(&live, "globex"), 4);
    let limit = queue.tenant_limit(&tenant("acme")).await.unwrap().unwrap();
    assert_eq!(
        (limit.max_in_flight, limit.in_flight, limit.queued),
        (2, 0, 0)
    );
    eprintln!(
        "{workers} workers: acme's 10 runs ran on {} of them, at most {} at once",
        by.len(),
        peak(&live, "acme")
    );
    for r in running {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_cap_holds_across_two_workers() {
    cap_holds_across(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_cap_holds_across_four_workers() {
    cap_holds_across(4).await;
}

/// A cap of 0 holds every job of the tenant (`queued`, `held_by_tenant_cap`) while the worker
/// runs other tenants' jobs; raising it lets them run, clearing it lets them all run. A queue
/// of a tenant neither sets caps nor reads another tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_tenants_cap_waits_until_the_cap_is_raised() {
    let schema = support::fresh_schema("caps_held");
    let store = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let queue = Queue::new(&store);
    let acme = queue.clone().tenant(tenant("acme"));
    let globex = queue.clone().tenant(tenant("globex"));
    assert!(queue.tenant_limit(&tenant("acme")).await.unwrap().is_none());
    assert!(!queue.clear_tenant_limit(&tenant("acme")).await.unwrap());
    queue.set_tenant_limit(&tenant("acme"), 0).await.unwrap();
    for i in 0..3 {
        acme.submit_with_id("work", &format!("held-{i}"), json!({ "who": "acme" }))
            .await
            .unwrap();
    }
    let live = Shared::default();
    let worker = start_worker(&schema, registry(live.clone(), Duration::ZERO), "w").await;
    // The worker looked at the queue since: it ran a job queued after acme's.
    globex
        .submit_with_id("work", "first-other", json!({ "who": "other" }))
        .await
        .unwrap();
    wait_for(&globex, "first-other", "done").await;
    for i in 0..3 {
        let job = acme.job(&format!("held-{i}")).await.unwrap().unwrap();
        assert_eq!((job.status.as_str(), job.attempts), ("queued", 0));
        assert!(job.held_by_tenant_cap, "{job:?}");
    }
    let other = globex.job("first-other").await.unwrap().unwrap();
    assert!(!other.held_by_tenant_cap);
    let limit = acme.tenant_limit(&tenant("acme")).await.unwrap().unwrap();
    assert_eq!(
        (limit.max_in_flight, limit.in_flight, limit.queued),
        (0, 0, 3)
    );

    // A queue of a tenant: no caps set, none of another tenant's read.
    let err = acme
        .set_tenant_limit(&tenant("acme"), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(e) if e.downcast_ref::<TenantScoped>().is_some()),
        "{err:?}"
    );
    assert!(acme.clear_tenant_limit(&tenant("acme")).await.is_err());
    assert!(
        globex
            .tenant_limit(&tenant("acme"))
            .await
            .unwrap()
            .is_none()
    );

    // Raised to 1: they run, one at a time; cleared: the rest as any others.
    queue.set_tenant_limit(&tenant("acme"), 1).await.unwrap();
    wait_for(&acme, "held-0", "done").await;
    queue.clear_tenant_limit(&tenant("acme")).await.unwrap();
    for i in 0..3 {
        let job = wait_for(&acme, &format!("held-{i}"), "done").await;
        assert!(!job.held_by_tenant_cap);
    }
    assert!(queue.tenant_limit(&tenant("acme")).await.unwrap().is_none());
    worker.stop().await;
}
