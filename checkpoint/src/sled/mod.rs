//! The embedded sled store (feature `sled`).

mod flusher;
mod journal;
mod snapshots;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::audit::{encode_body, seal};
use crate::error::{Result, StoreError};
use crate::items::{Item, ItemIndex, Namespace, decode_item, encode_item, is_item_op};
use crate::keys::{
    AUDIT, BLOB, CHECKPOINT, EVENT, PENDING, RUN, audit_key, audit_key_run, audit_range, blob_key,
    blob_range, checkpoint_key, checkpoint_range, event_key, event_range, item_key, item_range,
    key_u32, key_u64, lease_key, malformed_key, pending_key, pending_range, run_key, run_prefix,
};
use crate::lease::{Holders, check_fence};
use crate::record::{check_op, decode_run, encode_run};
use crate::store::{BoxFuture, CheckpointStore, Lease, Op, RunRecord, WriteBatch, check_run_id};
use flusher::Flusher;
use journal::{JOURNAL_KEY, Writes};
use values::{FILE_MIN, FileRef, ValueFiles, corrupt_ref, ref_key};

/// A [`CheckpointStore`] in an embedded [sled](https://docs.rs/sled/0.34.7) database: one
/// directory, one process at a time.
///
/// After a crash, each [`WriteBatch`] is there whole or not at all: a small batch is written
/// after a journal entry holding all of it, which opening the store replays if a crash
/// interrupted the batch, and a large one (over 32 KiB) as a single sled batch. Reads see a
/// batch whole or not at all. sled's file lock keeps every
/// other process out of the directory while a store is open ([`StoreError::Locked`]), so run
/// leases ([`acquire_lease`](CheckpointStore::acquire_lease)) are held in the process: a
/// dropped [`Lease`] is released at once, and reopening the store frees every run (the process
/// that held them is gone). Lease epochs are stored in the tree, with the batches they fence:
/// they keep growing across reopening. Clones share the same database and leases.
///
/// # Durability
///
/// Committed batches become durable at an awaited [`flush`](CheckpointStore::flush), and what
/// "durable" means here is limited by sled 0.34.7:
///
/// - **A killed process loses nothing flushed.** Measured: an awaited `flush` survived
///   1,200 SIGKILL cycles without losing an acknowledged record.
/// - **A power loss or kernel crash may lose the last ~500 ms of flushed batches.** sled's
///   `flush` writes with `sync_file_range`, not `fsync`/`fdatasync`; sled calls `fsync`
///   only in its background flush, every 500 ms by default. Each batch is recovered whole or
///   not at all.
/// - **A flush costs one synced write** for the small batches committed since the last one
///   (a `pwrite` and a `sync_file_range` of sled's log buffer). sled's own batches cost at
///   least two, for the manifest that makes them atomic, which is why small batches go
///   through a journal entry of the store's instead (it relies on sled recovering a prefix of
///   its log, as sled's manifests do). Flushes run on a thread of the store's own, started by
///   the first: one sled flush serves all the flushes asked for before it began.
/// - **A commit that fails** (an I/O error in the middle of a batch) may leave the batch whole
///   after the store is reopened, never partial.
/// - **Values of 64 KiB or more** (a large field's full value, a large update) live in files of
///   their own (below). A file is written before the batch that refers to it and synced
///   (`fdatasync`, then its directory) by a background thread moments later, off the commit
///   and flush path; a failed sync fails the next `flush`. Until that sync, a power loss can
///   lose the file (sled itself never syncs the files it writes for pages over 128 KiB).
///
/// If your runs must survive a power loss, use a store that syncs for real.
///
/// # Recovery at open
///
/// sled 0.34.7 writes a snapshot of its page table while it opens a store, to a
/// `snap.<LSN>.generating` file renamed once complete, and refuses to open a store whose
/// lexically last `snap.*` file is such a leftover, empty or torn, of a process killed while
/// writing it (spacejam/sled#1527). [`open`](SledStore::open) removes those leftovers (only
/// files of exactly that name, never a complete snapshot, and only while no other handle
/// holds the store's lock), logging each with `tracing` at `warn`: the store then opens from
/// its previous snapshot and its log, as after a crash just before the snapshot began.
///
/// # Large values
///
/// sled keeps values inside its tree's leaves and logs a whole leaf again every tenth change
/// to it and at each split, so a large value sharing a leaf with the small entries written
/// after it would be written out several times over. Checkpoints, blobs and pending writes of
/// 64 KiB or more are therefore written once, each to a file in `values/` of the store's
/// directory, and the tree refers to the file (with its length and CRC-32, checked on every
/// read: a damaged file is [`StoreError::Corrupt`]). A file is deleted after the flush that
/// follows its entry's removal; a file nothing refers to (left by a crash) is deleted when the
/// store is next opened.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, SledStore, WriteBatch};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let dir = tempfile::tempdir()?;
///     let store = SledStore::open(dir.path())?;
///     let mut batch = WriteBatch::new();
///     batch
///         .put_run(RunRecord::new("run-1", RunStatus::Running, 7, 0))
///         .put_checkpoint("run-1", 0, b"step 0".to_vec());
///     store.commit(batch).await?;
///     store.flush().await?;
///     drop(store);
///
///     let store = SledStore::open(dir.path())?;
///     assert_eq!(store.get_checkpoint("run-1", 0).await?, Some(b"step 0".to_vec()));
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct SledStore {
    db: ::sled::Db,
    path: PathBuf,
    /// Written by commits, which must be serial (a batch's range deletions read the keys it
    /// then removes); read by multi-key reads, so that they see a batch whole or not at all
    /// (a batch's writes reach the tree one key at a time).
    commit_lock: Arc<RwLock<()>>,
    leases: Holders,
    /// The epochs of leases granted since the run's last commit, written with its next fenced
    /// batch (not on their own: a sled write of its own costs a synced log write at the next
    /// commit). Changed under the commit lock.
    unwritten_epochs: Arc<UnwrittenEpochs>,
    /// Values of at least [`FILE_MIN`] bytes, kept in files of their own.
    values: Arc<ValueFiles>,
    /// The vectors of the items, for semantic searches.
    index: Arc<ItemIndex>,
    /// The thread that flushes (see [`flusher`]).
    flusher: Arc<Flusher>,
}

