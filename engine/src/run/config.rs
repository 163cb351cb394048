//! Run settings: [`Mode`] and [`RunConfig`].

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, IntoStore, RunMetadata};
use serde::{Deserialize, Serialize};

use crate::persist::Session;

/// How the tasks of a step run. Both modes give the same final state and the same events per
/// task; they differ only in speed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One task after another, in merge order.
    Sequential,
    /// Concurrently: async nodes as tokio tasks, CPU-bound nodes on the rayon pool.
    #[default]
    Parallel,
}

/// When checkpoints become durable. In every mode a pending write is durable no later than
/// the checkpoint that supersedes it, and a run that returns has flushed everything.
///
/// What "durable" survives is the store's: with the embedded sled store, a flushed write
/// survives the process being killed at any instant, but sled's flush does not fsync, so a
/// power loss or kernel crash may lose about the last 500 ms of acknowledged steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Each checkpoint, and the pending writes before it, is flushed before the next step
    /// starts: a crash loses no finished step.
    Sync,
    /// Checkpoints are written in the background while the next steps run, committed and
    /// flushed in groups: once the oldest write not committed is 2 ms old, and once more when
    /// the run ends, which commits what is left in one batch and flushes (the run waits for
    /// that last commit and flush only). A crash may lose the steps of the last few
    /// milliseconds, but never corrupts or reorders them; a run that returns is durable.
    #[default]
    Async,
    /// Checkpoints are kept in memory and written when the run completes, fails or is
    /// interrupted: a crash loses the whole run. The fastest mode.
    Exit,
}

/// What happens to a step's other tasks when one fails for good (after its retries).
///
/// In both cases the tasks that finished keep their writes (as pending writes, with a store),
/// the run stops as failed at that step, and resuming it runs only the tasks that did not
/// finish.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_engine::{FailurePolicy, RunConfig};
///
/// // Fail fast: one failed branch cancels the others, and no step may take over a minute.
/// let config = RunConfig::new()
///     .on_failure(FailurePolicy::CancelSiblings)
///     .step_timeout(Duration::from_secs(60))
///     .run_timeout(Duration::from_secs(3600));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailurePolicy {
    /// The other tasks finish (with their retries) and keep their writes.
    #[default]
    FinishSiblings,
    /// The other tasks are cancelled at once: async ones dropped, CPU-bound ones told through
    /// their [`Context::is_cancelled`](crate::Context::is_cancelled).
    CancelSiblings,
}

