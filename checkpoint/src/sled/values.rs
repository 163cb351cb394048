//! Large values of a [`SledStore`](super::SledStore), each kept in a file of its own.
//!
//! sled 0.34 keeps values inside the leaves of its tree (up to 16 entries a leaf) and logs a
//! whole leaf again at every tenth change to it and at each split, and a leaf larger than a
//! quarter of a log segment (128 KiB by default) goes to a file of sled's own each time. A
//! 200 KiB field value followed by the small entries of the steps after it was written out
//! four or five times over (measured: five 210 KB files per run of `big_state_append`, about
//! half of the run's time).
//!
//! So a checkpoint, blob or pending write of at least [`FILE_MIN`] bytes is written once, to
//! `values/<id>` in the store's directory (`id` from sled's `generate_id`, 16 hex digits), and
//! the tree holds an empty value under the entry's key plus a reference (file id, length,
//! CRC-32) under [`ref_key`]. Writing a file before the batch that refers to it, and deleting
//! it only after a flush made its reference's removal durable, keeps every batch atomic: after
//! a crash a reference always finds its file. A file no reference names (a crash between the
//! two) is deleted when the store is next opened.
//!
//! New files are synced (`fdatasync`, then the directory) by a background thread shortly after
//! they are written, off the commit and flush path; a failed sync fails the next flush.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::envelope::FormatError;
use crate::error::{Result, StoreError};

/// The smallest value kept in a file. Chosen, not tuned: a file costs a create, a sync and a
/// delete; in the tree a value is copied again at each rewrite of its leaf, which matters once
/// it is a good part of a leaf.
pub(super) const FILE_MIN: usize = 64 * 1024;

/// The key tag of file references: `F` + the key of the entry the file holds the value of.
pub(super) const FILE_REF: u8 = b'F';

/// The key of the file reference of the entry under `key`.
pub(super) fn ref_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(FILE_REF);
    k.extend_from_slice(key);
    k
}

/// Where a value lives: file `id`, of `len` bytes whose CRC-32 is `crc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileRef {
    pub(super) id: u64,
    len: u64,
    crc: u32,
}

impl FileRef {
    const LEN: usize = 20;

    pub(super) fn encode(&self) -> [u8; FileRef::LEN] {
        let mut out = [0; FileRef::LEN];
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..16].copy_from_slice(&self.len.to_le_bytes());
        out[16..].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<FileRef> {
        let bytes: &[u8; FileRef::LEN] = bytes.try_into().ok()?;
        let (id, rest) = bytes.split_at(8);
        let (len, crc) = rest.split_at(8);
        Some(FileRef {
            id: u64::from_le_bytes(id.try_into().ok()?),
            len: u64::from_le_bytes(len.try_into().ok()?),
            crc: u32::from_le_bytes(crc.try_into().ok()?),
        })
    }
}

/// The value files of one store: their directory, their bookkeeping and their syncer.
#[derive(Debug)]
pub(super) struct ValueFiles {
    dir: PathBuf,
    /// The keys of the entries whose values are in files, with the file's id (`None` for a
    /// reference that does not decode), as the tree says: a commit finds the files of the
    /// values it replaces or removes here rather than in the tree. Changed by commits only.
    owners: Mutex<HashMap<Vec<u8>, Option<u64>>>,
    /// Files whose references committed batches removed: deleted once a flush made the
    /// removal durable.
    doomed: Mutex<Vec<u64>>,
    /// Sends new files to the syncer thread, started with the first file.
    syncer: Mutex<Option<Sender<u64>>>,
    /// The first failure of the syncer, reported by the next flush.
    sync_failure: Arc<Mutex<Option<std::io::Error>>>,
}

