//! Another node when one fails: [`FallbackLayer`], the node it makes, [`Fallback`], and what a
//! fallback is given, [`FallbackCause`].

mod cause;
mod layer;
mod node;

pub use cause::{
    FallbackCause, FallbackNode, FallbackOnResult, NoResultCheck, NodeFallback, WithCause,
    with_cause,
};
pub use layer::FallbackLayer;
pub use node::Fallback;
