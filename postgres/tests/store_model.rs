//! Model test: random sequences of batches, reads and leases, applied to the memory store
//! (the reference: `checkpoint/tests/store_model.rs` checks it against plain maps) and to a
//! PostgreSQL store; every read and every lease outcome must agree. The PostgreSQL store is
//! also dropped and connected again mid-sequence (after releasing every lease, as a process
//! that ends would), and half the cases send one statement per operation instead of grouping
//! them.
//!
//! Memory items too: puts, deletes and deletes of an expired item in the batches, sweeps
//! (which, with a retention of zero, also prune every tombstone), and reads by key, prefix,
//! filter, vector and namespaces. Semantic searches are asked of a second handle as well,
//! which never writes: its vector index only catches up with what the other committed, also
//! after the tombstones it has not seen are pruned.

mod support;

use std::time::Duration;

use agentgraph_checkpoint::items::{Filter, Item, ItemQuery, Namespace};
use agentgraph_checkpoint::{
    CheckpointStore, Lease, MemoryStore, Op, RunRecord, RunStatus, StoreError, WriteBatch,
};
use agentgraph_postgres::PostgresStore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Run ids sharing prefixes, with NUL and `/`, so isolation and ordering are exercised.
const RUNS: [&str; 5] = ["a", "ab", "a\0", "a/", "b"];
/// Cursors for `list_runs`: run ids and strings between them.
const CURSORS: [&str; 5] = ["", "a", "a\0\0", "ab", "c"];
/// Item namespaces: prefixes of one another by segments, by bytes only, and with a NUL.
const SPACES: [&[&str]; 5] = [
    &["t", "acme"],
    &["t", "acme-corp"],
    &["t", "acme", "bots"],
    &["t"],
    &["t\0", "acme"],
];
/// Namespace prefixes searched.
const PREFIXES: [&[&str]; 6] = [
    &[],
    &["t"],
    &["t", "acme"],
    &["t", "acme-corp"],
    &["t", "ac"],
    &["t\0"],
];
const KEYS: [&str; 3] = ["k", "k2", "a/b"];
const VECTORS: [[f32; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]];

#[derive(Debug, Clone)]
enum Write {
    Run(usize, u8, u64),
    Checkpoint(usize, u64, u8),
    Blob(usize, u32, u64, u8),
    Pending(usize, u64, u32, u8),
    Event(usize, u64, u8),
    DeletePending(usize, u64),
    PruneCheckpoints(usize, u64),
    PruneBlobs(usize, u32, u64),
    DeleteAfter(usize, u64),
    DeleteRun(usize),
    /// Namespace, key, value, written at, time to live, with an embedding.
    PutItem(usize, usize, u8, u64, Option<u64>, bool),
    DeleteItem(usize, usize),
    /// Deletes the item if it is expired at this time.
    DeleteExpiredItem(usize, usize, u64),
}

#[derive(Debug, Clone)]
enum Read {
    Run(usize),
    ListRuns(Option<usize>, usize),
    Checkpoint(usize, u64),
    Latest(usize),
    ListCheckpoints(usize, Option<u64>, usize),
    Blobs(usize, u32, u64, u64),
    Pending(usize, u64),
    Events(usize, Option<u64>, usize),
    LastEvent(usize),
    Item(usize, usize, u64),
    /// Prefix, filter, time, limit, offset.
    Items(usize, usize, u64, usize, usize),
    /// Prefix, vector, filter, time: every hit.
    Similar(usize, usize, usize, u64),
    Namespaces(usize, u64),
}

#[derive(Debug, Clone)]
enum Action {
    Commit(Vec<Write>),
    Read(Read),
    Reconnect,
    Acquire(usize),
    Release(usize),
    Fenced(usize, Vec<Write>),
    Sweep(u64),
}

fn run() -> impl Strategy<Value = usize> {
    0..RUNS.len()
}

