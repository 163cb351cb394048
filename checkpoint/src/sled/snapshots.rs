//! Snapshot files sled 0.34.7 leaves unfinished when its process dies while writing one.
//!
//! sled writes a snapshot while it opens a database whose log has grown since the last one:
//! into `snap.<LSN>.generating` (the LSN as 16 uppercase hex digits), synced, then renamed to
//! `snap.<LSN>`, after which the older `snap.*` files are removed. At open it reads the
//! lexically last `snap.*` file, a `.generating` one included (it sorts after the complete
//! snapshot of the same LSN and after every older one), and refuses to open, for ever, if
//! that file is empty or torn (spacejam/sled#1527). A `.generating` file is never read by a
//! live sled except in that mistake: removing it leaves the store as it was just before the
//! snapshot began, the previous complete snapshot and the log after it, which is what sled
//! recovers from after a crash at that moment.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// What [`remove_unfinished`] could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cleared {
    /// No unfinished snapshot is left (there was none, or it was removed).
    Clean,
    /// Another handle holds the store's lock: it may be writing the file right now, so it
    /// was left alone.
    Busy,
}

/// Whether `name` is one of sled's unfinished snapshot files: `snap.`, 16 uppercase hex
/// digits, `.generating`.
pub(super) fn is_unfinished_snapshot(name: &str) -> bool {
    name.strip_prefix("snap.")
        .and_then(|rest| rest.strip_suffix(".generating"))
        .is_some_and(|lsn| {
            lsn.len() == 16
                && lsn
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
}

/// The unfinished snapshot files in `dir`.
fn unfinished(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(is_unfinished_snapshot)
            && entry.file_type()?.is_file()
        {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes the unfinished snapshot files of the store in `dir`, holding the lock sled takes
/// on its `db` file (so that no live sled is writing one), and logs each at `warn`.
pub(super) fn remove_unfinished(dir: &Path) -> io::Result<Cleared> {
    let files = unfinished(dir)?;
    if files.is_empty() {
        return Ok(Cleared::Clean);
    }
    // sled creates `db` before it writes any snapshot, and locks it (flock) while it is open.
    let lock = match OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cleared::Busy),
        Err(e) => return Err(e),
    };
    if fs2::FileExt::try_lock_exclusive(&lock).is_err() {
        return Ok(Cleared::Busy);
    }
    for path in unfinished(dir)? {
        let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        tracing::warn!(
            path = %path.display(),
            bytes,
            "removing a snapshot file sled left unfinished (its process died while writing it); \
             the store opens from its previous snapshot and its log"
        );
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    // Made durable, so that the removal does not come undone at a power cut (it would only
    // be done again at the next open).
    File::open(dir)?.sync_all()?;
    drop(lock);
    Ok(Cleared::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sleds_unfinished_snapshot_names_match() {
        assert!(is_unfinished_snapshot("snap.00000000000A3F10.generating"));
        for name in [
            "snap.00000000000A3F10",
            "snap.00000000000a3f10.generating",
            "snap.0000000000A3F10.generating",
            "snap.00000000000A3F10.generating.bak",
            "snap..generating",
            "xsnap.00000000000A3F10.generating",
            "db",
            "conf",
        ] {
            assert!(!is_unfinished_snapshot(name), "{name}");
        }
    }
}
