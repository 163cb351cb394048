//! Results kept for a time: [`CacheLayer`], the node it makes, [`Cached`], and the keys that
//! tell calls apart, [`CacheKey`].

mod key;
mod layer;
mod node;

pub use key::{CacheKey, DefaultKey};
pub use layer::CacheLayer;
pub use node::Cached;

use std::sync::Arc;

use agentgraph_engine::Route;

/// A cached result: the encoded update and the go-to, since a `Command` cannot be cloned.
#[derive(Clone)]
struct Entry {
    update: Arc<[u8]>,
    goto: Option<Route>,
}

/// The cache the layer and its nodes share.
type Store = moka::future::Cache<u128, Entry>;
