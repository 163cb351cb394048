//! The PostgreSQL checkpoint store for agentgraph: [`PostgresStore`], a
//! [`CheckpointStore`] whose runs, checkpoints, blobs, pending writes, events and run leases
//! live in a PostgreSQL database that any number of processes, on any number of machines,
//! share.
//!
//! - **A commit is one transaction.** A [`WriteBatch`] is one statement per table (its rows
//!   as arrays) sent, with the fence check, as one statement (data-modifying `WITH` queries)
//!   when it writes each table once, as a step does; otherwise as `BEGIN`, the fence check,
//!   one statement per run of consecutive operations of one kind, `COMMIT`, pipelined. One
//!   round trip to the server either way.
//! - **Leases live in the database**, with their fencing epochs and their expiry (the server's
//!   clock): a run leased by one process is busy for every other. A batch fenced with a stale
//!   epoch fails with [`StoreError::Fenced`]
//!   inside the transaction and writes nothing; the lease's row stays locked until the
//!   commit, so no one takes the run over between the check and the write.
//! - **Durable at commit**: a commit that returned is in the server's write-ahead log, flushed
//!   to disk under PostgreSQL's defaults (`fsync` and `synchronous_commit` on);
//!   [`flush`](CheckpointStore::flush) has nothing left to do.
//! - **A lost connection** is [`StoreError::Unavailable`]:
//!   the batch in flight was applied whole or not at all. A commit whose future is dropped
//!   half-way closes its connection (the server rolls back what it had not committed) rather
//!   than handing it back to the pool inside a transaction.
//! - **Migrations** are applied at connect, in order, under an advisory lock; a database
//!   with a newer schema than this build knows is refused.
//!
//! The tables live in a schema of their own (`agentgraph` unless chosen with
//! `?schema=NAME` or [`PostgresOptions::with_schema`]). Connections are plain TCP or Unix
//! sockets (no TLS).
//!
//! # Examples
//!
//! Against a running server (start a throwaway one with `scripts/postgres start DIR`, which
//! prints its URL):
//!
//! ```no_run
//! use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, WriteBatch};
//! use agentgraph_postgres::PostgresStore;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> agentgraph_checkpoint::Result<()> {
//!     let store = PostgresStore::connect("postgres://agentgraph@127.0.0.1:5432/postgres").await?;
//!     let lease = store.acquire_lease("run-1", std::time::Duration::from_secs(30)).await?;
//!     let mut batch = WriteBatch::new();
//!     batch
//!         .fence("run-1", lease.epoch())
//!         .put_run(RunRecord::new("run-1", RunStatus::Running, 7, 0))
//!         .put_checkpoint("run-1", 0, b"step 0".to_vec());
//!     store.commit(batch).await?;
//!     store.release_lease(lease).await?;
//!     assert_eq!(store.latest_checkpoint("run-1").await?.map(|(step, _)| step), Some(0));
//!     Ok(())
//! }
//! ```

mod commit;
mod error;
mod ledger;
mod migrate;
mod options;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agentgraph_checkpoint::items::{Hit, Item, ItemIndex, ItemQuery, Namespace, decode_item};
use agentgraph_checkpoint::{
    BoxFuture, CheckpointStore, Lease, Result, RunRecord, SUBGRAPH_MARK, StoreError, WriteBatch,
    check_run_id, decode_run,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use error::SchemaTooNew;
pub use ledger::PostgresLedger;
pub use options::{DEFAULT_SCHEMA, PostgresOptions};

use crate::migrate::{flip, unflip};
use crate::options::Server;

/// The newest schema version this build knows (the database's `schema_version`).
///
/// # Examples
///
/// ```
/// assert!(agentgraph_postgres::SCHEMA_VERSION >= 1);
/// ```
pub const SCHEMA_VERSION: i32 = migrate::MIGRATIONS.len() as i32;

/// A [`CheckpointStore`] in a PostgreSQL database, shared by every process that connects to
/// it: see the [crate] documentation for what it guarantees.
///
/// Clones share one connection pool. The store needs a tokio runtime (its connections are
/// tasks of the runtime that opened them). Dropping a [`Lease`] without
/// [`release_lease`](CheckpointStore::release_lease) releases it in a spawned task (or,
/// without a runtime, lets it expire after its TTL).
///
/// # Examples
///
/// ```no_run
/// use agentgraph_checkpoint::CheckpointStore;
/// use agentgraph_postgres::{PostgresOptions, PostgresStore};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> agentgraph_checkpoint::Result<()> {
///     let options = PostgresOptions::new("postgres://app@db.internal/app")?
///         .with_schema("agentgraph_prod")?
///         .max_connections(32);
///     let store = PostgresStore::connect_with(options).await?;
///     for run in store.list_runs(None, 20).await? {
///         println!("{} {}", run.run_id, run.status);
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    options: PostgresOptions,
    leases: LeaseBook,
    /// The vectors of the items, for semantic searches: caught up with the database's
    /// `item_changes` at each one.
    index: ItemIndex,
}

