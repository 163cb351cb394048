//! The embedded redb store (feature `redb`).

mod create;

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redb::{
    Builder, Database, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition,
    TableHandle, WriteTransaction,
};

use crate::audit::{encode_body, seal};
use crate::envelope::FormatError;
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

/// Every record of the store, keyed as the sled store keys them (`crate::keys`).
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("agentgraph");
/// What the file is: [`FORMAT`] under [`FORMAT_KEY`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("agentgraph.meta");
const FORMAT_KEY: &str = "format";
/// The layout of this store's tables, version 1.
const FORMAT: &[u8] = b"agentgraph-redb/1";
/// redb's page cache.
const CACHE_BYTES: usize = 64 << 20;

/// A [`CheckpointStore`] in an embedded [redb](https://docs.rs/redb/5.0.0) database: one file,
/// one process at a time, and every [`flush`](CheckpointStore::flush) an `fsync`ed commit.
///
/// # Durability
///
/// - [`commit`](CheckpointStore::commit) applies a [`WriteBatch`] as one redb write transaction
///   with [`redb::Durability::None`]: atomic and visible to every read at once, but not
///   written to the file yet.
/// - [`flush`](CheckpointStore::flush) commits a redb transaction with
///   [`redb::Durability::Immediate`] and two-phase commit (the new state is written and
///   `fsync`ed, then the commit slot is switched and `fsync`ed again). When it returns, every
///   batch committed before it is on the disk: **it survives a killed process, a kernel crash
///   and a power loss** (as far as the disk honours `fsync`). A flush with nothing committed
///   since the last one does nothing.
/// - After any crash the store opens at its last flush, each batch there whole or not at all.
///   Batches committed after the last flush are lost together, newest first, never one
///   without the batches before it.
/// - `commit` and `flush` do their I/O on the calling thread (a flush waits for its `fsync`s,
///   a few hundred microseconds on an SSD): the engine's `Async` writer calls them on tokio's
///   blocking pool.
///
/// What the engine's durability modes (`RunConfig::durability`) get from it:
///
/// | mode | the engine flushes | after a power cut |
/// |---|---|---|
/// | `Sync` | after each step, before the next starts (`CheckpointSaved` follows the flush) | every acknowledged step is there; the run resumes from the last one |
/// | `Async` | after each group of steps its background writer commits | every group whose flush returned is there; the steps after it are computed again |
/// | `Exit` | once, when the run ends (completes, fails, is interrupted) | the run as it ended, if that flush returned |
///
/// A flush makes every batch committed before it durable, whichever run committed it: a run
/// may be found further along than its own last flush, never behind it.
///
/// # One process
///
/// redb locks the whole file while it is open: another process, or another `RedbStore` of
/// this process, fails to open it with [`StoreError::Locked`]. Run leases
/// ([`acquire_lease`](CheckpointStore::acquire_lease)) are therefore held in the process: a
/// dropped [`Lease`] is released at once, and reopening the store frees every run. Lease
/// epochs are stored in the file with the batches they fence: they keep growing across
/// reopening. Clones share the same database and leases.
///
/// # Creation and damage
///
/// [`open`](RedbStore::open) creates a new store in a temporary file next to `path`
/// (`<name>.creating.new`, under a lock on `<name>.creating`), `fsync`s it, renames it to
/// `path` and `fsync`s the directory: a crash or power cut while a store is being created
/// leaves either no store at `path` (the next `open` creates it, discarding the unfinished
/// temporary file) or a complete one, never a file that cannot be opened. (redb creating a database in place writes its header before
/// its magic number, and a file cut between the two is refused for ever as "not a redb
/// database".)
///
/// Every open verifies the checksum of each page of the file
/// ([`Builder::set_check_integrity_on_open`]), which reads the whole file once: a file that
/// is not a redb database, a redb database of another program, or a damaged one fails to open
/// with [`StoreError::Corrupt`] naming the file, and is never half-read. A run record that
/// does not decode is [`StoreError::Corrupt`] naming the run.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{CheckpointStore, RedbStore, RunRecord, RunStatus, WriteBatch};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let dir = tempfile::tempdir()?;
///     let path = dir.path().join("runs.redb");
///     let store = RedbStore::open(&path)?;
///     let mut batch = WriteBatch::new();
///     batch
///         .put_run(RunRecord::new("run-1", RunStatus::Running, 7, 0))
///         .put_checkpoint("run-1", 0, b"step 0".to_vec());
///     store.commit(batch).await?;
///     store.flush().await?; // fsynced
///     drop(store);
///
///     let store = RedbStore::open(&path)?;
///     assert_eq!(store.get_checkpoint("run-1", 0).await?, Some(b"step 0".to_vec()));
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: Option<PathBuf>,
    leases: Holders,
    /// Whether a batch was committed since the last flush.
    unflushed: Arc<AtomicBool>,
    /// The vectors of the items, for semantic searches.
    index: Arc<ItemIndex>,
}

