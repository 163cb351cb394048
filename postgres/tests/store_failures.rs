//! What happens when things go wrong, against a real PostgreSQL: connections terminated
//! mid-commit, commits cancelled half-way, a schema newer than the code, two processes
//! migrating at once, and the password kept out of every message.

mod support;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, StoreError, WriteBatch};
use agentgraph_postgres::{PostgresOptions, PostgresStore, SCHEMA_VERSION, SchemaTooNew};

/// How many checkpoints a test batch writes, each of [`CHUNK`] bytes.
const CHECKPOINTS: u64 = 16;
const CHUNK: usize = 256 << 10;

/// A batch that takes a while to send and apply: a run record and 4 MiB of checkpoints.
fn big_batch(run: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put_run(RunRecord::new(run, RunStatus::Running, 7, 1));
    for step in 0..CHECKPOINTS {
        batch.put_checkpoint(run, step, vec![step as u8; CHUNK]);
    }
    batch.put_event(run, 0, b"event".to_vec());
    batch
}

/// Whether `run`'s data is all there (`Some(true)`), all absent (`Some(false)`), or half
/// there (`None`), read in one statement (one snapshot) by another connection.
async fn whole_or_absent(admin: &tokio_postgres::Client, schema: &str, run: &str) -> Option<bool> {
    let row = admin
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.runs WHERE run_id = $1), \
                        (SELECT count(*) FROM {schema}.checkpoints WHERE run_id = $1), \
                        (SELECT count(*) FROM {schema}.events WHERE run_id = $1)"
            ),
            &[&run.as_bytes()],
        )
        .await
        .unwrap();
    let counts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    match counts {
        (0, 0, 0) => Some(false),
        (1, n, 1) if n == CHECKPOINTS as i64 => Some(true),
        _ => None,
    }
}

/// Terminating the store's connections (`pg_terminate_backend`) while it commits: each
/// commit either succeeds or fails with `Unavailable`, the run is then whole or absent, and
/// the store serves again at once on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_commit_leaves_the_run_whole_or_absent() {
    let schema = support::fresh_schema("lost");
    let app = format!("agentgraph-test-{schema}");
    let store = PostgresStore::connect_with(
        support::options(&schema)
            .application_name(&app)
            .max_connections(1),
    )
    .await
    .unwrap();
    let admin = support::admin().await;
    let (mut lost, mut committed) = (0, 0);
    for i in 0..30u64 {
        let run = format!("run-{i}");
        let commit = tokio::spawn({
            let store = store.clone();
            let run = run.clone();
            async move { store.commit(big_batch(&run)).await }
        });
        tokio::time::sleep(Duration::from_micros(500 * (i % 10))).await;
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap();
        match commit.await.unwrap() {
            Ok(()) => committed += 1,
            Err(StoreError::Unavailable(e)) => {
                lost += 1;
                let message = StoreError::Unavailable(e).to_string();
                assert!(message.contains("unavailable"), "{message}");
            }
            Err(e) => panic!("commit {i}: a lost connection must be Unavailable, got {e:?}"),
        }
        let state = whole_or_absent(&admin, &schema, &run).await;
        assert!(state.is_some(), "commit {i}: the run is half written");
        // The store serves again (reads retry once on a new connection).
        let record = store.get_run(&run).await.unwrap();
        assert_eq!(record.is_some(), state == Some(true), "commit {i}");
    }
    eprintln!("{lost} commits lost, {committed} committed");
    assert!(
        lost > 0,
        "no commit was cut ({committed} committed): the test proves nothing"
    );
    // And writes again.
    store.commit(big_batch("after")).await.unwrap();
    assert_eq!(whole_or_absent(&admin, &schema, "after").await, Some(true));
}