fn write() -> impl Strategy<Value = Write> {
    let step = 0..6u64;
    prop_oneof![
        1 => (run(), 0..5u8, 0..4u64).prop_map(|(r, s, n)| Write::Run(r, s, n)),
        3 => (run(), step.clone(), any::<u8>()).prop_map(|(r, s, v)| Write::Checkpoint(r, s, v)),
        3 => (run(), 0..3u32, step.clone(), any::<u8>()).prop_map(|(r, f, s, v)| Write::Blob(r, f, s, v)),
        3 => (run(), step.clone(), 0..3u32, any::<u8>()).prop_map(|(r, s, t, v)| Write::Pending(r, s, t, v)),
        2 => (run(), step.clone(), any::<u8>()).prop_map(|(r, s, v)| Write::Event(r, s, v)),
        1 => (run(), step.clone()).prop_map(|(r, s)| Write::DeletePending(r, s)),
        1 => (run(), step.clone()).prop_map(|(r, s)| Write::PruneCheckpoints(r, s)),
        1 => (run(), 0..3u32, step.clone()).prop_map(|(r, f, s)| Write::PruneBlobs(r, f, s)),
        1 => (run(), step).prop_map(|(r, s)| Write::DeleteAfter(r, s)),
        1 => run().prop_map(Write::DeleteRun),
        4 => (0..SPACES.len(), 0..KEYS.len(), any::<u8>(), 0..4u64, proptest::option::of(1..4u64), any::<bool>())
            .prop_map(|(n, k, v, at, ttl, e)| Write::PutItem(n, k, v, at, ttl, e)),
        2 => (0..SPACES.len(), 0..KEYS.len()).prop_map(|(n, k)| Write::DeleteItem(n, k)),
        1 => (0..SPACES.len(), 0..KEYS.len(), 0..8u64)
            .prop_map(|(n, k, at)| Write::DeleteExpiredItem(n, k, at)),
    ]
}

fn read() -> impl Strategy<Value = Read> {
    let step = 0..7u64;
    prop_oneof![
        run().prop_map(Read::Run),
        (proptest::option::of(0..CURSORS.len()), 0..4usize).prop_map(|(a, l)| Read::ListRuns(a, l)),
        (run(), step.clone()).prop_map(|(r, s)| Read::Checkpoint(r, s)),
        run().prop_map(Read::Latest),
        (run(), proptest::option::of(step.clone()), 0..4usize)
            .prop_map(|(r, a, l)| Read::ListCheckpoints(r, a, l)),
        (run(), 0..3u32, step.clone(), step.clone())
            .prop_map(|(r, f, a, b)| Read::Blobs(r, f, a, b)),
        (run(), step.clone()).prop_map(|(r, s)| Read::Pending(r, s)),
        (run(), proptest::option::of(step), 0..4usize).prop_map(|(r, a, l)| Read::Events(r, a, l)),
        run().prop_map(Read::LastEvent),
        (0..SPACES.len(), 0..KEYS.len(), 0..8u64).prop_map(|(n, k, at)| Read::Item(n, k, at)),
        (0..PREFIXES.len(), 0..5usize, 0..8u64, 0..5usize, 0..3usize)
            .prop_map(|(p, f, at, l, o)| Read::Items(p, f, at, l, o)),
        (0..PREFIXES.len(), 0..VECTORS.len(), 0..5usize, 0..8u64)
            .prop_map(|(p, v, f, at)| Read::Similar(p, v, f, at)),
        (0..PREFIXES.len(), 0..8u64).prop_map(|(p, at)| Read::Namespaces(p, at)),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => proptest::collection::vec(write(), 1..8).prop_map(Action::Commit),
        4 => read().prop_map(Action::Read),
        1 => Just(Action::Reconnect),
        1 => run().prop_map(Action::Acquire),
        1 => (0..8usize).prop_map(Action::Release),
        2 => (0..8usize, proptest::collection::vec(write(), 1..4))
            .prop_map(|(n, w)| Action::Fenced(n, w)),
        1 => (0..8u64).prop_map(Action::Sweep),
    ]
}

fn space(i: usize) -> Namespace {
    Namespace::new(SPACES[i].iter().copied())
}

fn prefix(i: usize) -> Namespace {
    Namespace::new(PREFIXES[i].iter().copied())
}