impl RedbStore {
    /// Opens the store in file `path`, creating it (and its directory) if there is none. An
    /// empty file is taken as no store, and replaced by a new one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process (or another `RedbStore` of this process)
    /// has it open. [`StoreError::Corrupt`] when the file is not a store of this format or is
    /// damaged. [`StoreError::Backend`] for I/O errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{RedbStore, StoreError};
    /// # fn main() -> agentgraph_checkpoint::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("runs.redb");
    /// let store = RedbStore::open(&path)?;
    /// assert_eq!(store.path(), Some(path.as_path()));
    /// assert!(matches!(RedbStore::open(&path), Err(StoreError::Locked { .. })));
    ///
    /// std::fs::write(dir.path().join("notes.txt"), "not a store").unwrap();
    /// assert!(matches!(
    ///     RedbStore::open(dir.path().join("notes.txt")),
    ///     Err(StoreError::Corrupt { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        let path = path.as_ref();
        create::ensure(path, &builder())?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let db = builder()
            .create_with_backend(::redb::backends::FileBackend::new(file))
            .map_err(|e| open_error(&path.display().to_string(), e))?;
        RedbStore::from_database(db, Some(path.to_path_buf()))
    }

    /// Opens the store held by a redb storage backend, creating it if the backend is empty:
    /// for tests that simulate the disk (a power cut drops what was not synced), or a store
    /// kept somewhere else than a file.
    ///
    /// Unlike [`open`](RedbStore::open), a store created this way is created in place: a
    /// crash while it is being created can leave a backend that fails to open with
    /// [`StoreError::Corrupt`] (whose message says so); start again from an empty backend.
    ///
    /// # Errors
    ///
    /// As [`open`](RedbStore::open) ([`StoreError::Locked`] only if the backend locks).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::{CheckpointStore, RedbStore, WriteBatch};
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> agentgraph_checkpoint::Result<()> {
    ///     let store = RedbStore::with_backend(redb::backends::InMemoryBackend::new())?;
    ///     let mut batch = WriteBatch::new();
    ///     batch.put_checkpoint("run-1", 0, vec![1]);
    ///     store.commit(batch).await?;
    ///     store.flush().await?;
    ///     assert_eq!(store.path(), None);
    ///     assert_eq!(store.get_checkpoint("run-1", 0).await?, Some(vec![1]));
    ///     Ok(())
    /// }
    /// ```
    pub fn with_backend(backend: impl StorageBackend) -> Result<RedbStore> {
        let db = builder()
            .create_with_backend(backend)
            .map_err(|e| open_error("the redb backend", e))?;
        RedbStore::from_database(db, None)
    }

    /// The store's file, when it was opened from one.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> agentgraph_checkpoint::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = agentgraph_checkpoint::RedbStore::open(dir.path().join("s.redb"))?;
    /// assert!(store.path().unwrap().ends_with("s.redb"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn from_database(db: Database, path: Option<PathBuf>) -> Result<RedbStore> {
        let what = || match &path {
            Some(p) => format!("the redb file {}", p.display()),
            None => "the redb backend".to_owned(),
        };
        init(&db, &what())?;
        Ok(RedbStore {
            db: Arc::new(db),
            path,
            leases: Holders::default(),
            unflushed: Arc::default(),
            index: Arc::default(),
        })
    }

    /// Replaces the stored bytes of `run`'s record, bypassing every check. For tests that
    /// damage records.
    #[doc(hidden)]
    pub fn put_raw_run_record(&self, run: &str, bytes: Vec<u8>) {
        let txn = self.db.begin_write().expect("redb begin_write failed");
        {
            let mut table = txn.open_table(DATA).expect("redb open_table failed");
            table
                .insert(&run_key(run)[..], &bytes[..])
                .expect("redb insert failed");
        }
        txn.commit().expect("redb commit failed");
    }

    /// The stored bytes of `run`'s record. For tests that damage records.
    #[doc(hidden)]
    pub fn raw_run_record(&self, run: &str) -> Option<Vec<u8>> {
        self.get_raw(&run_key(run)).expect("redb read failed")
    }

    fn write_txn(&self, durability: ::redb::Durability) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(durability).map_err(backend)?;
        if matches!(durability, ::redb::Durability::Immediate) {
            txn.set_two_phase_commit(true);
        }
        Ok(txn)
    }

    fn commit_now(&self, batch: WriteBatch) -> Result<()> {
        for op in batch.ops() {
            check_op(op)?;
        }
        // Encoded before the transaction: nothing fails half-way for want of an encoding.
        let mut records = Vec::new();
        for op in batch.ops() {
            if let Op::PutRun(record) = op {
                records.push(encode_run(record)?);
            }
        }
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
        let txn = self.write_txn(::redb::Durability::None)?;
        {
            let mut table = txn.open_table(DATA).map_err(backend)?;
            // Fences first, in the transaction that applies the batch: leases are taken by
            // write transactions too, which redb runs one at a time.
            for op in batch.ops() {
                if let Op::Fence { run, epoch } = op {
                    check_fence(run, *epoch, epoch_in(&table, run)?)?;
                }
            }
            let mut records = records.into_iter();
            for op in batch.into_ops() {
                apply(&mut table, op, &mut records)?;
            }
        }
        // An error above drops the transaction: nothing of the batch is applied.
        txn.commit().map_err(backend)?;
        self.unflushed.store(true, Ordering::Release);
        self.index.committed(&item_ops);
        Ok(())
    }

    fn flush_now(&self) -> Result<()> {
        if !self.unflushed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // An empty transaction with `Immediate` durability makes every `None` commit before
        // it durable.
        let result = self
            .write_txn(::redb::Durability::Immediate)
            .and_then(|txn| txn.commit().map_err(backend));
        if result.is_err() {
            self.unflushed.store(true, Ordering::Release);
        }
        result
    }

    /// The stored lease epoch of `run` (0 before its first lease).
    fn epoch_now(&self, run: &str) -> Result<u64> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        epoch_in(&table, run)
    }

    /// Stores and returns `run`'s next lease epoch.
    fn bump_epoch(&self, run: &str) -> Result<u64> {
        // Not flushed: every batch fenced with the epoch is committed after it, and a crash
        // keeps a prefix of the commits, so an epoch lost to a crash fenced nothing that
        // survived it.
        let txn = self.write_txn(::redb::Durability::None)?;
        let epoch = {
            let mut table = txn.open_table(DATA).map_err(backend)?;
            let epoch = epoch_in(&table, run)? + 1;
            table
                .insert(&lease_key(run)[..], &epoch.to_be_bytes()[..])
                .map_err(backend)?;
            epoch
        };
        txn.commit().map_err(backend)?;
        self.unflushed.store(true, Ordering::Release);
        Ok(epoch)
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        Ok(table.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    /// Up to `limit` entries of `range` (in one snapshot), as (`number` of the key, value).
    fn collect<N>(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        limit: usize,
        number: impl Fn(&[u8]) -> Result<N>,
    ) -> Result<Vec<(N, Vec<u8>)>> {
        if is_empty_range(&range) {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range(bounds(&range)).map_err(backend)?.take(limit) {
            let (key, value) = item.map_err(backend)?;
            out.push((number(key.value())?, value.value().to_vec()));
        }
        Ok(out)
    }

    /// The last entry of `range`.
    fn last_in(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(DATA).map_err(backend)?;
        let mut iter = table.range(bounds(&range)).map_err(backend)?;
        match iter.next_back() {
            Some(item) => {
                let (key, value) = item.map_err(backend)?;
                Ok(Some((key.value().to_vec(), value.value().to_vec())))
            }
            None => Ok(None),
        }
    }

    fn list_runs_now(&self, after: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let start = match after {
            Some(a) => Bound::Excluded(run_key(a)),
            None => Bound::Included(vec![RUN]),
        };
        let raw = self.collect((start, Bound::Excluded(vec![RUN + 1])), limit, |key| {
            Ok(key.to_vec())
        })?;
        raw.into_iter()
            .map(|(key, bytes)| {
                let run = std::str::from_utf8(&key[1..]).map_err(|_| StoreError::Corrupt {
                    what: format!("the run key {:02x?}", &key[..]),
                    source: FormatError::Decode("the run id is not UTF-8".into()),
                })?;
                decode_run(run, &bytes)
            })
            .collect()
    }
}

/// The builder every store opens with.
fn builder() -> Builder {
    let mut builder = Builder::new();
    builder
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true);
    builder
}

/// Writes the format marker into a new database, or checks it in an existing one, and makes
/// sure the data table exists.
fn init(db: &Database, what: &str) -> Result<()> {
    let foreign = |found: Vec<u8>| StoreError::Corrupt {
        what: format!("{what} (not an agentgraph store: another program's redb database)"),
        source: FormatError::Foreign { found },
    };
    let txn = db.begin_read().map_err(backend)?;
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(backend)?
        .map(|t| t.name().to_owned())
        .collect();
    let format = match txn.open_table(META) {
        Ok(table) => table
            .get(FORMAT_KEY)
            .map_err(backend)?
            .map(|v| v.value().to_vec()),
        Err(::redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(foreign(e.to_string().into_bytes())),
    };
    drop(txn);
    match format {
        Some(f) if f == FORMAT => Ok(()),
        Some(f) => Err(StoreError::Corrupt {
            what: format!("{what} (an agentgraph store of another format)"),
            source: FormatError::Foreign { found: f },
        }),
        None if tables.is_empty() => {
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_two_phase_commit(true);
            {
                let mut meta = txn.open_table(META).map_err(backend)?;
                meta.insert(FORMAT_KEY, FORMAT).map_err(backend)?;
                txn.open_table(DATA).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        }
        None => Err(foreign(tables.join(",").into_bytes())),
    }
}

/// The stored lease epoch of `run` in `table` (0 before its first lease).
fn epoch_in(table: &impl ReadableTable<&'static [u8], &'static [u8]>, run: &str) -> Result<u64> {
    let key = lease_key(run);
    match table.get(&key[..]).map_err(backend)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(u64::from_be_bytes)
            .map_err(|_| malformed_key(&key)),
    }
}

type Table<'t> = ::redb::Table<'t, &'static [u8], &'static [u8]>;

/// Applies one operation of a batch; `records` are the encoded run records, in batch order.
fn apply(table: &mut Table<'_>, op: Op, records: &mut impl Iterator<Item = Vec<u8>>) -> Result<()> {
    let mut put = |key: Vec<u8>, bytes: &[u8]| -> Result<()> {
        table.insert(&key[..], bytes).map_err(backend)?;
        Ok(())
    };
    match op {
        Op::PutRun(record) => {
            let bytes = records.next().expect("one encoding per run record");
            put(run_key(&record.run_id), &bytes)?;
        }
        Op::PutCheckpoint { run, step, bytes } => put(checkpoint_key(&run, step), &bytes)?,
        Op::PutBlob {
            run,
            field,
            version,
            bytes,
        } => put(blob_key(&run, field, version), &bytes)?,
        Op::PutPendingWrite {
            run,
            step,
            task,
            bytes,
        } => put(pending_key(&run, step, task), &bytes)?,
        Op::PutEvent { run, seq, bytes } => put(event_key(&run, seq), &bytes)?,
        Op::DeletePendingWrites { run, step } => remove(
            table,
            (
                Bound::Included(pending_key(&run, 0, 0)),
                Bound::Included(pending_key(&run, step, u32::MAX)),
            ),
            |_| Ok(true),
        )?,
        Op::DeleteCheckpointsBefore { run, step } => remove(
            table,
            (
                Bound::Included(checkpoint_key(&run, 0)),
                Bound::Excluded(checkpoint_key(&run, step)),
            ),
            |_| Ok(true),
        )?,
        Op::DeleteBlobsBefore {
            run,
            field,
            version,
        } => remove(
            table,
            (
                Bound::Included(blob_key(&run, field, 0)),
                Bound::Excluded(blob_key(&run, field, version)),
            ),
            |_| Ok(true),
        )?,
        Op::DeleteAfter { run, step } => {
            if step < u64::MAX {
                remove(
                    table,
                    (
                        Bound::Excluded(checkpoint_key(&run, step)),
                        Bound::Included(checkpoint_key(&run, u64::MAX)),
                    ),
                    |_| Ok(true),
                )?;
                remove(
                    table,
                    (
                        Bound::Included(pending_key(&run, step + 1, 0)),
                        Bound::Included(pending_key(&run, u64::MAX, u32::MAX)),
                    ),
                    |_| Ok(true),
                )?;
                // Blob keys end with the version: drop the later ones of every field.
                let prefix = run_prefix(BLOB, &run);
                let version_at = prefix.len() + 4;
                remove(table, prefix_range(prefix), |key| {
                    Ok(key_u64(key, version_at)? > step)
                })?;
            }
        }
        Op::PutAudit { run, record } => {
            let body = encode_body(&record)?;
            let (range, at) = audit_range(&run, None);
            let last = match table.range(bounds(&range)).map_err(backend)?.next_back() {
                Some(item) => {
                    let (key, value) = item.map_err(backend)?;
                    Some((key_u64(key.value(), at)?, value.value().to_vec()))
                }
                None => None,
            };
            let seq = last.as_ref().map_or(1, |(seq, _)| seq + 1);
            let sealed = seal(&run, seq, last.as_ref().map(|(_, b)| b.as_slice()), &body);
            table
                .insert(&audit_key(&run, seq)[..], &sealed[..])
                .map_err(backend)?;
        }
        Op::DeleteRun { run } => {
            table.remove(&run_key(&run)[..]).map_err(backend)?;
            for tag in [CHECKPOINT, BLOB, PENDING, EVENT] {
                remove(table, prefix_range(run_prefix(tag, &run)), |_| Ok(true))?;
            }
        }
        Op::Fence { .. } => {} // checked before
        Op::PutItem(item) => {
            let bytes = encode_item(&item)?;
            put(item_key(&item.namespace, &item.key), &bytes)?;
        }
        Op::DeleteItem {
            namespace,
            key,
            if_expired_at,
        } => {
            let k = item_key(&namespace, &key);
            let delete = match if_expired_at {
                None => true,
                Some(now) => match table.get(&k[..]).map_err(backend)? {
                    Some(v) => decode_item(v.value())?.is_expired(now),
                    None => false,
                },
            };
            if delete {
                table.remove(&k[..]).map_err(backend)?;
            }
        }
    }
    Ok(())
}

/// Removes the entries of `range` whose key `which` picks.
fn remove(
    table: &mut Table<'_>,
    range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    which: impl Fn(&[u8]) -> Result<bool>,
) -> Result<()> {
    if is_empty_range(&range) {
        return Ok(());
    }
    let mut keys = Vec::new();
    for item in table.range(bounds(&range)).map_err(backend)? {
        let (key, _) = item.map_err(backend)?;
        if which(key.value())? {
            keys.push(key.value().to_vec());
        }
    }
    for key in keys {
        table.remove(&key[..]).map_err(backend)?;
    }
    Ok(())
}

/// The keys starting with `prefix` (every prefix here ends before a fixed-width tail, so a
/// key of the prefix is never `0xff`-padded past it).
fn prefix_range(prefix: Vec<u8>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut end = prefix.clone();
    // Run prefixes start with a tag byte below 0xff, so some byte can be incremented.
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix), Bound::Unbounded)
}

