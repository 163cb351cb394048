//! Checkpointed runs: the stores the durable workloads write to, the untimed run that counts
//! the bytes they write, the resume measurement and the raw sled baselines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentgraph_checkpoint::{MemoryStore, RedbStore, SledStore, WriteBatch};
use agentgraph_engine::{CheckpointStore, CompiledGraph, Error, EventKind, RunConfig, State};
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use crate::states::Counter;
use crate::workloads::{Flaky, chain};

/// The store of one durable workload: a [`MemoryStore`], or a [`SledStore`] in a temporary
/// directory removed when this is dropped. Hands out a fresh run id per run, since a store
/// never accepts a run id twice.
#[derive(Debug)]
pub struct BenchStore {
    store: Arc<dyn CheckpointStore>,
    prefix: String,
    next: AtomicU64,
    /// Declared after `store`, so that the database closes before its directory goes.
    dir: Option<tempfile::TempDir>,
}

impl BenchStore {
    /// An in-memory store; run ids start with `prefix`.
    pub fn memory(prefix: &str) -> Self {
        BenchStore {
            store: Arc::new(MemoryStore::new()),
            prefix: prefix.to_owned(),
            next: AtomicU64::new(0),
            dir: None,
        }
    }

    /// A sled store in a fresh temporary directory; run ids start with `prefix`.
    ///
    /// # Panics
    ///
    /// If the directory or the database cannot be made.
    pub fn sled(prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("agentgraph-bench-")
            .tempdir()
            .expect("a temporary directory");
        let store = SledStore::open(dir.path().join("db")).expect("a sled store");
        BenchStore {
            store: Arc::new(store),
            prefix: prefix.to_owned(),
            next: AtomicU64::new(0),
            dir: Some(dir),
        }
    }

    /// `store` (a server's, with no directory of its own); run ids start with `prefix`.
    pub fn with_store(store: Arc<dyn CheckpointStore>, prefix: &str) -> Self {
        BenchStore {
            store,
            prefix: prefix.to_owned(),
            next: AtomicU64::new(0),
            dir: None,
        }
    }

    /// A redb store in a file of a fresh temporary directory; run ids start with `prefix`.
    ///
    /// # Panics
    ///
    /// If the directory or the database cannot be made.
    pub fn redb(prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("agentgraph-bench-")
            .tempdir()
            .expect("a temporary directory");
        let store = RedbStore::open(dir.path().join("store.redb")).expect("a redb store");
        BenchStore {
            store: Arc::new(store),
            prefix: prefix.to_owned(),
            next: AtomicU64::new(0),
            dir: Some(dir),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    /// The directory of a sled store.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }

    /// A run id not handed out before by this store.
    pub fn next_run_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }

    /// `base` with this store and a fresh run id.
    pub fn config(&self, base: &RunConfig) -> RunConfig {
        self.named_config(base).1
    }

    /// `base` with this store and a fresh run id, which comes first.
    pub fn named_config(&self, base: &RunConfig) -> (String, RunConfig) {
        let id = self.next_run_id();
        let config = base.clone().store(self.store.clone()).run_id(id.clone());
        (id, config)
    }

    /// `n` configurations from `base`, each with a fresh run id.
    pub fn configs(&self, base: &RunConfig, n: u64) -> Vec<RunConfig> {
        (0..n).map(|_| self.config(base)).collect()
    }
}

/// Runs `graph` once per configuration, one run after another, inside one task spawned on
/// `rt`, and returns the total wall time of the runs. As
/// [`time_runs`](crate::time_runs), but each run gets its own configuration (a durable run
/// needs its own run id); making the configurations and inputs and dropping the final states
/// are not timed.
///
/// # Panics
///
/// If a run fails.
pub fn time_runs_each<S: State>(
    rt: &Runtime,
    graph: &CompiledGraph<S>,
    input: fn() -> S,
    configs: Vec<RunConfig>,
) -> Duration {
    let graph = graph.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut total = Duration::ZERO;
            for config in configs {
                let input = input();
                let started = Instant::now();
                let result = graph.run_with(input, config).await;
                total += started.elapsed();
                drop(result.expect("a benchmark run failed"));
            }
            total
        })
        .await
        .expect("the timing task panicked")
    })
}

