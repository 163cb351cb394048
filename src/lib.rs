//! agentgraph runs graphs of agents and workflows: nodes (async functions or CPU-bound
//! closures) joined by static, conditional, weighted, fan-out/join and go-to edges, compiled
//! into a validated plan and run step by step, sequentially or in parallel, with the parallel
//! branches' updates merged deterministically by per-field reducers.
//!
//! # Quick start
//!
//! ```
//! use std::sync::Arc;
//!
//! use agentgraph::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Default, Serialize, Deserialize, State)]
//! struct Research {
//!     topic: String,
//!     #[reducer(append)]
//!     notes: Vec<String>,
//!     #[reducer(add)]
//!     rounds: u32,
//! }
//!
//! async fn search(state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
//!     Ok(ResearchUpdate::new().notes(vec![format!("found something on {}", state.topic)]))
//! }
//!
//! async fn review(_state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
//!     Ok(ResearchUpdate::new().rounds(1))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut graph = GraphBuilder::<Research>::new();
//! graph
//!     .add_node("search", search)
//!     .add_node("review", review)
//!     .add_edge(START, "search")
//!     .add_edge("search", "review")
//!     // Loop until two rounds are done.
//!     .add_conditional_edges("review", ["search", END], |s: &Research| {
//!         if s.rounds < 2 { "search" } else { END }
//!     });
//! let graph = graph.compile()?;
//!
//! let input = Research { topic: "graphs".into(), ..Default::default() };
//! let done = graph.invoke(input).await?;
//! assert_eq!(done.notes.len(), 2);
//! assert_eq!(done.rounds, 2);
//! # Ok(()) }
//! ```
//!
//! # How a run advances
//!
//! A run advances in **steps**. The tasks of a step all read the same snapshot of the state
//! (the state as of the end of the previous step); their updates are merged at the step's
//! barrier in a fixed order (the plan's node order, then packet order), never in completion
//! order, so the same graph, input and seed always give the same result in both
//! [`Mode`](run::Mode)s. Two tasks of one step writing the same overwrite field is an [`Error::Conflict`]
//! naming the field and both nodes.
//!
//! # Features
//!
//! | capability | status |
//! |---|---|
//! | graphs in Rust: async and CPU-bound (rayon) nodes; static, conditional, weighted, fan-out, join, packet (map-reduce), go-to edges; loops | available |
//! | `#[derive(State)]` with overwrite, append, add, min, max, merge, union and custom reducers | available |
//! | compile-time validation with errors naming the node or edge; DOT export; fingerprints | available |
//! | sequential and parallel modes, deterministic merge, seeded weighted edges, recursion limit | available |
//! | typed event stream (`Stream`), custom node events, `tracing` spans for run, step and node | available |
//! | checkpoints to sled (default), redb (fsynced, feature `redb`) and memory after every step, resume after a crash or failure, pending writes, durability modes, history, forks, pruning | available |
//! | node middleware as tower-like layers: concurrency limits, rate limits, caches, circuit breakers, fallbacks, timeouts; batching of concurrent calls ([`layers`]) | available |
//! | retries with backoff, attempt/step/run timeouts, cancellation, failure policy, interrupts with answers and state edits, subgraphs | available |
//! | persisted event log (`RunConfig::store_events`, `GraphHistory::events`) | available |
//! | monitored runs: the stored graph and JSON views of the state ([`RunConfig::monitored`]), read without the program's types ([`StoreInspector`](inspect::StoreInspector)) | available |
//! | metrics with the `metrics` facade (feature `metrics`) | available |
//! | monitor: web page with the live graph, JSON API, server-sent events per run, Prometheus `/metrics` (`agentgraph::monitor`, feature `monitor`) | available |
//! | command-line tool `agentgraph` over a store (crate `agentgraph-cli`) | available |
//! | OpenTelemetry export of the run, step and node spans over OTLP (`otel` feature) | available |
//! | agents' pieces: chat messages with a conversation reducer, tools with checked arguments and allow/deny lists (`agentgraph::nodes`, feature `nodes`) | available |
//! | chat models (`agentgraph::nodes::model`, feature `openai`) and the tool-calling agent (`agentgraph::nodes::agent`, feature `agent`) | available |
//! | multi-agent patterns: supervisor, swarm, ensemble, fallback, pipeline, planning mode (`agentgraph::nodes::patterns`, feature `patterns`) | available |
//! | MCP tools: the tools of MCP servers run as child processes (restarted when they die) or reached over streamable HTTP (`agentgraph::mcp`, feature `mcp`) | available |
//! | the PostgreSQL checkpoint store, shared by many processes (`agentgraph::postgres`, feature `postgres`) | available |
//!
//! Cargo features: `sled` (on by default) enables [`SledStore`](store::SledStore), the embedded durable store;
//! `redb` (off by default) enables `RedbStore`, an embedded store whose every flush is an
//! fsynced commit (it survives a power loss; it brings in redb);
//! `layers` (on by default) enables [`layers`], the node middleware (it brings in governor and
//! moka); `metrics` records metrics of runs, steps, nodes and checkpoints with the `metrics`
//! facade; `monitor` enables `agentgraph::monitor`, the monitor server and page (with
//! `metrics`; it brings in axum, hyper, tower-http and metrics-exporter-prometheus); `otel`
//! (off by default) enables `agentgraph::otel`, a `tracing-subscriber` layer that sends the
//! spans to an OpenTelemetry collector (it brings in opentelemetry and reqwest); `nodes` (off
//! by default) enables `agentgraph::nodes`, the node library: chat messages and their
//! reducer, and tools (it brings in schemars, jsonschema and globset); `openai` adds the chat
//! models and the OpenAI-compatible provider, `agent` the tool-calling agent, `patterns` the
//! multi-agent patterns (`agentgraph::nodes::patterns`, the group chat among them), `mcp` the tools
//! of MCP servers (`agentgraph::mcp`; it brings in rmcp); `postgres` the PostgreSQL checkpoint
//! store (`agentgraph::postgres`; it brings in tokio-postgres and deadpool-postgres).
//!
//! # Durable runs
//!
//! Give a run a store with [`RunConfig::store`] and it is checkpointed after every step;
//! [`CompiledGraph::resume`] continues it (in the same process or a new one) from its last
//! checkpoint, applying the results of tasks that had finished and running only the others.
//! [`CompiledGraph::history`] lists, reads, forks and prunes stored runs. See [`Durability`](run::Durability)
//! for what each mode survives.

