//! Model test: random sequences of batches and reads, applied to a plain reference model
//! and to every backend; every read must agree. The sled and redb stores are also closed and
//! reopened mid-sequence (after a flush) and must still agree.
//!
//! Run ownership is modelled too: leases taken and released, and batches fenced with a
//! lease's epoch, which apply only while no later lease of the run was taken. Reopening the
//! sled store ends every lease (its process would be gone): the sequence releases them all
//! first, in every store.
//!
//! Memory items are modelled too: puts (with a time to live and an embedding or not), deletes
//! and deletes of an expired item, in the same batches as checkpoints (fenced or not), sweeps,
//! and reads by key, by namespace prefix (`["t", "acme"]` never finds `["t", "acme-corp"]`),
//! with filters, paging, expiry, vectors, and the namespaces listed.

use std::collections::BTreeMap;

use std::time::Duration;

use agentgraph_checkpoint::items::{Filter, Item, ItemQuery, Namespace};
use agentgraph_checkpoint::{
    CheckpointStore, Lease, MemoryStore, Op, RunRecord, RunStatus, StoreError, WriteBatch,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Run ids sharing prefixes, with NUL and `/`, so isolation between runs is exercised.
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
/// Namespace prefixes searched: the root, every namespace, and byte prefixes of segments.
const PREFIXES: [&[&str]; 8] = [
    &[],
    &["t"],
    &["t", "acme"],
    &["t", "acme-corp"],
    &["t", "acme", "bots"],
    &["t", "ac"],
    &["t\0"],
    &["t\0", "acme"],
];
/// Item keys.
const KEYS: [&str; 3] = ["k", "k2", "a/b"];
/// Query vectors of semantic searches.
const VECTORS: [[f32; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]];
/// The filters searched with (`None`: no filter).
const FILTERS: usize = 5;

#[derive(Debug, Clone)]
enum Write {
    Run {
        run: usize,
        status: u8,
        now: u64,
    },
    Checkpoint {
        run: usize,
        step: u64,
        value: u8,
    },
    Blob {
        run: usize,
        field: u32,
        version: u64,
        value: u8,
    },
    Pending {
        run: usize,
        step: u64,
        task: u32,
        value: u8,
    },
    DeletePending {
        run: usize,
        step: u64,
    },
    PruneCheckpoints {
        run: usize,
        step: u64,
    },
    PruneBlobs {
        run: usize,
        field: u32,
        version: u64,
    },
    DeleteRun {
        run: usize,
    },
    PutItem {
        space: usize,
        key: usize,
        value: u8,
        now: u64,
        ttl: Option<u64>,
        embedded: bool,
    },
    DeleteItem {
        space: usize,
        key: usize,
    },
    /// Deletes the item only if it is expired at `at` (as a sweep does).
    DeleteExpiredItem {
        space: usize,
        key: usize,
        at: u64,
    },
}

#[derive(Debug, Clone)]
enum Read {
    Run(usize),
    ListRuns {
        after: Option<usize>,
        limit: usize,
    },
    Checkpoint(usize, u64),
    Latest(usize),
    ListCheckpoints {
        run: usize,
        after: Option<u64>,
        limit: usize,
    },
    Blobs {
        run: usize,
        field: u32,
        from: u64,
        to: u64,
    },
    Pending(usize, u64),
    Item {
        space: usize,
        key: usize,
        now: u64,
    },
    Items {
        prefix: usize,
        filter: usize,
        now: u64,
        limit: usize,
        offset: usize,
    },
    /// A semantic search, every hit (ties between equal scores come in no set order).
    Similar {
        prefix: usize,
        vector: usize,
        filter: usize,
        now: u64,
    },
    Namespaces {
        prefix: usize,
        now: u64,
    },
}

#[derive(Debug, Clone)]
enum Action {
    Commit(Vec<Write>),
    Read(Read),
    Reopen,
    /// Takes a lease of a run.
    Acquire(usize),
    /// Releases lease number `n` (modulo the leases taken so far).
    Release(usize),
    /// Commits the writes fenced with the epoch of lease number `n` (modulo the leases taken).
    Fenced(usize, Vec<Write>),
    /// Sweeps at this time: the expired items go.
    Sweep(u64),
}

fn run() -> impl Strategy<Value = usize> {
    0..RUNS.len()
}

fn write() -> impl Strategy<Value = Write> {
    let step = 0..6u64;
    prop_oneof![
        1 => (run(), 0..5u8, 0..4u64).prop_map(|(run, status, now)| Write::Run { run, status, now }),
        3 => (run(), step.clone(), any::<u8>())
            .prop_map(|(run, step, value)| Write::Checkpoint { run, step, value }),
        3 => (run(), 0..3u32, step.clone(), any::<u8>())
            .prop_map(|(run, field, version, value)| Write::Blob { run, field, version, value }),
        3 => (run(), step.clone(), 0..3u32, any::<u8>())
            .prop_map(|(run, step, task, value)| Write::Pending { run, step, task, value }),
        1 => (run(), step.clone()).prop_map(|(run, step)| Write::DeletePending { run, step }),
        1 => (run(), step.clone()).prop_map(|(run, step)| Write::PruneCheckpoints { run, step }),
        1 => (run(), 0..3u32, step)
            .prop_map(|(run, field, version)| Write::PruneBlobs { run, field, version }),
        1 => run().prop_map(|run| Write::DeleteRun { run }),
        4 => (
            0..SPACES.len(),
            0..KEYS.len(),
            any::<u8>(),
            0..4u64,
            proptest::option::of(1..4u64),
            any::<bool>(),
        )
            .prop_map(|(space, key, value, now, ttl, embedded)| Write::PutItem {
                space,
                key,
                value,
                now,
                ttl,
                embedded,
            }),
        2 => (0..SPACES.len(), 0..KEYS.len())
            .prop_map(|(space, key)| Write::DeleteItem { space, key }),
        1 => (0..SPACES.len(), 0..KEYS.len(), 0..8u64)
            .prop_map(|(space, key, at)| Write::DeleteExpiredItem { space, key, at }),
    ]
}

fn read() -> impl Strategy<Value = Read> {
    let step = 0..7u64;
    prop_oneof![
        run().prop_map(Read::Run),
        (proptest::option::of(0..CURSORS.len()), 0..4usize)
            .prop_map(|(after, limit)| Read::ListRuns { after, limit }),
        (run(), step.clone()).prop_map(|(r, s)| Read::Checkpoint(r, s)),
        run().prop_map(Read::Latest),
        (run(), proptest::option::of(step.clone()), 0..4usize)
            .prop_map(|(run, after, limit)| Read::ListCheckpoints { run, after, limit }),
        (run(), 0..3u32, step.clone(), step.clone()).prop_map(|(run, field, from, to)| {
            Read::Blobs {
                run,
                field,
                from,
                to,
            }
        }),
        (run(), step).prop_map(|(r, s)| Read::Pending(r, s)),
        (0..SPACES.len(), 0..KEYS.len(), 0..8u64).prop_map(|(space, key, now)| Read::Item {
            space,
            key,
            now
        }),
        (0..PREFIXES.len(), 0..FILTERS, 0..8u64, 0..5usize, 0..3usize).prop_map(
            |(prefix, filter, now, limit, offset)| Read::Items {
                prefix,
                filter,
                now,
                limit,
                offset,
            }
        ),
        (0..PREFIXES.len(), 0..VECTORS.len(), 0..FILTERS, 0..8u64).prop_map(
            |(prefix, vector, filter, now)| Read::Similar {
                prefix,
                vector,
                filter,
                now,
            }
        ),
        (0..PREFIXES.len(), 0..8u64).prop_map(|(prefix, now)| Read::Namespaces { prefix, now }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => proptest::collection::vec(write(), 1..6).prop_map(Action::Commit),
        4 => read().prop_map(Action::Read),
        1 => Just(Action::Reopen),
        1 => run().prop_map(Action::Acquire),
        1 => (0..8usize).prop_map(Action::Release),
        2 => (0..8usize, proptest::collection::vec(write(), 1..4))
            .prop_map(|(n, writes)| Action::Fenced(n, writes)),
        1 => (0..8u64).prop_map(Action::Sweep),
    ]
}

fn space(i: usize) -> Namespace {
    Namespace::new(SPACES[i].iter().copied())
}

fn prefix(i: usize) -> Namespace {
    Namespace::new(PREFIXES[i].iter().copied())
}

/// The item a [`Write::PutItem`] puts.
fn item(space_: usize, key: usize, v: u8, now: u64, ttl: Option<u64>, embedded: bool) -> Item {
    let mut item = Item::new(
        space(space_),
        KEYS[key],
        json!({"n": v % 4, "v": v, "tag": format!("x{}", v % 3)}),
    )
    .written_at(now);
    if let Some(ttl) = ttl {
        item = item.with_ttl(Duration::from_millis(ttl));
    }
    if embedded {
        item = item.with_embedding(vec![f32::from(v % 3), f32::from(v / 3 % 3), 1.0]);
    }
    item
}

/// Filter number `i` as the stores get it, and as the model checks it (plain code).
fn filter(i: usize) -> (Option<Filter>, fn(&Value) -> bool) {
    match i {
        0 => (None, |_| true),
        1 => (Some(Filter::eq("n", 1)), |v| v["n"] == json!(1)),
        2 => (Some(Filter::gte("v", 128)), |v| {
            v["v"].as_u64() >= Some(128)
        }),
        3 => (Some(Filter::eq("tag", "x0").or(Filter::lt("n", 1))), |v| {
            v["tag"] == json!("x0") || v["n"].as_u64() < Some(1)
        }),
        _ => (
            Some(Filter::exists("v").and(Filter::ne("n", 2)).not()),
            |v| v["n"] == json!(2),
        ),
    }
}

/// An item as a search shows it: without its embedding (a semantic search's hits carry none).
fn shown(item: &Item) -> String {
    format!(
        "{:?}/{:?} {} @{} exp {:?}",
        item.namespace.segments(),
        item.key,
        item.value,
        item.updated_at_ms,
        item.expires_at_ms
    )
}

/// A semantic search's hits in a set order: by score (in hundredths: the distinct cosines of these vectors are further apart), then namespace and key.
fn similar_order(mut hits: Vec<(i64, String, Vec<String>, String)>) -> String {
    hits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (&a.2, &a.3).cmp(&(&b.2, &b.3))));
    let list: Vec<String> = hits
        .into_iter()
        .map(|(s, h, _, _)| format!("{s} {h}"))
        .collect();
    format!("{list:?}")
}