fn item(n: usize, k: usize, v: u8, at: u64, ttl: Option<u64>, embedded: bool) -> Item {
    let value = serde_json::json!({"n": v % 4, "v": v, "tag": format!("x{}", v % 3)});
    let mut item = Item::new(space(n), KEYS[k], value).written_at(at);
    if let Some(ttl) = ttl {
        item = item.with_ttl(Duration::from_millis(ttl));
    }
    if embedded {
        item = item.with_embedding(vec![f32::from(v % 3), f32::from(v / 3 % 3), 1.0]);
    }
    item
}

fn filter(i: usize) -> Option<Filter> {
    match i {
        0 => None,
        1 => Some(Filter::eq("n", 1)),
        2 => Some(Filter::gte("v", 128)),
        3 => Some(Filter::eq("tag", "x0").or(Filter::lt("n", 1))),
        _ => Some(Filter::exists("v").and(Filter::ne("n", 2)).not()),
    }
}

fn query(p: usize, f: usize, at: u64) -> ItemQuery {
    let q = ItemQuery::new(prefix(p)).at(at);
    match filter(f) {
        Some(f) => q.filter(f),
        None => q,
    }
}

fn status(n: u8) -> RunStatus {
    RunStatus::ALL[n as usize % 5]
}

fn record(run: usize, st: u8, now: u64) -> RunRecord {
    let mut r = RunRecord::new(RUNS[run], status(st), u128::from(st) << 100 | 5, now);
    r.last_step = now.checked_sub(1);
    if st % 2 == 1 {
        r.set_ttl(Some(u64::MAX - u64::from(st)));
        r.graph = Some(format!("g{st}"));
    }
    r
}

/// A few bytes, or for one value in 32 more than 64 KiB.
fn value(v: u8) -> Vec<u8> {
    let len = if v % 32 == 31 {
        (64 << 10) + usize::from(v)
    } else {
        1 + v as usize % 3
    };
    vec![v; len]
}

fn batch(writes: &[Write]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for w in writes {
        match *w {
            Write::Run(r, s, n) => b.put_run(record(r, s, n)),
            Write::Checkpoint(r, s, v) => b.put_checkpoint(RUNS[r], s, value(v)),
            Write::Blob(r, f, s, v) => b.put_blob(RUNS[r], f, s, value(v)),
            Write::Pending(r, s, t, v) => b.put_pending_write(RUNS[r], s, t, value(v)),
            Write::Event(r, s, v) => b.put_event(RUNS[r], s, value(v)),
            Write::DeletePending(r, s) => b.delete_pending_writes(RUNS[r], s),
            Write::PruneCheckpoints(r, s) => b.delete_checkpoints_before(RUNS[r], s),
            Write::PruneBlobs(r, f, s) => b.delete_blobs_before(RUNS[r], f, s),
            Write::DeleteAfter(r, s) => b.delete_after(RUNS[r], s),
            Write::DeleteRun(r) => b.delete_run(RUNS[r]),
            Write::PutItem(n, k, v, at, ttl, e) => b.put_item(item(n, k, v, at, ttl, e)),
            Write::DeleteItem(n, k) => b.delete_item(&space(n), KEYS[k]),
            Write::DeleteExpiredItem(n, k, at) => b.push(Op::DeleteItem {
                namespace: space(n),
                key: KEYS[k].to_owned(),
                if_expired_at: Some(at),
            }),
        };
    }
    b
}