/// A range of owned keys as redb borrows it.
fn bounds(range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    fn one(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(k) => Bound::Included(&k[..]),
            Bound::Excluded(k) => Bound::Excluded(&k[..]),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (one(&range.0), one(&range.1))
}

/// Whether `range` holds no key (redb, as `BTreeMap`, refuses reversed ranges).
fn is_empty_range(range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> bool {
    match range {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

fn backend(e: impl Into<::redb::Error>) -> StoreError {
    match e.into() {
        ::redb::Error::Corrupted(reason) => StoreError::Corrupt {
            what: "the redb store".to_owned(),
            source: FormatError::Decode(reason),
        },
        e => StoreError::Backend(Box::new(e)),
    }
}

/// The error of an open of `what` that failed.
fn open_error(what: &str, e: ::redb::DatabaseError) -> StoreError {
    use ::redb::{DatabaseError, StorageError};
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Locked {
                path: what.to_owned(),
            }
        }
        DatabaseError::Storage(StorageError::Io(io)) if io.kind() == io::ErrorKind::InvalidData => {
            StoreError::Corrupt {
                what: format!(
                    "{what} (not a redb database; a store created in place by \
                     `RedbStore::with_backend` is left so by a crash during its creation)"
                ),
                source: FormatError::Decode(io.to_string()),
            }
        }
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == io::ErrorKind::UnexpectedEof =>
        {
            StoreError::Corrupt {
                what: format!("{what} (a truncated redb database)"),
                source: FormatError::Decode(io.to_string()),
            }
        }
        DatabaseError::Storage(StorageError::Corrupted(reason)) => StoreError::Corrupt {
            what: format!("{what} (a damaged redb database)"),
            source: FormatError::Decode(reason),
        },
        DatabaseError::UpgradeRequired(version) => StoreError::Corrupt {
            what: format!("{what} (a redb database of file format {version})"),
            source: FormatError::Decode(
                "written by an older redb; upgrade the file with redb's tools".into(),
            ),
        },
        e => StoreError::Backend(Box::new(e)),
    }
}

impl CheckpointStore for RedbStore {
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.commit_now(batch) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.flush_now() })
    }

    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>>> {
        Box::pin(async move {
            check_run_id(run)?;
            match self.get_raw(&run_key(run))? {
                Some(bytes) => decode_run(run, &bytes).map(Some),
                None => Ok(None),
            }
        })
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
            self.get_raw(&checkpoint_key(run, step))
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            check_run_id(run)?;
            match self.last_in(prefix_range(run_prefix(CHECKPOINT, run)))? {
                Some((key, bytes)) => Ok(Some((key_u64(&key, key.len() - 8)?, bytes))),
                None => Ok(None),
            }
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
            let at = prefix.len();
            match self.last_in(prefix_range(prefix))? {
                Some((key, _)) => Ok(Some(key_u64(&key, at)?)),
                None => Ok(None),
            }
        })
    }

    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move { self.leases.acquire(run, ttl, || self.bump_epoch(run)) })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.leases
                .renew(lease, ttl, || self.epoch_now(lease.run()))
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
            let txn = self.db.begin_read().map_err(backend)?;
            let table = txn.open_table(DATA).map_err(backend)?;
            let mut runs = Vec::new();
            let mut start = Bound::Included(vec![AUDIT]);
            let end = Bound::Excluded(vec![AUDIT + 1]);
            loop {
                let range = (start.clone(), end.clone());
                let next = table.range(bounds(&range)).map_err(backend)?.next();
                let Some(item) = next else { break };
                let (key, _) = item.map_err(backend)?;
                let run = audit_key_run(key.value())?;
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
            match self.get_raw(&item_key(namespace, key))? {
                Some(bytes) => {
                    let item = decode_item(&bytes)?;
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

    fn release_lease(&self, lease: Lease) -> BoxFuture<'_, Result<()>> {
        drop(lease);
        Box::pin(async { Ok(()) })
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone + 'static>() {}
    is::<RedbStore>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_after_the_prefix() {
        let (start, end) = prefix_range(vec![b'C', 0, 1, b'r']);
        assert_eq!(start, Bound::Included(vec![b'C', 0, 1, b'r']));
        assert_eq!(end, Bound::Excluded(vec![b'C', 0, 1, b's']));
        let (_, end) = prefix_range(vec![b'C', 0, 1, 0xff]);
        assert_eq!(end, Bound::Excluded(vec![b'C', 0, 2]));
    }
}
