//! Workers that share runs through the database: a [`Queue`] of jobs any process submits to,
//! and [`Worker`]s that claim them and run them on a [`PostgresStore`].
//!
//! - **Claims**: a worker claims ready jobs of the graphs it has in one statement
//!   (`FOR UPDATE SKIP LOCKED`, under READ COMMITTED; oldest ready first, read from the
//!   partial indexes of queued and claimed jobs), up to its concurrency cap (and each
//!   graph's), and holds each claim with a heartbeat. A job's end and the release of its
//!   run's lease are one statement. The jobs of one run (or thread) are
//!   taken one at a time, in the order they were queued. A job whose claim expired (its worker
//!   was killed, paused or cut off) is claimable again: the next worker *resumes* the run
//!   from its checkpoints, running only the unfinished tasks.
//! - **Fencing**: the run itself is held by the store's lease, whose epoch stamps every
//!   commit: a worker that wakes up after another took its run over has its next write
//!   refused ([`StoreError::Fenced`]) and counts it ([`WorkerStats::fenced`]).
//! - **Delays in the database**: a job whose run is still leased by another owner goes back
//!   to the queue with a short delay (`available_at`); no worker sleeps on a claim. Retry
//!   backoffs too: a node's retry due later than [`Worker::max_inline_backoff`] (default 1 s)
//!   stops its run ([`RunOutcome::RetryScheduled`](agentgraph_engine::RunOutcome::RetryScheduled),
//!   the step checkpointed with its finished tasks' writes and the attempts made), and the job
//!   goes back to the queue, `queued` with `available_at` at the retry's due time, its claim
//!   and the run's lease released; whichever worker claims it then continues the run with the
//!   next attempt ([`WorkerStats::retries_scheduled`]).
//! - **Wake-ups** by `LISTEN`/`NOTIFY` are a hint only: after every (re)connect the worker
//!   listens first and then looks at the table, and it also looks on a timer.
//! - **Cancellation** ([`Queue::cancel`]) reaches the worker running the run, which cancels
//!   it through its handle.
//! - **Tenants and callers**: a job queued through [`Queue::tenant`] is run as the tenant's
//!   run (`RunConfig::tenant`: its record carries the tenant, and a run or thread of another
//!   tenant is not found by it), and one queued through [`Queue::caller`] names its submitter
//!   in the run's audit trail (`RunConfig::caller`). Such a queue sees and controls only the
//!   tenant's jobs.
//! - **A tenant's runs in flight** ([`Queue::set_tenant_limit`]): a worker claims a job of a
//!   capped tenant only while fewer of the tenant's jobs are claimed, by every worker, than its
//!   cap, counted in the claim under a lock of the tenant; the others wait `queued`
//!   ([`JobInfo::held_by_tenant_cap`]) until a place frees (a run ends, is handed back, or its
//!   claim expires).
//! - **Graceful shutdown** ([`Worker::run_until`]): stop claiming, let the running runs end
//!   for up to [`Worker::shutdown_timeout`], then cancel the rest and hand their jobs back.
//! - **Metrics** (the `metrics` facade, feature `metrics`): `agentgraph_queue_depth` (gauge),
//!   `agentgraph_worker_claim_latency_seconds` (histogram: from a job being ready to its
//!   claim), `agentgraph_worker_lease_renewals_total`, `agentgraph_worker_fenced_writes_total`,
//!   `agentgraph_worker_retries_scheduled_total`, `agentgraph_queue_held_by_tenant_cap` (gauge:
//!   queued jobs whose tenant has no place left).
//!
//! # Examples
//!
//! ```no_run
//! use agentgraph_engine::{GraphBuilder, GraphRegistry, START, END};
//! use agentgraph_postgres::PostgresStore;
//! use agentgraph_postgres::worker::{Queue, Worker};
//!
//! #[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
//! #[state(crate = agentgraph_engine)]
//! struct Count {
//!     #[reducer(add)]
//!     n: i64,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut b = GraphBuilder::<Count>::new();
//!     b.add_node("inc", |_, _| async { Ok(CountUpdate::new().n(1)) })
//!         .add_edge(START, "inc")
//!         .add_edge("inc", END);
//!     let registry = GraphRegistry::new().with("counter", b.compile()?);
//!
//!     let store = PostgresStore::connect("postgres://agentgraph@127.0.0.1:5432/postgres").await?;
//!     let worker = Worker::new(store.clone(), registry, "worker-1").concurrency(16);
//!     let stats = worker.stats();
//!     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//!     let running = tokio::spawn(worker.run_until(async { stopped.await.ok(); }));
//!
//!     let queue = Queue::new(&store);
//!     let run = queue.submit("counter", serde_json::json!({ "n": 41 })).await?;
//!     while queue.job(&run).await?.is_some_and(|job| job.status != "done") {
//!         tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//!     }
//!     assert_eq!(queue.job(&run).await?.unwrap().output.unwrap()["n"], 42);
//!     assert_eq!(stats.completed(), 1);
//!     stop.send(()).ok();
//!     running.await??;
//!     Ok(())
//! }
//! ```