fn status(n: u8) -> RunStatus {
    [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Interrupted,
    ][n as usize % 5]
}

fn record(run: usize, st: u8, now: u64) -> RunRecord {
    let mut r = RunRecord::new(RUNS[run], status(st), u128::from(st) << 100 | 5, now);
    r.last_step = now.checked_sub(1);
    r
}

/// The reference: plain nested maps, nothing shared with the stores' code.
#[derive(Debug, Default)]
struct Model {
    runs: BTreeMap<String, RunRecord>,
    checkpoints: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
    blobs: BTreeMap<String, BTreeMap<u32, BTreeMap<u64, Vec<u8>>>>,
    pending: BTreeMap<String, BTreeMap<u64, BTreeMap<u32, Vec<u8>>>>,
    /// The run of every lease taken, in order.
    leases: Vec<usize>,
    /// Per run: its latest lease (whose epoch is the run's), and whether it is held.
    latest: BTreeMap<usize, (usize, bool)>,
    /// Memory items, by namespace segments and key.
    items: BTreeMap<(Vec<String>, String), Item>,
}

/// The value a write of `v` stores: a few bytes, or for one write in 32 more than 64 KiB (which
/// the sled store keeps in a file of its own).
fn value(v: u8) -> Vec<u8> {
    let len = if v % 32 == 31 {
        (64 << 10) + usize::from(v)
    } else {
        1 + v as usize % 3
    };
    vec![v; len]
}

