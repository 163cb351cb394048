//! What the tests against a real PostgreSQL share: the server's URL, a fresh schema per store.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};

use agentgraph_postgres::{PostgresOptions, PostgresStore};

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
