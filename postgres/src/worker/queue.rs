//! The queue of jobs in the database: [`Queue`], what any process submits with.

use std::fmt;

use std::sync::Arc;

use agentgraph_checkpoint::{Result, StoreError, TenantId};
use agentgraph_engine::DynResume;
use serde_json::Value;

use crate::PostgresStore;

// In every statement below, a NULL tenant ($n::text IS NULL) is a queue over every tenant.
const SUBMIT: &str = "INSERT INTO jobs (kind, graph, run_id, input, tenant, caller) \
     VALUES ('start', $1, coalesce($2, 'run-' || gen_random_uuid()::text), $3::text::jsonb, \
             $4::text, $5::text) \
     ON CONFLICT (run_id) WHERE kind = 'start' DO NOTHING RETURNING run_id";
/// A thread's next input: refused (no row) for a tenant when a job of the thread is another's
/// (or no tenant's); over every tenant, the job takes the tenant of the thread's jobs before.
const SUBMIT_THREAD: &str = "INSERT INTO jobs (kind, graph, run_id, input, tenant, caller) \
     SELECT 'thread', $1, $2, $3::text::jsonb, \
            coalesce($4::text, (SELECT tenant FROM jobs WHERE run_id = $2 ORDER BY id DESC LIMIT 1)), \
            $5::text \
     WHERE $4::text IS NULL \
        OR NOT EXISTS (SELECT 1 FROM jobs WHERE run_id = $2 AND tenant IS DISTINCT FROM $4::text) \
     RETURNING id";
/// The resumption of a run, as a job of the tenant of the run's jobs: for a tenant, only of a
/// run whose every job is the tenant's.
const RESUME: &str = "INSERT INTO jobs (kind, graph, run_id, input, tenant, caller) \
     SELECT 'resume', graph, run_id, $2::text::jsonb, tenant, $4::text FROM jobs \
     WHERE run_id = $1 \
       AND ($3::text IS NULL \
            OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.run_id = $1 AND o.tenant IS DISTINCT FROM $3::text)) \
     ORDER BY id DESC LIMIT 1 RETURNING id";
const CANCEL: &str = "UPDATE jobs SET cancel_requested = true, \
     finished_at = CASE WHEN status = 'queued' THEN clock_timestamp() END, \
     status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END \
     WHERE run_id = $1 AND status IN ('queued', 'running') \
       AND ($2::text IS NULL OR tenant = $2::text) RETURNING id";
const DEPTH: &str =
    "SELECT count(*) FROM jobs WHERE status = 'queued' AND ($1::text IS NULL OR tenant = $1::text)";
const JOB: &str = "SELECT id, kind, graph, status, worker, attempts, cancel_requested, \
     output::text, error, run_id, (extract(epoch FROM available_at) * 1000)::bigint, tenant, caller, \
     status = 'queued' AND tenant IN (SELECT tenant FROM held_tenants()) \
     FROM jobs WHERE run_id = $1 AND ($2::text IS NULL OR tenant = $2::text) \
     ORDER BY id DESC LIMIT 1";
pub(crate) const NOTIFY: &str = "SELECT pg_notify($1, $2)";
const JOBS: &str = "SELECT id, kind, graph, status, worker, attempts, cancel_requested, \
     output::text, error, run_id, (extract(epoch FROM available_at) * 1000)::bigint, tenant, caller, \
     status = 'queued' AND tenant IN (SELECT tenant FROM held_tenants()) \
     FROM jobs WHERE ($1::text IS NULL OR status = $1) AND id > $2 \
       AND ($4::text IS NULL OR tenant = $4::text) ORDER BY id LIMIT $3";
/// A tenant's cap on its jobs in flight ($1 the tenant, $2 the cap).
const SET_LIMIT: &str = "INSERT INTO tenant_limits (tenant, max_in_flight) VALUES ($1, $2) \
     ON CONFLICT (tenant) DO UPDATE SET max_in_flight = EXCLUDED.max_in_flight, \
     updated_at = clock_timestamp()";
