//! The queue of jobs in the database: [`Queue`], what any process submits with.

use std::fmt;

use agentgraph_checkpoint::{Result, StoreError};
use agentgraph_engine::DynResume;
use serde_json::Value;

use crate::PostgresStore;

const SUBMIT: &str = "INSERT INTO jobs (kind, graph, run_id, input) \
     VALUES ('start', $1, coalesce($2, 'run-' || gen_random_uuid()::text), $3::text::jsonb) \
     ON CONFLICT (run_id) WHERE kind = 'start' DO NOTHING RETURNING run_id";
const SUBMIT_THREAD: &str = "INSERT INTO jobs (kind, graph, run_id, input) \
     VALUES ('thread', $1, $2, $3::text::jsonb) RETURNING id";
const RESUME: &str = "INSERT INTO jobs (kind, graph, run_id, input) \
     SELECT 'resume', graph, run_id, $2::text::jsonb FROM jobs WHERE run_id = $1 \
     ORDER BY id DESC LIMIT 1 RETURNING id";
const CANCEL: &str = "UPDATE jobs SET cancel_requested = true, \
     finished_at = CASE WHEN status = 'queued' THEN clock_timestamp() END, \
     status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END \
     WHERE run_id = $1 AND status IN ('queued', 'running') RETURNING id";
const DEPTH: &str = "SELECT count(*) FROM jobs WHERE status = 'queued'";
const JOB: &str = "SELECT id, kind, graph, status, worker, attempts, cancel_requested, \
     output::text, error, run_id, (extract(epoch FROM available_at) * 1000)::bigint \
     FROM jobs WHERE run_id = $1 ORDER BY id DESC LIMIT 1";
pub(crate) const NOTIFY: &str = "SELECT pg_notify($1, $2)";
const JOBS: &str = "SELECT id, kind, graph, status, worker, attempts, cancel_requested, \
     output::text, error, run_id, (extract(epoch FROM available_at) * 1000)::bigint \
     FROM jobs WHERE ($1::text IS NULL OR status = $1) AND id > $2 ORDER BY id LIMIT $3";
const WORKERS: &str = "SELECT w.id, w.graphs, w.concurrency, \
     (extract(epoch FROM w.started_at) * 1000)::bigint, \
     (extract(epoch FROM w.last_seen) * 1000)::bigint, w.stopped_at IS NOT NULL, \
     (SELECT count(*) FROM jobs j WHERE j.worker = w.id AND j.status = 'running') \
     FROM workers w ORDER BY w.id";

/// The payload of a notification that a job was queued.
pub(crate) const QUEUED: &str = "queued";
/// The payload of a notification that a run's cancellation was asked for.
pub(crate) const CANCELLED: &str = "cancel";

/// The channel a schema's queue notifies on.
pub(crate) fn channel(schema: &str) -> String {
    format!("agentgraph_jobs_{schema}")
}

/// A run named in [`Queue::resume`] that no job of the queue ever ran (in a
/// [`StoreError::Backend`]).
///
/// # Examples
///
/// ```
/// let e = agentgraph_postgres::worker::NotQueued { run: "r-1".into() };
/// assert!(e.to_string().contains("`r-1` was never submitted"));
/// ```
#[derive(Debug)]
pub struct NotQueued {
    /// The run.
    pub run: String,
}

impl fmt::Display for NotQueued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run `{}` was never submitted to this queue (its graph is unknown)",
            self.run
        )
    }
}

impl std::error::Error for NotQueued {}

/// The state of a job of the [`Queue`]: see [`Queue::job`].
///
/// # Examples
///
/// See [`Queue`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job's id in the queue.
    pub id: i64,
    /// What it does: `start`, `thread` or `resume`.
    pub kind: String,
    /// The graph's name.
    pub graph: String,
    /// `queued`, `running`, `done`, `interrupted`, `failed` or `cancelled`. A job whose run
    /// waits for a retry is `queued` until [`available_at_ms`](JobInfo::available_at_ms).
    pub status: String,
    /// The worker that claimed it last.
    pub worker: Option<String>,
    /// How many times it was claimed.
    pub attempts: i32,
    /// Whether its cancellation was asked for.
    pub cancel_requested: bool,
    /// The final state (`done`) or the interrupts (`interrupted`), as JSON.
    pub output: Option<Value>,
    /// The error of a `failed` job.
    pub error: Option<String>,
    /// The run (or thread) it is for.
    pub run: String,
    /// When it may be claimed, in milliseconds since the Unix epoch: when it was queued, or,
    /// for a job put back in the queue, when it is due again (a run waiting for a retry, see
    /// [`Worker::max_inline_backoff`](crate::worker::Worker::max_inline_backoff), or one that
    /// was busy). A `queued` job with a time in the future waits for it.
    pub available_at_ms: i64,
}