mod queue;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, Result, RunStatus, StoreError, TenantId};
use agentgraph_engine::{
    DynOutcome, DynResume, DynRun, Error, GraphRegistry, RunConfig, TenantBudget,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_postgres::{AsyncMessage, NoTls};

pub use queue::{JobInfo, NotQueued, Queue, TenantLimit, TenantScoped, WorkerInfo};

use crate::PostgresStore;
use queue::{CANCELLED, NOTIFY, QUEUED};

/// Claims up to $4 ready jobs of the graphs $3 for worker $1, each claim lasting $2 ms: queued
/// ones whose time came, in the order they became ready (the partial index `jobs_queued`), and
/// running ones whose claim expired (`jobs_claimed`), each the oldest active job of its run,
/// locked with `SKIP LOCKED`; a capped tenant's ([`Queue::set_tenant_limit`]) only while it has
/// places left, counted across every worker under a lock of the tenant. Both are read from
/// their partial indexes, so a claim costs what is ready, not the queue's history of finished
/// jobs. The function is migration 9's `claim_jobs` (see `migrate.rs`): while no tenant has a
/// cap, it runs the one statement the claim was before.
const CLAIM: &str = "SELECT * FROM claim_jobs($1, $2::bigint, $3, $4::bigint)";
const HEARTBEAT: &str = "UPDATE jobs SET claim_until = clock_timestamp() + $3::bigint * interval '1 millisecond' \
     WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING cancel_requested";
const FINISH: &str = "UPDATE jobs SET status = $3, output = $4::text::jsonb, error = $5, \
     claim_until = NULL, finished_at = clock_timestamp() \
     WHERE id = $1 AND attempts = $2 AND status = 'running'";
/// [`FINISH`], and the release of the run's lease ($6, $7: run and epoch) in the same
/// statement: one commit ends the job and frees the run.
const FINISH_RELEASE: &str = "WITH lease AS (UPDATE leases SET expires_at = NULL \
     WHERE run_id = $6 AND epoch = $7) \
     UPDATE jobs SET status = $3, output = $4::text::jsonb, error = $5, \
     claim_until = NULL, finished_at = clock_timestamp() \
     WHERE id = $1 AND attempts = $2 AND status = 'running'";
const RELEASE: &str = "UPDATE jobs SET status = 'queued', worker = NULL, claim_until = NULL, \
     available_at = clock_timestamp() + $3::bigint * interval '1 millisecond' \
     WHERE id = $1 AND attempts = $2 AND status = 'running'";
/// The jobs waiting to be claimed, and those of them held by their tenant's cap (see
/// [`Queue::set_tenant_limit`]; the second count costs a look at each capped tenant's live
/// claims, nothing while no tenant has a cap).
const DEPTH: &str = "SELECT count(*), count(*) FILTER (WHERE tenant IN (SELECT tenant FROM held_tenants())) \
     FROM jobs WHERE status = 'queued'";
/// A worker says it is there (at start and at every poll) and that it stopped.
const HELLO: &str = "INSERT INTO workers (id, graphs, concurrency) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET graphs = $2, concurrency = $3, \
     started_at = clock_timestamp(), last_seen = clock_timestamp(), stopped_at = NULL";
const SEEN: &str = "UPDATE workers SET last_seen = clock_timestamp() WHERE id = $1";
const GONE: &str = "UPDATE workers SET last_seen = clock_timestamp(), stopped_at = clock_timestamp() WHERE id = $1";
/// A job whose run waits for a retry goes back to the queue until the retry is due ($3: Unix
/// seconds).
const REQUEUE_AT: &str = "UPDATE jobs SET status = 'queued', worker = NULL, claim_until = NULL, \
     available_at = to_timestamp($3::float8) \
     WHERE id = $1 AND attempts = $2 AND status = 'running'";
const BASE_STEP: &str =
    "UPDATE jobs SET base_step = $3 WHERE id = $1 AND attempts = $2 AND status = 'running'";

/// The worker's metrics, recorded with the `metrics` facade when the feature `metrics` is on.
mod metric {
    pub(super) fn queue_depth(depth: i64) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("agentgraph_queue_depth").set(depth as f64);
        let _ = depth;
    }

    pub(super) fn held_by_tenant_cap(jobs: i64) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("agentgraph_queue_held_by_tenant_cap").set(jobs as f64);
        let _ = jobs;
    }

    pub(super) fn claim_latency(seconds: f64) {
        #[cfg(feature = "metrics")]
        metrics::histogram!("agentgraph_worker_claim_latency_seconds").record(seconds.max(0.0));
        let _ = seconds;
    }

    pub(super) fn renewal() {
        #[cfg(feature = "metrics")]
        metrics::counter!("agentgraph_worker_lease_renewals_total").increment(1);
    }

    pub(super) fn fenced() {
        #[cfg(feature = "metrics")]
        metrics::counter!("agentgraph_worker_fenced_writes_total").increment(1);
    }

    pub(super) fn retry_scheduled() {
        #[cfg(feature = "metrics")]
        metrics::counter!("agentgraph_worker_retries_scheduled_total").increment(1);
    }
}