impl ValueFiles {
    /// The files of the store in `db` at `path`; deletes the files no reference names (left
    /// by a crash between writing a file and committing its reference, or between a
    /// reference's removal and the flush after it).
    pub(super) fn open(path: &Path, db: &::sled::Db) -> Result<ValueFiles> {
        let dir = path.join("values");
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut owners = HashMap::new();
        for item in db.scan_prefix([FILE_REF]) {
            let (key, value) = item.map_err(super::backend)?;
            // A reference that does not decode stays: reading its entry reports it.
            owners.insert(key[1..].to_vec(), FileRef::decode(&value).map(|r| r.id));
        }
        let ids: HashSet<u64> = owners.values().flatten().copied().collect();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let id = name.to_str().and_then(parse_id);
            if id.is_some_and(|id| !ids.contains(&id)) {
                remove(&entry.path()).map_err(io)?;
            }
        }
        Ok(ValueFiles {
            dir,
            owners: Mutex::new(owners),
            doomed: Mutex::default(),
            syncer: Mutex::default(),
            sync_failure: Arc::default(),
        })
    }

    /// The entries whose values are in files (see `owners`). Commits hold it while they
    /// stage, under the commit lock.
    pub(super) fn owners(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Option<u64>>> {
        lock(&self.owners)
    }

    fn path(&self, id: u64) -> PathBuf {
        file_path(&self.dir, id)
    }

    /// Writes `bytes` to the new file `id`.
    pub(super) fn write(&self, id: u64, bytes: &[u8]) -> Result<FileRef> {
        let path = self.path(id);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        if let Err(e) = file.write_all(bytes) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io(e));
        }
        Ok(FileRef {
            id,
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
        })
    }

    /// Deletes files written for a batch that was not committed.
    pub(super) fn discard(&self, ids: &[u64]) {
        for id in ids {
            // A file left behind is deleted when the store is next opened.
            let _ = remove(&self.path(*id));
        }
    }

    /// Records a committed batch in `owners`: it removed the references of the entries
    /// `removed` (their files go after the next flush), then referred the entries `created`
    /// to new files.
    pub(super) fn committed(
        &self,
        owners: &mut HashMap<Vec<u8>, Option<u64>>,
        created: Vec<(Vec<u8>, u64)>,
        removed: Vec<Vec<u8>>,
    ) {
        let mut doomed = Vec::new();
        for key in removed {
            doomed.extend(owners.remove(&key).flatten());
        }
        if !doomed.is_empty() {
            lock(&self.doomed).extend(doomed);
        }
        let mut new = Vec::with_capacity(created.len());
        for (key, id) in created {
            owners.insert(key, Some(id));
            new.push(id);
        }
        if !new.is_empty() {
            self.sync(new);
        }
    }

    /// Hands `ids` to the syncer, starting it if need be.
    fn sync(&self, ids: Vec<u64>) {
        let mut syncer = lock(&self.syncer);
        let sender = syncer.get_or_insert_with(|| {
            let (sender, receiver) = std::sync::mpsc::channel();
            let (dir, failure) = (self.dir.clone(), self.sync_failure.clone());
            let spawned = std::thread::Builder::new()
                .name("agentgraph-sled-sync".to_owned())
                .spawn(move || sync_files(&dir, &receiver, &failure));
            if let Err(e) = spawned {
                lock(&self.sync_failure).get_or_insert(e);
            }
            sender
        });
        for id in ids {
            // The receiver only goes if the thread could not start, which is recorded.
            let _ = sender.send(id);
        }
    }

    /// Before a flush: takes the files whose references were removed by the batches committed
    /// so far, and reports a failed background sync.
    pub(super) fn before_flush(&self) -> Result<Vec<u64>> {
        if let Some(e) = lock(&self.sync_failure).take() {
            return Err(StoreError::Backend(
                format!("a value file of the store could not be synced: {e}").into(),
            ));
        }
        Ok(std::mem::take(&mut *lock(&self.doomed)))
    }

    /// After a flush made the removal of their references durable: deletes the files `ids`.
    /// When the flush failed, keeps them for the next one.
    pub(super) fn after_flush(&self, ids: Vec<u64>, flushed: bool) {
        if flushed {
            self.discard(&ids);
        } else {
            lock(&self.doomed).extend(ids);
        }
    }

    /// The value in the file `r` names.
    pub(super) fn read(&self, r: &FileRef) -> Result<Vec<u8>> {
        let path = self.path(r.id);
        let what = || format!("the value file {}", path.display());
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let needed = usize::try_from(r.len).unwrap_or(usize::MAX);
        if bytes.len() < needed {
            return Err(StoreError::Corrupt {
                what: what(),
                source: FormatError::Truncated {
                    len: bytes.len(),
                    needed,
                },
            });
        }
        if bytes.len() > needed {
            return Err(StoreError::Corrupt {
                what: what(),
                source: FormatError::TrailingBytes {
                    extra: bytes.len() - needed,
                },
            });
        }
        let computed = crc32fast::hash(&bytes);
        if computed != r.crc {
            return Err(StoreError::Corrupt {
                what: what(),
                source: FormatError::Checksum {
                    stored: r.crc,
                    computed,
                },
            });
        }
        Ok(bytes)
    }
}

/// The error for a file reference under `key` that does not decode.
pub(super) fn corrupt_ref(key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        what: format!("the value file reference {key:02x?}"),
        source: FormatError::Decode(format!("{} bytes expected", FileRef::LEN)),
    }
}

fn file_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}"))
}

/// The id of a value file's name, if it is one.
fn parse_id(name: &str) -> Option<u64> {
    (name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

/// Removes a file; one already gone is not an error.
fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The syncer: syncs each new file (one deleted in the meantime is skipped), then the
/// directory, batch after batch, until the store is dropped.
fn sync_files(dir: &Path, receiver: &Receiver<u64>, failure: &Mutex<Option<std::io::Error>>) {
    while let Ok(first) = receiver.recv() {
        let mut result = Ok(());
        for id in std::iter::once(first).chain(receiver.try_iter()) {
            match File::open(file_path(dir, id)).and_then(|f| f.sync_data()) {
                Err(e) if e.kind() != ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
        }
        // The new names are durable once their directory is.
        #[cfg(unix)]
        if result.is_ok() {
            result = File::open(dir).and_then(|d| d.sync_all());
        }
        if let Err(e) = result {
            lock(failure).get_or_insert(e);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_reject_other_lengths() {
        let r = FileRef {
            id: 7,
            len: 1 << 20,
            crc: 0xdead_beef,
        };
        assert_eq!(FileRef::decode(&r.encode()), Some(r));
        assert_eq!(FileRef::decode(&r.encode()[1..]), None);
        assert_eq!(FileRef::decode(&[0; 21]), None);
    }

    #[test]
    fn only_sixteen_hex_digits_name_a_value_file() {
        assert_eq!(parse_id("000000000000002a"), Some(42));
        assert_eq!(parse_id(&format!("{:016x}", u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_id("2a"), None);
        assert_eq!(parse_id("000000000000002g"), None);
        assert_eq!(parse_id("+00000000000002a"), None);
    }
}
