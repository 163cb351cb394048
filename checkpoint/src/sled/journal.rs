//! The commit journal of a [`SledStore`](super::SledStore): how a batch is made atomic with
//! one synced log write per flush instead of sled's own batches.
//!
//! sled 0.34.7 makes a batch atomic with a manifest: `apply_batch` first writes out the log
//! buffer in progress, then puts the manifest in a buffer of its own, so the next flush makes
//! at least two synced writes (each `pwrite` + `sync_file_range`), often three. On the disk
//! this was measured on, one costs 100–150 µs, and a run's last commit waits for them.
//!
//! A small batch is written instead as one entry under [`JOURNAL_KEY`] holding all of its
//! writes, followed by the writes themselves, one sled operation each, with no manifest: they
//! share the log buffer in progress, and the next flush writes it once. sled recovers a prefix
//! of its log after a crash (the guarantee its own manifests rely on), and the journal entry
//! comes before the batch's writes in the log, so a crash leaves either:
//!
//! - neither the entry nor any of the writes: the batch is lost whole, or
//! - the entry and some of the writes: opening the store replays the entry, and the batch is
//!   there whole.
//!
//! Every commit replaces the entry, so it always holds the last batch, which no later write
//! changed: replaying it is exact. Writes that bypass the journal (a batch too large for it,
//! which goes through `apply_batch` as before; lease epochs written when the last handle
//! closes) remove the entry first, so that a replay never writes an older value over them.
//! The store removes the entry after replaying it, and when its last handle closes.

use bincode::config::{self, Configuration, Fixint, Limit, LittleEndian};

use crate::envelope::FormatError;

/// The key of the journal entry: the tag `J` alone (no other key starts with it).
pub(super) const JOURNAL_KEY: &[u8] = b"J";

/// The largest journal entry written: a larger batch goes through sled's own `apply_batch`.
/// Chosen, not tuned: a journal entry doubles what a batch writes to the log, which costs
/// nothing measurable for the small batches of most steps (a few KiB: the synced write's
/// latency dominates) but would for large ones, whose manifest is a small part of their cost.
pub(super) const JOURNAL_MAX: usize = 32 * 1024;

/// The version byte in front of an entry.
const VERSION: u8 = 1;

/// A batch as sled writes it, in order: `None` removes the key.
pub(super) type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// bincode's configuration for entries, with a limit on what a damaged length may make the
/// decoder allocate (entries are at most [`JOURNAL_MAX`] bytes).
fn format() -> Configuration<LittleEndian, Fixint, Limit<{ 4 * JOURNAL_MAX }>> {
    config::standard()
        .with_fixed_int_encoding()
        .with_limit::<{ 4 * JOURNAL_MAX }>()
}

/// `writes` as one sled batch, which also removes the journal entry: how a batch too large for
/// the journal is written, and how opening the store replays the entry.
pub(super) fn sled_batch(writes: Writes) -> ::sled::Batch {
    let mut batch = ::sled::Batch::default();
    batch.remove(JOURNAL_KEY);
    for (key, value) in writes {
        match value {
            Some(v) => batch.insert(key, v),
            None => batch.remove(key),
        }
    }
    batch
}

/// The journal entry of `writes`, or `None` when it would be larger than [`JOURNAL_MAX`].
pub(super) fn encode(writes: &Writes) -> Option<Vec<u8>> {
    let size = 1
        + 8
        + writes
            .iter()
            .map(|(k, v)| 8 + k.len() + 1 + v.as_ref().map_or(0, |v| 8 + v.len()))
            .sum::<usize>();
    if size > JOURNAL_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(size);
    out.push(VERSION);
    bincode::encode_into_std_write(writes, &mut out, format())
        .expect("encoding into memory never fails");
    debug_assert_eq!(out.len(), size, "the size of an entry is computed exactly");
    Some(out)
}

/// The writes of a journal entry; an error when the entry is damaged or of an unknown version.
pub(super) fn decode(entry: &[u8]) -> Result<Writes, FormatError> {
    let Some((&version, body)) = entry.split_first() else {
        return Err(FormatError::Decode("the journal entry is empty".into()));
    };
    if version != VERSION {
        return Err(FormatError::Decode(format!(
            "the journal entry has version {version}; this build reads version {VERSION}"
        )));
    }
    let (writes, read): (Writes, usize) = bincode::decode_from_slice(body, format())
        .map_err(|e| FormatError::Decode(format!("the journal entry does not decode: {e}")))?;
    if read != body.len() {
        return Err(FormatError::Decode(format!(
            "the journal entry has {} bytes after its writes",
            body.len() - read
        )));
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes() -> Writes {
        vec![
            (b"Rrun".to_vec(), Some(b"record".to_vec())),
            (b"Fkey".to_vec(), None),
            (b"Ckey".to_vec(), Some(Vec::new())),
        ]
    }

    #[test]
    fn entries_round_trip() {
        let entry = encode(&writes()).expect("a small batch has an entry");
        assert_eq!(entry[0], VERSION);
        assert_eq!(decode(&entry).unwrap(), writes());
        assert_eq!(
            decode(&encode(&Vec::new()).unwrap()).unwrap(),
            Writes::new()
        );
    }

    #[test]
    fn a_batch_larger_than_the_limit_has_no_entry() {
        let under = vec![(
            b"k".to_vec(),
            Some(vec![7; JOURNAL_MAX - 1 - 8 - 8 - 1 - 1 - 8]),
        )];
        assert_eq!(encode(&under).map(|e| e.len()), Some(JOURNAL_MAX));
        let over = vec![(b"k".to_vec(), Some(vec![7; JOURNAL_MAX]))];
        assert_eq!(encode(&over), None);
    }

    #[test]
    fn damaged_entries_are_errors() {
        let entry = encode(&writes()).unwrap();
        let message = |bytes: &[u8]| decode(bytes).unwrap_err().to_string();
        assert!(message(&[]).contains("empty"), "{}", message(&[]));
        let mut other = entry.clone();
        other[0] = 9;
        assert!(message(&other).contains("version 9"), "{}", message(&other));
        assert!(message(&entry[..entry.len() - 3]).contains("does not decode"));
        let mut longer = entry.clone();
        longer.push(0);
        assert!(
            message(&longer).contains("1 bytes after"),
            "{}",
            message(&longer)
        );
        // A length claiming far more than the entry holds fails without allocating it.
        let mut huge = entry;
        huge[1..9].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(message(&huge).contains("does not decode"));
    }
}
