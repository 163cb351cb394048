//! A time limit per call: [`TimeoutLayer`] and the node it makes, [`Timeout`].

mod layer;
mod node;

pub use layer::TimeoutLayer;
pub use node::Timeout;
