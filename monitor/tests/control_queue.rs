//! The control API over a PostgreSQL queue of workers (`Monitor::queue`): a run submitted over
//! HTTP is run by a worker, an interrupted one is answered over HTTP, a cancellation reaches
//! the worker, the queue's depth is shown.
//!
//! Needs a server: `./scripts/test` starts one and sets `AGENTGRAPH_TEST_POSTGRES_URL`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{CheckpointStore, RunStatus};
use agentgraph_monitor::Monitor;
use agentgraph_postgres::worker::{Queue, Worker};
use agentgraph_postgres::{PostgresOptions, PostgresStore};
use common::control::{TOKEN, post, registry, until_status};
use common::url;
use serde_json::{Value, json};

async fn fresh_store() -> PostgresStore {
    let base = std::env::var("AGENTGRAPH_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "AGENTGRAPH_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL server. Run it \
             with ./scripts/test (which starts one), or start one with `scripts/postgres start \
             DIR` and export AGENTGRAPH_TEST_POSTGRES_URL=<the URL it prints>"
        )
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("mon_queue_{}_{nanos}", std::process::id());
    let options = PostgresOptions::new(&base)
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    PostgresStore::connect_with(options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_submitted_over_http_are_run_by_a_worker() {
    let store = fresh_store().await;
    let server = Monitor::new(Arc::new(store.clone()) as Arc<dyn CheckpointStore>)
        .bind(([127, 0, 0, 1], 0).into())
        .token(TOKEN)
        .metrics(false)
        .queue(Queue::new(&store))
        .serve()
        .await
        .unwrap();

    // Queued before any worker runs: the depth says so.
    let (status, queued) = post(
        &server,
        "/api/graphs/count/runs",
        json!({ "run_id": "c1", "input": { "rounds": 2 } }),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["queued"], true);
    let (status, again) = post(&server, "/api/graphs/count/runs", json!({ "run_id": "c1" })).await;
    assert_eq!(status, 409, "{again}");
    let depth: Value = reqwest::Client::new()
        .get(url(server.local_addr(), "/api/queue"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(depth["depth"], 1, "{depth}");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(store.clone(), registry(), "w1")
        .poll_interval(Duration::from_millis(50))
        .shutdown_timeout(Duration::from_secs(5));
    let worker = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    until_status(&store, "c1", RunStatus::Completed).await;

    // An interrupt, answered over HTTP; the worker resumes it.
    let (status, _) = post(
        &server,
        "/api/graphs/review/runs",
        json!({ "run_id": "q1" }),
    )
    .await;
    assert_eq!(status, 202);
    until_status(&store, "q1", RunStatus::Interrupted).await;
    let (status, resumed) = post(&server, "/api/runs/q1/resume", json!({ "value": "Done" })).await;
    assert_eq!(status, 202, "{resumed}");
    assert_eq!(resumed["graph"], "review");
    until_status(&store, "q1", RunStatus::Completed).await;
    let (status, unknown) = post(&server, "/api/runs/ghost/resume", json!({ "value": 1 })).await;
    assert_eq!(status, 404, "{unknown}");

    // A cancellation reaches the worker running the run.
    let (status, _) = post(&server, "/api/graphs/slow/runs", json!({ "run_id": "s1" })).await;
    assert_eq!(status, 202);
    until_status(&store, "s1", RunStatus::Running).await;
    let (status, cancelled) = post(&server, "/api/runs/s1/cancel", json!({})).await;
    assert_eq!(status, 202, "{cancelled}");
    until_status(&store, "s1", RunStatus::Cancelled).await;

    let workers: Value = reqwest::Client::new()
        .get(url(server.local_addr(), "/api/workers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(workers[0]["id"], "w1", "{workers}");
    assert_eq!(workers[0]["stopped"], false);

    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    server.shutdown().await.unwrap();
}