/// What the untimed run of a checkpointed workload saw.
#[derive(Debug, Clone)]
pub struct CheckpointedRun<S> {
    /// The final state.
    pub state: S,
    /// The steps the run took, from its `RunFinished` event.
    pub steps: u64,
    /// The `(step, bytes)` of each `CheckpointSaved` event, step 0 (the input) first.
    pub checkpoints: Vec<(u64, u64)>,
}

impl<S> CheckpointedRun<S> {
    /// The bytes written by every checkpoint, step 0 included.
    pub fn total_bytes(&self) -> u64 {
        self.checkpoints.iter().map(|(_, b)| b).sum()
    }

    /// The bytes of the checkpoint of step 0, which stores the whole input.
    pub fn step0_bytes(&self) -> u64 {
        self.checkpoints
            .iter()
            .filter(|(s, _)| *s == 0)
            .map(|(_, b)| b)
            .sum()
    }

    /// The mean bytes written per step: every checkpoint's bytes over the steps.
    pub fn bytes_per_step(&self) -> f64 {
        self.total_bytes() as f64 / self.steps as f64
    }

    /// The mean bytes written per step, step 0's checkpoint left out.
    pub fn bytes_per_step_after_step0(&self) -> f64 {
        (self.total_bytes() - self.step0_bytes()) as f64 / self.steps as f64
    }
}

/// Runs `graph` once, untimed, on a runtime worker with a subscriber that reads every event
/// as it comes, and returns the final state, the step count and the bytes of each checkpoint
/// (from the `CheckpointSaved` events). Subscribing costs time (events are only built when
/// someone listens), which is why timed runs have no subscriber.
///
/// # Panics
///
/// If the run fails, the subscriber falls behind, or no `RunFinished` event comes.
pub fn run_checkpointed<S: State>(
    rt: &Runtime,
    graph: &CompiledGraph<S>,
    input: S,
    config: RunConfig,
) -> CheckpointedRun<S> {
    let graph = graph.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let run = graph.run_with(input, config.event_capacity(1 << 16));
            let mut events = run.events();
            let reader = tokio::spawn(async move {
                let (mut steps, mut checkpoints) = (None, Vec::new());
                while let Some(event) = events.next().await {
                    match event.expect("the subscriber kept up").kind {
                        EventKind::CheckpointSaved { step, bytes } => {
                            checkpoints.push((step, bytes));
                        }
                        EventKind::RunFinished { steps: n, .. } => steps = Some(n),
                        _ => {}
                    }
                }
                (steps, checkpoints)
            });
            let state = run.await.expect("a benchmark run failed");
            let (steps, checkpoints) = reader.await.expect("the event reader panicked");
            CheckpointedRun {
                state,
                steps: steps.expect("the run reported RunFinished"),
                checkpoints,
            }
        })
        .await
        .expect("the counting task panicked")
    })
}

/// Fills `store` with `runs` completed runs of a 10-node chain (11 checkpoints each), so that
/// a benchmark can see how a store that holds other runs behaves.
///
/// # Panics
///
/// If a run fails.
pub fn fill_store(rt: &Runtime, store: &BenchStore, base: &RunConfig, runs: u64) {
    let graph = chain(10);
    let configs = store.configs(base, runs);
    time_runs_each(rt, &graph, Counter::default, configs);
}

/// One repetition of `resume_100`.
#[derive(Debug, Clone, Copy)]
pub struct ResumeTiming {
    /// From calling `resume` to the first resumed node (the one that failed) starting.
    pub to_first_node: Duration,
    /// From calling `resume` to the resumed run's end.
    pub total: Duration,
    /// The step the run resumed after (from `RunResumed`), when events were watched.
    pub resumed_after: Option<u64>,
    /// The steps the resumed run started (from `StepStarted`), when events were watched.
    pub steps_run: Option<u64>,
}