const CLEAR_LIMIT: &str = "DELETE FROM tenant_limits WHERE tenant = $1 RETURNING tenant";
/// A tenant's cap, its live claims (not expired) and its queued jobs.
const LIMIT: &str = "SELECT l.max_in_flight, \
     (SELECT count(*) FROM jobs r WHERE r.tenant = l.tenant AND r.status = 'running' \
        AND r.claim_until > clock_timestamp()), \
     (SELECT count(*) FROM jobs q WHERE q.tenant = l.tenant AND q.status = 'queued') \
     FROM tenant_limits l WHERE l.tenant = $1";
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
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    /// The run (or thread) it is for (`run_id` in JSON).
    #[serde(rename = "run_id")]
    pub run: String,
    /// When it may be claimed, in milliseconds since the Unix epoch: when it was queued, or,
    /// for a job put back in the queue, when it is due again (a run waiting for a retry, see
    /// [`Worker::max_inline_backoff`](crate::worker::Worker::max_inline_backoff), or one that
    /// was busy). A `queued` job with a time in the future waits for it.
    pub available_at_ms: i64,
    /// The tenant whose run it is ([`Queue::tenant`]): the worker runs it with
    /// `RunConfig::tenant`. `None` for a job queued over every tenant.
    pub tenant: Option<TenantId>,
    /// Who queued it ([`Queue::caller`]): what the audit trail's `started` or `resumed` entry
    /// of its run names.
    pub caller: Option<String>,
    /// Whether it is `queued` and its tenant has no place left under its cap
    /// ([`Queue::set_tenant_limit`]): it is claimed when one of the tenant's runs in flight
    /// ends, is handed back, or loses its claim.
    pub held_by_tenant_cap: bool,
}

/// A tenant's cap on its jobs in flight, across every worker, and where it stands: see
/// [`Queue::tenant_limit`].
///
/// # Examples
///
/// See [`Queue::set_tenant_limit`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TenantLimit {
    /// The most of the tenant's jobs claimed at once.
    pub max_in_flight: u32,
    /// The tenant's jobs claimed now (`running`, their claim not expired), by every worker.
    pub in_flight: u64,
    /// The tenant's jobs waiting to be claimed (`queued`).
    pub queued: u64,
}

/// A queue of one tenant ([`Queue::tenant`]) asked to set or clear a tenant's cap on its jobs
/// in flight ([`Queue::set_tenant_limit`]): only a queue over every tenant does (in a
/// [`StoreError::Backend`]).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::TenantId;
/// let e = agentgraph_postgres::worker::TenantScoped { tenant: TenantId::new("acme").unwrap() };
/// assert!(e.to_string().contains("queue of tenant `acme`"));
/// ```
#[derive(Debug)]
pub struct TenantScoped {
    /// The queue's tenant.
    pub tenant: TenantId,
}

impl fmt::Display for TenantScoped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a queue of tenant `{}` cannot set tenants' caps on jobs in flight; use a queue over every tenant",
            self.tenant.as_str()
        )
    }
}