/// A commit whose future is dropped half-way (a timeout, a cancelled task) does not leave its
/// connection in the pool inside a transaction: the store's single connection serves the next
/// commit cleanly, and no backend of the store is left idle in a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cancelled_half_way_leaves_no_open_transaction() {
    let schema = support::fresh_schema("cancel");
    let app = format!("agentgraph-test-{schema}");
    let store = PostgresStore::connect_with(
        support::options(&schema)
            .application_name(&app)
            .max_connections(1),
    )
    .await
    .unwrap();
    let admin = support::admin().await;
    let mut cut = 0;
    for i in 0..20u64 {
        let run = format!("run-{i}");
        let timeout = Duration::from_millis(2 * i);
        if tokio::time::timeout(timeout, store.commit(big_batch(&run)))
            .await
            .is_err()
        {
            cut += 1;
        }
        // The next commit works on the (replaced) connection, outside any old transaction.
        let mut batch = WriteBatch::new();
        batch.put_checkpoint("probe", i, vec![1]);
        store.commit(batch).await.unwrap();
        assert!(store.get_checkpoint("probe", i).await.unwrap().is_some());
        // The cut connection's backend ends; its transaction is rolled back or committed
        // whole, never left open.
        let mut open = 1;
        for _ in 0..200 {
            open = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                     AND state LIKE 'idle in transaction%'",
                    &[&app],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            open, 0,
            "commit {i}: a connection is left idle in a transaction"
        );
        assert!(whole_or_absent(&admin, &schema, &run).await.is_some());
    }
    eprintln!("{cut} commits cancelled");
    assert!(cut > 0, "no commit was cancelled: the test proves nothing");
}

/// A database migrated by a newer program is refused with `SchemaTooNew`.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let schema = support::fresh_schema("newer");
    drop(
        PostgresStore::connect_with(support::options(&schema))
            .await
            .unwrap(),
    );
    let admin = support::admin().await;
    admin
        .execute(
            &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap_err();
    let StoreError::Backend(source) = &err else {
        panic!("expected Backend(SchemaTooNew), got {err:?}");
    };
    assert_eq!(
        source.downcast_ref::<SchemaTooNew>(),
        Some(&SchemaTooNew {
            schema: schema.clone(),
            found: SCHEMA_VERSION + 1,
            known: SCHEMA_VERSION,
        })
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

/// Processes connecting at once to a new schema apply each migration once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    let schema = support::fresh_schema("race");
    let connects: Vec<_> = (0..6)
        .map(|_| {
            let options = support::options(&schema);
            tokio::spawn(async move { PostgresStore::connect_with(options).await })
        })
        .collect();
    for c in connects {
        c.await.unwrap().unwrap();
    }
    let admin = support::admin().await;
    let versions: Vec<i32> = admin
        .query(
            &format!("SELECT version FROM {schema}.schema_version ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

/// A log sink for the test: everything the store logs, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The URL's password appears in no `Debug` output, no error and no log line.
#[tokio::test]
async fn the_password_is_never_shown() {
    const SECRET: &str = "pw-s3cr3t-4711";
    let logs = Logs::default();
    let sink = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .finish(),
    );
    let mut shown = Vec::new();
    // The test server trusts local connections: the password is sent and ignored.
    let url = support::url().replacen("agentgraph@", &format!("agentgraph:{SECRET}@"), 1);
    assert!(
        url.contains(SECRET),
        "the test server's URL has the expected form: {url}"
    );
    let schema = support::fresh_schema("secret");
    let options = PostgresOptions::new(&format!("{url}?schema={schema}")).unwrap();
    shown.push(format!("{options:?}"));
    let store = PostgresStore::connect_with(options).await.unwrap();
    shown.push(format!("{store:?}"));
    let lease = store
        .acquire_lease("r", Duration::from_secs(60))
        .await
        .unwrap();
    let mut batch = WriteBatch::new();
    batch
        .fence("r", lease.epoch() + 1)
        .put_checkpoint("r", 0, vec![1]);
    let err = store.commit(batch).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    drop(lease);
    // Errors of URLs that do not parse, of servers that do not answer, of refused logins.
    let bad_port = url.replacen("127.0.0.1:", "127.0.0.1:x", 1);
    let unreachable = format!("postgres://agentgraph:{SECRET}@127.0.0.1:1/postgres");
    let no_db = format!("{url}_missing_db");
    for url in [bad_port, unreachable, no_db] {
        let err = PostgresStore::connect(&url).await.unwrap_err();
        shown.push(format!("{err} {err:?}"));
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        while let Some(e) = source {
            shown.push(format!("{e} {e:?}"));
            source = e.source();
        }
    }
    std::io::stdout().flush().unwrap();
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("migration applied"),
        "the logs were captured: {logged}"
    );
    shown.push(logged);
    for text in &shown {
        assert!(!text.contains(SECRET), "the password is shown: {text}");
    }
}