/// The leases this store gave out and dropped or released, so that a dropped lease is
/// released once, and before this store takes its run again.
#[derive(Default)]
struct LeaseBook {
    /// Dropped, their release spawned and maybe not done: run → epoch.
    dropped: Mutex<HashMap<String, u64>>,
    /// Released by `release_lease`: their drop does nothing.
    released: Mutex<HashSet<(String, u64)>>,
    /// Runs whose release a worker makes itself, in the statement that ends the run's job
    /// ([`PostgresStore::defer_release`]): run → the epoch of its lease once dropped.
    deferred: Mutex<HashMap<String, Option<u64>>>,
}

const GET_RUN: &str = "SELECT record FROM runs WHERE run_id = $1";
const LIST_RUNS: &str = "SELECT run_id, record FROM runs WHERE ($1::bytea IS NULL OR run_id > $1) ORDER BY run_id LIMIT $2";
const GET_CHECKPOINT: &str = "SELECT bytes FROM checkpoints WHERE run_id = $1 AND step = $2";
const LATEST_CHECKPOINT: &str =
    "SELECT step, bytes FROM checkpoints WHERE run_id = $1 ORDER BY step DESC LIMIT 1";
const LIST_CHECKPOINTS: &str =
    "SELECT step, bytes FROM checkpoints WHERE run_id = $1 AND step >= $2 ORDER BY step LIMIT $3";
const GET_BLOBS: &str = "SELECT version, bytes FROM blobs WHERE run_id = $1 AND field = $2 AND version BETWEEN $3 AND $4 ORDER BY version";
const GET_PENDING: &str =
    "SELECT task, bytes FROM pending_writes WHERE run_id = $1 AND step = $2 ORDER BY task";
const GET_EVENTS: &str =
    "SELECT seq, bytes FROM events WHERE run_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3";
const GET_AUDIT: &str =
    "SELECT seq, entry FROM audit WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const AUDITED_RUNS: &str = "SELECT DISTINCT run_id FROM audit ORDER BY run_id";
const LAST_EVENT: &str = "SELECT seq FROM events WHERE run_id = $1 ORDER BY seq DESC LIMIT 1";
const ACQUIRE: &str = "INSERT INTO leases (run_id, epoch, expires_at) \
     VALUES ($1, 1, clock_timestamp() + $2::bigint * interval '1 millisecond') \
     ON CONFLICT (run_id) DO UPDATE SET epoch = leases.epoch + 1, expires_at = EXCLUDED.expires_at \
     WHERE leases.expires_at IS NULL OR leases.expires_at <= clock_timestamp() \
     RETURNING epoch";
/// Whether the store holds neither the run ($1) nor a run of its subgraphs (ids from $2,
/// `{run}/@`, up to $3, `{run}/A`): asked right after the lease is taken, in a statement of
/// its own (its snapshot follows the lease's commit, and every later write of the run is
/// fenced by the lease). Two `EXISTS`, each an index probe whatever the parameters: one
/// `WHERE run_id = $1 OR (run_id >= $2 AND ...)` was planned, once the prepared statement's
/// plan went generic, as a scan of the whole table (every new run read every run).
const VACANT: &str = "SELECT NOT EXISTS (SELECT 1 FROM runs WHERE run_id = $1) \
     AND NOT EXISTS (SELECT 1 FROM runs WHERE run_id >= $2 AND run_id < $3)";
const RENEW: &str = "UPDATE leases SET expires_at = clock_timestamp() + $3::bigint * interval '1 millisecond' \
     WHERE run_id = $1 AND epoch = $2 RETURNING epoch";
