//! Long-term memory: [`Item`]s (a JSON value under a key, in a [`Namespace`]) that outlive a
//! run, written with [`Op::PutItem`] and [`Op::DeleteItem`] in the same atomic
//! [`WriteBatch`](crate::WriteBatch) as a step's checkpoint, and read with
//! [`CheckpointStore::get_item`], [`CheckpointStore::search_items`] and
//! [`CheckpointStore::list_namespaces`].
//!
//! Searches filter on JSON fields ([`Filter`]), skip expired items (an item's optional
//! `expires_at_ms`; [`CheckpointStore::sweep_expired`] removes them), and rank by cosine
//! similarity when the query has a vector. Vectors come from an [`Embedder`]; a store keeps
//! the items that have one in an in-process [`ItemIndex`] (a contiguous `f32` matrix, built
//! at the first semantic search and kept up to date by this handle's commits), searched by
//! brute force.
//!
//! # Examples
//!
//! ```
//! use agentgraph_checkpoint::items::{Filter, Item, ItemQuery, Namespace};
//! use agentgraph_checkpoint::{CheckpointStore, MemoryStore, WriteBatch};
//! use serde_json::json;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> agentgraph_checkpoint::Result<()> {
//!     let store = MemoryStore::new();
//!     let acme = Namespace::new(["tenant", "acme"]);
//!     let corp = Namespace::new(["tenant", "acme-corp"]);
//!     let mut batch = WriteBatch::new();
//!     batch
//!         .put_item(Item::new(acme.clone(), "ann", json!({"age": 41, "team": "red"})))
//!         .put_item(Item::new(acme.clone(), "bob", json!({"age": 29, "team": "blue"})))
//!         .put_item(Item::new(corp.clone(), "cyd", json!({"age": 50, "team": "red"})));
//!     store.commit(batch).await?;
//!
//!     // `acme` is not a prefix of `acme-corp`.
//!     let hits = store.search_items(&ItemQuery::new(acme.clone())).await?;
//!     assert_eq!(hits.len(), 2);
//!     let red = ItemQuery::new(Namespace::new(["tenant"])).filter(Filter::eq("team", "red"));
//!     let keys: Vec<_> = store.search_items(&red).await?.into_iter().map(|h| h.item.key).collect();
//!     assert_eq!(keys, ["ann", "cyd"]);
//!     assert_eq!(store.get_item(&acme, "bob", 0).await?.unwrap().value["age"], 29);
//!     Ok(())
//! }
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{self, RecordKind};
use crate::error::{Result, StoreError};
use crate::store::{BoxFuture, CheckpointStore, Op, duration_ms};

/// The longest item key, in bytes.
pub const MAX_ITEM_KEY_LEN: usize = 1024;
/// The longest encoded namespace ([`Namespace::encode`]), in bytes.
pub const MAX_NAMESPACE_LEN: usize = 2048;

/// Where items live: a list of segments (`["users", "ann", "memories"]`), like a folder path.
///
/// A namespace is a prefix of another when its segments are the first segments of the other:
/// `["tenant", "acme"]` is a prefix of `["tenant", "acme", "notes"]`, never of
/// `["tenant", "acme-corp"]`. Segments may hold any text, including `/`, NUL or nothing.
///
/// Displayed (and [parsed](Namespace::parse)) as the segments joined by `/`.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::Namespace;
/// let acme = Namespace::new(["tenant", "acme"]);
/// assert!(Namespace::new(["tenant", "acme", "notes"]).starts_with(&acme));
/// assert!(!Namespace::new(["tenant", "acme-corp"]).starts_with(&acme));
/// assert!(!Namespace::new(["tenant", "acme-corp"]).encode().starts_with(&acme.encode()));
/// assert_eq!(acme.to_string(), "tenant/acme");
/// assert_eq!(Namespace::parse("tenant/acme"), acme);
/// assert_eq!(Namespace::decode(&acme.encode()).unwrap(), acme);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Namespace(Vec<String>);

/// Escapes a NUL inside a segment (`00 ff`); ends a segment (`00 01`).
const ESCAPE: [u8; 2] = [0, 0xff];
const TERMINATOR: [u8; 2] = [0, 1];