async fn read_store(store: &dyn CheckpointStore, r: &Read) -> String {
    match *r {
        Read::Run(run) => format!("{:?}", store.get_run(RUNS[run]).await.unwrap()),
        Read::ListRuns(after, limit) => format!(
            "{:?}",
            store
                .list_runs(after.map(|a| CURSORS[a]), limit)
                .await
                .unwrap()
        ),
        Read::Checkpoint(run, step) => {
            format!("{:?}", store.get_checkpoint(RUNS[run], step).await.unwrap())
        }
        Read::Latest(run) => format!("{:?}", store.latest_checkpoint(RUNS[run]).await.unwrap()),
        Read::ListCheckpoints(run, after, limit) => format!(
            "{:?}",
            store
                .list_checkpoints(RUNS[run], after, limit)
                .await
                .unwrap()
        ),
        Read::Blobs(run, field, from, to) => format!(
            "{:?}",
            store.get_blobs(RUNS[run], field, from, to).await.unwrap()
        ),
        Read::Pending(run, step) => format!(
            "{:?}",
            store.get_pending_writes(RUNS[run], step).await.unwrap()
        ),
        Read::Events(run, after, limit) => format!(
            "{:?}",
            store.get_events(RUNS[run], after, limit).await.unwrap()
        ),
        Read::LastEvent(run) => format!("{:?}", store.last_event(RUNS[run]).await.unwrap()),
        Read::Item(n, k, at) => format!(
            "{:?}",
            store.get_item(&space(n), KEYS[k], at).await.unwrap()
        ),
        Read::Items(p, f, at, limit, offset) => {
            let q = query(p, f, at).limit(limit).offset(offset);
            format!("{:?}", store.search_items(&q).await.unwrap())
        }
        Read::Similar(p, v, f, at) => {
            let q = query(p, f, at).vector(VECTORS[v].to_vec()).limit(1000);
            // Ties come in no set order: by score in hundredths (the distinct cosines of
            // these vectors are further apart), then namespace and key.
            let mut hits: Vec<(i64, Vec<String>, String, String)> = store
                .search_items(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|h| {
                    let score = (f64::from(h.score.unwrap()) * 1e2).round() as i64;
                    let i = h.item;
                    let shown = format!("{} @{} {:?}", i.value, i.updated_at_ms, i.expires_at_ms);
                    (-score, i.namespace.segments().to_vec(), i.key, shown)
                })
                .collect();
            hits.sort();
            format!("{hits:?}")
        }
        Read::Namespaces(p, at) => {
            format!("{:?}", store.list_namespaces(&prefix(p), at).await.unwrap())
        }
    }
}

/// Every read of everything, to compare whole stores at the end of a case.
fn every_read() -> Vec<Read> {
    let mut reads = vec![Read::ListRuns(None, usize::MAX)];
    for run in 0..RUNS.len() {
        reads.push(Read::Run(run));
        reads.push(Read::ListCheckpoints(run, None, usize::MAX));
        reads.push(Read::Events(run, None, usize::MAX));
        for field in 0..3 {
            reads.push(Read::Blobs(run, field, 0, u64::MAX));
        }
        for step in 0..6 {
            reads.push(Read::Pending(run, step));
        }
    }
    for n in 0..SPACES.len() {
        for k in 0..KEYS.len() {
            reads.push(Read::Item(n, k, 0));
        }
    }
    for at in [0, 3, 8] {
        reads.push(Read::Items(0, 0, at, usize::MAX, 0));
        reads.push(Read::Namespaces(0, at));
        reads.push(Read::Similar(0, 2, 0, at));
    }
    reads
}

/// Empties every table of the store's schema, leases included.
async fn truncate(admin: &tokio_postgres::Client, schema: &str) {
    admin
        .batch_execute(&format!(
            "TRUNCATE {schema}.runs, {schema}.leases, {schema}.checkpoints, {schema}.blobs, \
             {schema}.pending_writes, {schema}.events, {schema}.items"
        ))
        .await
        .unwrap();
}

/// A handle whose sweeps prune every tombstone.
async fn connect(schema: &str, group: bool) -> PostgresStore {
    PostgresStore::connect_with(
        support::options(schema)
            .group_ops(group)
            .deleted_item_retention(Duration::ZERO),
    )
    .await
    .unwrap()
}

