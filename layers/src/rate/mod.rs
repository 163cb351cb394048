//! At most N calls per period: [`RateLimitLayer`] and the node it makes, [`RateLimit`].

mod layer;
mod node;

pub use layer::RateLimitLayer;
pub use node::RateLimit;
