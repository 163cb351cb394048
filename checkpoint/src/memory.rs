//! The in-memory store: for tests, examples and runs that need no durability.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::audit::{encode_body, seal};
use crate::error::Result;
use crate::items::{Item, ItemIndex, Namespace, is_item_op};
use crate::lease::{Holders, check_fence};
use crate::record::{check_op, decode_run, encode_run};
use crate::store::{BoxFuture, CheckpointStore, Lease, Op, RunRecord, WriteBatch, check_run_id};

/// A [`CheckpointStore`] in memory: nothing survives the process.
///
/// Batches apply atomically and reads see a batch whole or not at all (one lock guards the
/// maps). Clones share the same data and the same run leases; a dropped [`Lease`] is released
/// at once. [`flush`](CheckpointStore::flush)
/// does nothing. Run records are kept enveloped, as a durable store keeps them, so a damaged
/// one is a [`StoreError::Corrupt`](crate::StoreError::Corrupt) here too.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, RunRecord, RunStatus, WriteBatch};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> agentgraph_checkpoint::Result<()> {
///     let store = MemoryStore::new();
///     let mut batch = WriteBatch::new();
///     batch
///         .put_run(RunRecord::new("run-1", RunStatus::Running, 7, 0))
///         .put_checkpoint("run-1", 0, b"step 0".to_vec())
///         .put_checkpoint("run-1", 1, b"step 1".to_vec());
///     store.commit(batch).await?;
///     store.flush().await?;
///
///     assert_eq!(store.get_run("run-1").await?.unwrap().status, RunStatus::Running);
///     assert_eq!(store.latest_checkpoint("run-1").await?, Some((1, b"step 1".to_vec())));
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    leases: Holders,
    /// The vectors of the items, for semantic searches.
    index: Arc<ItemIndex>,
}

/// Everything stored, one map per table, keyed as the sled store keys them.
#[derive(Debug, Default)]
struct Tables {
    /// Enveloped run records.
    runs: BTreeMap<String, Vec<u8>>,
    checkpoints: BTreeMap<(String, u64), Vec<u8>>,
    blobs: BTreeMap<(String, u32, u64), Vec<u8>>,
    pending: BTreeMap<(String, u64, u32), Vec<u8>>,
    events: BTreeMap<(String, u64), Vec<u8>>,
    /// Memory items, by encoded namespace and key.
    items: BTreeMap<Vec<u8>, Item>,
    /// The newest lease epoch of each run that had a lease.
    epochs: HashMap<String, u64>,
    /// Audit entries (sealed: links and body), by run and number; kept when a run goes.
    audit: BTreeMap<(String, u64), Vec<u8>>,
}

/// An operation checked and encoded, ready to be applied without failing.
enum Ready {
    Run(String, Vec<u8>),
    /// An audit entry's run and encoded body, numbered and linked as it is applied.
    Audit(String, Vec<u8>),
    Other(Op),
}

impl MemoryStore {
    /// An empty store.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = agentgraph_checkpoint::MemoryStore::new();
    /// let copy = store.clone(); // the same data
    /// # let _ = copy;
    /// ```
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // Batches are checked before the lock is taken and applied without failing, so a
        // panic under the lock cannot leave a half-applied batch: the data stays usable.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the stored bytes of `run`'s record, bypassing every check. For tests that
    /// damage records.
    #[doc(hidden)]
    pub fn put_raw_run_record(&self, run: &str, bytes: Vec<u8>) {
        self.tables().runs.insert(run.to_owned(), bytes);
    }

    /// The stored bytes of `run`'s record. For tests that damage records.
    #[doc(hidden)]
    pub fn raw_run_record(&self, run: &str) -> Option<Vec<u8>> {
        self.tables().runs.get(run).cloned()
    }

