//! OpenTelemetry export of the engine's `run`, `step` and `node` spans; reached from the facade as
//! `agentgraph::otel` (feature `otel`).
//!
//! The engine traces every run with [`tracing`] spans: a `run` span (fields `run_id`, `mode`)
//! holds a `step` span per step (`step`, `tasks`; at `DEBUG` level), which holds a `node` span
//! per attempt of a task (`node`, `step`, `task`, `attempt`). [`layer`] turns them into
//! OpenTelemetry spans, one trace per run, and sends them to a collector over OTLP; compose it
//! with your own subscriber, or let [`init`] install a subscriber that also prints logs.
//!
//! ```no_run
//! use agentgraph_otel::{self as otel, OtelConfig};
//! use tracing_subscriber::prelude::*;
//!
//! # fn main() -> Result<(), agentgraph_otel::Error> {
//! // Sends to OTEL_EXPORTER_OTLP_ENDPOINT, or http://localhost:4318 when it is not set.
//! let (otel_layer, _guard) = otel::layer(OtelConfig::new().service_name("research-bot"))?;
//! tracing_subscriber::registry()
//!     .with(otel_layer)
//!     .with(tracing_subscriber::fmt::layer())
//!     .init();
//! // ... run graphs; dropping `_guard` at the end of `main` sends the last spans.
//! # Ok(()) }
//! ```
//!
//! # Transport
//!
//! Spans go out in batches, from a thread of the OpenTelemetry SDK, as OTLP over HTTP with
//! protobuf bodies (`http/protobuf`, port 4318), posted with reqwest's blocking client. That
//! choice over gRPC (tonic): the gRPC exporter does its I/O on the application's tokio
//! runtime, so it needs one to be running, and under a current-thread runtime (the default of
//! `#[tokio::main(flavor = "current_thread")]` and of `#[tokio::test]`) flushing the last
//! spans blocks the only thread that could send them: shutting down waits out its 5-second
//! timeout and loses them. The HTTP exporter runs on threads of its own, so it works inside
//! any runtime, or none, and the guard may be dropped anywhere. It costs about 25 more crates
//! than tonic would (reqwest's URL parsing and its Unicode tables): the feature adds about 70.
//!
//! Plain HTTP only: for `https` endpoints, enable TLS in your own dependency on
//! `opentelemetry-otlp` 0.33 (its `reqwest-rustls` feature; cargo merges the features, so this
//! exporter gets it too), or send to a collector on the same host or network that forwards
//! over TLS.
//!
//! # Environment
//!
//! Unless set in code, the standard variables apply: `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_ENDPOINT` (the base URL, `/v1/traces` is
//! appended), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER`, and `OTEL_BSP_*` for the batches.
//! `OTEL_EXPORTER_OTLP_PROTOCOL` may only be `http/protobuf`.
//!
//! # Failed nodes
//!
//! A failed attempt marks its `node` span as an error, with the error's text in its `error`
//! attribute (as the engine's `EventKind::NodeFailed` says it), and a
//! failed run marks its `run` span. Node spans are exported as `node {name}`. An `ERROR` event
//! that a node logs itself (`tracing::error!`) inside its span marks the span too.

mod config;
mod endpoint;
mod error;
mod guard;
mod layer;

pub use config::OtelConfig;
pub use error::Error;
pub use guard::OtelGuard;
pub use layer::{init, layer};
pub use tracing::Level;
pub use tracing_subscriber::filter::LevelFilter;

#[allow(dead_code)]
fn _assert_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<OtelGuard>();
    send_sync::<Error>();
    fn send<T: Send>() {}
    send::<OtelConfig>();
}