impl Model {
    fn apply(&mut self, w: &Write) {
        match *w {
            Write::Run { run, status, now } => {
                self.runs.insert(RUNS[run].into(), record(run, status, now));
            }
            Write::Checkpoint {
                run,
                step,
                value: v,
            } => {
                let m = self.checkpoints.entry(RUNS[run].into()).or_default();
                m.insert(step, value(v));
            }
            Write::Blob {
                run,
                field,
                version,
                value: v,
            } => {
                let m = self.blobs.entry(RUNS[run].into()).or_default();
                m.entry(field).or_default().insert(version, value(v));
            }
            Write::Pending {
                run,
                step,
                task,
                value: v,
            } => {
                let m = self.pending.entry(RUNS[run].into()).or_default();
                m.entry(step).or_default().insert(task, value(v));
            }
            Write::DeletePending { run, step } => {
                if let Some(m) = self.pending.get_mut(RUNS[run]) {
                    m.retain(|s, _| *s > step);
                }
            }
            Write::PruneCheckpoints { run, step } => {
                if let Some(m) = self.checkpoints.get_mut(RUNS[run]) {
                    m.retain(|s, _| *s >= step);
                }
            }
            Write::PruneBlobs {
                run,
                field,
                version,
            } => {
                if let Some(m) = self
                    .blobs
                    .get_mut(RUNS[run])
                    .and_then(|m| m.get_mut(&field))
                {
                    m.retain(|v, _| *v >= version);
                }
            }
            Write::DeleteRun { run } => {
                self.runs.remove(RUNS[run]);
                self.checkpoints.remove(RUNS[run]);
                self.blobs.remove(RUNS[run]);
                self.pending.remove(RUNS[run]);
            }
            Write::PutItem {
                space,
                key,
                value,
                now,
                ttl,
                embedded,
            } => {
                let it = item(space, key, value, now, ttl, embedded);
                self.items.insert(Self::item_key(space, key), it);
            }
            Write::DeleteItem { space, key } => {
                self.items.remove(&Self::item_key(space, key));
            }
            Write::DeleteExpiredItem { space, key, at } => {
                let k = Self::item_key(space, key);
                if self.items.get(&k).is_some_and(|i| Self::expired(i, at)) {
                    self.items.remove(&k);
                }
            }
        }
    }