impl Namespace {
    /// A namespace of `segments`.
    pub fn new<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Namespace(segments.into_iter().map(Into::into).collect())
    }

    /// The namespace of no segments: a prefix of every namespace (items are never put there).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::Namespace;
    /// assert!(Namespace::new(["a"]).starts_with(&Namespace::root()));
    /// ```
    pub fn root() -> Self {
        Namespace(Vec::new())
    }

    /// Parses segments joined by `/` (`"users/ann"`); an empty string is the root. For
    /// namespaces whose segments hold no `/` (the command line's `--namespace`).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::Namespace;
    /// assert_eq!(Namespace::parse("a/b").segments(), ["a", "b"]);
    /// assert_eq!(Namespace::parse(""), Namespace::root());
    /// ```
    pub fn parse(path: &str) -> Self {
        if path.is_empty() {
            return Namespace::root();
        }
        Namespace::new(path.split('/'))
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Whether it has no segment (the root).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The namespace with `segment` added at the end.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::Namespace;
    /// assert_eq!(Namespace::new(["a"]).child("b"), Namespace::new(["a", "b"]));
    /// ```
    #[must_use]
    pub fn child(mut self, segment: impl Into<String>) -> Self {
        self.0.push(segment.into());
        self
    }

    /// Whether `prefix`'s segments are this namespace's first segments.
    pub fn starts_with(&self, prefix: &Namespace) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The namespace as bytes that keep prefixes exact: each segment with its NUL bytes
    /// escaped (`00 ff`), then a terminator (`00 01`). The encoding of `a` is a byte prefix of
    /// the encoding of `b` exactly when `a` is a namespace prefix of `b`, and encodings sort as
    /// the segment lists do.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::Namespace;
    /// assert_eq!(Namespace::new(["a", ""]).encode(), b"a\x00\x01\x00\x01");
    /// assert_eq!(Namespace::new(["a\0"]).encode(), b"a\x00\xff\x00\x01");
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let len: usize = self.0.iter().map(|s| s.len() + 2).sum();
        let mut out = Vec::with_capacity(len);
        for segment in &self.0 {
            for &b in segment.as_bytes() {
                if b == 0 {
                    out.extend_from_slice(&ESCAPE);
                } else {
                    out.push(b);
                }
            }
            out.extend_from_slice(&TERMINATOR);
        }
        out
    }

    /// Decodes what [`encode`](Namespace::encode) wrote.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the bytes are not an encoded namespace.
    pub fn decode(bytes: &[u8]) -> Result<Namespace> {
        let (ns, rest) = Namespace::decode_prefix(bytes)?;
        if !rest.is_empty() {
            return Err(bad_namespace(bytes));
        }
        Ok(ns)
    }

    /// Decodes the namespace at the start of `bytes` up to its last terminator before a byte
    /// that is not part of an encoding; returns it and the bytes after it.
    fn decode_prefix(bytes: &[u8]) -> Result<(Namespace, &[u8])> {
        let mut segments = Vec::new();
        let mut current = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                0 => match bytes.get(i + 1) {
                    Some(0xff) => {
                        current.push(0);
                        i += 2;
                    }
                    Some(1) => {
                        segments.push(
                            String::from_utf8(std::mem::take(&mut current))
                                .map_err(|_| bad_namespace(bytes))?,
                        );
                        i += 2;
                    }
                    _ => return Err(bad_namespace(bytes)),
                },
                b => {
                    current.push(b);
                    i += 1;
                }
            }
        }
        if !current.is_empty() {
            return Err(bad_namespace(bytes));
        }
        Ok((Namespace(segments), &bytes[i..]))
    }
}

fn bad_namespace(bytes: &[u8]) -> StoreError {
    StoreError::Corrupt {
        what: format!("the namespace {bytes:02x?}"),
        source: envelope::FormatError::Decode("not an encoded namespace".into()),
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

impl<S: Into<String>> FromIterator<S> for Namespace {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Namespace::new(iter)
    }
}

/// A remembered value: JSON under a key in a namespace, with when it was written, when it
/// expires (if ever) and its embedding (if it was indexed for semantic search).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_checkpoint::items::{Item, Namespace};
/// let item = Item::new(Namespace::new(["users", "ann"]), "likes", serde_json::json!(["tea"]))
///     .written_at(1_000)
///     .with_ttl(Duration::from_secs(1));
/// assert_eq!(item.expires_at_ms, Some(2_000));
/// assert!(!item.is_expired(1_999));
/// assert!(item.is_expired(2_000));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Item {
    /// Its namespace (at least one segment).
    pub namespace: Namespace,
    /// Its key in the namespace (1 to [`MAX_ITEM_KEY_LEN`] bytes).
    pub key: String,
    /// The value.
    pub value: Value,
    /// When it was written, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// When it expires, in milliseconds since the Unix epoch: from then on reads do not see it
    /// and a sweep deletes it.
    pub expires_at_ms: Option<u64>,
    /// Its vector, for semantic search (see [`Embedder`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        let bits = |e: &Option<Vec<f32>>| {
            e.as_ref()
                .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        self.namespace == other.namespace
            && self.key == other.key
            && self.value == other.value
            && self.updated_at_ms == other.updated_at_ms
            && self.expires_at_ms == other.expires_at_ms
            && bits(&self.embedding) == bits(&other.embedding)
    }
}

impl Eq for Item {}

impl Item {
    /// An item written at time 0, that never expires, without an embedding.
    pub fn new(namespace: Namespace, key: impl Into<String>, value: Value) -> Self {
        Item {
            namespace,
            key: key.into(),
            value,
            updated_at_ms: 0,
            expires_at_ms: None,
            embedding: None,
        }
    }

    /// Sets when it was written.
    #[must_use]
    pub fn written_at(mut self, now_ms: u64) -> Self {
        self.updated_at_ms = now_ms;
        self
    }

    /// Makes it expire `ttl` after it was written ([`written_at`](Item::written_at): set that
    /// first).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.expires_at_ms = Some(self.updated_at_ms.saturating_add(duration_ms(ttl)));
        self
    }

    /// Sets its embedding.
    #[must_use]
    pub fn with_embedding(mut self, embedding: Vec<f32>) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// Whether it is expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// The key the embedded stores keep it under after their tag: the encoded namespace,
    /// then the key.
    pub(crate) fn storage_key(namespace: &Namespace, key: &str) -> Vec<u8> {
        let mut k = namespace.encode();
        k.extend_from_slice(key.as_bytes());
        k
    }
}