#![cfg_attr(docsrs, feature(doc_cfg))]

// The names almost every program uses; the rest are grouped in the modules below, and
// `prelude` brings the common ones in at once.
pub use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, Error, GraphBuilder, Result, RunConfig, START, State,
};
pub use agentgraph_macros::State;

pub mod graph {
    //! Defining and describing graphs: the builder, the compiled graph, where edges and nodes
    //! route ([`Command`], [`Route`], [`Packet`]), what error handlers and compensations are
    //! given ([`NodeFailure`], [`Compensation`]), build errors, and the graph as data.
    pub use agentgraph_engine::{
        Command, Compensation, CompiledGraph, END, EdgeDescription, EdgeKind, EdgeName,
        FieldDescription, Fingerprint, GraphBuilder, GraphDescription, GraphError, IntoCommand,
        JoinDescription, JoinPolicy, NodeDescription, NodeFailure, Packet, Route, START,
    };
}

pub mod node {
    //! Nodes: functions of the state and a [`Context`], made from closures
    //! ([`async_node`], [`cpu_node`]) or any [`Node`], wrapped in tower-like [`Layer`]s stacked
    //! by a [`NodeBuilder`], retried by a [`RetryPolicy`].
    pub use agentgraph_engine::{
        AsyncNode, BoxError, Context, CpuNode, Identity, InputError, Layer, Node, NodeBuilder,
        NodeFuture, NodeTimedOut, RetryPolicy, Stack, TaskId, async_node, cpu_node,
    };
}

pub mod state {
    //! The state of a run: the [`State`] trait and its derive, per-field reducers, the
    //! field codec, and the [`Migrations`] of a state type's older versions.
    pub use agentgraph_engine::{
        CodecError, Field, MigrationError, Migrations, State, codec, reducer,
    };
    pub use agentgraph_macros::State;
}

pub mod run {
    //! Running a graph: the configuration of a run, the run and its handle, and how it ends
    //! (a [`RetryAt`] for a run stopped until a retry is due; a [`BudgetExceeded`] for one
    //! stopped by its [`Budget`]);
    //! graphs by name, driven with JSON ([`GraphRegistry`], [`DynGraph`]).
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub use agentgraph_engine::Compression;
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub use agentgraph_engine::Encryption;
    pub use agentgraph_engine::{
        Budget, BudgetExceeded, BudgetKind, BudgetScope, BudgetUsage, PriceTable, RunUsage,
        TenantBudget, TenantLedger,
    };
    pub use agentgraph_engine::{
        CancelHandle, Durability, DynGraph, DynOutcome, DynOutcomeFuture, DynResume, DynRun,
        FailurePolicy, GraphRegistry, Mode, RetryAt, RetryTask, Run, RunConfig, RunHandle,
        RunMetadata, RunOutcome, TaskEnd,
    };
}

pub mod interrupt {
    //! Interrupts: a run stopped before or after a node, or by a node asking for input, and
    //! the answers that resume it.
    pub use agentgraph_engine::{Interrupt, InterruptKind, InterruptSignal, Interrupted, Resume};
}

pub mod event {
    //! What a run tells while it runs: typed events, and JSON views of its state.
    pub use agentgraph_engine::{
        Event, EventKind, EventStream, FieldView, Missed, StateJson, TOKENS_PER_STORED_EVENT,
        TaskInfo, ViewChange,
    };
}