    fn item_key(space: usize, key: usize) -> (Vec<String>, String) {
        let segments = SPACES[space].iter().map(|s| (*s).to_owned()).collect();
        (segments, KEYS[key].to_owned())
    }

    fn expired(item: &Item, now: u64) -> bool {
        item.expires_at_ms.is_some_and(|at| at <= now)
    }

    /// The items not expired at `now` under prefix number `p`, in namespace and key order.
    fn items_under(&self, p: usize, now: u64) -> impl Iterator<Item = &Item> {
        let p: Vec<String> = PREFIXES[p].iter().map(|s| (*s).to_owned()).collect();
        self.items
            .iter()
            .filter(move |((segments, _), i)| segments.starts_with(&p) && !Self::expired(i, now))
            .map(|(_, i)| i)
    }

    fn sweep(&mut self, now: u64) {
        self.items.retain(|_, i| !Self::expired(i, now));
    }

    /// Takes a lease of `run`: its number, or `None` when the run is held.
    fn acquire(&mut self, run: usize) -> Option<usize> {
        if self.latest.get(&run).is_some_and(|(_, held)| *held) {
            return None;
        }
        self.leases.push(run);
        let n = self.leases.len() - 1;
        self.latest.insert(run, (n, true));
        Some(n)
    }

    fn release(&mut self, n: usize) {
        let run = self.leases[n];
        if let Some((latest, held)) = self.latest.get_mut(&run)
            && *latest == n
        {
            *held = false;
        }
    }

