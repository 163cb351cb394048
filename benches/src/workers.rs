//! The `workers` workload: runs of a 10-step chain of trivial nodes through one PostgreSQL
//! queue, taken by 1, 2 or 4 [`Worker`]s (each with its own pool, in this process), durable
//! (`Durability::Sync` or `Durability::Async`, PostgreSQL's default `fsync`).

use std::time::{Duration, Instant};

use agentgraph_engine::{Durability, GraphRegistry, RunConfig};
use agentgraph_postgres::worker::{Queue, Worker};
use agentgraph_postgres::{PostgresOptions, PostgresStore};
use tokio::runtime::Runtime;

use crate::workloads::chain;

/// The runs each worker runs at once, each measured: 8 (4 workers then have 32 runs in flight
/// together, as one worker of 32) and 32 (4 workers have 128: on a machine of 2 cores that
/// shares them with the server, oversubscribed).
pub const WORKER_CONCURRENCIES: [usize; 2] = [8, 32];

/// The steps of each run.
pub const WORKER_STEPS: u64 = 10;

/// What [`time_workers`] measured.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTiming {
    /// Durable steps per second, all workers together.
    pub steps_per_s: f64,
    /// Runs completed per second.
    pub runs_per_s: f64,
    /// The median time from a job being queued to its claim, with idle workers.
    pub claim_p50: Duration,
    /// The statements the server ran per run while the runs ran (`calls` of
    /// `pg_stat_statements`, the harness's own polling left out), when the server has the
    /// extension loaded (`shared_preload_libraries`).
    pub statements_per_run: Option<f64>,
}

/// The statements the server ran so far in this database, by `pg_stat_statements`; `None`
/// without the extension.
async fn statements(client: &tokio_postgres::Client) -> Option<i64> {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .ok()?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .ok()?;
    Some(row.get(0))
}

async fn connect(url: &str, schema: &str, concurrency: usize) -> PostgresStore {
    let options = PostgresOptions::new(url)
        .and_then(|o| o.with_schema(schema))
        .expect("options")
        .max_connections(concurrency + 4);
    PostgresStore::connect_with(options)
        .await
        .expect("a PostgreSQL store")
}

/// Runs `runs` runs through `workers` workers of `concurrency` runs at a time each, in a fresh
/// schema of the server at `url`, each run with `durability`, then `probes` single runs one after another (idle workers) for the
/// claim latency.
///
/// # Panics
///
/// When the server fails, or a run does not complete.
pub fn time_workers(
    rt: &Runtime,
    url: &str,
    workers: usize,
    concurrency: usize,
    durability: Durability,
    runs: usize,
    probes: usize,
) -> WorkerTiming {
    let schema = format!(
        "bench_workers_{workers}_{concurrency}_{}_{}",
        match durability {
            Durability::Sync => "sync",
            _ => "async",
        },
        std::process::id()
    );
    rt.block_on(async move {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let stores = {
            let mut v = Vec::new();
            for _ in 0..workers {
                v.push(connect(url, &schema, concurrency).await);
            }
            v
        };
        let queue = Queue::new(&stores[0]);
        for i in 0..runs {
            queue
                .submit_with_id("chain", &format!("run-{i}"), serde_json::json!({}))
                .await
                .expect("submitted");
        }
        let registry = GraphRegistry::new().with("chain", chain(WORKER_STEPS as usize));
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let mut stats = Vec::new();
        let before = statements(&client).await;
        let mut polls = 0;
        let started = Instant::now();
        for (i, store) in stores.iter().enumerate() {
            let worker = Worker::new(store.clone(), registry.clone(), format!("bench-{i}"))
                .concurrency(concurrency)
                .poll_interval(Duration::from_millis(100))
                .run_config(move || RunConfig::new().durability(durability));
            stats.push(worker.stats());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            tasks.push(tokio::spawn(worker.run_until(async {
                stopped.await.ok();
            })));
        }
        // The workers' own counts first (no load on the server measured), then the jobs'
        // rows: a run is done once its job says so.
        let completed = || stats.iter().map(|s| s.completed()).sum::<u64>() as usize;
        let count = format!("SELECT count(*) FROM {schema}.jobs WHERE status = 'done'");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if completed() >= runs {
                let n: i64 = client.query_one(&count, &[]).await.expect("count").get(0);
                polls += 1;
                if n as usize >= runs {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "workers: the runs did not complete");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        // Less the harness's own: its polls, and the count query of `statements`.
        let statements_per_run = match (before, statements(&client).await) {
            (Some(before), Some(after)) => {
                Some((after - before - polls - 2) as f64 / runs as f64)
            }
            _ => None,
        };
        // Claim latency: one job at a time, the workers idle (woken by NOTIFY).
        let mut claims = Vec::with_capacity(probes);
        for i in 0..probes {
            let run = format!("probe-{i}");
            queue
                .submit_with_id("chain", &run, serde_json::json!({}))
                .await
                .expect("submitted");
            loop {
                if completed() > runs + i {
                    let job = queue.job(&run).await.expect("job").expect("queued");
                    if job.status == "done" {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            let row = client
                .query_one(
                    &format!(
                        "SELECT extract(epoch FROM claimed_at - available_at)::float8 FROM {schema}.jobs WHERE run_id = $1"
                    ),
                    &[&run],
                )
                .await
                .expect("the probe's claim");
            claims.push(Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0)));
        }
        for stop in stops {
            stop.send(()).ok();
        }
        for task in tasks {
            task.await.expect("the worker's task").expect("the worker");
        }
        let _ = client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await;
        claims.sort();
        WorkerTiming {
            steps_per_s: (runs as u64 * WORKER_STEPS) as f64 / elapsed,
            runs_per_s: runs as f64 / elapsed,
            claim_p50: claims.get(claims.len() / 2).copied().unwrap_or_default(),
            statements_per_run,
        }
    })
}
