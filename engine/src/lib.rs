//! The agentgraph engine: graph builder, compiled plans, the step scheduler, state merging and
//! events. Most programs use it through the facade crate `agentgraph` and its prelude.

extern crate self as agentgraph_engine;

mod define;
mod error;
mod ids;
mod inspect;
mod observe;
mod persist;
mod plan;
mod registry;
mod run;

pub mod codec;
/// Long-term memory items, their searches and embedders (from `agentgraph-checkpoint`): see
/// [`Memory`].
pub use agentgraph_checkpoint::items;
pub use define::reducer;

#[cfg(feature = "encryption")]
pub use agentgraph_checkpoint::encryption::{self, Encryption};
#[cfg(feature = "compression")]
pub use agentgraph_checkpoint::envelope::Compression;
pub use agentgraph_checkpoint::{
    CheckpointStore, IntoStore, RunFilter, RunMetadata, RunRecord, RunStatus, StoreError, Sweeper,
};
pub use codec::CodecError;
pub use define::builder::GraphBuilder;
pub use define::dynamic::{
    DynSchema, DynSchemaBuilder, DynState, DynStateError, DynUpdate, JsonMerge, JsonReducer,
    JsonType,
};
pub use define::join::JoinPolicy;
pub use define::migrate::{MigrationError, Migrations};
pub use define::node::{
    AsyncNode, CpuNode, Identity, Layer, Node, NodeBuilder, NodeFuture, Stack, async_node, cpu_node,
};
pub use define::retry::RetryPolicy;
pub use define::route::{Command, END, IntoCommand, Packet, Route, START};
pub use define::saga::{Compensation, NodeFailure};
pub use define::state::{Field, State};
pub use error::{BoxError, EdgeName, Error, GraphError, NodeTimedOut, Result, TaskEnd};
pub use ids::{Fingerprint, TaskId};
pub use inspect::history::{CheckpointInfo, GraphHistory};
pub use inspect::inspector::{EventPages, StoreInspector};
pub use inspect::pending::{PendingStatus, PendingTask, Tentative};
pub use observe::event::{
    Event, EventKind, EventStream, Missed, TOKENS_PER_STORED_EVENT, TaskInfo,
};
pub use observe::view::{FieldView, StateJson, ViewChange};
pub use plan::compiled::CompiledGraph;
pub use plan::describe::{
    EdgeDescription, EdgeKind, FieldDescription, GraphDescription, JoinDescription, NodeDescription,
};
pub use registry::{DynGraph, DynOutcome, DynOutcomeFuture, DynResume, DynRun, GraphRegistry};
pub use run::budget::{
    Budget, BudgetExceeded, BudgetKind, BudgetScope, BudgetUsage, PriceTable, RunUsage,
    TenantBudget,
};
pub use run::config::{Durability, FailurePolicy, Mode, RunConfig};
pub use run::context::{Context, InputError};
pub use run::handle::{CancelHandle, Run, RunHandle, RunOutcome};
pub use run::interrupt::{Interrupt, InterruptKind, InterruptSignal, Interrupted, Resume};
pub use run::ledger::TenantLedger;
pub use run::memory::{Memory, MemoryError};
pub use run::retry_at::{RetryAt, RetryTask};

#[doc(hidden)]
pub mod __private {
    //! Paths used by code that `#[derive(State)]` generates. Not a public API.
    pub use crate::codec::{self, CodecError};
    pub use crate::define::reducer;
    pub use crate::define::reducer::ReducerKind;
    pub use crate::define::route::{Command, IntoCommand};
    pub use crate::define::state::{Field, State};
    pub use serde;
}