/// The lease epochs granted since their runs' last commits (see `SledStore::bump_epoch`),
/// written when the store's last clone goes, so that a lease outlives a reopening of the store
/// in the same process as it did when each epoch was written at once.
#[derive(Debug)]
struct UnwrittenEpochs {
    epochs: Mutex<HashMap<String, u64>>,
    db: ::sled::Db,
}

impl Drop for UnwrittenEpochs {
    fn drop(&mut self) {
        let epochs = std::mem::take(
            self.epochs
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        // The last handle is going: no commit is under way, and a journal entry left would
        // write an older epoch over those below when the store is next opened.
        if let Err(e) = self.db.remove(JOURNAL_KEY) {
            tracing::warn!(error = %e, "the commit journal was not cleared");
        }
        for (run, epoch) in epochs {
            // Flushed as the tree goes, after this (this holds one of its handles).
            if let Err(e) = self.db.insert(lease_key(&run), &epoch.to_be_bytes()) {
                tracing::warn!(run, error = %e, "a lease epoch was not written");
            }
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`, with sled's default configuration.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process (or another `SledStore` of this process)
    /// has it open, after waiting up to one second for it to be closed: sled may hold the
    /// lock of a store dropped in this process for a moment after the drop.
    /// [`StoreError::Backend`] when sled cannot open it (I/O error, damaged files).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> agentgraph_checkpoint::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = agentgraph_checkpoint::SledStore::open(dir.path())?;
    /// assert_eq!(store.path(), dir.path());
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore> {
        SledStore::open_with(path, ::sled::Config::new())
    }

    /// Opens (or creates) the store in directory `path` with a sled configuration (cache
    /// size, background flush interval, ...). The configuration's own path is replaced by
    /// `path`.
    ///
    /// # Errors
    ///
    /// As [`open`](SledStore::open).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> agentgraph_checkpoint::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = sled::Config::new().cache_capacity(16 << 20);
    /// let store = agentgraph_checkpoint::SledStore::open_with(dir.path(), config)?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_with(path: impl AsRef<Path>, config: ::sled::Config) -> Result<SledStore> {
        let path = path.as_ref().to_path_buf();
        let config = config.path(&path);
        // sled's I/O threads may hold the file lock of a store dropped in this process for a
        // moment after the drop (longer on a loaded machine): wait a little for it.
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(1);
        let db = loop {
            // A snapshot file a killed process left half-written would make sled refuse the
            // store for ever: removed first, when no live sled holds the store.
            let cleared = snapshots::remove_unfinished(&path)
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
            match config.open() {
                Ok(db) => break db,
                Err(e)
                    if (is_lock_error(&e) || cleared == snapshots::Cleared::Busy)
                        && Instant::now() + pause < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(open_error(&path, e)),
            }
        };
        // Before the value files are listed: the last batch may refer to files of its own.
        replay_journal(&db)?;
        let values = Arc::new(ValueFiles::open(&path, &db)?);
        Ok(SledStore {
            db: db.clone(),
            path,
            commit_lock: Arc::default(),
            leases: Holders::default(),
            unwritten_epochs: Arc::new(UnwrittenEpochs {
                epochs: Mutex::default(),
                db,
            }),
            values,
            index: Arc::default(),
            flusher: Arc::default(),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the stored bytes of `run`'s record, bypassing every check. For tests that
    /// damage records.
    #[doc(hidden)]
    pub fn put_raw_run_record(&self, run: &str, bytes: Vec<u8>) {
        let _serial = self
            .commit_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Not journaled: the last commit's entry must not be replayed over it.
        self.db.remove(JOURNAL_KEY).expect("sled remove failed");
        self.db
            .insert(run_key(run), bytes)
            .expect("sled insert failed");
    }

    /// The stored bytes of `run`'s record. For tests that damage records.
    #[doc(hidden)]
    pub fn raw_run_record(&self, run: &str) -> Option<Vec<u8>> {
        self.db
            .get(run_key(run))
            .expect("sled get failed")
            .map(|v| v.to_vec())
    }

    fn commit_now(&self, batch: WriteBatch) -> Result<()> {
        for op in batch.ops() {
            check_op(op)?;
        }
        let _serial = self
            .commit_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Fences first, under the commit lock that acquisitions take too: no lease changes
        // hands between the check and the batch.
        let mut epochs = Vec::new();
        for op in batch.ops() {
            if let Op::Fence { run, epoch } = op {
                check_fence(run, *epoch, self.epoch_now(run)?)?;
                epochs.push(run.as_str());
            }
        }
        // The epochs granted since the fenced runs' last commits go with this batch: every
        // batch fenced with an epoch holds it or follows one that did, and sled recovers a
        // prefix of its batches, so an epoch lost to a crash fenced nothing that survived it.
        let epochs: Vec<(String, u64)> = {
            let unwritten = self.unwritten_epochs();
            epochs
                .into_iter()
                .filter_map(|run| unwritten.get(run).map(|e| (run.to_owned(), *e)))
                .collect()
        };
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
        let mut staged = Staged {
            store: self,
            tree: &self.db,
            writes: BTreeMap::new(),
        };
        for op in batch.into_ops() {
            staged.apply(op)?;
        }
        for (run, epoch) in &epochs {
            staged
                .writes
                .insert(lease_key(run), Some(epoch.to_be_bytes().to_vec()));
        }
        let mut owners = self.values.owners();
        let (mut created, mut removed) = (Vec::new(), Vec::new());
        let result = self
            .sled_batch(staged.writes, &owners, &mut created, &mut removed)
            .and_then(|writes| self.write(writes));
        match result {
            Ok(()) => {
                self.values.committed(&mut owners, created, removed);
                self.index.committed(&item_ops);
                if !epochs.is_empty() {
                    // Still under the commit lock: no lease was granted since.
                    let mut unwritten = self.unwritten_epochs();
                    for (run, _) in &epochs {
                        unwritten.remove(run);
                    }
                }
            }
            Err(_) => self
                .values
                .discard(&created.iter().map(|(_, id)| *id).collect::<Vec<_>>()),
        }
        result
    }

    /// The sled writes of a staged batch, in order: a value of at least [`FILE_MIN`] bytes goes
    /// to a new file (`created`) and the tree keeps an empty value plus a reference to the file. The
    /// references of the entries written or removed that had one go (`removed`; their files
    /// are deleted after the next flush).
    fn sled_batch(
        &self,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        owners: &HashMap<Vec<u8>, Option<u64>>,
        created: &mut Vec<(Vec<u8>, u64)>,
        removed: &mut Vec<Vec<u8>>,
    ) -> Result<Writes> {
        let mut out = Writes::with_capacity(writes.len() + 1);
        for (key, value) in writes {
            if owners.contains_key(&key) {
                out.push((ref_key(&key), None));
                removed.push(key.clone());
            }
            // Run records are small, audit entries too: always in the tree.
            let may_be_file = !matches!(key.first(), Some(&RUN | &AUDIT));
            if may_be_file && let Some(v) = value.as_ref().filter(|v| v.len() >= FILE_MIN) {
                let id = self.db.generate_id().map_err(backend)?;
                let file = self.values.write(id, v)?;
                created.push((key.clone(), id));
                out.push((ref_key(&key), Some(file.encode().to_vec())));
                out.push((key, Some(Vec::new())));
                continue;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// Writes a staged batch so that a crash leaves all of it or none of it: through the
    /// journal (see [`journal`]) when it is small enough, else with sled's own batch.
    fn write(&self, writes: Writes) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let Some(entry) = journal::encode(&writes) else {
            // Its writes bypass the journal: the batch removes the last entry, which must not
            // be replayed over them.
            return self
                .db
                .apply_batch(journal::sled_batch(writes))
                .map_err(backend);
        };
        self.db.insert(JOURNAL_KEY, entry).map_err(backend)?;
        for (key, value) in writes {
            match value {
                Some(v) => self.db.insert(key, v).map(drop),
                None => self.db.remove(key).map(drop),
            }
            .map_err(backend)?;
        }
        Ok(())
    }

    /// The value of the entry under `key`, whose bytes in the tree are `stored`: those bytes,
    /// or, when empty, those of the entry's value file if it has one. Callers hold
    /// [`no_commit`](SledStore::no_commit) while they read, so that no file they are about to
    /// read is deleted.
    fn value(&self, key: &[u8], stored: ::sled::IVec) -> Result<Vec<u8>> {
        if !stored.is_empty() {
            return Ok(stored.to_vec());
        }
        let reference = ref_key(key);
        match self.db.get(&reference).map_err(backend)? {
            None => Ok(Vec::new()),
            Some(r) => {
                let file = FileRef::decode(&r).ok_or_else(|| corrupt_ref(&reference))?;
                self.values.read(&file)
            }
        }
    }

    /// The epochs granted and not written yet.
    fn unwritten_epochs(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.unwritten_epochs
            .epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The lease epoch of `run`: the last granted (0 before its first lease).
    fn epoch_now(&self, run: &str) -> Result<u64> {
        if let Some(epoch) = self.unwritten_epochs().get(run) {
            return Ok(*epoch);
        }
        match self.db.get(lease_key(run)).map_err(backend)? {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(&v[..])
                .map(u64::from_be_bytes)
                .map_err(|_| malformed_key(&lease_key(run))),
        }
    }

    /// Grants and returns `run`'s next lease epoch, serial with commits. It is written with
    /// the run's next fenced batch (see `commit_now`), so a lease that writes nothing costs
    /// no write, and one that does costs none of its own.
    fn bump_epoch(&self, run: &str) -> Result<u64> {
        let _serial = self
            .commit_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let epoch = self.epoch_now(run)? + 1;
        self.unwritten_epochs().insert(run.to_owned(), epoch);
        Ok(epoch)
    }

    /// Whether neither `run` nor a run of its subgraphs (`{run}/@..`) has a record.
    fn vacant(&self, run: &str) -> Result<bool> {
        let _read = self.no_commit();
        if self.db.contains_key(run_key(run)).map_err(backend)? {
            return Ok(false);
        }
        let children = run_key(&format!("{run}{}", crate::SUBGRAPH_MARK));
        Ok(self
            .db
            .scan_prefix(children)
            .next()
            .transpose()
            .map_err(backend)?
            .is_none())
    }

    /// Holds off commits while a multi-key read runs.
    fn no_commit(&self) -> RwLockReadGuard<'_, ()> {
        self.commit_lock
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn get_run_now(&self, run: &str) -> Result<Option<RunRecord>> {
        check_run_id(run)?;
        match self.db.get(run_key(run)).map_err(backend)? {
            Some(bytes) => decode_run(run, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn list_runs_now(&self, after: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let start = match after {
            Some(a) => Bound::Excluded(run_key(a)),
            None => Bound::Included(vec![RUN]),
        };
        let end = Bound::Excluded(vec![RUN + 1]);
        let _read = self.no_commit();
        let mut out = Vec::new();
        for item in self.db.range::<Vec<u8>, _>((start, end)).take(limit) {
            let (key, bytes) = item.map_err(backend)?;
            let run = std::str::from_utf8(&key[1..]).map_err(|_| StoreError::Corrupt {
                what: format!("the run key {:02x?}", &key[..]),
                source: crate::envelope::FormatError::Decode("the run id is not UTF-8".into()),
            })?;
            out.push(decode_run(run, &bytes)?);
        }
        Ok(out)
    }

    fn latest_checkpoint_now(&self, run: &str) -> Result<Option<(u64, Vec<u8>)>> {
        check_run_id(run)?;
        let _read = self.no_commit();
        match self.db.scan_prefix(run_prefix(CHECKPOINT, run)).next_back() {
            Some(item) => {
                let (key, bytes) = item.map_err(backend)?;
                Ok(Some((
                    key_u64(&key, key.len() - 8)?,
                    self.value(&key, bytes)?,
                )))
            }
            None => Ok(None),
        }
    }

    /// Up to `limit` entries of `range`, as (`number` of the key, value) pairs.
    fn collect<N>(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        limit: usize,
        number: impl Fn(&[u8]) -> Result<N>,
    ) -> Result<Vec<(N, Vec<u8>)>> {
        let _read = self.no_commit();
        let mut out = Vec::new();
        for item in self.db.range::<Vec<u8>, _>(range).take(limit) {
            let (key, bytes) = item.map_err(backend)?;
            out.push((number(&key)?, self.value(&key, bytes)?));
        }
        Ok(out)
    }
}

/// Completes the last batch written through the journal, if a crash interrupted it (see
/// [`journal`]), and removes its entry. A damaged entry is [`StoreError::Corrupt`]: the store
/// does not open half-read.
fn replay_journal(db: &::sled::Db) -> Result<()> {
    let Some(entry) = db.get(JOURNAL_KEY).map_err(backend)? else {
        return Ok(());
    };
    let writes = journal::decode(&entry).map_err(|source| StoreError::Corrupt {
        what: "the journal of the store's last commit".into(),
        source,
    })?;
    db.apply_batch(journal::sled_batch(writes))
        .map_err(backend)?;
    db.flush().map_err(backend)?;
    Ok(())
}

fn backend(e: ::sled::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// How long [`SledStore::open`] waits for a held file lock to be released.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Whether sled failed to open because another handle holds the file lock: sled 0.34.7
/// reports it as an `Io` error of kind `Other` whose message starts with "could not acquire
/// lock".
fn is_lock_error(e: &::sled::Error) -> bool {
    matches!(e, ::sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::Other
            && io.to_string().contains("could not acquire lock"))
}

fn open_error(path: &Path, e: ::sled::Error) -> StoreError {
    if is_lock_error(&e) {
        StoreError::Locked {
            path: path.display().to_string(),
        }
    } else {
        backend(e)
    }
}

/// A batch being staged: its writes so far, over the tree as it was. Range deletions remove
/// both the tree's keys and the keys the batch itself wrote earlier, so operations apply in
/// order.
struct Staged<'t> {
    store: &'t SledStore,
    tree: &'t ::sled::Tree,
    /// `None` removes the key.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Staged<'_> {
    fn apply(&mut self, op: Op) -> Result<()> {
        match op {
            Op::PutRun(record) => {
                let bytes = encode_run(&record)?;
                self.writes.insert(run_key(&record.run_id), Some(bytes));
            }
            Op::PutCheckpoint { run, step, bytes } => {
                self.writes.insert(checkpoint_key(&run, step), Some(bytes));
            }
            Op::PutBlob {
                run,
                field,
                version,
                bytes,
            } => {
                self.writes
                    .insert(blob_key(&run, field, version), Some(bytes));
            }
            Op::PutPendingWrite {
                run,
                step,
                task,
                bytes,
            } => {
                self.writes
                    .insert(pending_key(&run, step, task), Some(bytes));
            }
            Op::PutEvent { run, seq, bytes } => {
                self.writes.insert(event_key(&run, seq), Some(bytes));
            }
            Op::DeletePendingWrites { run, step } => self.remove_range(
                Bound::Included(pending_key(&run, 0, 0)),
                Bound::Included(pending_key(&run, step, u32::MAX)),
            )?,
            Op::DeleteCheckpointsBefore { run, step } => {
                if step > 0 {
                    self.remove_range(
                        Bound::Included(checkpoint_key(&run, 0)),
                        Bound::Excluded(checkpoint_key(&run, step)),
                    )?;
                }
            }
            Op::DeleteBlobsBefore {
                run,
                field,
                version,
            } => {
                if version > 0 {
                    self.remove_range(
                        Bound::Included(blob_key(&run, field, 0)),
                        Bound::Excluded(blob_key(&run, field, version)),
                    )?;
                }
            }
            Op::DeleteAfter { run, step } => {
                if step < u64::MAX {
                    self.remove_range(
                        Bound::Excluded(checkpoint_key(&run, step)),
                        Bound::Included(checkpoint_key(&run, u64::MAX)),
                    )?;
                    self.remove_range(
                        Bound::Included(pending_key(&run, step + 1, 0)),
                        Bound::Included(pending_key(&run, u64::MAX, u32::MAX)),
                    )?;
                    // Blob keys end with the version: drop the later ones of every field.
                    let prefix = run_prefix(BLOB, &run);
                    let version_at = prefix.len() + 4;
                    let mut later = Vec::new();
                    for key in self.tree.scan_prefix(&prefix).keys() {
                        let key = key.map_err(backend)?;
                        if key_u64(&key, version_at)? > step {
                            later.push(key.to_vec());
                        }
                    }
                    for (key, value) in self.writes.range_mut(prefix.clone()..) {
                        if !key.starts_with(&prefix) {
                            break;
                        }
                        if key_u64(key, version_at)? > step {
                            *value = None;
                        }
                    }
                    for key in later {
                        self.writes.insert(key, None);
                    }
                }
            }
            Op::Fence { .. } => {} // checked before staging
            Op::PutItem(item) => {
                let bytes = encode_item(&item)?;
                self.writes
                    .insert(item_key(&item.namespace, &item.key), Some(bytes));
            }
            Op::DeleteItem {
                namespace,
                key,
                if_expired_at,
            } => {
                let k = item_key(&namespace, &key);
                let delete = match if_expired_at {
                    None => true,
                    Some(now) => {
                        // The item as the batch left it so far, or as stored.
                        let current = match self.writes.get(&k) {
                            Some(v) => v.clone(),
                            None => match self.tree.get(&k).map_err(backend)? {
                                Some(stored) => Some(self.store.value(&k, stored)?),
                                None => None,
                            },
                        };
                        match current {
                            Some(bytes) => decode_item(&bytes)?.is_expired(now),
                            None => false,
                        }
                    }
                };
                if delete {
                    self.writes.insert(k, None);
                }
            }
            Op::PutAudit { run, record } => {
                let body = encode_body(&record)?;
                // The run's newest entry, as the batch left it so far or as stored.
                let prefix = run_prefix(AUDIT, &run);
                let staged = self
                    .writes
                    .range(audit_key(&run, 0)..=audit_key(&run, u64::MAX))
                    .next_back()
                    .map(|(k, v)| (k.clone(), v.clone()));
                let stored = match self.tree.scan_prefix(&prefix).next_back() {
                    Some(item) => {
                        let (k, v) = item.map_err(backend)?;
                        Some((k.to_vec(), Some(v.to_vec())))
                    }
                    None => None,
                };
                let last = match (staged, stored) {
                    (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
                    (a, b) => a.or(b),
                };
                let (seq, last_bytes) = match &last {
                    Some((k, v)) => (key_u64(k, prefix.len())? + 1, v.as_deref()),
                    None => (1, None),
                };
                let sealed = seal(&run, seq, last_bytes, &body);
                self.writes.insert(audit_key(&run, seq), Some(sealed));
            }
            Op::DeleteRun { run } => {
                self.writes.insert(run_key(&run), None);
                for tag in [CHECKPOINT, BLOB, PENDING, EVENT] {
                    self.remove_prefix(run_prefix(tag, &run))?;
                }
            }
        }
        Ok(())
    }

    fn remove_range(&mut self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<()> {
        for item in self
            .tree
            .range::<Vec<u8>, _>((start.clone(), end.clone()))
            .keys()
        {
            self.writes.insert(item.map_err(backend)?.to_vec(), None);
        }
        for (_, value) in self.writes.range_mut((start, end)) {
            *value = None;
        }
        Ok(())
    }

    fn remove_prefix(&mut self, prefix: Vec<u8>) -> Result<()> {
        for item in self.tree.scan_prefix(&prefix).keys() {
            self.writes.insert(item.map_err(backend)?.to_vec(), None);
        }
        for (key, value) in self.writes.range_mut(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            *value = None;
        }
        Ok(())
    }
}

impl CheckpointStore for SledStore {
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.commit_now(batch) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // The files whose references were removed before the flush go once it made the
            // removal durable.
            let removed = self.values.before_flush()?;
            let flushed = self.flusher.flush(&self.db).await;
            self.values.after_flush(removed, flushed.is_ok());
            flushed
        })
    }

    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>>> {
        Box::pin(async move { self.get_run_now(run) })
    }

    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>>> {
        Box::pin(async move { self.list_runs_now(after, limit) })
    }

    fn get_checkpoint<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let key = checkpoint_key(run, step);
            let _read = self.no_commit();
            match self.db.get(&key).map_err(backend)? {
                Some(stored) => self.value(&key, stored).map(Some),
                None => Ok(None),
            }
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>>> {
        Box::pin(async move { self.latest_checkpoint_now(run) })
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
            let (range, at) = checkpoint_range(run, after);
            self.collect(range, limit, |key| key_u64(key, at))
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
            let (range, at) = blob_range(run, field, from, to);
            self.collect(range, usize::MAX, |key| key_u64(key, at))
        })
    }

    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Vec<(u32, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let (range, at) = pending_range(run, step);
            self.collect(range, usize::MAX, |key| key_u32(key, at))
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
            let (range, at) = event_range(run, after);
            self.collect(range, limit, |key| key_u64(key, at))
        })
    }

    fn last_event<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            check_run_id(run)?;
            let prefix = run_prefix(EVENT, run);
            let _read = self.no_commit();
            match self.db.scan_prefix(&prefix).keys().next_back() {
                Some(key) => Ok(Some(key_u64(&key.map_err(backend)?, prefix.len())?)),
                None => Ok(None),
            }
        })
    }

    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let lease = self.leases.acquire(run, ttl, || self.bump_epoch(run))?;
            // Two lookups tell a new run: the engine then reads nothing before it starts.
            Ok(if self.vacant(run)? {
                lease.with_vacant_run()
            } else {
                lease
            })
        })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.leases
                .renew(lease, ttl, || self.epoch_now(lease.run()))
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
            let (range, at) = audit_range(run, after);
            self.collect(range, limit, |key| key_u64(key, at))
        })
    }

    fn audited_runs(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let mut runs = Vec::new();
            let _read = self.no_commit();
            let mut start = Bound::Included(vec![AUDIT]);
            let end = Bound::Excluded(vec![AUDIT + 1]);
            while let Some(item) = self.db.range::<Vec<u8>, _>((start, end.clone())).next() {
                let (key, _) = item.map_err(backend)?;
                let run = audit_key_run(&key)?;
                start = Bound::Excluded(audit_key(&run, u64::MAX));
                runs.push(run);
            }
            runs.sort();
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
            let k = item_key(namespace, key);
            let _read = self.no_commit();
            match self.db.get(&k).map_err(backend)? {
                Some(stored) => {
                    let item = decode_item(&self.value(&k, stored)?)?;
                    Ok((!item.is_expired(now_ms)).then_some(item))
                }
                None => Ok(None),
            }
        })
    }

    fn scan_items<'a>(&'a self, prefix: &'a Namespace) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let items = self.collect(item_range(prefix), usize::MAX, |_| Ok(()))?;
            items.iter().map(|(_, bytes)| decode_item(bytes)).collect()
        })
    }

    fn item_index(&self) -> Option<&ItemIndex> {
        Some(&self.index)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone + 'static>() {}
    is::<SledStore>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunStatus;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// The sled database under `dir`, opened by sled itself once the store dropped before it
    /// has let its lock go.
    fn raw_sled(dir: &Path) -> ::sled::Db {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ::sled::Config::new().path(dir).open() {
                Ok(db) => return db,
                Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("sled does not open {}: {e}", dir.display()),
            }
        }
    }

    fn step_batch(step: u64) -> WriteBatch {
        let mut record = RunRecord::new("run", RunStatus::Running, 1, 0);
        record.last_step = Some(step);
        let mut batch = WriteBatch::new();
        batch
            .put_run(record)
            .put_checkpoint("run", step, format!("step {step}").into_bytes())
            .delete_checkpoints_before("run", step);
        batch
    }

    fn last_step(store: &SledStore) -> Option<u64> {
        block_on(store.get_run("run")).unwrap().unwrap().last_step
    }

    #[test]
    fn small_batches_are_journaled_and_a_clean_close_clears_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        block_on(store.commit(step_batch(0))).unwrap();
        let entry = store.db.get(JOURNAL_KEY).unwrap().expect("a journal entry");
        let writes = journal::decode(&entry).unwrap();
        assert_eq!(
            writes.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![checkpoint_key("run", 0), run_key("run")],
            "the entry holds the batch's writes, in key order"
        );
        block_on(store.flush()).unwrap();
        drop(store);
        let db = raw_sled(dir.path());
        assert_eq!(db.get(JOURNAL_KEY).unwrap(), None);
    }

    #[test]
    fn a_batch_a_crash_interrupted_is_completed_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        block_on(store.commit(step_batch(0))).unwrap();
        block_on(store.flush()).unwrap();
        drop(store);
        // What a crash in the middle of the next batch leaves: its journal entry and the
        // first of its writes (the new checkpoint), not the others (the run record, the old
        // checkpoint's removal).
        let db = raw_sled(dir.path());
        let mut record = RunRecord::new("run", RunStatus::Running, 1, 0);
        record.last_step = Some(1);
        let writes: Writes = vec![
            (checkpoint_key("run", 0), None),
            (checkpoint_key("run", 1), Some(b"step 1".to_vec())),
            (run_key("run"), Some(encode_run(&record).unwrap())),
        ];
        db.insert(JOURNAL_KEY, journal::encode(&writes).unwrap())
            .unwrap();
        db.insert(checkpoint_key("run", 1), &b"step 1"[..]).unwrap();
        db.flush().unwrap();
        drop(db);

        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(last_step(&store), Some(1));
        assert_eq!(
            block_on(store.list_checkpoints("run", None, 10)).unwrap(),
            vec![(1, b"step 1".to_vec())]
        );
        assert_eq!(store.db.get(JOURNAL_KEY).unwrap(), None, "replayed once");
    }

    #[test]
    fn a_damaged_journal_entry_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open(dir.path()).unwrap());
        let db = raw_sled(dir.path());
        db.insert(JOURNAL_KEY, &[1, 0xde, 0xad][..]).unwrap();
        db.flush().unwrap();
        drop(db);
        match SledStore::open(dir.path()) {
            Err(StoreError::Corrupt { what, .. }) => assert!(what.contains("journal"), "{what}"),
            other => panic!("a damaged journal entry opened as {other:?}"),
        }
    }

    #[test]
    fn writes_that_bypass_the_journal_clear_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // A batch too large for the journal goes through sled's own batch.
        block_on(store.commit(step_batch(0))).unwrap();
        assert!(store.db.get(JOURNAL_KEY).unwrap().is_some());
        let mut large = step_batch(1);
        large.put_checkpoint("run", 1, vec![1; journal::JOURNAL_MAX]);
        block_on(store.commit(large)).unwrap();
        assert_eq!(store.db.get(JOURNAL_KEY).unwrap(), None);
        // So does a raw record (for tests).
        block_on(store.commit(step_batch(2))).unwrap();
        assert!(store.db.get(JOURNAL_KEY).unwrap().is_some());
        store.put_raw_run_record("other", b"raw".to_vec());
        assert_eq!(store.db.get(JOURNAL_KEY).unwrap(), None);
        block_on(store.flush()).unwrap();
        drop(store);
        // Nothing older is replayed over them.
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(last_step(&store), Some(2));
        assert_eq!(store.raw_run_record("other"), Some(b"raw".to_vec()));
    }

    #[test]
    fn per_run_keys_of_prefix_sharing_runs_do_not_overlap() {
        let a = run_prefix(CHECKPOINT, "run");
        let b = checkpoint_key("run2", 0);
        assert!(!b.starts_with(&a));
        assert!(!checkpoint_key("run", 0).starts_with(&run_prefix(CHECKPOINT, "run2")));
        assert_eq!(checkpoint_key("r", 1), b"C\x00\x01r\0\0\0\0\0\0\0\x01");
        assert_eq!(
            pending_key("r", 2, 3),
            b"P\x00\x01r\0\0\0\0\0\0\0\x02\0\0\0\x03"
        );
        assert_eq!(
            blob_key("r", 4, 5),
            b"B\x00\x01r\0\0\0\x04\0\0\0\0\0\0\0\x05"
        );
    }

    #[test]
    fn keys_decode_or_fail_without_panicking() {
        assert_eq!(key_u64(&checkpoint_key("r", 9), 4).unwrap(), 9);
        assert!(key_u64(b"short", 4).is_err());
        assert!(key_u32(b"short", usize::MAX - 2).is_err());
    }
}