impl std::error::Error for TenantScoped {}

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
    /// The tenant the queue acts for ([`Queue::tenant`]); `None`: every tenant.
    tenant: Option<TenantId>,
    /// Who submits through it ([`Queue::caller`]).
    caller: Option<Arc<str>>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("store", &self.store)
            .field("tenant", &self.tenant)
            .field("caller", &self.caller)
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
        // Written from a `TenantId`; a value put there by hand that is not one reads as none.
        tenant: row
            .get::<_, Option<String>>(11)
            .and_then(|t| TenantId::new(t).ok()),
        caller: row.get(12),
        held_by_tenant_cap: row.get::<_, Option<bool>>(13).unwrap_or(false),
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
            tenant: None,
            caller: None,
        }
    }

    /// The tenant's id as the statements take it.
    fn tenant_param(&self) -> Option<&str> {
        self.tenant.as_ref().map(TenantId::as_str)
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
            .query(
                SUBMIT,
                &[
                    &graph,
                    &None::<String>,
                    &input,
                    &self.tenant_param(),
                    &self.caller.as_deref(),
                ],
                false,
            )
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
            .query(
                SUBMIT,
                &[
                    &graph,
                    &Some(run),
                    &input,
                    &self.tenant_param(),
                    &self.caller.as_deref(),
                ],
                true,
            )
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
    /// run id is its name. A queue over every tenant gives the job the tenant of the thread's
    /// jobs before, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotInTenant`] for a queue of a tenant ([`Queue::tenant`]) when a job of
    /// the thread is another tenant's (or was queued over every tenant); nothing is queued.
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
        let rows = self
            .store
            .query(
                SUBMIT_THREAD,
                &[
                    &graph,
                    &thread,
                    &input,
                    &self.tenant_param(),
                    &self.caller.as_deref(),
                ],
                false,
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotInTenant {
                run: thread.to_owned(),
            });
        }
        self.notify(QUEUED).await
    }

    /// Queues the resumption of `run` (a run some job of this queue ran, interrupted or
    /// stopped) with `resume`'s answers and update, for a worker with the run's graph. The job
    /// is the tenant's of the run's jobs, and names this queue's [`caller`](Queue::caller).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] holding a [`NotQueued`] when no job of the queue ran `run` (for
    /// a queue of a tenant: when a job of `run` is not the tenant's);
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
        let rows = self
            .store
            .query(
                RESUME,
                &[&run, &input, &self.tenant_param(), &self.caller.as_deref()],
                false,
            )
            .await?;
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
    /// `resume` continues it). Returns whether a queued or running job was found (for a queue
    /// of a tenant: a job of the tenant's).
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
        let rows = self
            .store
            .query(CANCEL, &[&run, &self.tenant_param()], true)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        self.notify(CANCELLED).await?;
        Ok(true)
    }

    /// How many jobs wait to be claimed (queued, whether or not their time has come); for a
    /// queue of a tenant, how many of the tenant's.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// See [`Queue`].
    pub async fn depth(&self) -> Result<u64> {
        let rows = self
            .store
            .query(DEPTH, &[&self.tenant_param()], true)
            .await?;
        Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    /// The newest job of `run` (or of the thread `run`), or `None` when none was queued (for
    /// a queue of a tenant: the newest of the tenant's jobs of `run`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// See [`Queue`].
    pub async fn job(&self, run: &str) -> Result<Option<JobInfo>> {
        let rows = self
            .store
            .query(JOB, &[&run, &self.tenant_param()], true)
            .await?;
        Ok(rows.first().map(job_info))
    }

    /// The jobs, oldest first, after job id `after` (0 for the first page), at most `limit`,
    /// only those with `status` when one is given (`queued`, `running`, ...); for a queue of a
    /// tenant, only the tenant's.
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
            .query(JOBS, &[&status, &after, &limit, &self.tenant_param()], true)
            .await?;
        Ok(rows.iter().map(job_info).collect())
    }

    /// The workers that ever told this database they were there, by id: what they run, when
    /// they were last seen, how many jobs they hold (of every tenant, whatever the queue's). A worker registers when it starts, says
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

    /// Caps `tenant`'s jobs in flight at `max_in_flight`, across every worker of the queue: a
    /// worker claims a job of the tenant only while fewer of its jobs are claimed (`running`,
    /// their claim not expired), counted in the claim under a lock of the tenant, so that two
    /// workers claiming at once never both take the last place. The jobs over the cap stay
    /// `queued` ([`JobInfo::held_by_tenant_cap`]) and are claimed when a place frees: a run
    /// ends, is handed back, or its worker dies and its claim expires. Runs already claimed
    /// are not stopped by a lower cap; 0 holds all of the tenant's jobs. Setting it again
    /// replaces it. A job without a tenant is never capped.
    ///
    /// The cap counts jobs, so a run the tenant starts in process (not through the queue) is
    /// not among them: for those, `TenantBudget`'s `max_runs_in_flight` counts in process.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] holding a [`TenantScoped`] for a queue of a tenant
    /// ([`Queue::tenant`]): setting caps is for a queue over every tenant (an operator's);
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> Result<(), Box<dyn std::error::Error>> {
    /// use agentgraph_checkpoint::TenantId;
    ///
    /// let acme = TenantId::new("acme")?;
    /// queue.set_tenant_limit(&acme, 2).await?;
    /// let limit = queue.tenant_limit(&acme).await?.expect("just set");
    /// assert_eq!(limit.max_in_flight, 2);
    /// assert!(limit.in_flight <= 2);
    /// assert!(queue.clear_tenant_limit(&acme).await?);
    /// assert!(queue.tenant_limit(&acme).await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn set_tenant_limit(&self, tenant: &TenantId, max_in_flight: u32) -> Result<()> {
        self.refuse_scoped()?;
        let cap = i32::try_from(max_in_flight).unwrap_or(i32::MAX);
        self.store
            .query(SET_LIMIT, &[&tenant.as_str(), &cap], true)
            .await?;
        // A raised cap frees places: the workers look.
        self.notify(QUEUED).await
    }

    /// Removes `tenant`'s cap on its jobs in flight ([`set_tenant_limit`](Queue::set_tenant_limit)):
    /// its jobs are claimed as any others. Returns whether it had one.
    ///
    /// # Errors
    ///
    /// As [`set_tenant_limit`](Queue::set_tenant_limit)'s.
    ///
    /// # Examples
    ///
    /// See [`Queue::set_tenant_limit`].
    pub async fn clear_tenant_limit(&self, tenant: &TenantId) -> Result<bool> {
        self.refuse_scoped()?;
        let rows = self
            .store
            .query(CLEAR_LIMIT, &[&tenant.as_str()], true)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        self.notify(QUEUED).await?;
        Ok(true)
    }

    /// `tenant`'s cap on its jobs in flight, with its jobs claimed now and queued; `None` when
    /// it has none (and, for a queue of a tenant, for another tenant).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    ///
    /// # Examples
    ///
    /// See [`Queue::set_tenant_limit`].
    pub async fn tenant_limit(&self, tenant: &TenantId) -> Result<Option<TenantLimit>> {
        if self.tenant.as_ref().is_some_and(|own| own != tenant) {
            return Ok(None);
        }
        let rows = self.store.query(LIMIT, &[&tenant.as_str()], true).await?;
        Ok(rows.first().map(|row| TenantLimit {
            max_in_flight: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
            in_flight: row.get::<_, i64>(1) as u64,
            queued: row.get::<_, i64>(2) as u64,
        }))
    }

    fn refuse_scoped(&self) -> Result<()> {
        match &self.tenant {
            Some(tenant) => Err(StoreError::Backend(Box::new(TenantScoped {
                tenant: tenant.clone(),
            }))),
            None => Ok(()),
        }
    }

    /// The queue as `tenant` sees it and submits to it: the jobs it queues are the tenant's
    /// (the worker that claims one runs it with `RunConfig::tenant`, so its run's record
    /// carries the tenant and another tenant's run is not found by it), and its reads and
    /// controls ([`job`](Queue::job), [`jobs`](Queue::jobs), [`depth`](Queue::depth),
    /// [`cancel`](Queue::cancel), [`resume`](Queue::resume), a thread's next input) see only
    /// the tenant's jobs: another tenant's are not found. [`workers`](Queue::workers), which
    /// serve every tenant, are listed whole.
    ///
    /// Run ids are the store's, shared by all tenants: a run id another tenant submitted is
    /// refused by [`submit_with_id`](Queue::submit_with_id) as already submitted.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> Result<(), Box<dyn std::error::Error>> {
    /// use agentgraph_checkpoint::TenantId;
    ///
    /// let acme = queue.clone().tenant(TenantId::new("acme")?).caller("alice");
    /// let globex = queue.clone().tenant(TenantId::new("globex")?);
    /// let run = acme.submit("report", serde_json::json!({ "topic": "tides" })).await?;
    /// let job = acme.job(&run).await?.expect("acme's own job");
    /// assert_eq!(job.tenant.as_ref().map(TenantId::as_str), Some("acme"));
    /// assert_eq!(job.caller.as_deref(), Some("alice"));
    /// // globex neither sees nor cancels it.
    /// assert!(globex.job(&run).await?.is_none());
    /// assert!(!globex.cancel(&run).await?);
    /// assert!(globex.jobs(None, 0, 100).await?.iter().all(|j| j.run != run));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tenant(mut self, tenant: TenantId) -> Queue {
        self.tenant = Some(tenant);
        self
    }

    /// Names who submits through this queue: the jobs it queues carry `caller`
    /// ([`JobInfo::caller`]), and the worker runs each with `RunConfig::caller`, so the audit
    /// trail's `started` entry of a submitted run (`resumed` for [`resume`](Queue::resume) and
    /// for a job a worker claims again) names it. Without it, the worker's own
    /// [`run_config`](crate::worker::Worker::run_config) says who (`unknown` by default).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(queue: agentgraph_postgres::worker::Queue) -> agentgraph_checkpoint::Result<()> {
    /// let as_ci = queue.caller("ci-nightly");
    /// let run = as_ci.submit("report", serde_json::json!({})).await?;
    /// assert_eq!(as_ci.job(&run).await?.unwrap().caller.as_deref(), Some("ci-nightly"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn caller(mut self, caller: impl Into<String>) -> Queue {
        self.caller = Some(Arc::from(caller.into()));
        self
    }
}