    /// Whether lease `n`'s epoch is still its run's.
    fn current(&self, n: usize) -> bool {
        self.latest
            .get(&self.leases[n])
            .is_some_and(|(l, _)| *l == n)
    }

    /// How many stored values have 64 KiB or more.
    #[cfg_attr(not(feature = "sled"), allow(dead_code))]
    fn large_values(&self) -> usize {
        let large = |v: &Vec<u8>| v.len() >= 64 << 10;
        let checkpoints = self.checkpoints.values().flat_map(|m| m.values());
        let blobs = self
            .blobs
            .values()
            .flat_map(|m| m.values().flat_map(|m| m.values()));
        let pending = self
            .pending
            .values()
            .flat_map(|m| m.values().flat_map(|m| m.values()));
        checkpoints
            .chain(blobs)
            .chain(pending)
            .filter(|v| large(v))
            .count()
    }

    fn read(&self, r: &Read) -> String {
        let cps = |run: usize| self.checkpoints.get(RUNS[run]).cloned().unwrap_or_default();
        match *r {
            Read::Run(run) => format!("{:?}", self.runs.get(RUNS[run])),
            Read::ListRuns { after, limit } => {
                let list: Vec<&RunRecord> = self
                    .runs
                    .iter()
                    .filter(|(id, _)| after.is_none_or(|a| id.as_str() > CURSORS[a]))
                    .take(limit)
                    .map(|(_, r)| r)
                    .collect();
                format!("{list:?}")
            }
            Read::Checkpoint(run, step) => format!("{:?}", cps(run).get(&step)),
            Read::Latest(run) => format!("{:?}", cps(run).into_iter().next_back()),
            Read::ListCheckpoints { run, after, limit } => {
                let list: Vec<(u64, Vec<u8>)> = cps(run)
                    .into_iter()
                    .filter(|(s, _)| after.is_none_or(|a| *s > a))
                    .take(limit)
                    .collect();
                format!("{list:?}")
            }
            Read::Blobs {
                run,
                field,
                from,
                to,
            } => {
                let list: Vec<(u64, Vec<u8>)> = self
                    .blobs
                    .get(RUNS[run])
                    .and_then(|m| m.get(&field))
                    .map(|m| {
                        m.iter()
                            .filter(|(v, _)| from <= **v && **v <= to)
                            .map(|(v, b)| (*v, b.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{list:?}")
            }
            Read::Pending(run, step) => {
                let list: Vec<(u32, Vec<u8>)> = self
                    .pending
                    .get(RUNS[run])
                    .and_then(|m| m.get(&step))
                    .map(|m| m.iter().map(|(t, b)| (*t, b.clone())).collect())
                    .unwrap_or_default();
                format!("{list:?}")
            }
            Read::Item { space, key, now } => {
                let found = self
                    .items
                    .get(&Self::item_key(space, key))
                    .filter(|i| !Self::expired(i, now));
                format!("{found:?}")
            }
            Read::Items {
                prefix,
                filter: f,
                now,
                limit,
                offset,
            } => {
                let admits = filter(f).1;
                let list: Vec<String> = self
                    .items_under(prefix, now)
                    .filter(|i| admits(&i.value))
                    .skip(offset)
                    .take(limit)
                    .map(shown)
                    .collect();
                format!("{list:?}")
            }
            Read::Similar {
                prefix,
                vector,
                filter: f,
                now,
            } => {
                let admits = filter(f).1;
                let q = VECTORS[vector];
                let hits = self
                    .items_under(prefix, now)
                    .filter(|i| admits(&i.value))
                    .filter_map(|i| {
                        let e = i.embedding.as_ref()?;
                        let dot: f32 = e.iter().zip(q).map(|(a, b)| a * b).sum();
                        let norms = e.iter().map(|a| a * a).sum::<f32>().sqrt()
                            * q.iter().map(|a| a * a).sum::<f32>().sqrt();
                        let score = (f64::from(dot / norms) * 1e2).round() as i64;
                        let (segments, key) = (i.namespace.segments().to_vec(), i.key.clone());
                        Some((score, shown(i), segments, key))
                    })
                    .collect();
                similar_order(hits)
            }
            Read::Namespaces { prefix, now } => {
                let mut list: Vec<Vec<String>> = self
                    .items_under(prefix, now)
                    .map(|i| i.namespace.segments().to_vec())
                    .collect();
                list.dedup();
                format!("{list:?}")
            }
        }
    }
}

fn batch(writes: &[Write]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for w in writes {
        match *w {
            Write::Run { run, status, now } => b.put_run(record(run, status, now)),
            Write::Checkpoint {
                run,
                step,
                value: v,
            } => b.put_checkpoint(RUNS[run], step, value(v)),
            Write::Blob {
                run,
                field,
                version,
                value: v,
            } => b.put_blob(RUNS[run], field, version, value(v)),
            Write::Pending {
                run,
                step,
                task,
                value: v,
            } => b.put_pending_write(RUNS[run], step, task, value(v)),
            Write::DeletePending { run, step } => b.delete_pending_writes(RUNS[run], step),
            Write::PruneCheckpoints { run, step } => b.delete_checkpoints_before(RUNS[run], step),
            Write::PruneBlobs {
                run,
                field,
                version,
            } => b.delete_blobs_before(RUNS[run], field, version),
            Write::DeleteRun { run } => b.delete_run(RUNS[run]),
            Write::PutItem {
                space,
                key,
                value,
                now,
                ttl,
                embedded,
            } => b.put_item(item(space, key, value, now, ttl, embedded)),
            Write::DeleteItem { space: s, key } => b.delete_item(&space(s), KEYS[key]),
            Write::DeleteExpiredItem { space: s, key, at } => b.push(Op::DeleteItem {
                namespace: space(s),
                key: KEYS[key].to_owned(),
                if_expired_at: Some(at),
            }),
        };
    }
    b
}

async fn read_store(store: &dyn CheckpointStore, r: &Read) -> String {
    match *r {
        Read::Run(run) => format!("{:?}", store.get_run(RUNS[run]).await.unwrap()),
        Read::ListRuns { after, limit } => {
            format!(
                "{:?}",
                store
                    .list_runs(after.map(|a| CURSORS[a]), limit)
                    .await
                    .unwrap()
            )
        }
        Read::Checkpoint(run, step) => {
            format!(
                "{:?}",
                store
                    .get_checkpoint(RUNS[run], step)
                    .await
                    .unwrap()
                    .as_ref()
            )
        }
        Read::Latest(run) => format!("{:?}", store.latest_checkpoint(RUNS[run]).await.unwrap()),
        Read::ListCheckpoints { run, after, limit } => format!(
            "{:?}",
            store
                .list_checkpoints(RUNS[run], after, limit)
                .await
                .unwrap()
        ),
        Read::Blobs {
            run,
            field,
            from,
            to,
        } => {
            format!(
                "{:?}",
                store.get_blobs(RUNS[run], field, from, to).await.unwrap()
            )
        }
        Read::Pending(run, step) => {
            format!(
                "{:?}",
                store.get_pending_writes(RUNS[run], step).await.unwrap()
            )
        }
        Read::Item { space: s, key, now } => {
            format!(
                "{:?}",
                store.get_item(&space(s), KEYS[key], now).await.unwrap()
            )
        }
        Read::Items {
            prefix: p,
            filter: f,
            now,
            limit,
            offset,
        } => {
            let mut query = ItemQuery::new(prefix(p))
                .limit(limit)
                .offset(offset)
                .at(now);
            if let Some(f) = filter(f).0 {
                query = query.filter(f);
            }
            let hits = store.search_items(&query).await.unwrap();
            let list: Vec<String> = hits.iter().map(|h| shown(&h.item)).collect();
            format!("{list:?}")
        }
        Read::Similar {
            prefix: p,
            vector,
            filter: f,
            now,
        } => {
            let mut query = ItemQuery::new(prefix(p))
                .vector(VECTORS[vector].to_vec())
                .limit(1000)
                .at(now);
            if let Some(f) = filter(f).0 {
                query = query.filter(f);
            }
            let hits = store.search_items(&query).await.unwrap();
            let hits = hits
                .iter()
                .map(|h| {
                    let score = (f64::from(h.score.expect("a semantic hit has a score")) * 1e2)
                        .round() as i64;
                    let i = &h.item;
                    (
                        score,
                        shown(i),
                        i.namespace.segments().to_vec(),
                        i.key.clone(),
                    )
                })
                .collect();
            similar_order(hits)
        }
        Read::Namespaces { prefix: p, now } => {
            let list: Vec<Vec<String>> = store
                .list_namespaces(&prefix(p), now)
                .await
                .unwrap()
                .iter()
                .map(|n| n.segments().to_vec())
                .collect();
            format!("{list:?}")
        }
    }
}

/// Every read of everything, to compare whole stores at the end.
fn every_read() -> Vec<Read> {
    let mut reads = vec![Read::ListRuns {
        after: None,
        limit: usize::MAX,
    }];
    for run in 0..RUNS.len() {
        reads.push(Read::Run(run));
        reads.push(Read::ListCheckpoints {
            run,
            after: None,
            limit: usize::MAX,
        });
        for field in 0..3 {
            reads.push(Read::Blobs {
                run,
                field,
                from: 0,
                to: u64::MAX,
            });
        }
        for step in 0..6 {
            reads.push(Read::Pending(run, step));
        }
    }
    for space in 0..SPACES.len() {
        for key in 0..KEYS.len() {
            reads.push(Read::Item { space, key, now: 0 });
        }
    }
    for now in [0, 3, 8] {
        reads.push(Read::Items {
            prefix: 0,
            filter: 0,
            now,
            limit: usize::MAX,
            offset: 0,
        });
        reads.push(Read::Namespaces { prefix: 0, now });
    }
    reads
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn stores_agree_with_the_model(actions in proptest::collection::vec(action(), 1..48)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut model = Model::default();
        let memory = MemoryStore::new();
        #[cfg(feature = "sled")]
        let dir = tempfile::tempdir().unwrap();
        #[cfg(feature = "sled")]
        let mut sled = Some(agentgraph_checkpoint::SledStore::open(dir.path()).unwrap());
        #[cfg(feature = "redb")]
        let redb_dir = tempfile::tempdir().unwrap();
        #[cfg(feature = "redb")]
        let redb_path = redb_dir.path().join("store.redb");
        #[cfg(feature = "redb")]
        let mut redb = Some(agentgraph_checkpoint::RedbStore::open(&redb_path).unwrap());
        // Per store (in the order of `stores`), the leases taken, by number.
        let mut leases: Vec<Vec<Option<Lease>>> = vec![Vec::new(), Vec::new(), Vec::new()];
        // And their epochs, kept after a release.
        let mut epochs: Vec<Vec<u64>> = vec![Vec::new(), Vec::new(), Vec::new()];
        let long = Duration::from_secs(3600);

        rt.block_on(async {
            let mut stores: Vec<(&str, &dyn CheckpointStore)>;
            for (i, action) in actions.iter().enumerate() {
                stores = vec![("memory", &memory)];
                #[cfg(feature = "sled")]
                stores.push(("sled", sled.as_ref().unwrap()));
                #[cfg(feature = "redb")]
                stores.push(("redb", redb.as_ref().unwrap()));
                match action {
                    Action::Commit(writes) => {
                        for w in writes {
                            model.apply(w);
                        }
                        for (_, store) in &stores {
                            store.commit(batch(writes)).await.unwrap();
                        }
                    }
                    Action::Read(r) => {
                        let expected = model.read(r);
                        for (name, store) in &stores {
                            let got = read_store(*store, r).await;
                            prop_assert_eq!(&got, &expected, "{} disagrees at action {}: {:?}", name, i, r);
                        }
                    }
                    Action::Acquire(run) => {
                        let expected = model.acquire(*run);
                        for (s, (name, store)) in stores.iter().enumerate() {
                            match (store.acquire_lease(RUNS[*run], long).await, expected) {
                                (Ok(lease), Some(n)) => {
                                    leases[s].resize_with(n + 1, || None);
                                    epochs[s].resize(n + 1, 0);
                                    epochs[s][n] = lease.epoch();
                                    leases[s][n] = Some(lease);
                                }
                                (Err(StoreError::RunBusy { .. }), None) => {}
                                (got, _) => prop_assert!(false, "{} at action {}: acquiring {:?} gave {:?}, the model {:?}", name, i, RUNS[*run], got, expected),
                            }
                        }
                    }
                    Action::Release(n) => {
                        if model.leases.is_empty() {
                            continue;
                        }
                        let n = n % model.leases.len();
                        model.release(n);
                        for (s, (_, store)) in stores.iter().enumerate() {
                            if let Some(lease) = leases[s].get_mut(n).and_then(Option::take) {
                                store.release_lease(lease).await.unwrap();
                            }
                        }
                    }
                    Action::Fenced(n, writes) => {
                        if model.leases.is_empty() {
                            continue;
                        }
                        let n = n % model.leases.len();
                        let current = model.current(n);
                        if current {
                            for w in writes {
                                model.apply(w);
                            }
                        }
                        for (s, (name, store)) in stores.iter().enumerate() {
                            let mut b = batch(writes);
                            b.fence(RUNS[model.leases[n]], epochs[s][n]);
                            match (store.commit(b).await, current) {
                                (Ok(()), true) | (Err(StoreError::Fenced { .. }), false) => {}
                                (got, _) => prop_assert!(false, "{} at action {}: a batch fenced with lease {} (current: {}) gave {:?}", name, i, n, current, got),
                            }
                        }
                    }
                    Action::Sweep(now) => {
                        model.sweep(*now);
                        for (_, store) in &stores {
                            store.sweep_expired(*now).await.unwrap();
                        }
                    }
                    Action::Reopen => {
                        // The sled store's leases end with it; every store's go.
                        for n in 0..model.leases.len() {
                            model.release(n);
                        }
                        for (s, (_, store)) in stores.iter().enumerate() {
                            for lease in leases[s].iter_mut().filter_map(Option::take) {
                                store.release_lease(lease).await.unwrap();
                            }
                        }
                        drop(stores);
                        #[cfg(feature = "sled")]
                        {
                            let store = sled.take().unwrap();
                            store.flush().await.unwrap();
                            drop(store);
                            sled = Some(agentgraph_checkpoint::SledStore::open(dir.path()).unwrap());
                        }
                        #[cfg(feature = "redb")]
                        {
                            let store = redb.take().unwrap();
                            store.flush().await.unwrap();
                            drop(store);
                            redb = Some(agentgraph_checkpoint::RedbStore::open(&redb_path).unwrap());
                        }
                    }
                }
            }
            stores = vec![("memory", &memory)];
            #[cfg(feature = "sled")]
            stores.push(("sled", sled.as_ref().unwrap()));
            #[cfg(feature = "redb")]
            stores.push(("redb", redb.as_ref().unwrap()));
            for r in every_read() {
                let expected = model.read(&r);
                for (name, store) in &stores {
                    let got = read_store(*store, &r).await;
                    prop_assert_eq!(&got, &expected, "{} disagrees at the end: {:?}", name, r);
                }
            }
            #[cfg(feature = "sled")]
            {
                let store = sled.as_ref().unwrap();
                store.flush().await.unwrap();
                let files = std::fs::read_dir(store.path().join("values")).unwrap().count();
                prop_assert_eq!(files, model.large_values(), "sled: one value file per value of 64 KiB or more, after a flush");
            }
            Ok(())
        })?;
    }
}