const EPOCH: &str = "SELECT epoch FROM leases WHERE run_id = $1";
const RELEASE: &str = "UPDATE leases SET expires_at = NULL WHERE run_id = $1 AND epoch = $2";
const GET_ITEM: &str =
    "SELECT item FROM items WHERE namespace = $1 AND key = $2 AND item IS NOT NULL";
const SCAN_ITEMS: &str = "SELECT item FROM items WHERE namespace >= $1 \
     AND ($2::bytea IS NULL OR namespace < $2) AND item IS NOT NULL ORDER BY namespace, key";
/// The change number, the newest change of a pruned tombstone, and the items written since
/// `$1` (deleted ones as tombstones), in one snapshot.
const ITEM_CHANGES: &str = "SELECT c.version, c.pruned, i.namespace, i.key, i.item \
     FROM item_changes c LEFT JOIN items i ON i.seq > $1 WHERE c.id = 1";
/// Removes the tombstones deleted `$1` milliseconds ago or earlier (and those of before
/// migration 5), and raises `pruned` to the newest change among them, in one statement (a
/// reader's snapshot sees both or neither); gives how many went.
const PRUNE_DELETED_ITEMS: &str = "WITH gone AS (DELETE FROM items WHERE item IS NULL \
     AND (deleted_at IS NULL OR deleted_at <= clock_timestamp() - $1::bigint * interval '1 millisecond') \
     RETURNING seq), \
     marked AS (UPDATE item_changes SET pruned = greatest(pruned, (SELECT max(seq) FROM gone)) \
     WHERE id = 1 AND EXISTS (SELECT 1 FROM gone)) \
     SELECT count(*) FROM gone";

/// The longest lease the database is asked for: a century, in milliseconds.
const MAX_TTL_MS: i64 = 100 * 365 * 86_400 * 1_000;

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).map_or(MAX_TTL_MS, |ms| ms.min(MAX_TTL_MS))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A pooled connection that is closed, not handed back, unless [`keep`](Checked::keep) is
/// called: a commit dropped half-way must not leave its transaction open for the next user.
struct Checked(Option<Object>);

impl Checked {
    fn client(&self) -> &Object {
        self.0
            .as_ref()
            .expect("the connection is held until kept or dropped")
    }

    fn keep(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            // Out of the pool and dropped: the connection closes, the server rolls back.
            drop(Object::take(object));
        }
    }
}

impl PostgresStore {
    /// Connects to the server `url` names (see [`PostgresOptions::new`] for the forms it
    /// takes, and `?schema=NAME`), creates or migrates the store's schema, and opens a pool
    /// of connections. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached; [`StoreError::Backend`]
    /// when the URL does not parse, the server refuses the connection (authentication) or
    /// the migrations, or the schema is newer than this build ([`SCHEMA_VERSION`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::StoreError;
    /// use agentgraph_postgres::PostgresStore;
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() {
    ///     // Nothing listens on port 1: the server is unavailable.
    ///     let err = PostgresStore::connect("postgres://ann:hunter2@127.0.0.1:1/app").await.unwrap_err();
    ///     assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    ///     assert!(!err.to_string().contains("hunter2"));
    /// }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        PostgresStore::connect_with(PostgresOptions::new(url)?).await
    }

