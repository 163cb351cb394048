//! Identifiers: node ids inside a plan, deterministic task ids, graph fingerprints.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// A dense node index inside a compiled plan.
pub(crate) type NodeId = u32;

/// The deterministic id of one task: derived from the run id, namespace, step, node and
/// trigger (packet) index. It keys the task's pending writes and is the node's idempotency key.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::TaskId;
/// let id = TaskId::from_u128(0xabc);
/// assert_eq!(id.to_string(), "00000000000000000000000000000abc");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u128);

impl TaskId {
    /// Wraps a raw id.
    pub const fn from_u128(raw: u128) -> Self {
        TaskId(raw)
    }

    /// The raw id.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A stable hash of a compiled graph: node names and kinds, edge structure, joins and the
/// state's fields with their reducers. Checkpoints record it, so that resuming with a changed
/// graph is detected.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::Fingerprint;
/// let f = Fingerprint::from_u128(1);
/// assert_eq!(f.to_string().len(), 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u128);

impl Fingerprint {
    /// Wraps a raw fingerprint.
    pub const fn from_u128(raw: u128) -> Self {
        Fingerprint(raw)
    }

    /// The raw fingerprint.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// 128-bit ids are hex strings in human-readable formats (JSON cannot carry them as numbers)
/// and integers in binary ones.
macro_rules! hex_id_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_u128(self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    u128::from_str_radix(&text, 16).map($ty).map_err(|e| {
                        serde::de::Error::custom(format_args!(
                            "invalid {} `{text}`: {e}",
                            stringify!($ty)
                        ))
                    })
                } else {
                    u128::deserialize(d).map($ty)
                }
            }
        }
    };
}

hex_id_serde!(TaskId);
hex_id_serde!(Fingerprint);

/// The part of a task's identity that does not depend on the run: (namespace, step, node,
/// trigger index). Weighted draws are keyed by it, so the same seed makes the same choices in
/// every run of the same graph.
pub(crate) fn task_key(namespace: &str, step: u64, node: &str, index: u32) -> u64 {
    let mut h = Xxh3::new();
    write_str(&mut h, namespace);
    h.update(&step.to_le_bytes());
    write_str(&mut h, node);
    h.update(&index.to_le_bytes());
    h.digest()
}

/// The task id: the task key within one run.
pub(crate) fn task_id(run_id: &str, key: u64) -> TaskId {
    let mut h = Xxh3::new();
    write_str(&mut h, run_id);
    h.update(&key.to_le_bytes());
    TaskId(h.digest128())
}

/// The seed of the weighted draw of edge number `edge` of the task with key `key`.
pub(crate) fn draw_seed(seed: u64, key: u64, edge: usize) -> u64 {
    let mut h = Xxh3::new();
    h.update(&seed.to_le_bytes());
    h.update(&key.to_le_bytes());
    h.update(&(edge as u64).to_le_bytes());
    h.digest()
}

/// Hashes a string with its length, so that concatenations cannot collide.
pub(crate) fn write_str(h: &mut Xxh3, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_depend_on_every_part() {
        let base = task_key("", 1, "a", 0);
        assert_ne!(base, task_key("sub", 1, "a", 0));
        assert_ne!(base, task_key("", 2, "a", 0));
        assert_ne!(base, task_key("", 1, "b", 0));
        assert_ne!(base, task_key("", 1, "a", 1));
        assert_eq!(base, task_key("", 1, "a", 0));
        assert_ne!(task_id("r1", base), task_id("r2", base));
        assert_eq!(task_id("r1", base), task_id("r1", base));
    }

    #[test]
    fn ids_are_hex_in_json() {
        let id = TaskId::from_u128(u128::MAX - 1);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<Fingerprint>("\"xyz\"").is_err());
        let cfg = crate::codec::config();
        let bytes = bincode::serde::encode_to_vec(id, cfg).unwrap();
        assert_eq!(
            bincode::serde::decode_from_slice::<TaskId, _>(&bytes, cfg)
                .unwrap()
                .0,
            id
        );
    }

    #[test]
    fn strings_are_length_prefixed() {
        assert_ne!(task_key("ab", 1, "c", 0), task_key("a", 1, "bc", 0));
    }
}