/// A write of an item, as a node's memory handle buffers it until its step commits.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::{Item, ItemWrite, Namespace};
/// use agentgraph_checkpoint::Op;
/// let put = ItemWrite::Put(Item::new(Namespace::new(["a"]), "k", serde_json::json!(1)));
/// assert!(matches!(Op::from(put), Op::PutItem(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemWrite {
    /// Puts the item (replacing one under its key).
    Put(Item),
    /// Deletes the item under `key` in `namespace`.
    Delete {
        /// The namespace.
        namespace: Namespace,
        /// The key.
        key: String,
    },
}

impl ItemWrite {
    /// The namespace and key written.
    pub fn target(&self) -> (&Namespace, &str) {
        match self {
            ItemWrite::Put(item) => (&item.namespace, &item.key),
            ItemWrite::Delete { namespace, key } => (namespace, key),
        }
    }
}

impl From<ItemWrite> for Op {
    fn from(w: ItemWrite) -> Op {
        match w {
            ItemWrite::Put(item) => Op::PutItem(item),
            ItemWrite::Delete { namespace, key } => Op::DeleteItem {
                namespace,
                key,
                if_expired_at: None,
            },
        }
    }
}

/// An item as stores keep it: its own type (the value as JSON text), in an envelope of kind
/// [`RecordKind::Item`]. Fields are encoded in this order, with bincode.
#[derive(Serialize, Deserialize)]
struct StoredItem {
    namespace: Vec<String>,
    key: String,
    value: String,
    updated_at_ms: u64,
    expires_at_ms: Option<u64>,
    embedding: Option<Vec<f32>>,
}

/// Encodes an item as stores keep it (for backends); [`decode_item`] reads it back.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when it does not encode.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::{Item, Namespace, decode_item, encode_item};
/// let item = Item::new(Namespace::new(["a"]), "k", serde_json::json!({"x": 1})).with_embedding(vec![0.5]);
/// assert_eq!(decode_item(&encode_item(&item)?)?, item);
/// # Ok::<(), agentgraph_checkpoint::StoreError>(())
/// ```
pub fn encode_item(item: &Item) -> Result<Vec<u8>> {
    let stored = StoredItem {
        namespace: item.namespace.0.clone(),
        key: item.key.clone(),
        value: item.value.to_string(),
        updated_at_ms: item.updated_at_ms,
        expires_at_ms: item.expires_at_ms,
        embedding: item.embedding.clone(),
    };
    envelope::encode(RecordKind::Item, &stored).map_err(|source| StoreError::Corrupt {
        what: item_what(&item.namespace, &item.key),
        source,
    })
}

/// Decodes an item [`encode_item`] encoded.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when the bytes are damaged, foreign or too new.
pub fn decode_item(bytes: &[u8]) -> Result<Item> {
    let corrupt = |source| StoreError::Corrupt {
        what: "an item".to_owned(),
        source,
    };
    let s: StoredItem = envelope::decode(RecordKind::Item, bytes).map_err(corrupt)?;
    let value = serde_json::from_str(&s.value)
        .map_err(|e| corrupt(envelope::FormatError::Decode(e.to_string())))?;
    Ok(Item {
        namespace: Namespace(s.namespace),
        key: s.key,
        value,
        updated_at_ms: s.updated_at_ms,
        expires_at_ms: s.expires_at_ms,
        embedding: s.embedding,
    })
}

fn item_what(namespace: &Namespace, key: &str) -> String {
    format!("the item {key:?} in namespace {namespace:?}")
}

