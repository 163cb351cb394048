//! The node library of agentgraph: the pieces of agents, built for durable graphs.
//!
//! - [`message`]: chat messages ([`Message`]): system, user, assistant with tool calls, tool
//!   results; [`messages`]: the conversation reducer [`add_messages`] (append, replace by id,
//!   remove by id) and the check that every tool call has its result before a model call.
//!   Always there.
//! - `tool` (feature `tools`, on by default): the `Tool` trait, tools made from async
//!   functions whose arguments are checked against a JSON Schema derived from their type, and
//!   `ToolSet`, tools offered and called under allow and deny lists, with per-tool timeouts
//!   and retries.
//! - `model` (feature `model`; `openai` adds the OpenAI-compatible provider): the `ChatModel`
//!   trait, streamed answers, the model node and structured output.
//! - `agent` (feature `agent`): the prebuilt tool-calling agent, a graph of a model node and
//!   one tool task per call, with guards, approvals and a policy for invalid calls.
//! - `patterns` (feature `patterns`): multi-agent patterns over the agent: a supervisor
//!   routing to workers, a swarm handing the conversation over, an ensemble (vote, judge),
//!   a fallback chain, a pipeline, planning mode, the group chat.
//! - `http` (feature `http`): the HTTP request node: a URL template, headers (secrets read from
//!   the environment at call time), a JSON body, a timeout and retries honouring
//!   `Retry-After`, under the task's idempotency key.
//!
//! Use it through the facade's `nodes` feature, as `agentgraph::nodes`. Each part is behind
//! a feature of its own, so that a graph author compiles only what they use. MCP tools are a
//! crate of their own, `agentgraph-mcp` (the facade's `mcp` feature): its tools go into a
//! `ToolSet` like any other.
//!
//! # Examples
//!
//! ```
//! use agentgraph_nodes::{Message, add_messages};
//!
//! let mut history = Vec::new();
//! add_messages(&mut history, vec![Message::system("Be brief."), Message::user("Hi!")]);
//! assert_eq!(history.len(), 2);
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "agent")]
#[cfg_attr(docsrs, doc(cfg(feature = "agent")))]
pub mod agent;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod message;
pub mod messages;
#[cfg(feature = "model")]
#[cfg_attr(docsrs, doc(cfg(feature = "model")))]
pub mod model;
#[cfg(feature = "patterns")]
#[cfg_attr(docsrs, doc(cfg(feature = "patterns")))]
pub mod patterns;
#[cfg(any(feature = "openai", feature = "http"))]
mod retry_after;
#[cfg(feature = "tools")]
#[cfg_attr(docsrs, doc(cfg(feature = "tools")))]
pub mod tool;

#[doc(inline)]
pub use message::{Message, MessageError};
#[doc(inline)]
pub use messages::add_messages;