/// One repetition of `resume_100` on a fresh run id of `store`: runs `graph` (a
/// [`flaky_chain`](crate::flaky_chain) sharing `flaky`) with its failing node failing, checks
/// it failed at step `fail_at`, turns the failure off, then times `graph.resume(..)` until
/// the failing node starts again and until the run ends. Checks that each node before
/// `fail_at` ran once, the failing node twice and the rest once. With `watch`, a subscriber
/// also reads the resumed run's events (costs time: for an untimed check).
///
/// # Panics
///
/// If a run does not fail or succeed as described, or a node ran a wrong number of times.
pub fn time_resume(
    rt: &Runtime,
    graph: &CompiledGraph<Counter>,
    flaky: &Flaky,
    fail_at: u64,
    store: &BenchStore,
    base: &RunConfig,
    watch: bool,
) -> ResumeTiming {
    let (graph, flaky) = (graph.clone(), flaky.clone());
    let resuming = base.clone().store(store.store().clone());
    let (run_id, failing) = store.named_config(base);
    let nodes = flaky.calls.len() as u64;
    rt.block_on(async move {
        tokio::spawn(async move {
            flaky.reset();
            flaky.set_failing(true);
            let e = graph
                .run_with(Counter::default(), failing)
                .await
                .expect_err("the flaky run fails");
            assert!(
                matches!(&e, Error::NodeFailed { step, .. } if *step == fail_at),
                "the flaky run failed at step {fail_at}: {e}"
            );
            flaky.set_failing(false);

            let called = Instant::now();
            let run = graph.resume(run_id, resuming);
            let reader = watch.then(|| {
                let mut events = run.events();
                tokio::spawn(async move {
                    let (mut after, mut steps) = (None, 0);
                    while let Some(event) = events.next().await {
                        match event.expect("the subscriber kept up").kind {
                            EventKind::RunResumed { step, .. } => after = Some(step),
                            EventKind::StepStarted { .. } => steps += 1,
                            _ => {}
                        }
                    }
                    (after, steps)
                })
            });
            let state = run.await.expect("the resumed run finishes");
            let total = called.elapsed();
            let started = flaky.started().expect("the failing node ran again");
            assert_eq!(state.n, nodes, "every node's update is in the final state");
            let calls = flaky.calls();
            for (i, c) in (1..).zip(&calls) {
                let expected = if i == fail_at { 2 } else { 1 };
                assert_eq!(*c, expected, "node n{i} ran {c} times");
            }
            let (resumed_after, steps_run) = match reader {
                Some(r) => {
                    let (after, steps) = r.await.expect("the event reader panicked");
                    (after, Some(steps))
                }
                None => (None, None),
            };
            ResumeTiming {
                to_first_node: started.saturating_duration_since(called),
                total,
                resumed_after,
                steps_run,
            }
        })
        .await
        .expect("the resume task panicked")
    })
}

/// The size of the value each raw baseline sample writes.
pub const RAW_VALUE_LEN: usize = 1024;

/// The raw sled baselines of the durable workloads: a sled database of its own, in a
/// temporary directory removed when this is dropped, written directly (no agentgraph code),
/// and a [`SledStore`] written through the store trait.
#[derive(Debug)]
pub struct SledBaseline {
    db: sled::Db,
    store: BenchStore,
    next: u64,
    /// Declared after `db`, so that the database closes before its directory goes.
    dir: tempfile::TempDir,
}

/// The per-sample times of [`SledBaseline::sample`].
#[derive(Debug, Clone, Default)]
pub struct BaselineSamples {
    /// One `sled::Tree::insert` of [`RAW_VALUE_LEN`] bytes and an awaited `flush_async`, sled's
    /// own asynchronous flush (`SledStore::flush` calls the blocking `flush` on a thread of
    /// the store's own since session 13: `insert_flush` below is that call's limit).
    pub insert_flush_async: Vec<Duration>,
    /// One insert and a blocking `flush`.
    pub insert_flush: Vec<Duration>,
    /// One `SledStore` commit of a batch holding one [`RAW_VALUE_LEN`]-byte blob and an
    /// awaited `SledStore::flush`.
    pub store_commit_flush: Vec<Duration>,
}