/// Checks a namespace and key an item is written under (for backends: every store refuses a
/// batch with an invalid one whole).
///
/// # Errors
///
/// [`StoreError::InvalidItem`]: the namespace is the root or longer than
/// [`MAX_NAMESPACE_LEN`] encoded, or the key is empty or longer than [`MAX_ITEM_KEY_LEN`].
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::{Namespace, check_target};
/// assert!(check_target(&Namespace::new(["a"]), "k").is_ok());
/// assert!(check_target(&Namespace::root(), "k").is_err());
/// assert!(check_target(&Namespace::new(["a"]), "").is_err());
/// ```
pub fn check_target(namespace: &Namespace, key: &str) -> Result<()> {
    let reason = if namespace.is_root() {
        Some("an item's namespace has at least one segment".to_owned())
    } else if namespace.encode().len() > MAX_NAMESPACE_LEN {
        Some(format!(
            "an encoded namespace has at most {MAX_NAMESPACE_LEN} bytes"
        ))
    } else if key.is_empty() || key.len() > MAX_ITEM_KEY_LEN {
        Some(format!(
            "an item key has 1 to {MAX_ITEM_KEY_LEN} bytes, this one {}",
            key.len()
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidItem {
            namespace: namespace.to_string(),
            key: key.chars().take(64).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A condition on an item's JSON value, by path: a dotted path of object keys and array
/// indices (`"user.tags.0"`; `""` is the whole value). Comparisons (`gt`, `lt`, ...) hold
/// between two numbers or two strings; a missing field matches only `ne` and `not`.
/// Conditions compose with [`and`](Filter::and), [`or`](Filter::or) and [`not`](Filter::not).
///
/// In JSON (the monitor's `filter` parameter): `{"eq": ["team", "red"]}`,
/// `{"gte": ["age", 30]}`, `{"exists": "email"}`, `{"and": [..]}`, `{"or": [..]}`,
/// `{"not": {..}}`.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::Filter;
/// use serde_json::json;
/// let adult_red = Filter::gte("age", 18).and(Filter::eq("team", "red"));
/// assert!(adult_red.matches(&json!({"age": 30, "team": "red"})));
/// assert!(!adult_red.matches(&json!({"age": 12, "team": "red"})));
/// assert!(Filter::eq("tags.0", "x").matches(&json!({"tags": ["x"]})));
/// assert!(Filter::exists("email").not().matches(&json!({})));
/// let parsed: Filter = serde_json::from_value(json!({"gte": ["age", 18]})).unwrap();
/// assert_eq!(parsed, Filter::gte("age", 18));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Filter {
    /// The field equals the value.
    Eq(String, Value),
    /// The field is missing or differs from the value.
    Ne(String, Value),
    /// The field is greater than the value.
    Gt(String, Value),
    /// The field is greater than or equal to the value.
    Gte(String, Value),
    /// The field is less than the value.
    Lt(String, Value),
    /// The field is less than or equal to the value.
    Lte(String, Value),
    /// The field is present (possibly `null`).
    Exists(String),
    /// Every condition holds.
    And(Vec<Filter>),
    /// At least one condition holds.
    Or(Vec<Filter>),
    /// The condition does not hold.
    Not(Box<Filter>),
}

impl Filter {
    /// See [`Filter::Eq`].
    pub fn eq(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Eq(path.into(), value.into())
    }
    /// See [`Filter::Ne`].
    pub fn ne(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Ne(path.into(), value.into())
    }
    /// See [`Filter::Gt`].
    pub fn gt(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Gt(path.into(), value.into())
    }
    /// See [`Filter::Gte`].
    pub fn gte(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Gte(path.into(), value.into())
    }
    /// See [`Filter::Lt`].
    pub fn lt(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Lt(path.into(), value.into())
    }
    /// See [`Filter::Lte`].
    pub fn lte(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Lte(path.into(), value.into())
    }
    /// See [`Filter::Exists`].
    pub fn exists(path: impl Into<String>) -> Self {
        Filter::Exists(path.into())
    }
    /// Both conditions (flattened into one [`Filter::And`]).
    #[must_use]
    pub fn and(self, other: Filter) -> Self {
        match self {
            Filter::And(mut all) => {
                all.push(other);
                Filter::And(all)
            }
            first => Filter::And(vec![first, other]),
        }
    }
    /// Either condition (flattened into one [`Filter::Or`]).
    #[must_use]
    pub fn or(self, other: Filter) -> Self {
        match self {
            Filter::Or(mut any) => {
                any.push(other);
                Filter::Or(any)
            }
            first => Filter::Or(vec![first, other]),
        }
    }
    /// The opposite condition.
    #[must_use]
    #[allow(clippy::should_implement_trait)] // `!filter` would read worse in chains
    pub fn not(self) -> Self {
        Filter::Not(Box::new(self))
    }

    /// Whether `value` meets the condition.
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            Filter::Eq(p, v) => field(value, p).is_some_and(|f| json_eq(f, v)),
            Filter::Ne(p, v) => !field(value, p).is_some_and(|f| json_eq(f, v)),
            Filter::Gt(p, v) => compare(value, p, v).is_some_and(Ordering::is_gt),
            Filter::Gte(p, v) => compare(value, p, v).is_some_and(Ordering::is_ge),
            Filter::Lt(p, v) => compare(value, p, v).is_some_and(Ordering::is_lt),
            Filter::Lte(p, v) => compare(value, p, v).is_some_and(Ordering::is_le),
            Filter::Exists(p) => field(value, p).is_some(),
            Filter::And(all) => all.iter().all(|f| f.matches(value)),
            Filter::Or(any) => any.iter().any(|f| f.matches(value)),
            Filter::Not(f) => !f.matches(value),
        }
    }
}

/// The field of `value` at dotted `path`.
fn field<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Equality, numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(value: &Value, path: &str, with: &Value) -> Option<Ordering> {
    match (field(value, path)?, with) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// A search of items: those under a namespace prefix, not expired at `now_ms`, meeting a
/// filter, ranked by similarity to a vector when there is one (otherwise in namespace and
/// key order), `offset` skipped, at most `limit`.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::{Filter, ItemQuery, Namespace};
/// let q = ItemQuery::new(Namespace::new(["users"]))
///     .filter(Filter::eq("kind", "note"))
///     .limit(5)
///     .offset(10)
///     .at(1_700_000_000_000);
/// assert_eq!((q.limit, q.offset), (5, 10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ItemQuery {
    /// The namespace prefix.
    pub prefix: Namespace,
    /// The condition on the values.
    pub filter: Option<Filter>,
    /// The vector to rank by (cosine similarity); only items with an embedding of the same
    /// length are found when it is set.
    pub vector: Option<Vec<f32>>,
    /// The most items returned (10 by default).
    pub limit: usize,
    /// How many items to skip first.
    pub offset: usize,
    /// The time expiry is judged at, in milliseconds since the Unix epoch (0 by default: see
    /// [`at`](ItemQuery::at)).
    pub now_ms: u64,
}

impl ItemQuery {
    /// Every item under `prefix`, the first 10.
    pub fn new(prefix: Namespace) -> Self {
        ItemQuery {
            prefix,
            filter: None,
            vector: None,
            limit: 10,
            offset: 0,
            now_ms: 0,
        }
    }
    /// Sets the filter.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
    /// Ranks by similarity to `vector`.
    #[must_use]
    pub fn vector(mut self, vector: Vec<f32>) -> Self {
        self.vector = Some(vector);
        self
    }
    /// Sets the most items returned.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Sets how many items are skipped.
    #[must_use]
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }
    /// Judges expiry at `now_ms`.
    #[must_use]
    pub fn at(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Whether `item` is found by the query but for ranking and paging.
    pub fn admits(&self, item: &Item) -> bool {
        item.namespace.starts_with(&self.prefix)
            && !item.is_expired(self.now_ms)
            && self.filter.as_ref().is_none_or(|f| f.matches(&item.value))
            && match &self.vector {
                Some(v) => item.embedding.as_ref().is_some_and(|e| e.len() == v.len()),
                None => true,
            }
    }
}

/// An item a search found, with its similarity to the query's vector (when it had one). The
/// item of a semantic search's hit carries no embedding (read it with
/// [`CheckpointStore::get_item`] if needed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Hit {
    /// The item.
    #[serde(flatten)]
    pub item: Item,
    /// Its cosine similarity to the query's vector.
    pub score: Option<f32>,
}

impl Hit {
    /// A hit of `item` with `score`.
    pub fn new(item: Item, score: Option<f32>) -> Self {
        Hit { item, score }
    }
}

/// The cosine similarity of `a` and `b` (0 when either is zero).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::cosine;
/// assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
/// assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
/// ```
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot(a, b) / (na * nb)
}

fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// The dot product, in eight lanes (which the compiler vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// Ranks and pages the items of `items` the query admits: the provided body of searches over
/// a scan (and of the index's fallback).
pub fn search_in(items: Vec<Item>, query: &ItemQuery) -> Vec<Hit> {
    let mut hits: Vec<Hit> = items
        .into_iter()
        .filter(|item| query.admits(item))
        .map(|mut item| {
            let score = query.vector.as_ref().map(|v| {
                let e = item.embedding.take().unwrap_or_default();
                cosine(v, &e)
            });
            Hit::new(item, score)
        })
        .collect();
    if query.vector.is_some() {
        hits.sort_by(|a, b| by_score(a.score, b.score));
    } else {
        hits.sort_by(|a, b| {
            (&a.item.namespace, &a.item.key).cmp(&(&b.item.namespace, &b.item.key))
        });
    }
    hits.into_iter()
        .skip(query.offset)
        .take(query.limit)
        .collect()
}

/// Higher scores first.
fn by_score(a: Option<f32>, b: Option<f32>) -> Ordering {
    b.unwrap_or(f32::MIN).total_cmp(&a.unwrap_or(f32::MIN))
}

/// The namespaces of the items not expired at `now_ms` under `prefix`, each once, sorted.
pub fn namespaces_in(items: &[Item], now_ms: u64) -> Vec<Namespace> {
    let mut out: Vec<Namespace> = items
        .iter()
        .filter(|i| !i.is_expired(now_ms))
        .map(|i| i.namespace.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Turns texts into vectors for semantic search: one vector per text, all of one length.
/// Called with several texts at once where it can (a batch).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::{Embedder, HashEmbedder, cosine};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let embedder = HashEmbedder::new(64);
/// let v = embedder.embed(&["green tea".into(), "tea green".into(), "rust".into()]).await.unwrap();
/// assert_eq!(v[0].len(), 64);
/// assert!(cosine(&v[0], &v[1]) > 0.99); // same words
/// assert!(cosine(&v[0], &v[2]) < 0.5);
/// # }
/// ```
pub trait Embedder: Send + Sync + fmt::Debug + 'static {
    /// The vectors of `texts`, in their order.
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, std::result::Result<Vec<Vec<f32>>, EmbedError>>;
}

/// Why an [`Embedder`] failed.
pub type EmbedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A deterministic [`Embedder`] for tests and examples: each lowercase word of the text
/// (letters and digits) adds 1 to a dimension chosen by its hash, and the vector is
/// normalised. Texts sharing words are similar; no model is needed.
#[derive(Debug, Clone, Copy)]
pub struct HashEmbedder {
    dims: usize,
}

impl HashEmbedder {
    /// An embedder of `dims`-dimension vectors (at least 1).
    pub fn new(dims: usize) -> Self {
        HashEmbedder { dims: dims.max(1) }
    }

    /// The vector of one text.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            // FNV-1a: stable across builds and platforms.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in word.to_lowercase().bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            v[(h % self.dims as u64) as usize] += 1.0;
        }
        let n = norm(&v);
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        v
    }
}

impl Embedder for HashEmbedder {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, std::result::Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { Ok(texts.iter().map(|t| self.vector(t)).collect()) })
    }
}