/// The settings of one run.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{Mode, RunConfig};
/// let config = RunConfig::new().mode(Mode::Sequential).seed(7).recursion_limit(50);
/// // Settings are written, not read back: a run's configuration shows in its `Debug` form.
/// assert!(format!("{config:?}").contains("seed: 7"));
/// ```
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub(crate) mode: Mode,
    pub(crate) seed: u64,
    pub(crate) recursion_limit: u64,
    pub(crate) max_total_steps: Option<u64>,
    pub(crate) run_id: Option<String>,
    pub(crate) event_capacity: usize,
    pub(crate) store: Option<Arc<dyn CheckpointStore>>,
    pub(crate) durability: Durability,
    pub(crate) allow_graph_change: bool,
    pub(crate) store_events: bool,
    pub(crate) state_views: bool,
    pub(crate) on_failure: FailurePolicy,
    pub(crate) step_timeout: Option<Duration>,
    pub(crate) run_timeout: Option<Duration>,
    /// Whether the run is a subgraph's child run, whose id may have the mark reserved for
    /// those (see `persist::runs`).
    pub(crate) subgraph_run: bool,
    pub(crate) lease_ttl: Duration,
    /// The metadata to record on the run, replacing the stored one (`None`: keep it).
    pub(crate) metadata: Option<RunMetadata>,
    /// The run's time to live, replacing the stored one (`None`: keep it).
    pub(crate) ttl: Option<Duration>,
    /// Whether a cancelled run runs its compensations (`GraphBuilder::compensate`).
    pub(crate) compensate_on_cancel: bool,
    /// The longest retry delay the run sleeps through; a longer one stops the run until the
    /// retry is due (`Duration::MAX`: no limit).
    pub(crate) max_inline_backoff: Duration,
    /// Where a run without a checkpoint store keeps long-term memory.
    pub(crate) memory: Option<Arc<dyn CheckpointStore>>,
    /// What turns texts into vectors for semantic memory.
    pub(crate) embedder: Option<Arc<dyn agentgraph_checkpoint::items::Embedder>>,
    /// How the run's records are stored (compressed or not).
    pub(crate) packing: crate::persist::packing::Packing,
    /// The run's budget (this invocation, with its resumes).
    pub(crate) budget: Option<crate::run::budget::Budget>,
    /// The thread's budget (every invocation of the run id).
    pub(crate) thread_budget: Option<crate::run::budget::Budget>,
    /// What model tokens cost, for the cost budgets.
    pub(crate) prices: Option<Arc<crate::run::budget::PriceTable>>,
    /// The budget shared by the tenant's runs, in process.
    pub(crate) tenant_budget: Option<crate::run::budget::TenantBudget>,
    /// A subgraph's child run: the parent run its usage adds to.
    pub(crate) usage_parent: Option<Arc<crate::run::context::RunShared>>,
    /// Who runs it, for the audit trail (`None`: `"unknown"`).
    pub(crate) caller: Option<Arc<str>>,
    /// The tenant the run belongs to (`None`: the stored run's, or none for a new run).
    pub(crate) tenant: Option<agentgraph_checkpoint::TenantId>,
    /// The encryption of the run's records, until the run wraps its store with it.
    #[cfg(feature = "encryption")]
    pub(crate) encryption: Option<agentgraph_checkpoint::encryption::Encryption>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            mode: Mode::Parallel,
            seed: 0,
            recursion_limit: RunConfig::DEFAULT_RECURSION_LIMIT,
            max_total_steps: None,
            run_id: None,
            event_capacity: 4096,
            store: None,
            durability: Durability::default(),
            allow_graph_change: false,
            store_events: false,
            state_views: false,
            on_failure: FailurePolicy::default(),
            step_timeout: None,
            run_timeout: None,
            subgraph_run: false,
            lease_ttl: RunConfig::DEFAULT_LEASE_TTL,
            metadata: None,
            ttl: None,
            compensate_on_cancel: false,
            max_inline_backoff: Duration::MAX,
            memory: None,
            embedder: None,
            packing: Default::default(),
            budget: None,
            thread_budget: None,
            prices: None,
            tenant_budget: None,
            usage_parent: None,
            caller: None,
            tenant: None,
            #[cfg(feature = "encryption")]
            encryption: None,
        }
    }
}

impl RunConfig {
    /// The default recursion limit: 10,000 steps per invocation.
    pub const DEFAULT_RECURSION_LIMIT: u64 = 10_000;

    /// The default lease time to live: 30 seconds.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

    /// The defaults: parallel, seed 0, 10,000 steps per invocation and no budget for the whole
    /// run, a fresh run id, 4,096 buffered events, no checkpoint store.
    pub fn new() -> Self {
        RunConfig::default()
    }

    /// Sets the execution mode.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the seed of weighted choices. The same graph, input and seed give the same run.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the most steps one **invocation** may take (default
    /// [`DEFAULT_RECURSION_LIMIT`](RunConfig::DEFAULT_RECURSION_LIMIT)): a fresh run, or a
    /// resume. A limit of N lets an invocation of exactly N steps finish; before step N + 1 of
    /// the invocation, the run stops with [`Error::RecursionLimit`](crate::Error::RecursionLimit),
    /// its last step checkpointed. It can be resumed, and the resume is an invocation of its
    /// own, with a limit of its own (its configuration's).
    ///
    /// The count of an invocation starts at 0 whatever the run's step number: a loop that
    /// stops at an interrupt every few steps never reaches the limit, however many times it
    /// is answered. A step that a resume runs again (the step an interrupt or a failure
    /// stopped) counts for the resume. To bound the run's steps across all its invocations,
    /// see [`max_total_steps`](RunConfig::max_total_steps).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A loop of 5 steps.
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("tick", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_edge(START, "tick")
    ///     .add_conditional_edges("tick", ["tick", END], |c: &Count| if c.n < 5 { "tick" } else { END });
    /// let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = || RunConfig::new().store(store.clone()).run_id("r").recursion_limit(3);
    ///
    /// // The first invocation stops after 3 steps; the resume has 3 more.
    /// let e = graph.run_with(Count::default(), config()).await.unwrap_err();
    /// assert!(matches!(e, Error::RecursionLimit { limit: 3 }));
    /// assert_eq!(graph.resume("r", config()).await?.n, 5);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn recursion_limit(mut self, steps: u64) -> Self {
        self.recursion_limit = steps;
        self
    }

