//! The PostgreSQL side of `chain_1000`: a throwaway server started with `scripts/postgres`
//! (stopped when dropped), stores in it, and the raw baseline: one `INSERT` of a 1 KiB row,
//! committed (autocommit: one round trip, one WAL flush).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph_postgres::{PostgresOptions, PostgresStore};
use tokio::runtime::Runtime;

use crate::durable::{BenchStore, RAW_VALUE_LEN};

/// A throwaway PostgreSQL server (PostgreSQL's default durability: `fsync` and
/// `synchronous_commit` on), stopped and deleted when dropped; or, when
/// `AGENTGRAPH_BENCH_POSTGRES_URL` is set, the server it names (left running).
#[derive(Debug)]
pub struct PostgresServer {
    /// `None` for a server the harness did not start.
    state: Option<PathBuf>,
    url: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres")
}

impl PostgresServer {
    /// Starts one with `scripts/postgres start` in a fresh temporary directory.
    ///
    /// # Panics
    ///
    /// When the server does not start (the script says why: missing binaries, for example).
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("AGENTGRAPH_BENCH_POSTGRES_URL") {
            return PostgresServer { state: None, url };
        }
        let state =
            std::env::temp_dir().join(format!("agentgraph-bench-postgres-{}", std::process::id()));
        let out = Command::new(script())
            .arg("start")
            .arg(&state)
            .env_remove("AGENTGRAPH_POSTGRES_FSYNC")
            .output()
            .expect("scripts/postgres runs");
        if !out.status.success() {
            panic!(
                "scripts/postgres start failed (the chain_1000 postgres lines need a PostgreSQL server):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8(out.stdout)
            .expect("a URL")
            .trim()
            .to_owned();
        PostgresServer {
            state: Some(state),
            url,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A [`PostgresStore`] in schema `schema` of the server, as a bench store whose run ids
    /// start with `prefix`; `group` as [`PostgresOptions::group_ops`].
    ///
    /// # Panics
    ///
    /// When it does not connect.
    pub fn store(&self, rt: &Runtime, schema: &str, prefix: &str, group: bool) -> BenchStore {
        let options = PostgresOptions::new(&self.url)
            .and_then(|o| o.with_schema(schema))
            .expect("options")
            .group_ops(group);
        let store = rt
            .block_on(PostgresStore::connect_with(options))
            .expect("a PostgreSQL store");
        BenchStore::with_store(Arc::new(store), prefix)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            let _ = Command::new(script()).arg("stop").arg(state).status();
        }
    }
}

/// The raw baseline: a prepared `INSERT` of a 1 KiB row, in autocommit (the insert and its
/// commit in one round trip).
#[derive(Debug)]
pub struct PostgresBaseline {
    client: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
    value: Vec<u8>,
}

impl PostgresBaseline {
    /// Connects to `url` and makes the baseline's table.
    ///
    /// # Panics
    ///
    /// When the server refuses.
    pub fn new(rt: &Runtime, url: &str) -> Self {
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS raw_baseline (id bigserial PRIMARY KEY, payload bytea NOT NULL)",
                )
                .await
                .expect("the baseline's table");
            let insert = client
                .prepare("INSERT INTO raw_baseline (payload) VALUES ($1)")
                .await
                .expect("prepare");
            PostgresBaseline {
                client,
                insert,
                value: vec![0xa5; RAW_VALUE_LEN],
            }
        })
    }

    /// Times `n` inserts, one committed round trip each, into `out`.
    pub fn sample(&self, rt: &Runtime, n: usize, out: &mut Vec<Duration>) {
        rt.block_on(async {
            for _ in 0..n {
                let start = Instant::now();
                self.client
                    .execute(&self.insert, &[&self.value])
                    .await
                    .expect("insert");
                out.push(start.elapsed());
            }
        });
    }
}
