//! What the tests against a real PostgreSQL share: the server's URL, a fresh schema per store.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agentgraph_checkpoint::StoreError;
use agentgraph_postgres::worker::{JobInfo, Queue, Worker, WorkerStats};
use agentgraph_postgres::{PostgresOptions, PostgresStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The environment variable that names the test server.
pub const URL_VAR: &str = "AGENTGRAPH_TEST_POSTGRES_URL";

/// The test server's URL.
///
/// # Panics
///
/// When it is not set: these tests never skip.
pub fn url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{URL_VAR} is not set: these tests need a PostgreSQL server. Run them with ./scripts/test \
             (which starts one), or start one with `scripts/postgres start DIR` and export \
             {URL_VAR}=<the URL it prints>"
        )
    })
}

/// A schema name no other test (or test process) uses.
pub fn fresh_schema(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t_{name}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for the test server, in `schema`.
pub fn options(schema: &str) -> PostgresOptions {
    PostgresOptions::new(&url())
        .unwrap()
        .with_schema(schema)
        .unwrap()
}

/// A store in a fresh schema of its own.
pub async fn fresh_store(name: &str) -> PostgresStore {
    PostgresStore::connect_with(options(&fresh_schema(name)))
        .await
        .expect("connecting to the test server")
}

/// A plain client of the test server (for what the store does not do: terminating its
/// connections, reading its tables).
pub async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the test server");
    tokio::spawn(connection);
    client
}

/// Waits (60 s at most) until `run`'s newest job, as `queue` sees it, has `status`.
///
/// # Panics
///
/// When it does not by then, with the job as last seen.
pub async fn wait_for(queue: &Queue, run: &str, status: &str) -> JobInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = queue.job(run).await.unwrap();
        if let Some(job) = job.as_ref().filter(|j| j.status == status) {
            return job.clone();
        }
        assert!(
            Instant::now() < deadline,
            "run {run} is not {status} within 60 s: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker running on a task of its own until [`Running::stop`].
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StoreError>>,
    /// The worker's counters, shared with it.
    pub stats: Arc<WorkerStats>,
}

/// Runs `worker` on a task of its own.
pub fn spawn(worker: Worker) -> Running {
    let stats = worker.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run_until(async {
        stopped.await.ok();
    }));
    Running { stop, task, stats }
}

impl Running {
    /// Stops the worker, waits for it to return (it must return `Ok`), and gives its stats.
    pub async fn stop(self) -> Arc<WorkerStats> {
        self.stop.send(()).ok();
        self.task.await.unwrap().unwrap();
        self.stats
    }
}