    /// Bounds the steps of the whole run, across all its invocations (none by default): a
    /// budget of N lets the run reach step N, as numbered in its checkpoints (a step that a
    /// resume runs again counts once). Before step N + 1, the run stops with
    /// [`Error::TotalStepsLimit`](crate::Error::TotalStepsLimit), its last step checkpointed;
    /// resuming it with a higher budget (or none) lets it go on. Each invocation's
    /// configuration sets the budget it runs under, and the
    /// [`recursion_limit`](RunConfig::recursion_limit) still bounds each invocation.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A loop of 5 steps.
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("tick", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_edge(START, "tick")
    ///     .add_conditional_edges("tick", ["tick", END], |c: &Count| if c.n < 5 { "tick" } else { END });
    /// let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = || RunConfig::new().store(store.clone()).run_id("r");
    ///
    /// let e = graph.run_with(Count::default(), config().max_total_steps(4)).await.unwrap_err();
    /// assert!(matches!(e, Error::TotalStepsLimit { limit: 4 }));
    /// // The same budget stops it again at once; a higher one lets it finish.
    /// let e = graph.resume("r", config().max_total_steps(4)).await.unwrap_err();
    /// assert!(matches!(e, Error::TotalStepsLimit { limit: 4 }));
    /// assert_eq!(graph.resume("r", config().max_total_steps(5)).await?.n, 5);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn max_total_steps(mut self, steps: u64) -> Self {
        self.max_total_steps = Some(steps);
        self
    }