/// What a worker counted since it was built: see [`Worker::stats`]. Cheap to read from
/// another task while the worker runs.
///
/// # Examples
///
/// ```
/// let stats = agentgraph_postgres::worker::WorkerStats::default();
/// assert_eq!((stats.claimed(), stats.completed(), stats.fenced()), (0, 0, 0));
/// ```
#[derive(Debug, Default)]
pub struct WorkerStats {
    claimed: AtomicU64,
    completed: AtomicU64,
    interrupted: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    released: AtomicU64,
    fenced: AtomicU64,
    renewals: AtomicU64,
    claims_lost: AtomicU64,
    retries_scheduled: AtomicU64,
}

macro_rules! getters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        impl WorkerStats {
            $(
                #[doc = $doc]
                ///
                /// # Examples
                ///
                /// See [`WorkerStats`].
                pub fn $name(&self) -> u64 {
                    self.$name.load(Ordering::Relaxed)
                }
            )*
        }
    };
}

getters! {
    claimed: "Jobs claimed.",
    completed: "Jobs whose run completed.",
    interrupted: "Jobs whose run stopped at interrupts.",
    failed: "Jobs whose run failed.",
    cancelled: "Jobs cancelled (by [`Queue::cancel`]).",
    released: "Jobs handed back to the queue: their run was busy, or the worker shut down.",
    fenced: "Runs whose write was refused because another worker had taken them over.",
    renewals: "Claims renewed by the heartbeat.",
    claims_lost: "Claims found taken over by another worker at a heartbeat.",
    retries_scheduled: "Jobs put back in the queue until a retry of their run is due (see [`Worker::max_inline_backoff`]).",
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Builds the [`RunConfig`] of each job's run (the worker sets its store, lease TTL and run
/// id on it).
type ConfigFn = Arc<dyn Fn() -> RunConfig + Send + Sync>;

/// A tenant's budget, for the runs of its jobs ([`Worker::tenant_budget`]).
type TenantBudgetFn = Arc<dyn Fn(&TenantId) -> Option<TenantBudget> + Send + Sync>;

/// A worker: claims the queue's jobs for the graphs of its [`GraphRegistry`] and runs them on
/// a [`PostgresStore`] (see the [module](self) documentation for what it guarantees).
///
/// # Examples
///
/// See the [module](self) documentation.
pub struct Worker {
    shared: Arc<Shared>,
    concurrency: usize,
    graph_caps: HashMap<String, usize>,
    poll_interval: Duration,
    shutdown_timeout: Duration,
}

struct Shared {
    store: PostgresStore,
    registry: GraphRegistry,
    id: String,
    lease_ttl: Duration,
    busy_delay: Duration,
    max_inline_backoff: Duration,
    config: ConfigFn,
    tenant_budget: Option<TenantBudgetFn>,
    stats: Arc<WorkerStats>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.id)
            .field("concurrency", &self.concurrency)
            .field("graph_caps", &self.graph_caps)
            .field("lease_ttl", &self.shared.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// A claimed job.
struct Job {
    id: i64,
    kind: String,
    graph: String,
    run: String,
    input: Option<String>,
    attempts: i32,
    cancel_requested: bool,
    /// A thread job's: the thread's last step before its input was given (-1: none).
    base_step: Option<i64>,
    /// The tenant whose run it is, as stored (checked when the job begins).
    tenant: Option<String>,
    /// Who queued it.
    caller: Option<String>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Worker {
    /// A worker named `id` (shown in the queue's jobs; unique among live workers is best),
    /// running the graphs of `registry` on `store`, 8 runs at a time, with a 10 s lease.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(store: agentgraph_postgres::PostgresStore) {
    /// use agentgraph_postgres::worker::Worker;
    /// let worker = Worker::new(store, agentgraph_engine::GraphRegistry::new(), "w-1")
    ///     .concurrency(32)
    ///     .graph_concurrency("llm-agent", 4)
    ///     .lease_ttl(std::time::Duration::from_secs(5));
    /// assert_eq!(worker.id(), "w-1");
    /// # }
    /// ```
    pub fn new(store: PostgresStore, registry: GraphRegistry, id: impl Into<String>) -> Worker {
        Worker {
            shared: Arc::new(Shared {
                store,
                registry,
                id: id.into(),
                lease_ttl: Duration::from_secs(10),
                busy_delay: Duration::from_millis(200),
                max_inline_backoff: Duration::from_secs(1),
                config: Arc::new(RunConfig::new),
                tenant_budget: None,
                stats: Arc::default(),
            }),
            concurrency: 8,
            graph_caps: HashMap::new(),
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("the worker is not running yet")
    }

    /// The worker's id.
    ///
    /// # Examples
    ///
    /// See [`Worker::new`].
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Runs at most `n` jobs at a time (at least 1).
    ///
    /// # Examples
    ///
    /// See [`Worker::new`].
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Runs at most `n` jobs of `graph` at a time (within [`concurrency`](Worker::concurrency)).
    ///
    /// # Examples
    ///
    /// See [`Worker::new`].
    #[must_use]
    pub fn graph_concurrency(mut self, graph: impl Into<String>, n: usize) -> Self {
        self.graph_caps.insert(graph.into(), n);
        self
    }

    /// How long a run's lease lasts without a heartbeat (renewed every third of it): a
    /// killed worker's runs are taken over about this long after its last heartbeat. A job's
    /// claim lasts a quarter longer, taken and renewed, so that it outlives the lease of its
    /// run (taken and renewed just after it): the worker that takes an expired claim over
    /// finds the run's lease expired too.
    ///
    /// # Examples
    ///
    /// See [`Worker::new`].
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.shared_mut().lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// How often the worker looks at the queue without a notification (default 1 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(w: agentgraph_postgres::worker::Worker) {
    /// let w = w.poll_interval(std::time::Duration::from_millis(100));
    /// # }
    /// ```
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How long a shutdown waits for the running runs to end before it cancels them and
    /// hands their jobs back (default 30 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(w: agentgraph_postgres::worker::Worker) {
    /// let w = w.shutdown_timeout(std::time::Duration::ZERO); // cancel at once
    /// # }
    /// ```
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a job whose run is held by another owner waits in the queue before it is
    /// claimed again (default 200 ms).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(w: agentgraph_postgres::worker::Worker) {
    /// let w = w.busy_delay(std::time::Duration::from_millis(50));
    /// # }
    /// ```
    #[must_use]
    pub fn busy_delay(mut self, delay: Duration) -> Self {
        self.shared_mut().busy_delay = delay;
        self
    }

    /// The longest retry backoff a run sleeps through while this worker holds it (default
    /// 1 s): a node's retry due later stops the run, and its job goes back to the queue until
    /// the retry is due (`available_at`), claim and lease released; any worker then continues
    /// the run with the next attempt. `Duration::MAX` sleeps through every backoff, holding
    /// the claim. Set on each run's [`RunConfig::max_inline_backoff`].
    ///
    /// A job put back shows in [`Queue::job`] and [`Queue::jobs`] as `queued`, with its
    /// [`JobInfo::available_at_ms`] in the future; it is claimed at the first look at the
    /// queue after that (within [`poll_interval`](Worker::poll_interval)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(w: agentgraph_postgres::worker::Worker) {
    /// let w = w.max_inline_backoff(std::time::Duration::from_millis(250));
    /// # }
    /// ```
    #[must_use]
    pub fn max_inline_backoff(mut self, limit: Duration) -> Self {
        self.shared_mut().max_inline_backoff = limit;
        self
    }

    /// The [`RunConfig`] each run starts from (durability, timeouts, limits...); the worker
    /// sets its store, lease TTL, inline backoff limit and run id on it, and the job's tenant
    /// and caller when it has them ([`Queue::tenant`], [`Queue::caller`]). Default:
    /// [`RunConfig::new`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(w: agentgraph_postgres::worker::Worker) {
    /// use agentgraph_engine::{Durability, RunConfig};
    /// let w = w.run_config(|| RunConfig::new().durability(Durability::Sync));
    /// # }
    /// ```
    #[must_use]
    pub fn run_config(mut self, config: impl Fn() -> RunConfig + Send + Sync + 'static) -> Self {
        self.shared_mut().config = Arc::new(config);
        self
    }

    /// The budget of each job's tenant: the run of a job with a tenant ([`Queue::tenant`]) is
    /// given `budget(&tenant)` as its `RunConfig::tenant_budget` (none when it returns
    /// `None`). With a [`TenantBudget::shared`] over a [`PostgresLedger`](crate::PostgresLedger),
    /// the tenant's totals are those of its runs on every worker: each run pushes its use at
    /// its step boundaries, and a run over the tenant's limit stops before its next step (its
    /// job ends `failed` with the [`BudgetExceeded`](agentgraph_engine::BudgetExceeded)
    /// message; [`Queue::resume`] it once the limit is raised). Return the same budget for a
    /// tenant each time if its `max_runs_in_flight` is to count this worker's runs (the queue's
    /// cap across workers is [`Queue::set_tenant_limit`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(w: agentgraph_postgres::worker::Worker, store: agentgraph_postgres::PostgresStore) {
    /// use std::sync::Arc;
    /// use agentgraph_engine::{Budget, TenantBudget, TenantLedger};
    /// use agentgraph_postgres::PostgresLedger;
    ///
    /// let ledger: Arc<dyn TenantLedger> = Arc::new(PostgresLedger::new(&store));
    /// let w = w.tenant_budget(move |tenant| {
    ///     Some(TenantBudget::shared(Budget::new().max_cost(20.0), tenant, ledger.clone()))
    /// });
    /// # }
    /// ```
    #[must_use]
    pub fn tenant_budget(
        mut self,
        budget: impl Fn(&TenantId) -> Option<TenantBudget> + Send + Sync + 'static,
    ) -> Self {
        self.shared_mut().tenant_budget = Some(Arc::new(budget));
        self
    }

    /// What the worker counts, shared: read it while the worker runs.
    ///
    /// # Examples
    ///
    /// See the [module](self) documentation.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.shared.stats.clone()
    }

    /// Claims and runs jobs until `shutdown` completes, then shuts down gracefully: it stops
    /// claiming, waits for its runs to end for up to the
    /// [`shutdown_timeout`](Worker::shutdown_timeout), then cancels the others and hands
    /// their jobs back to the queue (another worker resumes them).
    ///
    /// # Errors
    ///
    /// None so far: a lost connection is retried (and logged) until shutdown.
    ///
    /// # Examples
    ///
    /// See the [module](self) documentation.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let wake = Arc::new(Notify::new());
        let (cancel_tx, mut cancel_rx) = watch::channel(0u64);
        let (stop_tx, stop_rx) = watch::channel(false);
        let listener = tokio::spawn(listen(self.shared.clone(), wake.clone(), cancel_tx));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<String, usize> = HashMap::new();
        let mut task_graphs: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let names: Vec<String> = self.shared.registry.names().map(str::to_owned).collect();
        let concurrency = i32::try_from(self.concurrency).unwrap_or(i32::MAX);
        if let Err(e) = self
            .shared
            .store
            .query(HELLO, &[&self.shared.id, &names, &concurrency], true)
            .await
        {
            tracing::warn!(worker = %self.shared.id, error = %e, "registering the worker failed; it runs jobs all the same");
        }
        loop {
            // Claim while there is room and jobs come.
            loop {
                let spare = self.concurrency.saturating_sub(tasks.len());
                if spare == 0 {
                    break;
                }
                let groups = self.claimable(&names, &running, spare);
                let mut got = 0;
                let mut wanted = 0;
                for (graphs, limit) in groups {
                    wanted += limit;
                    // The cancellations so far are in what the claim reads (`cancel_requested`):
                    // the claimed jobs' runs look again only at those that come after it.
                    cancel_rx.borrow_and_update();
                    match self.claim(&graphs, limit).await {
                        Ok(jobs) => {
                            got += jobs.len();
                            for job in jobs {
                                *running.entry(job.graph.clone()).or_default() += 1;
                                let graph = job.graph.clone();
                                let task = tasks.spawn(run_job(
                                    self.shared.clone(),
                                    job,
                                    cancel_rx.clone(),
                                    stop_rx.clone(),
                                ));
                                task_graphs.insert(task.id(), graph);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(worker = %self.shared.id, error = %e, "claiming jobs failed; trying again");
                            wanted = usize::MAX;
                            break;
                        }
                    }
                }
                if got == 0 || got < wanted {
                    break;
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = wake.notified() => {}
                _ = poll.tick() => {
                    let _ = self.shared.store.query(SEEN, &[&self.shared.id], true).await;
                    if let Ok(rows) = self.shared.store.query(DEPTH, &[], true).await {
                        let depth = rows.first().map_or(0, |r| r.get::<_, i64>(0));
                        let held = rows.first().map_or(0, |r| r.get::<_, i64>(1));
                        metric::queue_depth(depth);
                        metric::held_by_tenant_cap(held);
                    }
                }
                Some(ended) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    ended_job(&mut running, &mut task_graphs, ended);
                }
            }
        }
        // Graceful shutdown: no more claims; the running runs end, or are cancelled.
        listener.abort();
        let deadline = tokio::time::sleep(self.shutdown_timeout);
        tokio::pin!(deadline);
        while !tasks.is_empty() {
            tokio::select! {
                Some(ended) = tasks.join_next_with_id() => ended_job(&mut running, &mut task_graphs, ended),
                () = &mut deadline => break,
            }
        }
        if !tasks.is_empty() {
            let _ = stop_tx.send(true);
            while let Some(ended) = tasks.join_next_with_id().await {
                ended_job(&mut running, &mut task_graphs, ended);
            }
        }
        let _ = self
            .shared
            .store
            .query(GONE, &[&self.shared.id], true)
            .await;
        Ok(())
    }

    /// The groups of graphs to claim together, and how many jobs each may take.
    fn claimable(
        &self,
        names: &[String],
        running: &HashMap<String, usize>,
        spare: usize,
    ) -> Vec<(Vec<String>, usize)> {
        let mut free = Vec::new();
        let mut groups = Vec::new();
        for name in names {
            match self.graph_caps.get(name) {
                None => free.push(name.clone()),
                Some(cap) => {
                    let room = cap.saturating_sub(running.get(name).copied().unwrap_or(0));
                    if room > 0 {
                        groups.push((vec![name.clone()], room.min(spare)));
                    }
                }
            }
        }
        if !free.is_empty() {
            groups.insert(0, (free, spare));
        }
        groups
    }

    async fn claim(&self, graphs: &[String], limit: usize) -> Result<Vec<Job>> {
        let shared = &self.shared;
        let rows = shared
            .store
            .query(
                CLAIM,
                &[
                    &shared.id,
                    // The claim outlives the run's lease, which is taken after it: a claim
                    // that expires (its worker died) finds the lease expired too.
                    &ms(claim_ttl(shared.lease_ttl)),
                    &graphs,
                    &(limit.min(1_000) as i64),
                ],
                false,
            )
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            bump(&shared.stats.claimed);
            let waited: f64 = row.get(7);
            metric::claim_latency(waited);
            jobs.push(Job {
                id: row.get(0),
                kind: row.get(1),
                graph: row.get(2),
                run: row.get(3),
                input: row.get(4),
                attempts: row.get(5),
                cancel_requested: row.get(6),
                base_step: row.get(8),
                tenant: row.get(9),
                caller: row.get(10),
            });
        }
        Ok(jobs)
    }
}

fn ended_job(
    running: &mut HashMap<String, usize>,
    graphs: &mut HashMap<tokio::task::Id, String>,
    ended: std::result::Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let id = match ended {
        Ok((id, ())) => id,
        Err(e) => {
            // A job's task that panicked: its claim expires and another worker resumes it.
            tracing::error!(error = %e, "a job's task ended abnormally");
            e.id()
        }
    };
    if let Some(graph) = graphs.remove(&id)
        && let Some(n) = running.get_mut(&graph)
    {
        *n = n.saturating_sub(1);
    }
}

/// Listens for the queue's notifications on a connection of its own, forever: after every
/// (re)connect it listens first, then wakes the claimer (which looks at the table).
async fn listen(shared: Arc<Shared>, wake: Arc<Notify>, cancels: watch::Sender<u64>) {
    let channel = queue::channel(shared.store.options().schema());
    let config = shared.store.options().session_config();
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    while let Some(Ok(message)) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        if let AsyncMessage::Notification(n) = message
                            && tx.send(n.payload().to_owned()).is_err()
                        {
                            return;
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
                    Ok(()) => {
                        // Whatever was queued before the LISTEN is found by this look.
                        wake.notify_one();
                        cancels.send_modify(|n| *n += 1);
                        while let Some(payload) = rx.recv().await {
                            if payload == CANCELLED {
                                cancels.send_modify(|n| *n += 1);
                            } else {
                                wake.notify_one();
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => {
                tracing::warn!(worker = %shared.id, error = %e, "the queue's notification connection failed; polling until it is back");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How a job's run ended, for the queue.
enum End {
    Finish(&'static str, Option<String>, Option<String>),
    Release(Duration),
    /// Back to the queue until a retry is due (Unix ms).
    RetryAt(u64),
    Nothing,
}

/// Starts (or, for a job claimed again, resumes) the job's run.
async fn begin(shared: &Shared, job: &Job) -> std::result::Result<DynRun, Error> {
    let graph = shared.registry.get(&job.graph).ok_or_else(|| Error::Json {
        what: "the job's graph".into(),
        message: format!("graph `{}` is not registered", job.graph),
    })?;
    let mut config = (shared.config)()
        .store(shared.store.clone())
        .lease_ttl(shared.lease_ttl)
        .max_inline_backoff(shared.max_inline_backoff);
    // The job's tenant and caller: its run is the tenant's (the engine refuses another's as
    // not found) and its audit trail names who queued it.
    if let Some(tenant) = &job.tenant {
        let tenant = TenantId::new(tenant).map_err(|e| Error::Json {
            what: "the job's tenant".into(),
            message: e.to_string(),
        })?;
        if let Some(budget) = shared.tenant_budget.as_ref().and_then(|f| f(&tenant)) {
            config = config.tenant_budget(budget);
        }
        config = config.tenant(tenant);
    }
    if let Some(caller) = &job.caller {
        config = config.caller(caller.clone());
    }
    let input: serde_json::Value = match &job.input {
        Some(text) => serde_json::from_str(text).map_err(|e| Error::Json {
            what: "the job's input".into(),
            message: e.to_string(),
        })?,
        None => serde_json::Value::Null,
    };
    // A job claimed again: what did the attempts before do?
    let stored = if job.attempts > 1 && job.kind != "thread" {
        CheckpointStore::get_run(&shared.store, &job.run)
            .await
            .map_err(Error::Store)?
    } else {
        None
    };
    match job.kind.as_str() {
        "start" => match stored {
            None => graph.start(input, config.run_id(job.run.clone())),
            Some(_) => graph.resume(job.run.clone(), DynResume::default(), config),
        },
        "thread" => {
            // The thread's last step now; an input given is checkpointed as the next step.
            let latest = CheckpointStore::latest_checkpoint(&shared.store, &job.run)
                .await
                .map_err(Error::Store)?
                .map_or(-1, |(step, _)| i64::try_from(step).unwrap_or(i64::MAX));
            match job.base_step {
                // An attempt before gave the input (the thread went past the step it was
                // at): it goes on, or, ended, gives its final state.
                Some(base) if latest > base => {
                    graph.resume(job.run.clone(), DynResume::default(), config)
                }
                Some(_) => graph.invoke_thread(job.run.clone(), input, config),
                None => {
                    // Recorded before the input is given: a later attempt knows.
                    shared
                        .store
                        .query(BASE_STEP, &[&job.id, &job.attempts, &latest], true)
                        .await
                        .map_err(Error::Store)?;
                    graph.invoke_thread(job.run.clone(), input, config)
                }
            }
        }
        _ => {
            let resume: DynResume = serde_json::from_value(input).map_err(|e| Error::Json {
                what: "the job's resume".into(),
                message: e.to_string(),
            })?;
            match stored {
                Some(r) if r.status != RunStatus::Interrupted => {
                    graph.resume(job.run.clone(), DynResume::default(), config)
                }
                _ => graph.resume(job.run.clone(), resume, config),
            }
        }
    }
}

/// Runs one claimed job to its end, holding its claim.
async fn run_job(
    shared: Arc<Shared>,
    job: Job,
    mut cancels: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let end = if job.cancel_requested {
        End::Finish("cancelled", None, Some("cancelled before it ran".into()))
    } else {
        // The run's lease is released with the job's end, below.
        shared.store.defer_release(&job.run);
        match begin(&shared, &job).await {
            Err(e) => outcome_end(&shared, Err(e), false, false),
            Ok(run) => drive(&shared, &job, run, &mut cancels, &mut stop).await,
        }
    };
    // The run's lease, dropped by the run: released here.
    let lease = shared.store.take_deferred(&job.run);
    if let (Some(epoch), End::Release(_) | End::RetryAt(_) | End::Nothing) = (lease, &end) {
        let _ = shared.store.release(&job.run, epoch).await;
    }
    let result = match end {
        End::Finish(status, output, error) => match lease {
            Some(epoch) => {
                let epoch = epoch as i64;
                shared
                    .store
                    .query(
                        FINISH_RELEASE,
                        &[
                            &job.id,
                            &job.attempts,
                            &status,
                            &output,
                            &error,
                            &job.run.as_bytes(),
                            &epoch,
                        ],
                        true,
                    )
                    .await
            }
            None => {
                shared
                    .store
                    .query(
                        FINISH,
                        &[&job.id, &job.attempts, &status, &output, &error],
                        true,
                    )
                    .await
            }
        }
        .map(drop),
        End::Release(delay) => {
            bump(&shared.stats.released);
            let released = shared
                .store
                .query(RELEASE, &[&job.id, &job.attempts, &ms(delay)], true)
                .await
                .map(drop);
            if delay.is_zero() {
                let channel = queue::channel(shared.store.options().schema());
                let _ = shared.store.query(NOTIFY, &[&channel, &QUEUED], true).await;
            }
            released
        }
        End::RetryAt(due_at_ms) => requeue_at(&shared, &job, due_at_ms).await,
        End::Nothing => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(worker = %shared.id, run = %job.run, error = %e, "recording a job's end failed; its claim expires and another worker resumes it");
    }
}

/// Puts `job`, whose run stopped until a retry is due at `due_at_ms` (Unix ms), back in the
/// queue until then: `queued`, unclaimed, `available_at` the due time. The run's lease was
/// released when the run ended; the next claim continues the run (a job claimed again
/// resumes its run).
async fn requeue_at(shared: &Shared, job: &Job, due_at_ms: u64) -> Result<()> {
    bump(&shared.stats.retries_scheduled);
    metric::retry_scheduled();
    let due = due_at_ms as f64 / 1000.0;
    shared
        .store
        .query(REQUEUE_AT, &[&job.id, &job.attempts, &due], true)
        .await
        .map(drop)
}

/// How long a claim lasts after it is taken or renewed: a quarter longer than the run's lease
/// (see [`Worker::lease_ttl`]), so that it never expires before the lease it covers.
fn claim_ttl(lease_ttl: Duration) -> Duration {
    lease_ttl + lease_ttl / 4
}

/// Follows a started run: renews the claim, passes cancellations on, and says how it ended.
async fn drive(
    shared: &Shared,
    job: &Job,
    run: DynRun,
    cancels: &mut watch::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let (_run_id, events, cancel, mut outcome) = run.into_parts();
    drop(events);
    let mut beat = tokio::time::interval(shared.lease_ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.reset(); // the claim was just taken
    let (mut cancel_requested, mut stopping) = (false, false);
    let result = loop {
        let check = tokio::select! {
            result = &mut outcome => break result,
            _ = beat.tick() => true,
            Ok(()) = cancels.changed() => true,
            Ok(()) = stop.changed(), if !stopping => {
                stopping = true;
                cancel.cancel();
                false
            }
        };
        if !check {
            continue;
        }
        match shared
            .store
            .query(
                HEARTBEAT,
                // A quarter longer than the lease, as when claimed: the run's lease is
                // renewed on its own clock, a little after the claim, so a claim renewed to
                // the TTL itself expired a few milliseconds before the lease of a killed
                // worker's run, and the worker that took the job over found the run busy.
                &[&job.id, &job.attempts, &ms(claim_ttl(shared.lease_ttl))],
                true,
            )
            .await
        {
            Ok(rows) => match rows.first() {
                Some(row) => {
                    bump(&shared.stats.renewals);
                    metric::renewal();
                    if row.get::<_, bool>(0) && !cancel_requested {
                        cancel_requested = true;
                        cancel.cancel();
                    }
                }
                None => {
                    // Taken over: the run's next write is refused by the store's fence.
                    bump(&shared.stats.claims_lost);
                    tracing::warn!(worker = %shared.id, run = %job.run, "the job's claim was taken over");
                }
            },
            Err(e) => {
                tracing::warn!(worker = %shared.id, run = %job.run, error = %e, "renewing a claim failed; retrying");
            }
        }
    };
    outcome_end(shared, result, cancel_requested, stopping)
}

fn outcome_end(
    shared: &Shared,
    result: std::result::Result<DynOutcome, Error>,
    cancel_requested: bool,
    stopping: bool,
) -> End {
    let stats = &shared.stats;
    match result {
        Ok(DynOutcome::Completed { state }) => {
            bump(&stats.completed);
            End::Finish("done", Some(state.to_string()), None)
        }
        Ok(outcome @ DynOutcome::Interrupted { .. }) => {
            bump(&stats.interrupted);
            let output = serde_json::to_string(&outcome).ok();
            End::Finish("interrupted", output, None)
        }
        Ok(DynOutcome::RetryScheduled { retry }) => End::RetryAt(retry.due_at_ms),
        Err(e) if e.is_busy() => End::Release(shared.busy_delay),
        Err(Error::Store(StoreError::Fenced { .. })) => {
            bump(&stats.fenced);
            metric::fenced();
            tracing::warn!(worker = %shared.id, "a run's write was fenced: another worker took it over");
            End::Nothing
        }
        Err(Error::Cancelled { .. }) if stopping && !cancel_requested => {
            End::Release(Duration::ZERO)
        }
        Err(e @ Error::Cancelled { .. }) if cancel_requested => {
            bump(&stats.cancelled);
            End::Finish("cancelled", None, Some(e.to_string()))
        }
        Err(e) => {
            bump(&stats.failed);
            End::Finish("failed", None, Some(e.to_string()))
        }
    }
}