/// A worker, as it last told the database: see [`Queue::workers`].
///
/// # Examples
///
/// See [`Queue::workers`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its id.
    pub id: String,
    /// The graphs it runs.
    pub graphs: Vec<String>,
    /// How many jobs it runs at once.
    pub concurrency: i32,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When it last said it was there (at every poll), in milliseconds since the Unix epoch.
    pub last_seen_ms: i64,
    /// Whether it stopped (a graceful shutdown; a killed worker just stops being seen).
    pub stopped: bool,
    /// How many jobs it holds now.
    pub running: i64,
}

/// The workers' queue of jobs in a PostgreSQL database: runs to start, threads' next inputs
/// and answers to interrupts, each taken by a [`Worker`](crate::worker::Worker) that has the
/// job's graph. Usable from any process that reaches the database; clones share the store's
/// pool.
///
/// # Examples
///
/// ```no_run
/// use agentgraph_postgres::worker::Queue;
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> agentgraph_checkpoint::Result<()> {
///     let queue = Queue::connect("postgres://agentgraph@127.0.0.1:5432/postgres").await?;
///     let run = queue.submit("report", serde_json::json!({ "topic": "tides" })).await?;
///     let job = queue.job(&run).await?.expect("just submitted");
///     assert_eq!((job.kind.as_str(), job.graph.as_str()), ("start", "report"));
///     assert!(queue.depth().await? >= 1 || job.status != "queued");
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Queue {
    store: PostgresStore,
    channel: String,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A row of [`JOB`] or [`JOBS`].
fn job_info(row: &tokio_postgres::Row) -> JobInfo {
    let output: Option<String> = row.get(7);
    JobInfo {
        id: row.get(0),
        kind: row.get(1),
        graph: row.get(2),
        status: row.get(3),
        worker: row.get(4),
        attempts: row.get(5),
        cancel_requested: row.get(6),
        output: output.and_then(|o| serde_json::from_str(&o).ok()),
        error: row.get(8),
        run: row.get(9),
        available_at_ms: row.get(10),
    }
}

fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(Box::new(e)))
}

impl Queue {
    /// The queue of the database (and schema) `url` names: see
    /// [`PostgresStore::connect`].
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`]'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // Nothing listens on port 1.
    /// let err = agentgraph_postgres::worker::Queue::connect("postgres://a@127.0.0.1:1/db").await.unwrap_err();
    /// assert!(matches!(err, agentgraph_checkpoint::StoreError::Unavailable(_)));
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Queue> {
        Ok(Queue::new(&PostgresStore::connect(url).await?))
    }

    /// The queue in `store`'s schema, over its pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> agentgraph_checkpoint::Result<()> {
    /// let store = agentgraph_postgres::PostgresStore::connect("postgres://app@db/app").await?;
    /// let queue = agentgraph_postgres::worker::Queue::new(&store);
    /// assert_eq!(queue.depth().await?, 0);
    /// # Ok(()) }
    /// ```
    pub fn new(store: &PostgresStore) -> Queue {
        Queue {
            channel: channel(store.options().schema()),
            store: store.clone(),
        }
    }

    async fn notify(&self, payload: &str) -> Result<()> {
        self.store
            .query(NOTIFY, &[&self.channel, &payload], true)
            .await
            .map(drop)
    }

    /// Queues a run of `graph` on `input` (the state's JSON, as
    /// [`DynGraph::start`](agentgraph_engine::DynGraph::start) takes it) under a new run id,
    /// which it returns.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached (the job may or may not
    /// be queued: use [`submit_with_id`](Queue::submit_with_id) to retry safely).
    ///
    /// # Examples
    ///
    /// See [`Queue`].
    pub async fn submit(&self, graph: &str, input: Value) -> Result<String> {
        let input = json_text(&input)?;
        let rows = self
            .store
            .query(SUBMIT, &[&graph, &None::<String>, &input], false)
            .await?;
        let run = rows
            .first()
            .map(|row| row.get::<_, String>(0))
            .ok_or_else(|| StoreError::Backend("a new run id was taken".into()))?;
        self.notify(QUEUED).await?;
        Ok(run)
    }

    /// Queues a run of `graph` on `input` as `run`. Idempotent: a run id already submitted
    /// is not queued again (it returns `false`), so a submission that failed half-way can be
    /// retried.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> agentgraph_checkpoint::Result<()> {
    /// let input = serde_json::json!({ "n": 1 });
    /// assert!(queue.submit_with_id("counter", "order-17", input.clone()).await?);
    /// assert!(!queue.submit_with_id("counter", "order-17", input).await?);
    /// # Ok(()) }
    /// ```
    pub async fn submit_with_id(&self, graph: &str, run: &str, input: Value) -> Result<bool> {
        let input = json_text(&input)?;
        let rows = self
            .store
            .query(SUBMIT, &[&graph, &Some(run), &input], true)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        self.notify(QUEUED).await?;
        Ok(true)
    }

