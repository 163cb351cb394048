//! Per-field reducers: how one update of a field is merged into the state.
//!
//! `#[derive(State)]` calls these functions; they are public so that hand-written [`State`]
//! implementations and user reducers can reuse them.
//!
//! [`State`]: crate::State

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// The reducer of a field, recorded in the graph's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReducerKind {
    /// The update replaces the value. Two writers in one step is a conflict.
    Overwrite,
    /// The update's items are appended ([`append`]).
    Append,
    /// The update is added ([`add`]).
    Add,
    /// The smaller value is kept ([`min`]).
    Min,
    /// The larger value is kept ([`max`]).
    Max,
    /// The update's entries are inserted, later writers win per key ([`merge`]).
    Merge,
    /// Set union ([`union`]).
    Union,
    /// A user function, named by its path as written in the attribute.
    Custom(&'static str),
}

impl ReducerKind {
    /// Whether at most one task may write the field in one step (only [`Overwrite`]).
    ///
    /// [`Overwrite`]: ReducerKind::Overwrite
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::reducer::ReducerKind;
    /// assert!(ReducerKind::Overwrite.is_exclusive());
    /// assert!(!ReducerKind::Add.is_exclusive());
    /// ```
    pub const fn is_exclusive(self) -> bool {
        matches!(self, ReducerKind::Overwrite)
    }

    /// A short stable name, used in fingerprints and messages.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::reducer::ReducerKind;
    /// assert_eq!(ReducerKind::Append.name(), "append");
    /// assert_eq!(ReducerKind::Custom("my::fold").name(), "my::fold");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            ReducerKind::Overwrite => "overwrite",
            ReducerKind::Append => "append",
            ReducerKind::Add => "add",
            ReducerKind::Min => "min",
            ReducerKind::Max => "max",
            ReducerKind::Merge => "merge",
            ReducerKind::Union => "union",
            ReducerKind::Custom(path) => path,
        }
    }
}

/// Replaces `acc` with `update`.
///
/// # Examples
///
/// ```
/// let mut v = 1;
/// agentgraph_engine::reducer::overwrite(&mut v, 7);
/// assert_eq!(v, 7);
/// ```
pub fn overwrite<T>(acc: &mut T, update: T) {
    *acc = update;
}

/// Appends the items of `update` to `acc` (`Vec`, `VecDeque`, `String`, or any [`Append`]).
///
/// # Examples
///
/// ```
/// let mut v = vec![1, 2];
/// agentgraph_engine::reducer::append(&mut v, vec![3]);
/// assert_eq!(v, [1, 2, 3]);
/// let mut s = String::from("ab");
/// agentgraph_engine::reducer::append(&mut s, String::from("c"));
/// assert_eq!(s, "abc");
/// ```
pub fn append<C: Append>(acc: &mut C, update: C) {
    acc.append_from(update);
}

/// A sequence that `#[reducer(append)]` can extend with another of its kind.
///
/// Implemented for `Vec`, `VecDeque`, `LinkedList` and `String`; implement it for your own
/// collections.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::reducer::Append;
///
/// #[derive(Default)]
/// struct Log(Vec<String>);
///
/// impl Append for Log {
///     fn append_from(&mut self, other: Self) {
///         self.0.extend(other.0)
///     }
/// }
///
/// let mut log = Log(vec!["a".into()]);
/// log.append_from(Log(vec!["b".into()]));
/// assert_eq!(log.0, ["a", "b"]);
/// ```
pub trait Append {
    /// Appends the items of `other` after the items of `self`.
    fn append_from(&mut self, other: Self);
}

impl<T> Append for Vec<T> {
    fn append_from(&mut self, mut other: Self) {
        self.append(&mut other);
    }
}

impl<T> Append for std::collections::VecDeque<T> {
    fn append_from(&mut self, mut other: Self) {
        self.append(&mut other);
    }
}

impl<T> Append for std::collections::LinkedList<T> {
    fn append_from(&mut self, mut other: Self) {
        self.append(&mut other);
    }
}

impl Append for String {
    fn append_from(&mut self, other: Self) {
        self.push_str(&other);
    }
}

/// Adds `update` to `acc`.
///
/// # Examples
///
/// ```
/// let mut n = 2u64;
/// agentgraph_engine::reducer::add(&mut n, 3);
/// assert_eq!(n, 5);
/// ```
pub fn add<T: AddAssign>(acc: &mut T, update: T) {
    *acc += update;
}

/// Keeps the smaller of `acc` and `update` (`acc` on ties and on incomparable values).
///
/// # Examples
///
/// ```
/// let mut n = 4;
/// agentgraph_engine::reducer::min(&mut n, 2);
/// agentgraph_engine::reducer::min(&mut n, 3);
/// assert_eq!(n, 2);
/// ```
pub fn min<T: PartialOrd>(acc: &mut T, update: T) {
    if update < *acc {
        *acc = update;
    }
}

/// Keeps the larger of `acc` and `update` (`acc` on ties and on incomparable values).
///
/// # Examples
///
/// ```
/// let mut n = 1;
/// agentgraph_engine::reducer::max(&mut n, 5);
/// agentgraph_engine::reducer::max(&mut n, 3);
/// assert_eq!(n, 5);
/// ```
pub fn max<T: PartialOrd>(acc: &mut T, update: T) {
    if update > *acc {
        *acc = update;
    }
}

/// Inserts every entry of `update` into the map `acc`; on a shared key the update wins.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// let mut m = BTreeMap::from([("a", 1), ("b", 2)]);
/// agentgraph_engine::reducer::merge(&mut m, BTreeMap::from([("b", 3), ("c", 4)]));
/// assert_eq!(m, BTreeMap::from([("a", 1), ("b", 3), ("c", 4)]));
/// ```
pub fn merge<M, K, V>(acc: &mut M, update: M)
where
    M: Extend<(K, V)> + IntoIterator<Item = (K, V)>,
{
    acc.extend(update);
}

/// Adds every element of `update` to the set `acc`.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeSet;
/// let mut s = BTreeSet::from([1, 2]);
/// agentgraph_engine::reducer::union(&mut s, BTreeSet::from([2, 3]));
/// assert_eq!(s, BTreeSet::from([1, 2, 3]));
/// ```
pub fn union<S>(acc: &mut S, update: S)
where
    S: Extend<<S as IntoIterator>::Item> + IntoIterator,
{
    acc.extend(update);
}
