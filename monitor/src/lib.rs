//! The agentgraph monitor: a web page that draws a run's graph with each node coloured by
//! its live state, a JSON API over a checkpoint store, each run's events as server-sent
//! events (replayed from the store, then followed live, resumable with `Last-Event-ID`), and
//! Prometheus `/metrics`; the page's Memory view lists the store's long-term memory
//! (namespaces, items with their time to live, a JSON filter). Built on axum and tokio; the
//! page is static files embedded in the binary. Reached from the facade as `agentgraph::monitor` (feature `monitor`).
//!
//! # Quick start
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use agentgraph_checkpoint::MemoryStore;
//! use agentgraph_engine::CheckpointStore;
//!
//! let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
//! // Runs started with `RunConfig::new().store(store.clone()).monitored()` show up.
//! let server = agentgraph_monitor::serve(([127, 0, 0, 1], 0).into(), store).await?;
//! println!("monitor at {}", server.url());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! | route | serves |
//! |---|---|
//! | `GET /` | the page (`/app.js`, `/app.css`) |
//! | `GET /api/runs?after=&limit=` | runs with their status and metadata, in run id order, a page at a time (`limit` ≤ 1000, default 100; `next` is the `after` of the next page); `user=`, `tag=` (`a,b`: both), `label=key=value` and `title=` (a part, any case) list only the runs whose metadata matches |
//! | `GET /api/runs/{run}` | a run's record, last error, pending interrupts, newest event number, nodes of the next step, how many invocations a thread has had (`invocations`) |
//! | `GET /api/runs/{run}/checkpoints` | its checkpoints, oldest first, each with its `invocation` (a thread's turn) |
//! | `GET /api/runs/{run}/state?step=N` | its state after step `N` (the newest without `step`), as JSON |
//! | `GET /api/runs/{run}/graph`, `/graph.dot` | the graph it ran, as JSON or Graphviz DOT |
//! | `GET /api/runs/{run}/events` | its events as server-sent events (see below) |
//! | `GET /metrics` | Prometheus text format |
//!
//! Run ids of subgraph runs contain `/`: send them percent-encoded (`a%2Fb`). Errors are
//! JSON `{"error": "..."}` with a 4xx status (400 for a malformed id or number, 401 without
//! the token, 404 for an unknown run or step, 409 for a run that stored no state views).
//!
//! # Event streams
//!
//! Each event is sent as `id: <seq>`, `event: <type>` (`node_started`, `run_finished`, ...)
//! and `data: <the Event as JSON>`. A client resumes after the event it saw last with the
//! `Last-Event-ID` header (browsers send it when they reconnect) or `?after=<seq>`; the
//! stream replays from the store, then polls it every poll interval, so the writer may be
//! this process or another one sharing the store. Events are stored with each checkpoint,
//! so a step's events arrive when the step's checkpoint is written. Comment lines keep an
//! idle stream open. With [`Monitor::live`], streamed tokens also come as they are made, as
//! `live_token` events without an `id:` (see [`LiveTokens`]).
//!
//! The stream ends, with an `end` event (`{"status": "completed"}`), once the run is
//! completed, failed or cancelled and every event is sent; a client closes on `end`
//! (otherwise a browser reconnects). An **interrupted** run's stream stays open: the run
//! waits for an answer and its resume is followed live. A run still marked running after its
//! process died keeps its stream open too; nothing in the store tells it from a slow step.
//!
//! # Security
//!
//! The server binds to 127.0.0.1 by default, and [`Monitor::serve`] refuses any other
//! address without a [`token`](Monitor::token). With a token, the API, the event streams and
//! `/metrics` need `Authorization: Bearer <token>` (event streams also take `?token=`); the
//! page's static files stay public (they hold no data) and the page asks for the token.
//! Every request with a bad run id, sequence number or step gets a 4xx; responses carry a
//! `Content-Security-Policy` that allows the page's own script only, and the page builds
//! everything it shows as text, so state content cannot inject script.

mod api;
mod app;
mod auth;
mod control;
mod error;
mod live;
mod memory;
mod monitor;
mod page;
mod prom;
mod server;
mod sse;
#[cfg(feature = "webhooks")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhooks")))]
pub mod webhook;

pub use app::{RouteInfo, routes};
pub use auth::{Access, Caller, Role, TokenGrant, Tokens};
pub use error::{Error, Result};
pub use live::LiveTokens;
pub use monitor::{DEFAULT_ADDR, DEFAULT_POLL_INTERVAL, Monitor, serve};
pub use server::Server;
