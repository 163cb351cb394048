//! [`Cached`].

use std::any::TypeId;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use agentgraph_engine::{BoxError, CodecError, Command, Context, Node, NodeFuture, State, codec};
use xxhash_rust::xxh3::Xxh3Default;

use super::{CacheKey, Entry, Store};
use crate::error::Error;

/// A node whose results are cached; made by [`CacheLayer`](crate::CacheLayer).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{CacheLayer, Cached, DefaultKey};
///
/// let node: Cached<_, DefaultKey> = NodeBuilder::new()
///     .layer(CacheLayer::new(100, Duration::from_secs(60)))
///     .node(cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new().n(1))));
/// GraphBuilder::<Count>::new().add_node_with("work", node);
/// ```
pub struct Cached<N, K> {
    inner: Arc<N>,
    store: Store,
    key: Arc<K>,
}

impl<N, K> Cached<N, K> {
    pub(super) fn new(inner: N, store: Store, key: Arc<K>) -> Self {
        Cached {
            inner: Arc::new(inner),
            store,
            key,
        }
    }

    /// The wrapped node.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::CacheLayer;
    /// let node = CacheLayer::new(1, Duration::from_secs(1)).layer("any value");
    /// assert_eq!(*node.get_ref(), "any value");
    /// ```
    pub fn get_ref(&self) -> &N {
        &self.inner
    }
}

impl<N, K> Clone for Cached<N, K> {
    fn clone(&self) -> Self {
        Cached {
            inner: self.inner.clone(),
            store: self.store.clone(),
            key: self.key.clone(),
        }
    }
}

impl<N: fmt::Debug, K> fmt::Debug for Cached<N, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: State, N: Node<S>, K: CacheKey<S>> Node<S> for Cached<N, K> {
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let key = match self.key.key(&state, &ctx) {
            Ok(key) => full_key::<S>(key, ctx.node()),
            Err(source) => {
                let node = ctx.node().to_owned();
                return Box::pin(async move { Err(Error::Key { node, source }.into()) });
            }
        };
        let inner = self.inner.clone();
        let store = self.store.clone();
        Box::pin(async move {
            // The result of this task's own call of the node, if it made one: returned as the
            // node made it, so that a miss costs no decoding and an error keeps its type.
            let mut fresh: Option<Result<Command<S>, BoxError>> = None;
            let node_ctx = ctx.clone();
            let cached = store
                .try_get_with(key, async {
                    match inner.call(state, node_ctx).await {
                        Ok(cmd) => {
                            let entry = encode(&cmd).map_err(Failure::Encode)?;
                            fresh = Some(Ok(cmd));
                            Ok(entry)
                        }
                        Err(e) => {
                            let message = e.to_string();
                            fresh = Some(Err(e));
                            Err(Failure::Node(message))
                        }
                    }
                })
                .await;
            let node = || ctx.node().to_owned();
            match (fresh, cached) {
                (Some(result), _) => result,
                (None, Ok(entry)) => decode(&entry).map_err(|source| {
                    Error::Decode {
                        node: node(),
                        source,
                    }
                    .into()
                }),
                (None, Err(failure)) => Err(match &*failure {
                    Failure::Encode(source) => Error::Encode {
                        node: node(),
                        source: source.clone(),
                    },
                    Failure::Node(message) => Error::Shared {
                        node: node(),
                        message: message.clone(),
                    },
                }
                .into()),
            }
        })
    }
}

/// Why no entry was made, as every caller waiting for it is told.
enum Failure {
    /// The node failed, with this message.
    Node(String),
    /// The node's update did not encode.
    Encode(CodecError),
}

/// The cache key: the key's own, the node and the state's type, so that one layer on several
/// nodes (or graphs) never mixes their results.
fn full_key<S: 'static>(key: u128, node: &str) -> u128 {
    let mut h = Xxh3Default::new();
    h.update(&key.to_le_bytes());
    h.update(node.as_bytes());
    TypeId::of::<S>().hash(&mut h);
    h.digest128()
}

fn encode<S: State>(cmd: &Command<S>) -> Result<Entry, CodecError> {
    let mut update = Vec::new();
    codec::encode_into(cmd.update(), &mut update)?;
    Ok(Entry {
        update: update.into(),
        goto: cmd.route().cloned(),
    })
}

fn decode<S: State>(entry: &Entry) -> Result<Command<S>, CodecError> {
    let cmd = Command::new(codec::decode(&entry.update)?);
    Ok(match &entry.goto {
        Some(route) => cmd.goto(route.clone()),
        None => cmd,
    })
}
