//! The keys of the embedded stores (sled, redb): one ordered byte-keyed table, each key
//! starting with a tag byte that says its table. Both stores lay their data out the same way.

use std::ops::Bound;

use crate::error::{Result, StoreError};

/// A range of keys, as both stores scan them.
pub(crate) type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Key tags: the first byte of every key says its table.
pub(crate) const RUN: u8 = b'R';
pub(crate) const CHECKPOINT: u8 = b'C';
pub(crate) const BLOB: u8 = b'B';
pub(crate) const PENDING: u8 = b'P';
pub(crate) const EVENT: u8 = b'E';
pub(crate) const LEASE: u8 = b'L';
pub(crate) const ITEM: u8 = b'I';
/// Audit entries: kept when their run is deleted.
pub(crate) const AUDIT: u8 = b'A';

/// `I` + encoded namespace + key: a memory item. The namespace's encoding keeps prefix scans
/// exact (`Namespace::encode`).
pub(crate) fn item_key(namespace: &crate::items::Namespace, key: &str) -> Vec<u8> {
    let mut k = vec![ITEM];
    k.extend_from_slice(&crate::items::Item::storage_key(namespace, key));
    k
}

/// The keys of the items under the namespace `prefix`.
pub(crate) fn item_range(prefix: &crate::items::Namespace) -> KeyRange {
    let mut start = vec![ITEM];
    start.extend_from_slice(&prefix.encode());
    let end = match next_prefix(&start) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(start), end)
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn next_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// `L` + run id: the run's newest lease epoch (u64 BE). Kept when the run is deleted.
pub(crate) fn lease_key(run: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + run.len());
    k.push(LEASE);
    k.extend_from_slice(run.as_bytes());
    k
}

/// `R` + run id: runs list in run id order.
pub(crate) fn run_key(run: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + run.len());
    k.push(RUN);
    k.extend_from_slice(run.as_bytes());
    k
}

/// `tag` + u16 BE length + run id: the prefix of one run's entries in a per-run table.
/// The length makes prefix scans exact: run `a` never sees run `ab`'s keys.
pub(crate) fn run_prefix(tag: u8, run: &str) -> Vec<u8> {
    let len = u16::try_from(run.len()).expect("run ids are checked to be at most 512 bytes");
    let mut k = Vec::with_capacity(3 + run.len() + 12);
    k.push(tag);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(run.as_bytes());
    k
}

pub(crate) fn checkpoint_key(run: &str, step: u64) -> Vec<u8> {
    let mut k = run_prefix(CHECKPOINT, run);
    k.extend_from_slice(&step.to_be_bytes());
    k
}

pub(crate) fn blob_key(run: &str, field: u32, version: u64) -> Vec<u8> {
    let mut k = run_prefix(BLOB, run);
    k.extend_from_slice(&field.to_be_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn event_key(run: &str, seq: u64) -> Vec<u8> {
    let mut k = run_prefix(EVENT, run);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn pending_key(run: &str, step: u64, task: u32) -> Vec<u8> {
    let mut k = run_prefix(PENDING, run);
    k.extend_from_slice(&step.to_be_bytes());
    k.extend_from_slice(&task.to_be_bytes());
    k
}

/// `A` + u16 BE length + run id + u64 BE number: an entry of the run's audit trail.
pub(crate) fn audit_key(run: &str, seq: u64) -> Vec<u8> {
    let mut k = run_prefix(AUDIT, run);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The keys of `run`'s audit entries after `after` (all of them without it), and where a
/// key's number starts.
pub(crate) fn audit_range(run: &str, after: Option<u64>) -> (KeyRange, usize) {
    let start = match after {
        Some(seq) => Bound::Excluded(audit_key(run, seq)),
        None => Bound::Included(audit_key(run, 0)),
    };
    let end = Bound::Included(audit_key(run, u64::MAX));
    ((start, end), run_prefix(AUDIT, run).len())
}

/// The run id of an audit key (`A` + u16 BE length + run id + u64).
pub(crate) fn audit_key_run(key: &[u8]) -> Result<String> {
    let len = key
        .get(1..3)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| malformed_key(key))?;
    let run = key.get(3..3 + len).ok_or_else(|| malformed_key(key))?;
    String::from_utf8(run.to_vec()).map_err(|_| malformed_key(key))
}

/// The big-endian u64 at `at` in `key`.
pub(crate) fn key_u64(key: &[u8], at: usize) -> Result<u64> {
    key.get(at..at.saturating_add(8))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| malformed_key(key))
}

/// The big-endian u32 at `at` in `key`.
pub(crate) fn key_u32(key: &[u8], at: usize) -> Result<u32> {
    key.get(at..at.saturating_add(4))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| malformed_key(key))
}

pub(crate) fn malformed_key(key: &[u8]) -> StoreError {
    StoreError::Backend(format!("malformed key {key:02x?} in the store").into())
}

/// The keys of `run`'s checkpoints after step `after` (all of them without it), and where a
/// key's step starts.
pub(crate) fn checkpoint_range(run: &str, after: Option<u64>) -> (KeyRange, usize) {
    let start = match after {
        Some(step) => Bound::Excluded(checkpoint_key(run, step)),
        None => Bound::Included(checkpoint_key(run, 0)),
    };
    let end = Bound::Included(checkpoint_key(run, u64::MAX));
    ((start, end), run_prefix(CHECKPOINT, run).len())
}

/// The keys of `run`'s versions `from..=to` of `field`, and where a key's version starts.
pub(crate) fn blob_range(run: &str, field: u32, from: u64, to: u64) -> (KeyRange, usize) {
    let range = (
        Bound::Included(blob_key(run, field, from)),
        Bound::Included(blob_key(run, field, to)),
    );
    (range, run_prefix(BLOB, run).len() + 4)
}

/// The keys of `run`'s pending writes of `step`, and where a key's task starts.
pub(crate) fn pending_range(run: &str, step: u64) -> (KeyRange, usize) {
    let range = (
        Bound::Included(pending_key(run, step, 0)),
        Bound::Included(pending_key(run, step, u32::MAX)),
    );
    (range, run_prefix(PENDING, run).len() + 8)
}

/// The keys of `run`'s events after `after` (all of them without it), and where a key's
/// number starts.
pub(crate) fn event_range(run: &str, after: Option<u64>) -> (KeyRange, usize) {
    let start = match after {
        Some(seq) => Bound::Excluded(event_key(run, seq)),
        None => Bound::Included(event_key(run, 0)),
    };
    let end = Bound::Included(event_key(run, u64::MAX));
    ((start, end), run_prefix(EVENT, run).len())
}
