//! Graphs declared in YAML or JSON files.
//!
//! A graph file declares the state's fields (a [`DynState`]),
//! the nodes by kind with their parameters, and the edges; [`GraphSpec`] is its serde form,
//! with the position of every name, and its JSON Schema is published in the repository as
//! `spec/graph.schema.json` ([`json_schema`]).

mod builtin;
mod compile;
mod error;
mod export;
mod expr;
mod format;
mod kind_schema;
mod library;
mod load;
mod messages;
mod registry;

pub use error::{SpecError, SpecErrors, Subject, did_you_mean};
pub use expr::{
    MAX_EXPR_BYTES, MAX_EXPR_DEPTH, MAX_EXPR_ITEMS, MAX_EXPR_OPERATIONS, MAX_EXPR_STRING,
};
pub use format::{
    At, DefaultsSpec, EdgeSpec, FORMAT_VERSION, FieldSpec, FieldType, GraphSpec, LayerSpec,
    ModelSpec, NodeSpec, OneOrMany, Pos, Refused, RetrySpec, WeightSpec, json_schema,
};
pub use load::{MAX_FILE_BYTES, digest};
pub use registry::{
    FileNode, FileSubgraph, GraphKindFn, NodeKindFn, NodeParams, NodeRegistry, RouterFn,
    packet_item,
};

/// The state of a file-declared graph, from the engine: a [`DynState`] of JSON fields, its
/// [`DynSchema`], updates and reducers.
pub use agentgraph_engine::{
    DynSchema, DynSchemaBuilder, DynState, DynStateError, DynUpdate, JsonMerge, JsonReducer,
    JsonType,
};