impl SledBaseline {
    /// A fresh database and store.
    ///
    /// # Panics
    ///
    /// If the directory or the database cannot be made.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("agentgraph-raw-")
            .tempdir()
            .expect("a temporary directory");
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .expect("a sled database");
        SledBaseline {
            db,
            store: BenchStore::sled("raw"),
            next: 0,
            dir,
        }
    }

    /// The directory of the raw database.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Takes `n` samples of each baseline, interleaved, on a runtime worker of `rt`, and
    /// appends their times to `out`. Each sample writes a new key.
    ///
    /// # Panics
    ///
    /// If sled or the store fails.
    pub fn sample(&mut self, rt: &Runtime, n: usize, out: &mut BaselineSamples) {
        let db = self.db.clone();
        let store = self.store.store().clone();
        let first = self.next;
        self.next += n as u64;
        let (a, b, c) = rt.block_on(async move {
            tokio::spawn(async move {
                let value = vec![0xA5u8; RAW_VALUE_LEN];
                let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
                for k in first..first + n as u64 {
                    let started = Instant::now();
                    db.insert((2 * k).to_be_bytes(), value.as_slice())
                        .expect("a sled insert");
                    db.flush_async().await.expect("a sled flush");
                    a.push(started.elapsed());

                    let started = Instant::now();
                    db.insert((2 * k + 1).to_be_bytes(), value.as_slice())
                        .expect("a sled insert");
                    db.flush().expect("a sled flush");
                    b.push(started.elapsed());

                    let mut batch = WriteBatch::new();
                    batch.put_blob("raw", 0, k, value.clone());
                    let started = Instant::now();
                    store.commit(batch).await.expect("a store commit");
                    store.flush().await.expect("a store flush");
                    c.push(started.elapsed());
                }
                (a, b, c)
            })
            .await
            .expect("the baseline task panicked")
        });
        out.insert_flush_async.extend(a);
        out.insert_flush.extend(b);
        out.store_commit_flush.extend(c);
    }
}

impl Default for SledBaseline {
    fn default() -> Self {
        SledBaseline::new()
    }
}

/// The raw redb baselines of `chain_1000` `durable_sync_redb`: a redb database of its own, in
/// a temporary directory removed when this is dropped, written directly (no agentgraph
/// code), and a [`RedbStore`] written through the store trait.
#[derive(Debug)]
pub struct RedbBaseline {
    db: redb::Database,
    store: BenchStore,
    next: u64,
    /// Declared after `db`, so that the database closes before its directory goes.
    dir: tempfile::TempDir,
}

/// The per-sample times of [`RedbBaseline::sample`].
#[derive(Debug, Clone, Default)]
pub struct RedbSamples {
    /// One write transaction inserting [`RAW_VALUE_LEN`] bytes, committed with redb's default
    /// durability, `Immediate` (written and `fsync`ed before `commit` returns).
    pub commit: Vec<Duration>,
    /// The same with two-phase commit (two `fsync`s), as `RedbStore::flush` commits.
    pub commit_two_phase: Vec<Duration>,
    /// One `RedbStore` commit of a batch holding one [`RAW_VALUE_LEN`]-byte blob and an
    /// awaited `RedbStore::flush`.
    pub store_commit_flush: Vec<Duration>,
}

const RAW_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raw");

impl RedbBaseline {
    /// A fresh database and store.
    ///
    /// # Panics
    ///
    /// If the directory or the database cannot be made.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("agentgraph-raw-")
            .tempdir()
            .expect("a temporary directory");
        let db = redb::Database::create(dir.path().join("raw.redb")).expect("a redb database");
        RedbBaseline {
            db,
            store: BenchStore::redb("raw"),
            next: 0,
            dir,
        }
    }

    /// The directory of the raw database.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn commit(&self, key: u64, value: &[u8], two_phase: bool) -> Duration {
        let started = Instant::now();
        let mut txn = self.db.begin_write().expect("a redb transaction");
        txn.set_two_phase_commit(two_phase);
        {
            let mut table = txn.open_table(RAW_TABLE).expect("the raw table");
            table.insert(key, value).expect("a redb insert");
        }
        txn.commit().expect("a redb commit");
        started.elapsed()
    }

    /// Takes `n` samples of each baseline, interleaved, and appends their times to `out`.
    /// Each sample writes a new key.
    ///
    /// # Panics
    ///
    /// If redb or the store fails.
    pub fn sample(&mut self, rt: &Runtime, n: usize, out: &mut RedbSamples) {
        let value = vec![0xA5u8; RAW_VALUE_LEN];
        let store = self.store.store().clone();
        for _ in 0..n {
            let k = self.next;
            self.next += 1;
            out.commit.push(self.commit(2 * k, &value, false));
            out.commit_two_phase
                .push(self.commit(2 * k + 1, &value, true));
            let mut batch = WriteBatch::new();
            batch.put_blob("raw", 0, k, value.clone());
            let started = Instant::now();
            rt.block_on(async {
                store.commit(batch).await.expect("a store commit");
                store.flush().await.expect("a store flush");
            });
            out.store_commit_flush.push(started.elapsed());
        }
    }
}

impl Default for RedbBaseline {
    fn default() -> Self {
        RedbBaseline::new()
    }
}