/// The in-process vector index of a store handle: every item that has an embedding, its
/// normalised vector in one contiguous `f32` matrix, searched by brute force.
///
/// A store builds it at its first semantic search from a scan of every item
/// ([`install`](ItemIndex::install)), and updates it with each batch it commits
/// ([`committed`](ItemIndex::committed)); a scan that a commit overlapped is not installed
/// (the [`generation`](ItemIndex::generation) moved), and the search runs on the scan instead.
/// For store authors: [`CheckpointStore::item_index`] hands it to the provided
/// [`search_items`](CheckpointStore::search_items).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::items::{Item, ItemIndex, ItemQuery, Namespace};
/// let index = ItemIndex::new();
/// let ns = Namespace::new(["docs"]);
/// let items = vec![
///     Item::new(ns.clone(), "x", serde_json::json!(1)).with_embedding(vec![1.0, 0.0]),
///     Item::new(ns.clone(), "y", serde_json::json!(2)).with_embedding(vec![0.0, 1.0]),
/// ];
/// assert!(index.install(index.generation(), items));
/// let hits = index.search(&ItemQuery::new(ns).vector(vec![0.1, 1.0]).limit(1)).unwrap();
/// assert_eq!(hits[0].item.key, "y");
/// ```
#[derive(Debug, Default)]
pub struct ItemIndex {
    state: RwLock<IndexState>,
}

#[derive(Debug, Default)]
struct IndexState {
    /// Moves on with every commit that writes items.
    generation: u64,
    built: Option<Built>,
    /// For a store shared by processes: the store's change number the index reflects.
    version: Option<u64>,
}

#[derive(Debug)]
struct Built {
    dims: usize,
    /// The items, row by row (the row's vector is `matrix[row * dims..][..dims]`).
    items: Vec<Item>,
    /// The encoded namespace of each row, for prefix checks.
    namespaces: Vec<Vec<u8>>,
    matrix: Vec<f32>,
    /// The row of each (encoded namespace + key).
    rows: HashMap<Vec<u8>, usize>,
}

impl Built {
    fn new(dims: usize) -> Self {
        Built {
            dims,
            items: Vec::new(),
            namespaces: Vec::new(),
            matrix: Vec::new(),
            rows: HashMap::new(),
        }
    }

    fn remove(&mut self, key: &[u8]) {
        let Some(row) = self.rows.remove(key) else {
            return;
        };
        let last = self.items.len() - 1;
        self.items.swap_remove(row);
        self.namespaces.swap_remove(row);
        if row != last {
            let (d, dims) = (row * self.dims, self.dims);
            self.matrix.copy_within(last * dims..(last + 1) * dims, d);
            let moved = Item::storage_key(&self.items[row].namespace, &self.items[row].key);
            self.rows.insert(moved, row);
        }
        self.matrix.truncate(last * self.dims);
    }

    fn put(&mut self, item: Item) {
        let key = Item::storage_key(&item.namespace, &item.key);
        self.remove(&key);
        let Some(e) = item.embedding.as_ref().filter(|e| e.len() == self.dims) else {
            return;
        };
        let n = norm(e);
        let scale = if n > 0.0 { 1.0 / n } else { 0.0 };
        self.matrix.extend(e.iter().map(|x| x * scale));
        // The vector lives in the matrix only: hits carry no embedding.
        let mut item = item;
        item.embedding = None;
        self.rows.insert(key, self.items.len());
        self.namespaces.push(item.namespace.encode());
        self.items.push(item);
    }
}

