//! Defining a graph: the builder, nodes and their layers, routes, the state and its reducers,
//! retry policies, subgraphs, error edges and compensations (`saga`).

pub(crate) mod builder;
pub(crate) mod dynamic;
pub(crate) mod join;
pub(crate) mod migrate;
pub(crate) mod node;
pub mod reducer;
pub(crate) mod retry;
pub(crate) mod route;
pub(crate) mod saga;
pub(crate) mod state;
pub(crate) mod subgraph;
