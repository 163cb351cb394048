//! [`CacheKey`] and [`DefaultKey`].

use std::hash::Hash;

use agentgraph_engine::{CodecError, Context, codec};
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3Default;

/// What tells one call of a cached node from another: calls with equal keys share a result.
///
/// [`DefaultKey`] hashes the whole state and the packet input. Any closure
/// `Fn(&S, &Context) -> impl Hash` is a key too; give it to
/// [`CacheLayer::with_key`](crate::CacheLayer::with_key), with its arguments' types written
/// out. The layer adds the node's name and the state's type to every key, so one layer on
/// several nodes never mixes their results.
///
/// # Examples
///
/// Calls whose queries differ only in case share a result:
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
/// let search = async_node(move |_: Arc<Search>, _| {
///     counted.fetch_add(1, Ordering::Relaxed);
///     async { Ok(SearchUpdate::new().hits(vec!["a hit".into()])) }
/// });
/// let cache = CacheLayer::new(100, Duration::from_secs(60))
///     .with_key(|s: &Search, _: &Context| s.query.to_lowercase());
/// let mut b = GraphBuilder::<Search>::new();
/// b.add_node_with("search", NodeBuilder::new().layer(cache).node(search))
///     .add_edge(START, "search")
///     .add_edge("search", END);
/// let graph = b.compile()?;
/// for query in ["Rust", "rust", "RUST"] {
///     graph.invoke(Search { query: query.into(), ..Default::default() }).await?;
/// }
/// assert_eq!(calls.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
pub trait CacheKey<S>: Send + Sync + 'static {
    /// The key of a call with `state` and `ctx`.
    ///
    /// # Errors
    ///
    /// When the key cannot be made: [`DefaultKey`] fails when the state does not encode.
    fn key(&self, state: &S, ctx: &Context) -> Result<u128, CodecError>;
}

/// The default [`CacheKey`]: the xxh3-128 hash of the state's encoding (the engine's codec)
/// and the packet input, if the task has one.
///
/// It encodes the whole state on every call; a key of your own that reads only what the node
/// reads is cheaper, and keeps hitting when unrelated fields change.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_layers::{CacheLayer, DefaultKey};
///
/// // What `CacheLayer::new` keys by.
/// let cache: CacheLayer<DefaultKey> = CacheLayer::new(100, Duration::from_secs(60));
/// assert_eq!(cache.entry_count(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultKey;

impl<S: Serialize> CacheKey<S> for DefaultKey {
    fn key(&self, state: &S, ctx: &Context) -> Result<u128, CodecError> {
        let mut bytes = Vec::new();
        codec::encode_into(state, &mut bytes)?;
        let mut h = Xxh3Default::new();
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
        match ctx.input_bytes() {
            Some(input) => {
                h.update(&[1]);
                h.update(&(input.len() as u64).to_le_bytes());
                h.update(input);
            }
            None => h.update(&[0]),
        }
        Ok(h.digest128())
    }
}

impl<S, F, H> CacheKey<S> for F
where
    F: Fn(&S, &Context) -> H + Send + Sync + 'static,
    H: Hash,
{
    fn key(&self, state: &S, ctx: &Context) -> Result<u128, CodecError> {
        let mut h = Xxh3Default::new();
        self(state, ctx).hash(&mut h);
        Ok(h.digest128())
    }
}