    fn commit_now(&self, batch: WriteBatch) -> Result<()> {
        // The item operations, for the index (nothing is copied for a batch without any).
        let item_ops: Vec<Op> = if batch.ops().iter().any(is_item_op) {
            batch
                .ops()
                .iter()
                .filter(|op| is_item_op(op))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let mut ready = Vec::with_capacity(batch.len());
        let mut fences = Vec::new();
        for op in batch.into_ops() {
            check_op(&op)?;
            ready.push(match op {
                Op::PutRun(record) => {
                    let bytes = encode_run(&record)?;
                    Ready::Run(record.run_id, bytes)
                }
                Op::Fence { run, epoch } => {
                    fences.push((run, epoch));
                    continue;
                }
                Op::PutAudit { run, record } => Ready::Audit(run, encode_body(&record)?),
                op => Ready::Other(op),
            });
        }
        let mut t = self.tables();
        for (run, epoch) in &fences {
            check_fence(run, *epoch, t.epochs.get(run).copied().unwrap_or(0))?;
        }
        for op in ready {
            t.apply(op);
        }
        self.index.committed(&item_ops);
        Ok(())
    }
}

impl Tables {
    /// Whether neither `run` nor a run of its subgraphs (`{run}/@..`) has a record.
    fn vacant(&self, run: &str) -> bool {
        if self.runs.contains_key(run) {
            return false;
        }
        let children = format!("{run}{}", crate::SUBGRAPH_MARK);
        !self
            .runs
            .range::<str, _>((Bound::Included(children.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(id, _)| id.starts_with(&children))
    }

    fn apply(&mut self, op: Ready) {
        let op = match op {
            Ready::Run(run, bytes) => {
                self.runs.insert(run, bytes);
                return;
            }
            Ready::Audit(run, body) => {
                let last = self
                    .audit
                    .range((run.clone(), 0)..=(run.clone(), u64::MAX))
                    .next_back()
                    .map(|((_, seq), bytes)| (*seq, bytes.as_slice()));
                let seq = last.map_or(1, |(seq, _)| seq + 1);
                let sealed = seal(&run, seq, last.map(|(_, b)| b), &body);
                self.audit.insert((run, seq), sealed);
                return;
            }
            Ready::Other(op) => op,
        };
        match op {
            Op::PutRun(_) | Op::Fence { .. } | Op::PutAudit { .. } => {
                unreachable!(
                    "run records, fences and audit entries are prepared before the lock is taken"
                )
            }
            Op::PutCheckpoint { run, step, bytes } => {
                self.checkpoints.insert((run, step), bytes);
            }
            Op::PutBlob {
                run,
                field,
                version,
                bytes,
            } => {
                self.blobs.insert((run, field, version), bytes);
            }
            Op::PutPendingWrite {
                run,
                step,
                task,
                bytes,
            } => {
                self.pending.insert((run, step, task), bytes);
            }
            Op::PutEvent { run, seq, bytes } => {
                self.events.insert((run, seq), bytes);
            }
            Op::DeletePendingWrites { run, step } => {
                remove_range(
                    &mut self.pending,
                    (run.clone(), 0, 0)..=(run, step, u32::MAX),
                );
            }
            Op::DeleteCheckpointsBefore { run, step } => {
                remove_range(&mut self.checkpoints, (run.clone(), 0)..(run, step));
            }
            Op::DeleteBlobsBefore {
                run,
                field,
                version,
            } => {
                remove_range(
                    &mut self.blobs,
                    (run.clone(), field, 0)..(run, field, version),
                );
            }
            Op::DeleteAfter { run, step } => {
                if step < u64::MAX {
                    remove_range(
                        &mut self.checkpoints,
                        (run.clone(), step + 1)..=(run.clone(), u64::MAX),
                    );
                    remove_range(
                        &mut self.pending,
                        (run.clone(), step + 1, 0)..=(run.clone(), u64::MAX, u32::MAX),
                    );
                    let later: Vec<_> = self
                        .blobs
                        .range((run.clone(), 0, 0)..=(run.clone(), u32::MAX, u64::MAX))
                        .filter(|((_, _, version), _)| *version > step)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in later {
                        self.blobs.remove(&k);
                    }
                }
            }
            Op::PutItem(item) => {
                self.items
                    .insert(Item::storage_key(&item.namespace, &item.key), item);
            }
            Op::DeleteItem {
                namespace,
                key,
                if_expired_at,
            } => {
                let k = Item::storage_key(&namespace, &key);
                let expired = |i: &Item| if_expired_at.is_none_or(|now| i.is_expired(now));
                if self.items.get(&k).is_some_and(expired) {
                    self.items.remove(&k);
                }
            }
            Op::DeleteRun { run } => {
                self.runs.remove(&run);
                remove_range(
                    &mut self.checkpoints,
                    (run.clone(), 0)..=(run.clone(), u64::MAX),
                );
                remove_range(
                    &mut self.blobs,
                    (run.clone(), 0, 0)..=(run.clone(), u32::MAX, u64::MAX),
                );
                remove_range(
                    &mut self.pending,
                    (run.clone(), 0, 0)..=(run.clone(), u64::MAX, u32::MAX),
                );
                remove_range(&mut self.events, (run.clone(), 0)..=(run, u64::MAX));
            }
        }
    }
}

/// Removes the keys of `map` in `range` (an empty or reversed range removes nothing).
fn remove_range<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, range: impl std::ops::RangeBounds<K>) {
    if is_empty_range(&range) {
        return;
    }
    let keys: Vec<K> = map.range(range).map(|(k, _)| k.clone()).collect();
    for k in keys {
        map.remove(&k);
    }
}

/// Whether `range` holds no key (`BTreeMap::range` panics on reversed ranges).
fn is_empty_range<K: Ord>(range: &impl std::ops::RangeBounds<K>) -> bool {
    match (range.start_bound(), range.end_bound()) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

impl CheckpointStore for MemoryStore {
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.commit_now(batch) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let bytes = self.tables().runs.get(run).cloned();
            bytes.map(|b| decode_run(run, &b)).transpose()
        })
    }

    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>>> {
        Box::pin(async move {
            let raw: Vec<(String, Vec<u8>)> = {
                let t = self.tables();
                let start = match after {
                    Some(a) => Bound::Excluded(a),
                    None => Bound::Unbounded,
                };
                t.runs
                    .range::<str, _>((start, Bound::Unbounded))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            raw.iter().map(|(run, b)| decode_run(run, b)).collect()
        })
    }

    fn get_checkpoint<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            check_run_id(run)?;
            Ok(self
                .tables()
                .checkpoints
                .get(&(run.to_owned(), step))
                .cloned())
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let t = self.tables();
            let range = (run.to_owned(), 0)..=(run.to_owned(), u64::MAX);
            Ok(t.checkpoints
                .range(range)
                .next_back()
                .map(|((_, step), b)| (*step, b.clone())))
        })
    }

    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            if after == Some(u64::MAX) {
                return Ok(Vec::new());
            }
            let start = match after {
                Some(s) => Bound::Excluded((run.to_owned(), s)),
                None => Bound::Included((run.to_owned(), 0)),
            };
            let end = Bound::Included((run.to_owned(), u64::MAX));
            let t = self.tables();
            Ok(t.checkpoints
                .range((start, end))
                .take(limit)
                .map(|((_, step), b)| (*step, b.clone()))
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
            let t = self.tables();
            let range = (run.to_owned(), field, from)..=(run.to_owned(), field, to);
            Ok(t.blobs
                .range(range)
                .map(|((_, _, version), b)| (*version, b.clone()))
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
            let t = self.tables();
            let range = (run.to_owned(), step, 0)..=(run.to_owned(), step, u32::MAX);
            Ok(t.pending
                .range(range)
                .map(|((_, _, task), b)| (*task, b.clone()))
                .collect())
        })
    }

    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let Some(from) = after.map_or(Some(0), |a| a.checked_add(1)) else {
                return Ok(Vec::new());
            };
            let t = self.tables();
            Ok(t.events
                .range((run.to_owned(), from)..=(run.to_owned(), u64::MAX))
                .take(limit)
                .map(|((_, seq), b)| (*seq, b.clone()))
                .collect())
        })
    }

    fn last_event<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let t = self.tables();
            Ok(t.events
                .range((run.to_owned(), 0)..=(run.to_owned(), u64::MAX))
                .next_back()
                .map(|((_, seq), _)| *seq))
        })
    }

    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let lease = self.leases.acquire(run, ttl, || {
                let mut t = self.tables();
                let epoch = t.epochs.entry(run.to_owned()).or_insert(0);
                *epoch += 1;
                Ok(*epoch)
            })?;
            // Two lookups tell a new run: the engine then reads nothing before it starts.
            Ok(if self.tables().vacant(run) {
                lease.with_vacant_run()
            } else {
                lease
            })
        })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.leases.renew(lease, ttl, || {
                Ok(self.tables().epochs.get(lease.run()).copied().unwrap_or(0))
            })
        })
    }

    fn release_lease(&self, lease: Lease) -> BoxFuture<'_, Result<()>> {
        drop(lease);
        Box::pin(async { Ok(()) })
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
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let start = match after {
                Some(seq) => Bound::Excluded((run.to_owned(), seq)),
                None => Bound::Included((run.to_owned(), 0)),
            };
            let end = Bound::Included((run.to_owned(), u64::MAX));
            if is_empty_range(&(start.clone(), end.clone())) {
                return Ok(Vec::new());
            }
            Ok(self
                .tables()
                .audit
                .range((start, end))
                .take(limit)
                .map(|((_, seq), bytes)| (*seq, bytes.clone()))
                .collect())
        })
    }

    fn audited_runs(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let t = self.tables();
            let mut runs: Vec<String> = t.audit.keys().map(|(run, _)| run.clone()).collect();
            runs.dedup();
            Ok(runs)
        })
    }

    fn get_item<'a>(
        &'a self,
        namespace: &'a Namespace,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(async move {
            let k = Item::storage_key(namespace, key);
            let t = self.tables();
            Ok(t.items.get(&k).filter(|i| !i.is_expired(now_ms)).cloned())
        })
    }

    fn scan_items<'a>(&'a self, prefix: &'a Namespace) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let start = prefix.encode();
            let t = self.tables();
            Ok(t.items
                .range(start.clone()..)
                .take_while(|(k, _)| k.starts_with(&start))
                .map(|(_, i)| i.clone())
                .collect())
        })
    }

    fn item_index(&self) -> Option<&ItemIndex> {
        Some(&self.index)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone + 'static>() {}
    is::<MemoryStore>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::reversed_empty_ranges)]
    fn reversed_ranges_remove_nothing() {
        let mut map: BTreeMap<u32, ()> = (0..5).map(|k| (k, ())).collect();
        remove_range(&mut map, 3..1);
        remove_range(&mut map, 3..3);
        remove_range(&mut map, 4..=3);
        assert_eq!(map.len(), 5);
        remove_range(&mut map, 1..3);
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [0, 3, 4]);
    }
}
