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
//! [`Mode`]s. Two tasks of one step writing the same overwrite field is an [`Error::Conflict`]
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
//! | checkpoints to sled (default) and memory after every step, resume after a crash or failure, pending writes, durability modes, history, forks, pruning | available |
//! | node middleware as tower-like layers: concurrency limits, rate limits, caches ([`layers`]) | available |
//! | retries with backoff, attempt/step/run timeouts, cancellation, failure policy, interrupts with answers and state edits, subgraphs | available |
//! | persisted event log (`RunConfig::store_events`, `GraphHistory::events`) | available |
//! | monitored runs: the stored graph and JSON views of the state ([`RunConfig::monitored`]), read without the program's types ([`StoreInspector`]) | available |
//! | metrics with the `metrics` facade (feature `metrics`) | available |
//! | monitor: web page with the live graph, JSON API, server-sent events per run, Prometheus `/metrics` (`agentgraph::monitor`, feature `monitor`) | available |
//! | command-line tool `agentgraph` over a store (crate `agentgraph-cli`) | available |
//! | OpenTelemetry export of the run, step and node spans over OTLP (`otel` feature) | available |
//!
//! Cargo features: `sled` (on by default) enables [`SledStore`], the embedded durable store;
//! `layers` (on by default) enables [`layers`], the node middleware (it brings in governor and
//! moka); `metrics` records metrics of runs, steps, nodes and checkpoints with the `metrics`
//! facade; `monitor` enables `agentgraph::monitor`, the monitor server and page (with
//! `metrics`; it brings in axum, hyper, tower-http and metrics-exporter-prometheus); `otel`
//! (off by default) enables `agentgraph::otel`, a `tracing-subscriber` layer that sends the
//! spans to an OpenTelemetry collector (it brings in opentelemetry and reqwest).
//!
//! # Durable runs
//!
//! Give a run a store with [`RunConfig::store`] and it is checkpointed after every step;
//! [`CompiledGraph::resume`] continues it (in the same process or a new one) from its last
//! checkpoint, applying the results of tasks that had finished and running only the others.
//! [`CompiledGraph::history`] lists, reads, forks and prunes stored runs. See [`Durability`]
//! for what each mode survives.

#[cfg(feature = "sled")]
pub use agentgraph_checkpoint::SledStore;
pub use agentgraph_checkpoint::{Lease, MemoryStore, WriteBatch, envelope};
pub use agentgraph_engine::{
    AsyncNode, BoxError, CancelHandle, CheckpointInfo, CheckpointStore, CodecError, Command,
    CompiledGraph, Context, CpuNode, Durability, END, EdgeDescription, EdgeKind, EdgeName, Error,
    Event, EventKind, EventStream, FailurePolicy, Field, FieldDescription, FieldView, Fingerprint,
    GraphBuilder, GraphDescription, GraphError, GraphHistory, Identity, InputError, Interrupt,
    InterruptKind, InterruptSignal, Interrupted, IntoCommand, Layer, Missed, Mode, Node,
    NodeBuilder, NodeDescription, NodeFuture, NodeTimedOut, Packet, Result, Resume, RetryPolicy,
    Route, Run, RunConfig, RunHandle, RunOutcome, RunRecord, RunStatus, START, Stack, State,
    StateJson, StoreError, StoreInspector, TaskEnd, TaskId, TaskInfo, ViewChange, async_node,
    codec, cpu_node, reducer,
};
#[cfg(feature = "layers")]
#[doc(inline)]
pub use agentgraph_layers as layers;
pub use agentgraph_macros::State;
#[cfg(feature = "monitor")]
#[doc(inline)]
pub use agentgraph_monitor as monitor;
#[cfg(feature = "otel")]
#[doc(inline)]
pub use agentgraph_otel as otel;

/// The names most programs need: `use agentgraph::prelude::*;`.
pub mod prelude {
    pub use agentgraph_checkpoint::MemoryStore;
    #[cfg(feature = "sled")]
    pub use agentgraph_checkpoint::SledStore;
    pub use agentgraph_engine::{
        BoxError, CheckpointStore, Command, CompiledGraph, Context, Durability, END, Error, Event,
        EventKind, FailurePolicy, GraphBuilder, Interrupt, Mode, Node, NodeBuilder, Packet, Resume,
        RetryPolicy, Route, RunConfig, RunOutcome, START, State, StoreInspector,
    };
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
