//! [`CacheLayer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::Layer;

use super::{Cached, DefaultKey, Store};

/// Keeps the results of the nodes it wraps for a time, keyed by their input: a call whose key
/// was seen within the time to live returns the stored update (and go-to) without calling the
/// node.
///
/// The key is the node's name plus, by default ([`DefaultKey`]), a hash of the whole state and
/// the packet input; [`with_key`](CacheLayer::with_key) sets a key of your own. Only
/// successful results are kept: a node that fails is called again next time. Calls with one
/// key that arrive while the node runs for it wait for that call's result instead of calling
/// the node again (moka's `try_get_with`).
///
/// The cache (moka's async cache) belongs to the layer value: nodes wrapped by one value, or
/// by its clones, share it and its capacity. It holds updates encoded with the engine's codec,
/// since a [`Command`](agentgraph_engine::Command) cannot be cloned, and decodes one per hit.
///
/// A cached node runs no side effects on a hit: cache only nodes whose result depends on their
/// input alone (a pure computation, an idempotent lookup).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use std::sync::atomic::{AtomicU32, Ordering};
/// # use std::time::Duration;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Search { query: String, #[reducer(append)] hits: Vec<String> }
/// use agentgraph_layers::CacheLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calls = Arc::new(AtomicU32::new(0));
/// let counted = calls.clone();
/// let search = async_node(move |s: Arc<Search>, _| {
///     counted.fetch_add(1, Ordering::Relaxed);
///     async move { Ok(SearchUpdate::new().hits(vec![format!("about {}", s.query)])) }
/// });
/// let cache = CacheLayer::new(1_000, Duration::from_secs(600));
/// let mut b = GraphBuilder::<Search>::new();
/// b.add_node_with("search", NodeBuilder::new().layer(cache.clone()).node(search))
///     .add_edge(START, "search")
///     .add_edge("search", END);
/// let graph = b.compile()?;
///
/// let input = Search { query: "moka".into(), ..Default::default() };
/// let first = graph.invoke(input.clone()).await?;
/// let second = graph.invoke(input).await?; // the same state: served from the cache
/// assert_eq!(first.hits, second.hits);
/// assert_eq!(calls.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
pub struct CacheLayer<K = DefaultKey> {
    store: Store,
    key: Arc<K>,
    max_capacity: u64,
    time_to_live: Duration,
}

impl CacheLayer {
    /// A cache of at most `max_capacity` results, each kept for `time_to_live` after it was
    /// stored, keyed by [`DefaultKey`].
    ///
    /// When the cache is full, moka evicts the entries least likely to be used again
    /// (TinyLFU), not necessarily the oldest.
    ///
    /// # Panics
    ///
    /// If `time_to_live` is longer than 1,000 years (moka's limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CacheLayer;
    ///
    /// let cache = CacheLayer::new(10_000, Duration::from_secs(3600));
    /// assert_eq!(cache.max_capacity(), 10_000);
    /// assert_eq!(cache.entry_count(), 0);
    /// ```
    pub fn new(max_capacity: u64, time_to_live: Duration) -> Self {
        CacheLayer {
            store: moka::future::Cache::builder()
                .max_capacity(max_capacity)
                .time_to_live(time_to_live)
                .build(),
            key: Arc::new(DefaultKey),
            max_capacity,
            time_to_live,
        }
    }
}

impl<K> CacheLayer<K> {
    /// Keys calls with `key` instead: a [`CacheKey`](crate::CacheKey), such as a closure
    /// `Fn(&S, &Context) -> impl Hash` (write its arguments' types out). The node's name is
    /// added to the key. The cache itself is kept.
    ///
    /// # Examples
    ///
    /// Cache by the query alone, whatever else the state holds:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Search { query: String, #[reducer(append)] hits: Vec<String> }
    /// use agentgraph_layers::CacheLayer;
    ///
    /// let cache = CacheLayer::new(1_000, Duration::from_secs(600))
    ///     .with_key(|s: &Search, _: &Context| s.query.clone());
    /// let node = NodeBuilder::new().layer(cache).node(async_node(|s: Arc<Search>, _| async move {
    ///     Ok(SearchUpdate::new().hits(vec![s.query.clone()]))
    /// }));
    /// GraphBuilder::<Search>::new().add_node_with("search", node);
    /// ```
    pub fn with_key<K2>(self, key: K2) -> CacheLayer<K2> {
        CacheLayer {
            store: self.store,
            key: Arc::new(key),
            max_capacity: self.max_capacity,
            time_to_live: self.time_to_live,
        }
    }

    /// The most results the cache holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CacheLayer;
    /// assert_eq!(CacheLayer::new(5, Duration::from_secs(1)).max_capacity(), 5);
    /// ```
    pub fn max_capacity(&self) -> u64 {
        self.max_capacity
    }

    /// How long a result is kept after it was stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CacheLayer;
    /// let ttl = Duration::from_secs(60);
    /// assert_eq!(CacheLayer::new(5, ttl).time_to_live(), ttl);
    /// ```
    pub fn time_to_live(&self) -> Duration {
        self.time_to_live
    }

    /// How many results the cache holds, approximately: moka applies inserts and evictions
    /// in batches; call [`run_pending_tasks`](CacheLayer::run_pending_tasks) first for an
    /// exact count.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CacheLayer;
    /// assert_eq!(CacheLayer::new(5, Duration::from_secs(1)).entry_count(), 0);
    /// ```
    pub fn entry_count(&self) -> u64 {
        self.store.entry_count()
    }

    /// Drops every result: the next call of each node runs it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CacheLayer;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = CacheLayer::new(5, Duration::from_secs(1));
    /// cache.invalidate_all();
    /// cache.run_pending_tasks().await;
    /// assert_eq!(cache.entry_count(), 0);
    /// # }
    /// ```
    pub fn invalidate_all(&self) {
        self.store.invalidate_all();
    }

    /// Applies the cache's pending inserts, invalidations and evictions now (moka otherwise
    /// applies them now and then as the cache is used).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::CacheLayer;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = CacheLayer::new(5, Duration::from_secs(1));
    /// cache.run_pending_tasks().await;
    /// assert_eq!(cache.entry_count(), 0);
    /// # }
    /// ```
    pub async fn run_pending_tasks(&self) {
        self.store.run_pending_tasks().await;
    }
}

impl<K> Clone for CacheLayer<K> {
    fn clone(&self) -> Self {
        CacheLayer {
            store: self.store.clone(),
            key: self.key.clone(),
            max_capacity: self.max_capacity,
            time_to_live: self.time_to_live,
        }
    }
}

impl<K> fmt::Debug for CacheLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("max_capacity", &self.max_capacity)
            .field("time_to_live", &self.time_to_live)
            .field("entry_count", &self.store.entry_count())
            .finish_non_exhaustive()
    }
}

impl<N, K> Layer<N> for CacheLayer<K> {
    type Node = Cached<N, K>;

    fn layer(&self, inner: N) -> Cached<N, K> {
        Cached::new(inner, self.store.clone(), self.key.clone())
    }
}
