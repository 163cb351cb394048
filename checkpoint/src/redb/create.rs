//! Creating a store file so that a crash at any moment leaves either no store or a whole one.
//!
//! redb creating a database in place sizes the file, writes its header without the magic
//! number, syncs, then writes the magic number and syncs again. A process killed (or a power
//! cut) between the two leaves a file that redb refuses for ever ("not a redb database").
//! So a new store is built next to its path, under an exclusive lock, synced, renamed to its
//! path, and the directory synced: the path never names an unfinished store (see [`ensure`]).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::redb::Builder;

use crate::error::{Result, StoreError};

/// How long [`ensure`] waits for another process creating the same store.
const CREATE_WAIT: Duration = Duration::from_secs(10);

fn io_error(e: io::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Whether a store exists at `path`: a file that is not empty. (An empty file is none: it was
/// made by someone else, as `touch` or a temporary file does; this module never leaves one.)
fn exists(path: &Path) -> io::Result<bool> {
    match fs::metadata(path) {
        Ok(meta) => Ok(meta.len() > 0 || !meta.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates the store at `path` unless one exists.
///
/// Creators take an exclusive lock (`flock`) on `<name>.creating`, and only the holder builds:
/// into `<name>.creating.new` (never locked by this module: redb probes the file's `flock`
/// when it opens it, and unlocking a duplicate of a locked descriptor would drop the lock),
/// then syncs it, renames it to `path` and syncs the directory. Whoever gets the lock checks
/// first whether `path` exists, so the lock file may be removed by the creator that made the
/// store while others still wait on it. A `<name>.creating.new` found by the holder was left
/// by a creator that died: it is started over.
pub(super) fn ensure(path: &Path, builder: &Builder) -> Result<()> {
    let lock_path = sibling(path, ".creating");
    if exists(path).map_err(io_error)? {
        // A lock file left by a creator that died after its rename: no one builds any more.
        let _ = fs::remove_file(&lock_path);
        return Ok(());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io_error)?;
    let deadline = Instant::now() + CREATE_WAIT;
    loop {
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error)?;
        if fs2::FileExt::try_lock_exclusive(&lock).is_err() {
            // Another process is creating it: wait for it to finish (or die).
            if Instant::now() >= deadline {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if !exists(path).map_err(io_error)? {
            build_at(path, &dir, builder)?;
        }
        // The lock file goes with the lock held; one another creator made since is its own.
        if same_file(&lock, &lock_path) {
            let _ = fs::remove_file(&lock_path);
        }
        return Ok(());
    }
}

/// Builds the store in `<name>.creating.new` and renames it to `path`, durably. The caller
/// holds the creation lock.
fn build_at(path: &Path, dir: &Path, builder: &Builder) -> Result<()> {
    let temp = sibling(path, ".creating.new");
    if let Ok(meta) = fs::metadata(&temp) {
        tracing::warn!(
            path = %temp.display(),
            bytes = meta.len(),
            "starting over a store whose creation was cut short (its process died while \
             creating it)"
        );
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(io_error)?;
    build(file.try_clone().map_err(io_error)?, builder)?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    fs::rename(&temp, path).map_err(io_error)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)
}

/// Writes a new store into the empty `file`, durably (the format marker is committed with
/// `Immediate` durability), and closes it.
fn build(file: File, builder: &Builder) -> Result<()> {
    let backend = ::redb::backends::FileBackend::new(file);
    let db = builder
        .create_with_backend(backend)
        .map_err(|e| super::open_error("a new redb store", e))?;
    super::init(&db, "a new redb store")?;
    db.close().map_err(super::backend)
}

/// Whether `file` is the file at `path`.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, _: &Path) -> bool {
    false
}
