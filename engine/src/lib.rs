//! The agentgraph engine: graph builder, compiled plans, the step scheduler, state merging and
//! events. Most programs use it through the facade crate `agentgraph` and its prelude.

extern crate self as agentgraph_engine;

mod builder;
pub mod codec;
mod config;
mod context;
mod describe;
mod error;
mod event;
mod graph;
mod history;
mod ids;
mod inspect;
mod interrupt;
mod metrics;
mod node;
mod persist;
mod plan;
pub mod reducer;
mod retry;
mod route;
mod scheduler;
mod state;
mod subgraph;
mod view;

pub use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, StoreError};
pub use builder::GraphBuilder;
pub use codec::CodecError;
pub use config::{Durability, FailurePolicy, Mode, RunConfig};
pub use context::{Context, InputError};
pub use describe::{
    EdgeDescription, EdgeKind, FieldDescription, GraphDescription, NodeDescription,
};
pub use error::{BoxError, EdgeName, Error, GraphError, NodeTimedOut, Result, TaskEnd};
pub use event::{Event, EventKind, EventStream, Missed, TaskInfo};
pub use graph::{CancelHandle, CompiledGraph, Run, RunHandle, RunOutcome};
pub use history::{CheckpointInfo, History};
pub use ids::{Fingerprint, TaskId};
pub use inspect::Inspector;
pub use interrupt::{Interrupt, InterruptKind, Interrupted, Interruption, Resume};
pub use node::{
    AsyncNode, CpuNode, Identity, Layer, Node, NodeBuilder, NodeFuture, Stack, async_node, cpu_node,
};
pub use retry::RetryPolicy;
pub use route::{Command, END, IntoCommand, Packet, Route, START};
pub use state::{Field, State};
pub use view::{FieldView, StateJson, ViewChange};

#[doc(hidden)]
pub mod __private {
    //! Paths used by code that `#[derive(State)]` generates. Not a public API.
    pub use crate::codec::{self, CodecError};
    pub use crate::reducer;
    pub use crate::reducer::ReducerKind;
    pub use crate::route::{Command, IntoCommand};
    pub use crate::state::{Field, State};
    pub use serde;
}