    /// Names the run (a fresh time-ordered id otherwise). An id containing `/@` is reserved for
    /// the runs of subgraphs: a new run given one fails with
    /// [`Error::ReservedRunId`](crate::Error::ReservedRunId).
    #[must_use]
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    /// How many events a subscriber may fall behind before it misses some (default 4,096).
    #[must_use]
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events;
        self
    }

    /// Where a run **without** a checkpoint store keeps long-term memory
    /// ([`Context::memory`](crate::Context::memory)): its nodes' memory writes are committed to
    /// `store` when their step ends (nothing makes them atomic with anything: the run has no
    /// checkpoint). A run with a checkpoint store ([`store`](RunConfig::store)) keeps memory
    /// in that store, committed with its checkpoints, and ignores this setting.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::MemoryStore;
    /// use agentgraph_engine::RunConfig;
    /// let memory = MemoryStore::new(); // shared by the runs given a clone
    /// let config = RunConfig::new().memory(memory.clone());
    /// # let _ = config;
    /// ```
    pub fn memory(mut self, store: impl IntoStore) -> Self {
        self.memory = Some(store.into_store());
        self
    }

    /// The embedder of semantic memory: [`Memory::put_indexed`](crate::Memory::put_indexed)
    /// stores the vector of a text with an item, [`Memory::search_text`](crate::Memory::search_text)
    /// ranks items by similarity to a text.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_checkpoint::items::HashEmbedder;
    /// use agentgraph_engine::RunConfig;
    /// let config = RunConfig::new().embedder(Arc::new(HashEmbedder::new(384)));
    /// # let _ = config;
    /// ```
    pub fn embedder(mut self, embedder: Arc<dyn agentgraph_checkpoint::items::Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Checkpoints the run to `store` after every step, so that it can be resumed with
    /// [`CompiledGraph::resume`](crate::CompiledGraph::resume).
    #[must_use]
    ///
    /// Takes a store by value (`SledStore`, `MemoryStore`, any [`CheckpointStore`]) or shared
    /// (an `Arc` of one, or an `Arc<dyn CheckpointStore>` other runs and a monitor use too):
    /// see [`IntoStore`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
    /// use agentgraph_engine::RunConfig;
    ///
    /// let owned = RunConfig::new().store(MemoryStore::new());
    /// let shared: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    /// let config = RunConfig::new().store(shared.clone());
    /// # let _ = (owned, config);
    /// ```
    pub fn store(mut self, store: impl IntoStore) -> Self {
        self.store = Some(store.into_store());
        self
    }

    /// When checkpoints become durable (default [`Durability::Async`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Stores the run's events with its checkpoints (off by default): every event, numbered
    /// in order, is written in the same commit as the checkpoint that follows it (the events
    /// that end the run, with its last write), so that a monitor can replay the run, also
    /// after a crash, and a resumed run numbers its events after the stored ones. Read them
    /// with [`GraphHistory::events`](crate::GraphHistory::events). Needs a [`store`](RunConfig::store);
    /// subgraphs inherit it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Count>::new();
    /// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) }).add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = RunConfig::new().store(store.clone()).run_id("r").store_events(true);
    /// graph.run_with(Count::default(), config).await?;
    /// let events = graph.history(store).events("r", None, 100).await?;
    /// assert!(matches!(events[0].kind, EventKind::RunStarted { .. }));
    /// assert!(matches!(events.last().unwrap().kind, EventKind::RunFinished { .. }));
    /// assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn store_events(mut self, store: bool) -> Self {
        self.store_events = store;
        self
    }

    /// Makes the run describe itself in its events: an [`EventKind::Graph`] with the graph as
    /// data after it starts or resumes, and [`EventKind::StateView`] events with JSON views of
    /// its state (every field after it starts or resumes, then the fields each step wrote; a
    /// field that grows is sent as what was appended). With
    /// [`store_events`](RunConfig::store_events), that is what lets a monitor or the
    /// `agentgraph` command-line tool draw the graph and show the state at any step without
    /// the program's types. Off by default: each step serializes the fields it wrote to JSON.
    ///
    /// [`EventKind::Graph`]: crate::EventKind::Graph
    /// [`EventKind::StateView`]: crate::EventKind::StateView
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Notes { #[reducer(append)] items: Vec<String> }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Notes>::new();
    /// # b.add_node("one", |_, _| async { Ok(NotesUpdate::new().items(vec!["x".into()])) })
    /// #     .add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// graph.run_with(Notes::default(), RunConfig::new().store(store.clone()).run_id("r").monitored()).await?;
    ///
    /// let inspector = StoreInspector::new(store);
    /// let state = inspector.state_json("r", None).await?;
    /// assert_eq!(state, serde_json::json!({ "items": ["x"] }));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn state_views(mut self, views: bool) -> Self {
        self.state_views = views;
        self
    }

    /// What a monitored run needs: [`store_events`](RunConfig::store_events) and
    /// [`state_views`](RunConfig::state_views).
    #[must_use]
    pub fn monitored(self) -> Self {
        self.store_events(true).state_views(true)
    }

    /// Lets a run resume with a graph whose fingerprint differs from the one that started it
    /// (nodes renamed or removed, edges or reducers changed). Without it, that is
    /// [`Error::GraphChanged`](crate::Error::GraphChanged).
    #[must_use]
    pub fn allow_graph_change(mut self, allow: bool) -> Self {
        self.allow_graph_change = allow;
        self
    }

    /// What happens to a step's other tasks when one fails for good (default
    /// [`FailurePolicy::FinishSiblings`]).
    #[must_use]
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }

    /// The longest a step may take, retries included. When it is exceeded, the step's
    /// unfinished tasks are cancelled, the finished ones keep their writes, and the run fails
    /// with [`Error::StepTimedOut`](crate::Error::StepTimedOut), resumable.
    #[must_use]
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = Some(timeout);
        self
    }

    /// The longest this run may take, from when it starts (or is resumed) until it ends. When
    /// it is exceeded, the running tasks are cancelled, the finished ones keep their writes,
    /// and the run fails with [`Error::RunTimedOut`](crate::Error::RunTimedOut), resumable.
    #[must_use]
    pub fn run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }

    /// How long the run's lease in its store lasts without renewal (default
    /// [`DEFAULT_LEASE_TTL`](RunConfig::DEFAULT_LEASE_TTL)). A stored run is owned by one
    /// writer at a time, through a lease with a fencing epoch
    /// ([`CheckpointStore::acquire_lease`]); the run renews its lease every third of this
    /// time while it is alive. If it fails to (a process paused past it, a lost connection to
    /// a shared store), another owner may take the run over once the lease expires, and the
    /// run's next write is refused whole with
    /// [`Error::Store`](crate::Error::Store)`(`[`StoreError::Fenced`](agentgraph_checkpoint::StoreError::Fenced)`)`.
    /// Embedded stores release a run as soon as it ends; the TTL matters for stores shared
    /// between processes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = agentgraph_engine::RunConfig::new().lease_ttl(Duration::from_secs(10));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Whether a run cancelled through its handle runs its compensations
    /// ([`GraphBuilder::compensate`](crate::GraphBuilder::compensate)) before it ends (default
    /// false: a cancelled run stays resumable, and nothing is undone). With true, the
    /// compensations run (the cancellation and the run timeout do not stop them; step and
    /// node timeouts do) and the run ends with [`Error::Compensated`](crate::Error::Compensated)
    /// holding [`Error::Cancelled`](crate::Error::Cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = agentgraph_engine::RunConfig::new().compensate_on_cancel(true);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn compensate_on_cancel(mut self, compensate: bool) -> Self {
        self.compensate_on_cancel = compensate;
        self
    }

    /// The longest retry delay the run waits through while it runs (default: no limit, every
    /// delay is slept through). When a failed task's next retry is due later than this, the
    /// run does not sleep holding its lease: the step's other tasks finish (with their own
    /// retries), the step is checkpointed as a stopped step (the finished tasks' writes kept,
    /// the retrying task's attempts and due time recorded), and the run ends with
    /// [`RunOutcome::RetryScheduled`](crate::RunOutcome::RetryScheduled) (as an error,
    /// [`Error::RetryScheduled`](crate::Error::RetryScheduled)) and status `RetryScheduled`.
    /// Whoever continues it when the retry is due (a resume, from any process; a PostgreSQL
    /// worker re-queues the run's job for that time) runs only the retrying tasks, with their
    /// next attempt number: see [`RetryAt`](crate::RetryAt).
    ///
    /// It needs a store (a run without one sleeps through every delay, as it cannot be
    /// continued), and applies to the run's own nodes: a subgraph's child run retries inline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_engine::RunConfig;
    /// // Sleep through retries of up to a second; stop the run for longer ones.
    /// let config = RunConfig::new().max_inline_backoff(Duration::from_secs(1));
    /// assert!(format!("{config:?}").contains("max_inline_backoff: 1s"));
    /// ```
    #[must_use]
    pub fn max_inline_backoff(mut self, limit: Duration) -> Self {
        self.max_inline_backoff = limit;
        self
    }

    /// Compresses the records the run stores (checkpoints, field values and deltas, pending
    /// writes, events) as `compression` says: zstd, for records of at least its threshold,
    /// and only when that makes them smaller (default: none). Reading needs no configuration:
    /// each record says how it is stored, so a run may be resumed with another setting, and
    /// runs stored before read as they did. Feature `compression`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{Compression, RunConfig};
    /// let config = RunConfig::new().compression(Compression::zstd().threshold(16 * 1024).level(1));
    /// assert!(format!("{config:?}").contains("threshold: 16384"));
    /// ```
    #[cfg(feature = "compression")]
    #[must_use]
    pub fn compression(
        mut self,
        compression: agentgraph_checkpoint::envelope::Compression,
    ) -> Self {
        self.packing.compression = Some(compression);
        self
    }

    /// Records `metadata` (user, title, tags, labels) on the run, for listing runs by it
    /// ([`StoreInspector::runs_matching`](crate::StoreInspector::runs_matching), the
    /// command-line tool's `runs --user --tag --label`, the monitor). It replaces the
    /// metadata the run had; a run started or resumed without it keeps what it had, so a
    /// thread's metadata is set once and stays across its invocations. Written with the run's
    /// record from the run's first write on (a resume: from the moment it is opened); needs a
    /// [`store`](RunConfig::store). Subgraph runs do not inherit it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Count>::new();
    /// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) }).add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// use agentgraph_checkpoint::{RunFilter, RunMetadata};
    ///
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let meta = RunMetadata::new().with_user("ann").with_title("Refund").with_tag("billing");
    /// let config = RunConfig::new().store(store.clone()).run_id("chat-1").metadata(meta.clone());
    /// graph.run_with(Count::default(), config).await?;
    ///
    /// let inspector = StoreInspector::new(store);
    /// assert_eq!(inspector.run("chat-1").await?.unwrap().metadata, meta);
    /// let anns = inspector.runs_matching(&RunFilter::new().user("ann"), None, 10).await?;
    /// assert_eq!(anns[0].run_id, "chat-1");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn metadata(mut self, metadata: RunMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Keeps the run for `ttl` after it was last written, after which a sweep of its store
    /// ([`CheckpointStore::sweep_expired`], [`Sweeper`](agentgraph_checkpoint::Sweeper),
    /// `agentgraph sweep`) deletes it, with its subgraph runs. The expiry slides: each write
    /// of the run's record (each checkpoint, its end, a resume) sets it to that time plus
    /// `ttl`, so a thread in use never expires, and a running run is never swept (it holds
    /// its lease). It replaces the time to live the run had; a run started or resumed without
    /// it keeps what it had. Needs a [`store`](RunConfig::store). Subgraph runs have none of
    /// their own: they go with their parent.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Count>::new();
    /// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) }).add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = RunConfig::new().store(store.clone()).run_id("chat-1").ttl(Duration::from_secs(3600));
    /// graph.run_with(Count::default(), config).await?;
    ///
    /// let record = store.get_run("chat-1").await?.unwrap();
    /// assert_eq!(record.expires_at_ms, Some(record.updated_at_ms + 3_600_000));
    /// // An hour later, a sweep deletes it.
    /// let swept = store.sweep_expired(record.updated_at_ms + 3_600_000).await?;
    /// assert_eq!(swept, ["chat-1"]);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Who starts, resumes or continues the run, as its audit trail records them: a user
    /// name, a service, a token's label. Every invocation of a run with a store that keeps
    /// audit trails (the four stores of agentgraph) appends entries to the run's trail,
    /// hash-chained, in the same atomic batch as what they record: `started` (or `invoked`
    /// for a thread's next invocation) with the first checkpoint, `resumed` with the resume,
    /// `interrupt_answered` (the interrupt, the answer's SHA-256 and size, the answer itself
    /// when it is at most 1 KiB) and `state_edited` with the resume's amendment, `cancelled`
    /// with the run's end. Without a caller the entries name `"unknown"`. Subgraph runs are
    /// not audited: their parent is. See `agentgraph_checkpoint::audit` and the command-line
    /// tool's `agentgraph audit verify`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # use agentgraph_checkpoint::audit::AuditAction;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Count>::new();
    /// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) }).add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = RunConfig::new().store(store.clone()).run_id("r-1").caller("alice");
    /// graph.run_with(Count::default(), config).await?;
    ///
    /// let trail = store.audit("r-1").await?;
    /// assert_eq!(trail[0].record.action, AuditAction::Started);
    /// assert_eq!(trail[0].record.caller, "alice");
    /// assert!(agentgraph_checkpoint::audit::verify(&*store, "r-1").await?.is_ok());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(Arc::from(caller.into()));
        self
    }

    /// What the run's record says of its session: none for a subgraph run.
    pub(crate) fn session(&self) -> Session {
        if self.subgraph_run {
            // A subgraph's run is its parent's tenant's.
            return Session {
                tenant: self.tenant.clone(),
                ..Session::default()
            };
        }
        Session {
            metadata: self.metadata.clone(),
            ttl: self.ttl,
            tenant: self.tenant.clone(),
        }
    }

    /// Bounds what this run may use ([`Budget`](crate::Budget)): steps, model tokens, their
    /// cost, tool calls, wall time. The run's usage counts from the start of this invocation
    /// (a fresh run, or a thread's next input) and goes on across its resumes: it is stored
    /// with each checkpoint. Before each step, a run that used its limit of something stops
    /// with [`Error::BudgetExceeded`](crate::Error::BudgetExceeded), status
    /// `budget_exceeded`, its last step checkpointed; resume it with a higher budget (or none)
    /// to go on. Tokens, cost and tool calls are what the nodes report
    /// ([`Context::record_model_usage`](crate::Context::record_model_usage),
    /// [`Context::record_tool_calls`](crate::Context::record_tool_calls)); the node library's
    /// model nodes, agent and tools report theirs.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Each step calls a model that uses 100 tokens.
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("think", |_, ctx: Context| async move {
    ///     ctx.record_model_usage("gpt-4o-mini", 80, 20);
    ///     Ok(CountUpdate::new().n(1))
    /// })
    /// .add_edge(START, "think")
    /// .add_conditional_edges("think", ["think", END], |c: &Count| if c.n < 5 { "think" } else { END });
    /// let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = |tokens| RunConfig::new().store(store.clone()).run_id("r")
    ///     .budget(Budget::new().max_tokens(tokens));
    ///
    /// let Err(Error::BudgetExceeded(stop)) = graph.run_with(Count::default(), config(250)).await else {
    ///     panic!("the budget stops the run");
    /// };
    /// assert_eq!((stop.budget, stop.limit, stop.used, stop.step), (BudgetKind::Tokens, 250, 300, 4));
    /// // A higher budget lets it finish, from step 4.
    /// assert_eq!(graph.resume("r", config(1_000)).await?.n, 5);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn budget(mut self, budget: crate::run::budget::Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Bounds what the thread of this run id may use, across all its invocations
    /// ([`CompiledGraph::invoke_thread`](crate::CompiledGraph::invoke_thread)): the same limits
    /// as [`budget`](RunConfig::budget), over the totals stored with the thread's checkpoints.
    /// A run that is not a thread has one invocation: its thread budget is its run budget.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{Budget, RunConfig};
    /// // At most 200,000 tokens per conversation, and 20,000 per turn.
    /// let config = RunConfig::new()
    ///     .thread_budget(Budget::new().max_tokens(200_000))
    ///     .budget(Budget::new().max_tokens(20_000));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn thread_budget(mut self, budget: crate::run::budget::Budget) -> Self {
        self.thread_budget = Some(budget);
        self
    }

    /// What model tokens cost ([`PriceTable`](crate::PriceTable)): the cost limits of the
    /// run's budgets count the tokens its nodes report at these prices.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{Budget, PriceTable, RunConfig};
    /// let config = RunConfig::new()
    ///     .prices(PriceTable::new().price("gpt-4o-mini", 0.15, 0.60))
    ///     .budget(Budget::new().max_cost(0.10));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn prices(mut self, prices: crate::run::budget::PriceTable) -> Self {
        self.prices = Some(Arc::new(prices));
        self
    }

    /// Counts this run against a tenant's budget ([`TenantBudget`](crate::TenantBudget)),
    /// shared in process with the tenant's other runs: its runs in flight, and the totals of
    /// their steps, tokens, cost, tool calls and wall time. A start or resume over the cap on
    /// runs in flight is refused at once with
    /// [`Error::BudgetExceeded`](crate::Error::BudgetExceeded) (nothing written); a run over
    /// another limit stops before its next step, checkpointed, like one over its own budget.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{Budget, RunConfig, TenantBudget};
    /// let acme = TenantBudget::new(Budget::new().max_runs_in_flight(2));
    /// let config = RunConfig::new().tenant_budget(acme.clone());
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn tenant_budget(mut self, budget: crate::run::budget::TenantBudget) -> Self {
        self.tenant_budget = Some(budget);
        self
    }

    /// Whether any budget bounds the run.
    pub(crate) fn has_budgets(&self) -> bool {
        self.budget.is_some() || self.thread_budget.is_some() || self.tenant_budget.is_some()
    }

    /// Runs as a run (a thread) of `tenant`: its record carries the tenant (its subgraphs'
    /// runs and forks too), only a run of the same tenant is resumed or continued with it
    /// (another tenant's run, or one of no tenant, is [`Error::RunNotFound`](crate::Error)),
    /// and its nodes' [`Memory`](crate::Memory) is the tenant's: every namespace a node names
    /// is stored under [`TenantId::namespace`](agentgraph_checkpoint::TenantId::namespace),
    /// and read back as the node named it. Without it, a resumed run keeps the tenant it had
    /// and a new run has none. Read one tenant's runs and memory through a
    /// [`TenantStore`](agentgraph_checkpoint::TenantStore).
    ///
    /// Run ids are the store's: two tenants cannot both have a run `chat-1` (the second start
    /// fails with [`Error::RunExists`](crate::Error)); give runs ids nobody guesses (the
    /// default, a UUID) or ids that include the tenant.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut b = GraphBuilder::<Count>::new();
    /// # b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) }).add_edge(START, "one").add_edge("one", END);
    /// # let graph = b.compile()?;
    /// use agentgraph_checkpoint::{TenantId, TenantStore};
    ///
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
    /// let config = RunConfig::new().store(store.clone()).tenant(acme.clone());
    /// graph.invoke_thread("chat-1", CountUpdate::new(), config.clone()).await?;
    /// assert_eq!(store.get_run("chat-1").await?.unwrap().tenant, Some(acme.clone()));
    ///
    /// // Another tenant does not find the thread, in the store or by running it.
    /// let theirs = TenantStore::new(store.clone(), globex.clone());
    /// assert!(theirs.get_run("chat-1").await?.is_none());
    /// let as_globex = RunConfig::new().store(store.clone()).tenant(globex);
    /// let err = graph.invoke_thread("chat-1", CountUpdate::new(), as_globex).await.unwrap_err();
    /// assert!(matches!(err, Error::RunNotFound(_)));
    /// // Its own tenant continues it.
    /// graph.invoke_thread("chat-1", CountUpdate::new(), config).await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tenant(mut self, tenant: agentgraph_checkpoint::TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// The tenant the run is configured for ([`tenant`](RunConfig::tenant)).
    pub(crate) fn tenant_id(&self) -> Option<&agentgraph_checkpoint::TenantId> {
        self.tenant.as_ref()
    }

    /// Encrypts what the run stores (checkpoints, field values and deltas, pending writes,
    /// events, state views) under the current key of `encryption`'s provider: the run's store
    /// is wrapped in an [`EncryptedStore`](crate::encryption::EncryptedStore), and so are its
    /// subgraph runs'. Compressed records (`RunConfig::compression`) are compressed
    /// first. Reading the run needs the keys: resume it with the same setting,
    /// read it through `encryption.wrap(store)`; without them, reads fail with errors that
    /// name the key id. Records of older keys read as long as the provider has them, and
    /// plain records as they are. Run records and memory items are not encrypted. Nonces are
    /// random, so the stored bytes differ from run to run: decoded states and checkpoints are
    /// what is deterministic. Needs a [`store`](RunConfig::store); feature `encryption`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::MemoryStore;
    /// use agentgraph_engine::encryption::{Key, StaticKeys};
    /// use agentgraph_engine::{Encryption, RunConfig};
    /// let keys = StaticKeys::new(Key::generate("2026-12").unwrap());
    /// let config = RunConfig::new()
    ///     .store(MemoryStore::new())
    ///     .encryption(Encryption::new(keys));
    /// let shown = format!("{config:?}");
    /// assert!(shown.contains("2026-12"));
    /// ```
    #[cfg(feature = "encryption")]
    #[must_use]
    pub fn encryption(mut self, encryption: agentgraph_checkpoint::encryption::Encryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// The configuration as a run uses it: its store wrapped by its encryption, if it has one
    /// (once: the encryption is taken, so that a subgraph run's copy is not wrapped again).
    pub(crate) fn sealed(self) -> Self {
        #[cfg(feature = "encryption")]
        {
            let mut config = self;
            if let Some(encryption) = config.encryption.take() {
                config.store = config.store.map(|store| encryption.wrap(store));
            }
            config
        }
        #[cfg(not(feature = "encryption"))]
        self
    }
}