pub mod inspect {
    //! Reading stored runs: a graph's runs with its state type ([`GraphHistory`]), or any
    //! store's runs without types ([`StoreInspector`]).
    pub use agentgraph_engine::{
        CheckpointInfo, EventPages, GraphHistory, PendingStatus, PendingTask, RunFilter,
        RunMetadata, RunRecord, RunStatus, StoreInspector, Tentative,
    };
}

pub mod store {
    //! Checkpoint stores: the [`CheckpointStore`] trait, the embedded stores, and what a store
    //! author needs (batches, leases, the record envelope, the conformance suite).
    #[cfg(feature = "redb")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redb")))]
    pub use agentgraph_checkpoint::RedbStore;
    #[cfg(feature = "sled")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sled")))]
    pub use agentgraph_checkpoint::SledStore;
    /// Audit trails: who did what to a run, hash-chained per run (see the README's "Audit
    /// trail" section).
    pub use agentgraph_checkpoint::audit;
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub use agentgraph_checkpoint::encryption;
    pub use agentgraph_checkpoint::{
        BoxFuture, CheckpointStore, IntoStore, Lease, MAX_RUN_ID_LEN, MemoryStore, Op, RunFilter,
        RunMetadata, RunRecord, RunStatus, SUBGRAPH_MARK, StoreError, StoreUrl, Sweeper, UrlError,
        WriteBatch, check_run_id, conformance, decode_run, encode_run, envelope, open_url,
    };
    pub use agentgraph_checkpoint::{
        InvalidTenantId, MAX_TENANT_ID_LEN, TENANT_NAMESPACE, TenantId, TenantStore,
    };
}

pub mod memory {
    //! Long-term memory that outlives a run: items (JSON values under keys, in namespaces)
    //! that nodes read and write through [`Context::memory`](crate::node::Context::memory),
    //! their writes committed in the same atomic batch as their step's checkpoint. Searches
    //! filter on JSON fields, skip expired items, and rank by similarity through an
    //! [`Embedder`]. See the README's "Memory" section.
    pub use agentgraph_checkpoint::items::{
        EmbedError, Embedder, Filter, HashEmbedder, Hit, Item, ItemIndex, ItemQuery, ItemWrite,
        MAX_ITEM_KEY_LEN, MAX_NAMESPACE_LEN, Namespace, cosine,
    };
    pub use agentgraph_engine::{Memory, MemoryError};
}

pub mod error {
    //! The errors: [`Error`] of runs, [`GraphError`] of graphs that do not compile, and
    //! [`BoxError`], what nodes return.
    pub use agentgraph_engine::{
        BoxError, CodecError, EdgeName, Error, GraphError, NodeTimedOut, Result, StoreError,
        TaskEnd,
    };
}

#[cfg(feature = "layers")]
#[cfg_attr(docsrs, doc(cfg(feature = "layers")))]
#[doc(inline)]
pub use agentgraph_layers as layers;
#[cfg(feature = "mcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "mcp")))]
#[doc(inline)]
pub use agentgraph_mcp as mcp;
#[cfg(feature = "monitor")]
#[cfg_attr(docsrs, doc(cfg(feature = "monitor")))]
#[doc(inline)]
pub use agentgraph_monitor as monitor;
#[cfg(feature = "nodes")]
#[cfg_attr(docsrs, doc(cfg(feature = "nodes")))]
#[doc(inline)]
pub use agentgraph_nodes as nodes;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
#[doc(inline)]
pub use agentgraph_otel as otel;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[doc(inline)]
pub use agentgraph_postgres as postgres;
#[cfg(feature = "spec")]
#[cfg_attr(docsrs, doc(cfg(feature = "spec")))]
#[doc(inline)]
pub use agentgraph_spec as spec;

/// The names most programs need: `use agentgraph::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "redb")]
    #[doc(no_inline)]
    pub use agentgraph_checkpoint::RedbStore;
    #[cfg(feature = "sled")]
    #[doc(no_inline)]
    pub use agentgraph_checkpoint::SledStore;
    #[doc(no_inline)]
    pub use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
    #[doc(no_inline)]
    pub use agentgraph_engine::{
        BoxError, Command, Compensation, CompiledGraph, Context, Durability, END, Error, Event,
        EventKind, FailurePolicy, GraphBuilder, GraphHistory, Interrupt, JoinPolicy, Mode, Node,
        NodeBuilder, NodeFailure, Packet, Resume, RetryPolicy, Route, RunConfig, RunOutcome, START,
        State, StoreInspector, async_node, cpu_node,
    };
    #[doc(no_inline)]
    pub use agentgraph_macros::State;
}

#[doc(hidden)]
pub mod __private {
    pub use agentgraph_engine::__private::*;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
