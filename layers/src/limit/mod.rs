//! At most N calls in flight: [`ConcurrencyLimitLayer`] and the node it makes,
//! [`ConcurrencyLimit`].

mod layer;
mod node;

pub use layer::ConcurrencyLimitLayer;
pub use node::ConcurrencyLimit;