/// One case: `actions` on a fresh memory store and the (emptied) PostgreSQL schema.
async fn case(schema: &str, group: bool, actions: &[Action]) -> Result<(), TestCaseError> {
    let admin = support::admin().await;
    truncate(&admin, schema).await;
    let memory = MemoryStore::new();
    let mut pg = connect(schema, group).await;
    // Another process's handle: only reads.
    let reader = connect(schema, group).await;
    // Per store (memory, postgres): the leases taken, by number, and their epochs.
    let mut leases: [Vec<Option<Lease>>; 2] = [Vec::new(), Vec::new()];
    let mut epochs: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    // The run of each lease taken.
    let mut lease_runs: Vec<usize> = Vec::new();
    let long = Duration::from_secs(3600);
    for (i, action) in actions.iter().enumerate() {
        let stores: [&dyn CheckpointStore; 2] = [&memory, &pg];
        match action {
            Action::Commit(writes) => {
                let (a, b) = (
                    stores[0].commit(batch(writes)).await,
                    stores[1].commit(batch(writes)).await,
                );
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"), "commit at action {}", i);
            }
            Action::Read(r) => {
                let expected = read_store(stores[0], r).await;
                let got = read_store(stores[1], r).await;
                prop_assert_eq!(&got, &expected, "read at action {}: {:?}", i, r);
                if matches!(r, Read::Similar(..)) {
                    let got = read_store(&reader, r).await;
                    prop_assert_eq!(got, expected, "the reader at action {}: {:?}", i, r);
                }
            }
            Action::Sweep(at) => {
                memory.sweep_expired(*at).await.unwrap();
                pg.sweep_expired(*at).await.unwrap();
            }
            Action::Acquire(run) => {
                let mut outcomes = Vec::new();
                for (s, store) in stores.iter().enumerate() {
                    match store.acquire_lease(RUNS[*run], long).await {
                        Ok(lease) => {
                            outcomes.push("taken");
                            epochs[s].push(lease.epoch());
                            leases[s].push(Some(lease));
                        }
                        Err(StoreError::RunBusy { .. }) => outcomes.push("busy"),
                        Err(e) => panic!("acquire at action {i}: {e}"),
                    }
                }
                prop_assert_eq!(outcomes[0], outcomes[1], "acquire at action {}", i);
                if outcomes[0] == "taken" {
                    lease_runs.push(*run);
                }
            }
            Action::Release(n) => {
                if lease_runs.is_empty() {
                    continue;
                }
                let n = n % lease_runs.len();
                for (s, store) in stores.iter().enumerate() {
                    if let Some(lease) = leases[s][n].take() {
                        store.release_lease(lease).await.unwrap();
                    }
                }
            }
            Action::Fenced(n, writes) => {
                if lease_runs.is_empty() {
                    continue;
                }
                let n = n % lease_runs.len();
                let mut outcomes = Vec::new();
                for (s, store) in stores.iter().enumerate() {
                    let mut b = batch(writes);
                    b.fence(RUNS[lease_runs[n]], epochs[s][n]);
                    outcomes.push(match store.commit(b).await {
                        Ok(()) => "applied",
                        Err(StoreError::Fenced { .. }) => "fenced",
                        Err(e) => panic!("fenced batch at action {i}: {e}"),
                    });
                }
                prop_assert_eq!(outcomes[0], outcomes[1], "fenced batch at action {}", i);
            }
            Action::Reconnect => {
                for (s, store) in stores.iter().enumerate() {
                    for lease in leases[s].iter_mut().filter_map(Option::take) {
                        store.release_lease(lease).await.unwrap();
                    }
                }
                pg = connect(schema, group).await;
            }
        }
    }
    for r in every_read() {
        let expected = read_store(&memory, &r).await;
        let got = read_store(&pg, &r).await;
        prop_assert_eq!(&got, &expected, "at the end: {:?}", r);
        if matches!(r, Read::Similar(..)) {
            let got = read_store(&reader, &r).await;
            prop_assert_eq!(got, expected, "the reader at the end: {:?}", r);
        }
    }
    for (s, store) in [&memory as &dyn CheckpointStore, &pg]
        .into_iter()
        .enumerate()
    {
        for lease in leases[s].iter_mut().filter_map(Option::take) {
            store.release_lease(lease).await.unwrap();
        }
    }
    Ok(())
}

#[test]
fn postgres_agrees_with_the_memory_store() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(128);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let schema = support::fresh_schema("model");
    // Creates the schema.
    rt.block_on(connect(&schema, true));
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = (any::<bool>(), proptest::collection::vec(action(), 1..48));
    runner
        .run(&strategy, |(group, actions)| {
            rt.block_on(case(&schema, group, &actions))
        })
        .unwrap();
}