    /// Connects with `options`: see [`connect`](PostgresStore::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](PostgresStore::connect)'s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use agentgraph_postgres::{PostgresOptions, PostgresStore};
    /// # async fn f() -> agentgraph_checkpoint::Result<()> {
    /// let options = PostgresOptions::new("postgres://app@db.internal/app")?.with_schema("tenant_7")?;
    /// let store = PostgresStore::connect_with(options).await?;
    /// assert_eq!(store.options().schema(), "tenant_7");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_with(options: PostgresOptions) -> Result<Self> {
        let config = options.session_config();
        {
            let (mut client, connection) = config.connect(NoTls).await.map_err(error::db)?;
            let task = tokio::spawn(connection);
            let migrated = migrate::migrate(&mut client, &options.schema).await;
            drop(client);
            let _ = task.await;
            migrated?;
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.wait_timeout))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                options,
                leases: LeaseBook::default(),
                index: ItemIndex::new(),
            }),
        })
    }

    /// The options the store was opened with.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> agentgraph_checkpoint::Result<()> {
    /// let store = agentgraph_postgres::PostgresStore::connect("postgres://app@db/app").await?;
    /// assert_eq!(store.options().schema(), agentgraph_postgres::DEFAULT_SCHEMA);
    /// # Ok(())
    /// # }
    /// ```
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    /// Replaces the stored bytes of `run`'s record, bypassing every check. For tests that
    /// damage records (the conformance suite's), from outside any runtime or inside one: it
    /// runs on a thread of its own, over a connection of its own.
    #[doc(hidden)]
    pub fn put_raw_run_record_blocking(&self, run: &str, bytes: Vec<u8>) {
        let config = self.inner.options.session_config();
        let run = run.as_bytes().to_vec();
        std::thread::scope(|s| {
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async move {
                    let (client, connection) = config.connect(NoTls).await.expect("connect");
                    tokio::spawn(connection);
                    client
                        .execute(
                            "INSERT INTO runs (run_id, record, status, updated_at_ms) VALUES ($1, $2, 'running', 0) \
                             ON CONFLICT (run_id) DO UPDATE SET record = EXCLUDED.record",
                            &[&run, &bytes],
                        )
                        .await
                        .expect("the raw record is written");
                });
            })
            .join()
            .expect("the raw write's thread");
        });
    }

    /// Runs one statement on a pooled connection; a read (`retry`) that finds the connection
    /// gone is tried once more on another.
    async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        retry: bool,
    ) -> Result<Vec<Row>> {
        let mut tried = false;
        loop {
            let result = async {
                let client = self.inner.pool.get().await.map_err(error::pool)?;
                let statement = client.prepare_cached(sql).await.map_err(error::db)?;
                client.query(&statement, params).await.map_err(error::db)
            }
            .await;
            match result {
                Err(StoreError::Unavailable(_)) if retry && !tried => tried = true,
                result => return result,
            }
        }
    }

    async fn commit_now(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let plan = commit::plan(batch, self.inner.options.group_ops)?;
        let checked = Checked(Some(self.inner.pool.get().await.map_err(error::pool)?));
        let client = checked.client();
        if let Some(one) = commit::one_statement(&plan) {
            let statement = client.prepare_cached(&one.sql).await.map_err(error::db)?;
            let result = client.execute(&statement, &one.params).await;
            // Its answer was read: the statement's own transaction is over.
            checked.keep();
            return commit::first_error(vec![result], &plan.fences);
        }
        let statements = commit::in_order(
            plan.statements
                .iter()
                .map(|s| client.prepare_cached(s.sql))
                .collect(),
        )
        .await
        .into_iter()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(error::db)?;
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = plan
            .statements
            .iter()
            .map(|s| {
                s.params
                    .iter()
                    .map(|p| &**p as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let results = commit::in_order(
            statements
                .iter()
                .zip(&params)
                .map(|(statement, params)| client.execute(statement, params))
                .collect(),
        )
        .await;
        // Every answer was read, `COMMIT`'s too: the transaction is over, committed or rolled
        // back, and the connection can serve again (a closed one is dropped by the pool).
        checked.keep();
        commit::first_error(results, &plan.fences)
    }

    /// Takes the lease of `run` ([`ACQUIRE`]'s rows: none when it is busy) and says whether
    /// the run is [vacant](VACANT): two statements, pipelined in one round trip.
    async fn acquire(&self, run: &str, ttl_ms: i64) -> Result<(Vec<Row>, bool)> {
        let client = self.inner.pool.get().await.map_err(error::pool)?;
        let acquire = client.prepare_cached(ACQUIRE).await.map_err(error::db)?;
        let vacant = client.prepare_cached(VACANT).await.map_err(error::db)?;
        let id = run.as_bytes();
        // The subgraphs' runs: the ids from `{run}/@` to the first one past them.
        let from = format!("{run}{SUBGRAPH_MARK}").into_bytes();
        let mut to = from.clone();
        if let Some(last) = to.last_mut() {
            *last += 1; // `@` is not the greatest byte
        }
        let acquire_params: [&(dyn ToSql + Sync); 2] = [&id, &ttl_ms];
        let vacant_params: [&(dyn ToSql + Sync); 3] = [&id, &from, &to];
        let mut results = commit::in_order(vec![
            client.query(&acquire, &acquire_params),
            client.query(&vacant, &vacant_params),
        ])
        .await
        .into_iter();
        let (Some(acquired), Some(vacant)) = (results.next(), results.next()) else {
            unreachable!("two statements, two answers")
        };
        let rows = acquired.map_err(error::db)?;
        let vacant = vacant
            .map_err(error::db)?
            .first()
            .is_some_and(|row| row.get::<_, bool>(0));
        Ok((rows, vacant))
    }

    /// The next lease of `run` this store gives out is not released when dropped: its epoch
    /// is kept for [`take_deferred`](PostgresStore::take_deferred), so that a worker
    /// releases it in the statement that ends the run's job (one commit instead of two).
    pub(crate) fn defer_release(&self, run: &str) {
        lock(&self.inner.leases.deferred).insert(run.to_owned(), None);
    }

    /// Ends what [`defer_release`](PostgresStore::defer_release) began: the epoch of `run`'s
    /// lease if it was dropped since, for the caller to release; otherwise (still held, or
    /// never taken) `None`, and the lease is released as usual when dropped.
    pub(crate) fn take_deferred(&self, run: &str) -> Option<u64> {
        lock(&self.inner.leases.deferred).remove(run).flatten()
    }

    /// Brings the vector index up to the database's newest item change (every item at the
    /// first call; the items changed since at the next ones).
    ///
    /// An index older than the newest pruned tombstone may have missed a deletion: it is
    /// built again from every item.
    async fn catch_up_index(&self) -> Result<()> {
        let index = &self.inner.index;
        let since = index.version().map_or(-1, |v| v as i64);
        let mut rows = self.query(ITEM_CHANGES, &[&since], true).await?;
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let pruned = first.get::<_, i64>(1);
        if since >= 0 && pruned > since {
            index.invalidate();
            rows = self.query(ITEM_CHANGES, &[&-1i64], true).await?;
        }
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let version = first.get::<_, i64>(0) as u64;
        if index.version() == Some(version) {
            return Ok(());
        }
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(namespace) = row.get::<_, Option<Vec<u8>>>(2) else {
                continue;
            };
            let key = row.get::<_, Vec<u8>>(3);
            let item = row
                .get::<_, Option<Vec<u8>>>(4)
                .map(|b| decode_item(&b))
                .transpose()?;
            changes.push((
                Namespace::decode(&namespace)?,
                String::from_utf8_lossy(&key).into_owned(),
                item,
            ));
        }
        index.catch_up(version, changes);
        Ok(())
    }

    async fn release(&self, run: &str, epoch: u64) -> Result<()> {
        self.query(RELEASE, &[&run.as_bytes(), &(epoch as i64)], true)
            .await
            .map(drop)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The smallest byte string greater than every one starting with `prefix` (`None`: there is
/// none, or the prefix is empty and every string is in range).
fn next_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn bytes_at(row: &Row, i: usize) -> Vec<u8> {
    row.get::<_, Vec<u8>>(i)
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &Server(&self.inner.options.config))
            .field("schema", &self.inner.options.schema)
            .finish_non_exhaustive()
    }
}

impl CheckpointStore for PostgresStore {
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.commit_now(batch))
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        // Every commit is durable when it returns.
        Box::pin(async { Ok(()) })
    }

    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let rows = self.query(GET_RUN, &[&run.as_bytes()], true).await?;
            rows.first()
                .map(|row| decode_run(run, &bytes_at(row, 0)))
                .transpose()
        })
    }

    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit_n: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>>> {
        Box::pin(async move {
            let after = after.map(str::as_bytes);
            let rows = self
                .query(LIST_RUNS, &[&after, &limit(limit_n)], true)
                .await?;
            rows.iter()
                .map(|row| {
                    let id = bytes_at(row, 0);
                    decode_run(&String::from_utf8_lossy(&id), &bytes_at(row, 1))
                })
                .collect()
        })
    }

    fn get_checkpoint<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let rows = self
                .query(GET_CHECKPOINT, &[&run.as_bytes(), &flip(step)], true)
                .await?;
            Ok(rows.first().map(|row| bytes_at(row, 0)))
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let rows = self
                .query(LATEST_CHECKPOINT, &[&run.as_bytes()], true)
                .await?;
            Ok(rows
                .first()
                .map(|row| (unflip(row.get(0)), bytes_at(row, 1))))
        })
    }

    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit_n: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let Some(from) = after.map_or(Some(0), |a| a.checked_add(1)) else {
                return Ok(Vec::new());
            };
            let rows = self
                .query(
                    LIST_CHECKPOINTS,
                    &[&run.as_bytes(), &flip(from), &limit(limit_n)],
                    true,
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (unflip(row.get(0)), bytes_at(row, 1)))
                .collect())
        })
    }

    fn get_blobs<'a>(
        &'a self,
        run: &'a str,
        field: u32,
        from: u64,
        to: u64,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            if from > to {
                return Ok(Vec::new());
            }
            let rows = self
                .query(
                    GET_BLOBS,
                    &[&run.as_bytes(), &i64::from(field), &flip(from), &flip(to)],
                    true,
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (unflip(row.get(0)), bytes_at(row, 1)))
                .collect())
        })
    }

    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Vec<(u32, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let rows = self
                .query(GET_PENDING, &[&run.as_bytes(), &flip(step)], true)
                .await?;
            Ok(rows
                .iter()
                .map(|row| (row.get::<_, i64>(0) as u32, bytes_at(row, 1)))
                .collect())
        })
    }

    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit_n: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let Some(from) = after.map_or(Some(0), |a| a.checked_add(1)) else {
                return Ok(Vec::new());
            };
            let rows = self
                .query(
                    GET_EVENTS,
                    &[&run.as_bytes(), &flip(from), &limit(limit_n)],
                    true,
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (unflip(row.get(0)), bytes_at(row, 1)))
                .collect())
        })
    }

    fn last_event<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let rows = self.query(LAST_EVENT, &[&run.as_bytes()], true).await?;
            Ok(rows.first().map(|row| unflip(row.get(0))))
        })
    }

    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            check_run_id(run)?;
            // A lease of the run this store dropped is released first (its spawned release
            // may not have run yet).
            let dropped = lock(&self.inner.leases.dropped).remove(run);
            if let Some(epoch) = dropped {
                self.release(run, epoch).await?;
            }
            let deferred = lock(&self.inner.leases.deferred)
                .get_mut(run)
                .and_then(Option::take);
            if let Some(epoch) = deferred {
                self.release(run, epoch).await?;
            }
            let (rows, vacant) = self.acquire(run, ttl_ms(ttl)).await?;
            let Some(row) = rows.first() else {
                return Err(StoreError::RunBusy {
                    run: run.to_owned(),
                });
            };
            let epoch = row.get::<_, i64>(0) as u64;
            let store = Arc::downgrade(&self.inner);
            let lease = Lease::new(run, epoch, ttl);
            let lease = if vacant {
                lease.with_vacant_run()
            } else {
                lease
            };
            Ok(lease.on_drop(move |run, epoch| {
                let Some(inner) = store.upgrade() else { return };
                if lock(&inner.leases.released).remove(&(run.to_owned(), epoch)) {
                    return;
                }
                if let Some(slot) = lock(&inner.leases.deferred).get_mut(run)
                    && slot.is_none()
                {
                    *slot = Some(epoch); // the worker releases it with the job's end
                    return;
                }
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return; // it expires after its TTL
                };
                lock(&inner.leases.dropped).insert(run.to_owned(), epoch);
                let store = PostgresStore { inner };
                let run = run.to_owned();
                runtime.spawn(async move {
                    if let Err(e) = store.release(&run, epoch).await {
                        tracing::debug!(run, error = %e, "releasing a dropped lease failed; it expires after its TTL");
                    }
                    let mut dropped = lock(&store.inner.leases.dropped);
                    if dropped.get(&run) == Some(&epoch) {
                        dropped.remove(&run);
                    }
                });
            }))
        })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let run = lease.run();
            check_run_id(run)?;
            let epoch = lease.epoch() as i64;
            let rows = self
                .query(RENEW, &[&run.as_bytes(), &epoch, &ttl_ms(ttl)], true)
                .await?;
            if !rows.is_empty() {
                return Ok(());
            }
            let rows = self.query(EPOCH, &[&run.as_bytes()], true).await?;
            Err(StoreError::Fenced {
                run: run.to_owned(),
                epoch: lease.epoch(),
                current: rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64),
            })
        })
    }

    fn supports_items(&self) -> bool {
        true
    }

    fn supports_audit(&self) -> bool {
        true
    }

    fn get_audit<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit_n: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            // Numbers are stored as they are (migration 6): at most i64::MAX.
            let Ok(after) = i64::try_from(after.unwrap_or(0)) else {
                return Ok(Vec::new());
            };
            let rows = self
                .query(GET_AUDIT, &[&run.as_bytes(), &after, &limit(limit_n)], true)
                .await?;
            Ok(rows
                .iter()
                .map(|row| (row.get::<_, i64>(0) as u64, bytes_at(row, 1)))
                .collect())
        })
    }

    fn audited_runs(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let rows = self.query(AUDITED_RUNS, &[], true).await?;
            rows.iter()
                .map(|row| {
                    String::from_utf8(bytes_at(row, 0))
                        .map_err(|_| StoreError::Backend("an audited run id is not UTF-8".into()))
                })
                .collect()
        })
    }

    fn get_item<'a>(
        &'a self,
        namespace: &'a Namespace,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(async move {
            let rows = self
                .query(GET_ITEM, &[&namespace.encode(), &key.as_bytes()], true)
                .await?;
            match rows.first() {
                Some(row) => {
                    let item = decode_item(&bytes_at(row, 0))?;
                    Ok((!item.is_expired(now_ms)).then_some(item))
                }
                None => Ok(None),
            }
        })
    }

    fn scan_items<'a>(&'a self, prefix: &'a Namespace) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let start = prefix.encode();
            let end = next_prefix(&start);
            let rows = self.query(SCAN_ITEMS, &[&start, &end], true).await?;
            rows.iter()
                .map(|row| decode_item(&bytes_at(row, 0)))
                .collect()
        })
    }

    /// A semantic query runs on this handle's vector index, first caught up with the
    /// items every process changed since its last search (one round trip when nothing
    /// changed; every item at the first search); other queries read the prefix's rows.
    fn search_items<'a>(&'a self, query: &'a ItemQuery) -> BoxFuture<'a, Result<Vec<Hit>>> {
        Box::pin(async move {
            if query.vector.is_some() {
                self.catch_up_index().await?;
                if let Some(hits) = self.inner.index.search(query) {
                    return Ok(hits);
                }
            }
            let items = self.scan_items(&query.prefix).await?;
            Ok(agentgraph_checkpoint::items::search_in(items, query))
        })
    }

    /// Removes the tombstones of items deleted longer ago than
    /// [`PostgresOptions::deleted_item_retention`]; a handle whose vector index is older
    /// than a removed tombstone reads every item again at its next semantic search.
    fn prune_deleted_items(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let retention = self.inner.options.deleted_item_retention;
            let ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            let rows = self.query(PRUNE_DELETED_ITEMS, &[&ms], true).await?;
            Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64))
        })
    }

    fn release_lease(&self, lease: Lease) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (run, epoch) = (lease.run().to_owned(), lease.epoch());
            lock(&self.inner.leases.released).insert((run.clone(), epoch));
            drop(lease);
            self.release(&run, epoch).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::VACANT;

    /// The vacancy check asked when a lease is taken reads the runs' index, not the table,
    /// under the generic plan a prepared statement ends up with (the plan of a table of
    /// 20,000 runs, statistics up to date, for a run that is not there).
    #[tokio::test]
    async fn the_vacancy_check_reads_the_index() {
        let url = std::env::var("AGENTGRAPH_TEST_POSTGRES_URL")
            .expect("AGENTGRAPH_TEST_POSTGRES_URL names the test server (scripts/test)");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!("t_vacant_{}_{nanos}", std::process::id());
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema};
                 CREATE TABLE runs (run_id bytea PRIMARY KEY, record bytea NOT NULL);
                 INSERT INTO runs SELECT convert_to('run-' || i, 'UTF8'), '\\x00'
                     FROM generate_series(1, 20000) i;
                 ANALYZE runs;
                 SET plan_cache_mode = force_generic_plan;"
            ))
            .await
            .unwrap();
        client
            .batch_execute(&format!("PREPARE vacant(bytea, bytea, bytea) AS {VACANT}"))
            .await
            .unwrap();
        let plan: String = client
            .query("EXPLAIN EXECUTE vacant('new', 'new/@', 'new/A')", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0) + "\n")
            .collect();
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("runs_pkey"), "{plan}");
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}