impl ItemIndex {
    /// An empty index, not built.
    pub fn new() -> Self {
        ItemIndex::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of commits that wrote items so far: read it before the scan given to
    /// [`install`](ItemIndex::install).
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Whether it is built.
    pub fn is_built(&self) -> bool {
        self.read().built.is_some()
    }

    /// Builds the index from `items` (every item of the store, read after
    /// [`generation`](ItemIndex::generation) returned `generation`), unless a commit wrote
    /// items since; whether it did. The vectors' length is the first embedding's; items
    /// with another length are left out.
    pub fn install(&self, generation: u64, items: Vec<Item>) -> bool {
        let dims = items
            .iter()
            .find_map(|i| i.embedding.as_ref().map(Vec::len))
            .unwrap_or(0);
        let mut built = Built::new(dims);
        let count = items.iter().filter(|i| i.embedding.is_some()).count();
        built.matrix.reserve(count * dims);
        built.items.reserve(count);
        for item in items {
            if item.embedding.is_some() {
                built.put(item);
            }
        }
        let mut state = self.write();
        if state.generation != generation {
            return false;
        }
        state.built = Some(built);
        true
    }

    /// For a store that several processes write (PostgreSQL): the store's change number the
    /// index reflects, once built by [`catch_up`](ItemIndex::catch_up).
    pub fn version(&self) -> Option<u64> {
        self.read().version
    }

    /// For a store that several processes write: brings the index to the store's change
    /// number `version`, with the items changed since [`version`](ItemIndex::version)
    /// (`None` for a deleted one), or with every item when it had no version. Changes older
    /// than the index's version are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::items::{Item, ItemIndex, ItemQuery, Namespace};
    /// let index = ItemIndex::new();
    /// let ns = Namespace::new(["a"]);
    /// let x = Item::new(ns.clone(), "x", serde_json::json!(1)).with_embedding(vec![1.0]);
    /// index.catch_up(3, vec![(ns.clone(), "x".into(), Some(x))]);
    /// assert_eq!(index.version(), Some(3));
    /// index.catch_up(4, vec![(ns.clone(), "x".into(), None)]);
    /// assert!(index.search(&ItemQuery::new(ns).vector(vec![1.0])).unwrap().is_empty());
    /// ```
    pub fn catch_up(&self, version: u64, changes: Vec<(Namespace, String, Option<Item>)>) {
        let mut state = self.write();
        if state.version.is_some_and(|v| v >= version) {
            return;
        }
        let fresh = state.version.is_none() || state.built.is_none();
        if fresh {
            let dims = changes
                .iter()
                .find_map(|(_, _, i)| i.as_ref()?.embedding.as_ref().map(Vec::len))
                .unwrap_or(0);
            state.built = Some(Built::new(dims));
        }
        let built = state.built.as_mut().expect("built above");
        for (namespace, key, item) in changes {
            match item {
                Some(item) => {
                    if built.items.is_empty()
                        && let Some(e) = &item.embedding
                    {
                        built.dims = e.len();
                    }
                    built.put(item);
                }
                None => built.remove(&Item::storage_key(&namespace, &key)),
            }
        }
        state.version = Some(version);
    }

    /// Forgets the index (the next semantic search builds it again).
    pub fn invalidate(&self) {
        let mut state = self.write();
        state.generation += 1;
        state.built = None;
        state.version = None;
    }

    /// Applies the item operations of a committed batch (call it after the batch is visible
    /// to reads). Other operations are ignored; a batch without item operations costs a scan
    /// of its operations and nothing else.
    pub fn committed<'a>(&self, ops: impl IntoIterator<Item = &'a Op>) {
        let mut ops = ops.into_iter().filter(|op| is_item_op(op)).peekable();
        if ops.peek().is_none() {
            return;
        }
        let mut state = self.write();
        state.generation += 1;
        let Some(built) = state.built.as_mut() else {
            return;
        };
        for op in ops {
            match op {
                Op::PutItem(item) => {
                    if built.items.is_empty()
                        && let Some(e) = &item.embedding
                    {
                        built.dims = e.len();
                    }
                    built.put(item.clone());
                }
                Op::DeleteItem {
                    namespace,
                    key,
                    if_expired_at,
                } => {
                    let k = Item::storage_key(namespace, key);
                    let expired = match if_expired_at {
                        None => true,
                        Some(now) => built
                            .rows
                            .get(&k)
                            .is_none_or(|&row| built.items[row].is_expired(*now)),
                    };
                    if expired {
                        built.remove(&k);
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs a semantic `query` (one with a vector) on the index; `None` when it is not built.
    pub fn search(&self, query: &ItemQuery) -> Option<Vec<Hit>> {
        let state = self.read();
        let built = state.built.as_ref()?;
        let Some(vector) = query.vector.as_ref() else {
            return Some(Vec::new());
        };
        if vector.len() != built.dims || built.items.is_empty() {
            return Some(Vec::new());
        }
        let n = norm(vector);
        if n == 0.0 {
            return Some(Vec::new());
        }
        let q: Vec<f32> = vector.iter().map(|x| x / n).collect();
        let prefix = query.prefix.encode();
        let all = prefix.is_empty();
        // Rows scored on up to `PARALLEL_PARTS` threads for a large index (the scan is bound by
        // memory bandwidth and the cores' arithmetic, not by anything shared).
        let score_rows = |from: usize, to: usize| {
            let mut out: Vec<(f32, u32)> = Vec::with_capacity(to - from);
            let rows = built.matrix[from * built.dims..to * built.dims].chunks_exact(built.dims);
            for (i, v) in rows.enumerate() {
                let row = from + i;
                if all || built.namespaces[row].starts_with(&prefix) {
                    out.push((dot(&q, v), row as u32));
                }
            }
            out
        };
        let n = built.items.len();
        let parts = if n >= PARALLEL_MIN_ROWS {
            std::thread::available_parallelism().map_or(1, |p| p.get().min(PARALLEL_PARTS))
        } else {
            1
        };
        let mut scores = if parts > 1 {
            let bounds: Vec<(usize, usize)> = (0..parts)
                .map(|p| (n * p / parts, n * (p + 1) / parts))
                .collect();
            std::thread::scope(|scope| {
                let handles: Vec<_> = bounds[1..]
                    .iter()
                    .map(|&(from, to)| scope.spawn(move || score_rows(from, to)))
                    .collect();
                let mut all_scores = score_rows(bounds[0].0, bounds[0].1);
                for h in handles {
                    all_scores.extend(h.join().expect("a scoring thread does not panic"));
                }
                all_scores
            })
        } else {
            score_rows(0, n)
        };
        let want = query.offset.saturating_add(query.limit);
        let admitted = |row: u32| {
            let item = &built.items[row as usize];
            !item.is_expired(query.now_ms)
                && query.filter.as_ref().is_none_or(|f| f.matches(&item.value))
        };
        let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        // The best few first; all of them in order only when the filter drops too many.
        let mut take = want.saturating_mul(4).max(64);
        loop {
            let head = take.min(scores.len());
            if head < scores.len() {
                scores.select_nth_unstable_by(head, order);
            }
            let top = &mut scores[..head];
            top.sort_unstable_by(order);
            let found: Vec<(f32, u32)> = top
                .iter()
                .copied()
                .filter(|&(_, row)| admitted(row))
                .take(want)
                .collect();
            if found.len() == want || head == scores.len() {
                return Some(
                    found
                        .into_iter()
                        .skip(query.offset)
                        .map(|(score, row)| {
                            Hit::new(built.items[row as usize].clone(), Some(score))
                        })
                        .collect(),
                );
            }
            take = take.saturating_mul(4);
        }
    }
}

/// An index of at least this many rows is scored on several threads.
const PARALLEL_MIN_ROWS: usize = 32_768;
/// The most threads one search scores on.
const PARALLEL_PARTS: usize = 4;

/// Whether `op` writes an item.
pub fn is_item_op(op: &Op) -> bool {
    matches!(op, Op::PutItem(_) | Op::DeleteItem { .. })
}

/// The body of [`CheckpointStore::search_items`].
pub(crate) async fn search_items<S: CheckpointStore + ?Sized>(
    store: &S,
    query: &ItemQuery,
) -> Result<Vec<Hit>> {
    if let (Some(index), Some(_)) = (store.item_index(), &query.vector) {
        for _ in 0..3 {
            if let Some(hits) = index.search(query) {
                return Ok(hits);
            }
            let generation = index.generation();
            let all = store.scan_items(&Namespace::root()).await?;
            index.install(generation, all);
        }
        // Commits kept overlapping the scans: search a scan without keeping it.
        let items = store.scan_items(&query.prefix).await?;
        return Ok(search_in(items, query));
    }
    let items = store.scan_items(&query.prefix).await?;
    Ok(search_in(items, query))
}

/// What a sweep removes: a fenced-free batch deleting the items expired at `now_ms`, each
/// only if it is still expired when the batch applies.
pub(crate) async fn sweep_items<S: CheckpointStore + ?Sized>(store: &S, now_ms: u64) -> Result<()> {
    if !store.supports_items() {
        return Ok(());
    }
    let expired: Vec<Item> = store
        .scan_items(&Namespace::root())
        .await?
        .into_iter()
        .filter(|i| i.is_expired(now_ms))
        .collect();
    for chunk in expired.chunks(256) {
        let mut batch = crate::WriteBatch::new();
        for item in chunk {
            batch.push(Op::DeleteItem {
                namespace: item.namespace.clone(),
                key: item.key.clone(),
                if_expired_at: Some(now_ms),
            });
        }
        store.commit(batch).await?;
    }
    store.prune_deleted_items().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &[&str]) -> Namespace {
        Namespace::new(s.iter().copied())
    }

    #[test]
    fn encodings_keep_prefixes_exact() {
        let cases: Vec<Namespace> = vec![
            ns(&["tenant", "acme"]),
            ns(&["tenant", "acme-corp"]),
            ns(&["tenant", "acme", ""]),
            ns(&["tenant", "acme\0"]),
            ns(&["tenant", "acme\0\u{1}"]),
            ns(&["tenant", "acme/x"]),
            ns(&["tenant", "acme", "x"]),
            ns(&["tenant/acme"]),
            ns(&["tenant"]),
            ns(&[""]),
            ns(&["", ""]),
            ns(&["\0"]),
            ns(&["\u{ff}"]),
        ];
        for a in &cases {
            assert_eq!(&Namespace::decode(&a.encode()).unwrap(), a);
            for b in &cases {
                assert_eq!(
                    b.encode().starts_with(&a.encode()),
                    b.starts_with(a),
                    "{a:?} vs {b:?}"
                );
                assert_eq!(a.encode().cmp(&b.encode()), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
        assert!(Namespace::decode(b"a").is_err());
        assert!(Namespace::decode(b"a\0\x02").is_err());
        assert!(Namespace::decode(&[0xff, 0, 1]).is_err());
    }

    #[test]
    fn index_follows_commits() {
        let index = ItemIndex::new();
        let n = ns(&["a"]);
        let item =
            |k: &str, v: [f32; 2]| Item::new(n.clone(), k, Value::Null).with_embedding(v.to_vec());
        assert!(index.install(0, vec![item("x", [1.0, 0.0]), item("y", [0.0, 1.0])]));
        let q = ItemQuery::new(n.clone()).vector(vec![1.0, 0.1]);
        let keys = |hits: Vec<Hit>| hits.into_iter().map(|h| h.item.key).collect::<Vec<_>>();
        assert_eq!(keys(index.search(&q).unwrap()), ["x", "y"]);
        let ops = [
            Op::DeleteItem {
                namespace: n.clone(),
                key: "x".into(),
                if_expired_at: None,
            },
            Op::PutItem(item("z", [1.0, 0.5])),
            Op::PutItem(item("y", [1.0, 0.0])),
        ];
        index.committed(&ops);
        assert_eq!(keys(index.search(&q).unwrap()), ["y", "z"]);
        assert!(!index.install(0, Vec::new()), "a stale scan is refused");
        let q = q.filter(Filter::eq("", Value::Null)).offset(1);
        assert_eq!(keys(index.search(&q).unwrap()), ["z"]);
    }
}
