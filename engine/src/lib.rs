//! The agentgraph engine. Most users want the facade crate `agentgraph` and its prelude.

extern crate self as agentgraph_engine;

pub mod reducer;
mod state;

pub use state::{Field, State};

#[doc(hidden)]
pub mod __private {
    //! Paths used by code that `#[derive(State)]` generates. Not a public API.
    pub use crate::reducer;
    pub use crate::reducer::ReducerKind;
    pub use crate::state::{Field, State};
    pub use serde;
}
