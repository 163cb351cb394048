//! Creating a store file so that a crash at any moment leaves either no store or a whole one.
//!
//! redb creating a database in place sizes the file, writes its header without the magic
//! number, syncs, then writes the magic number and syncs again. A process killed (or a power
//! cut) between the two leaves a file that redb refuses for ever ("not a redb database").
//! So a new store is built in `<name>.creating` next to its path, under an exclusive lock on
//! that file, synced, renamed to its path, and the directory synced: the path never names an
//! unfinished store. A `<name>.creating` left by a crash is started over by the next creator.

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

/// The temporary file a store at `path` is created in.
pub(super) fn creating_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".creating");
    path.with_file_name(name)
}

/// Creates the store at `path` unless one exists.
pub(super) fn ensure(path: &Path, builder: &Builder) -> Result<()> {
    if exists(path).map_err(io_error)? {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io_error)?;
    let temp = creating_path(path);
    let deadline = Instant::now() + CREATE_WAIT;
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&temp)
            .map_err(io_error)?;
        if fs2::FileExt::try_lock_exclusive(&file).is_err() {
            // Another process is creating it: wait for it to finish (or die).
            if Instant::now() >= deadline {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if exists(path).map_err(io_error)? {
            // Created by the process that held the lock. The file this one locked is either
            // that store (renamed since it was opened) or an empty one it made itself.
            if fs::metadata(&temp).is_ok_and(|m| m.len() == 0) && same_file(&file, &temp) {
                let _ = fs::remove_file(&temp);
            }
            return Ok(());
        }
        let leftover = file.metadata().map_err(io_error)?.len();
        if leftover > 0 {
            tracing::warn!(
                path = %temp.display(),
                bytes = leftover,
                "starting over a store whose creation was cut short (its process died while \
                 creating it)"
            );
        }
        file.set_len(0).map_err(io_error)?;
        build(&file, builder)?;
        file.sync_all().map_err(io_error)?;
        fs::rename(&temp, path).map_err(io_error)?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error)?;
        return Ok(());
    }
}

/// Writes a new store into the empty `file`, durably (the format marker is committed with
/// `Immediate` durability), and closes it.
fn build(file: &File, builder: &Builder) -> Result<()> {
    let backend = ::redb::backends::FileBackend::new(file.try_clone().map_err(io_error)?);
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
