//! agentgraph: durable graphs of agents and workflows.

pub use agentgraph_engine::{Field, State, reducer};
pub use agentgraph_macros::State;

/// The names most programs need.
pub mod prelude {
    pub use agentgraph_engine::State;
    pub use agentgraph_macros::State;
}

#[doc(hidden)]
pub mod __private {
    pub use agentgraph_engine::__private::*;
}