    /// Queues `input` (the JSON of an update of the state) as `thread`'s next input
    /// ([`DynGraph::invoke_thread`](agentgraph_engine::DynGraph::invoke_thread)). A
    /// thread's inputs are run one at a time, in the order they were queued; the thread's
    /// run id is its name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> agentgraph_checkpoint::Result<()> {
    /// queue.submit_thread("chat", "chat-1", serde_json::json!({ "messages": ["hi"] })).await?;
    /// # Ok(()) }
    /// ```
    pub async fn submit_thread(&self, graph: &str, thread: &str, input: Value) -> Result<()> {
        let input = json_text(&input)?;
        self.store
            .query(SUBMIT_THREAD, &[&graph, &thread, &input], false)
            .await?;
        self.notify(QUEUED).await
    }

    /// Queues the resumption of `run` (a run some job of this queue ran, interrupted or
    /// stopped) with `resume`'s answers and update, for a worker with the run's graph.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] holding a [`NotQueued`] when no job of the queue ran `run`;
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> agentgraph_checkpoint::Result<()> {
    /// let resume: agentgraph_engine::DynResume = serde_json::from_value(serde_json::json!({ "value": true })).unwrap();
    /// queue.resume("order-17", resume).await?;
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self, run: &str, resume: DynResume) -> Result<()> {
        let input = json_text(&resume)?;
        let rows = self.store.query(RESUME, &[&run, &input], false).await?;
        if rows.is_empty() {
            return Err(StoreError::Backend(Box::new(NotQueued {
                run: run.to_owned(),
            })));
        }
        self.notify(QUEUED).await
    }

    /// Asks for `run`'s cancellation: its queued jobs are cancelled, and the worker running
    /// it cancels the run (it stops at its next step, its finished work checkpointed; a
    /// [`resume`](Queue::resume) goes on). A job back in the queue until its run's retry is
    /// due is cancelled there (its run stays as it stopped, status `retry_scheduled`, and a
    /// `resume` continues it). Returns whether a queued or running job was found.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> agentgraph_checkpoint::Result<()> {
    /// let run = queue.submit("report", serde_json::json!({})).await?;
    /// assert!(queue.cancel(&run).await?);
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, run: &str) -> Result<bool> {
        let rows = self.store.query(CANCEL, &[&run], true).await?;
        if rows.is_empty() {
            return Ok(false);
        }
        self.notify(CANCELLED).await?;
        Ok(true)
    }

    /// How many jobs wait to be claimed (queued, whether or not their time has come).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// See [`Queue`].
    pub async fn depth(&self) -> Result<u64> {
        let rows = self.store.query(DEPTH, &[], true).await?;
        Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    /// The newest job of `run` (or of the thread `run`), or `None` when none was queued.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// See [`Queue`].
    pub async fn job(&self, run: &str) -> Result<Option<JobInfo>> {
        let rows = self.store.query(JOB, &[&run], true).await?;
        Ok(rows.first().map(job_info))
    }

    /// The jobs, oldest first, after job id `after` (0 for the first page), at most `limit`,
    /// only those with `status` when one is given (`queued`, `running`, ...).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> agentgraph_checkpoint::Result<()> {
    /// for job in queue.jobs(Some("queued"), 0, 100).await? {
    ///     println!("{} {} {}", job.id, job.graph, job.run);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn jobs(&self, status: Option<&str>, after: i64, limit: u32) -> Result<Vec<JobInfo>> {
        let limit = i64::from(limit.clamp(1, 10_000));
        let rows = self
            .store
            .query(JOBS, &[&status, &after, &limit], true)
            .await?;
        Ok(rows.iter().map(job_info).collect())
    }

    /// The workers that ever told this database they were there, by id: what they run, when
    /// they were last seen, how many jobs they hold. A worker registers when it starts, says
    /// it is there at every poll, and that it stopped at a graceful shutdown; one not seen for
    /// longer than its lease was killed or cut off.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> agentgraph_checkpoint::Result<()> {
    /// for w in queue.workers().await? {
    ///     println!("{} runs {:?}, {} jobs now", w.id, w.graphs, w.running);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let rows = self.store.query(WORKERS, &[], true).await?;
        Ok(rows
            .iter()
            .map(|row| WorkerInfo {
                id: row.get(0),
                graphs: row.get(1),
                concurrency: row.get(2),
                started_at_ms: row.get(3),
                last_seen_ms: row.get(4),
                stopped: row.get(5),
                running: row.get(6),
            })
            .collect())
    }
}
