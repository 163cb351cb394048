//! What the group chat crash test (`tests/group_chat_sigkill.rs`) and its child process (the
//! binary `group_chat_child`, `src/bin/group_chat_child.rs`) share.
#![allow(dead_code, unreachable_pub)]

/// The run the child's chat is.
pub const RUN: &str = "debate";
/// Tells the child where to work: its store is `$dir/store`, the tokens it streamed
/// `$dir/tokens.log` (one `speaker text` line each).
pub const CHILD_DIR: &str = "AGENTGRAPH_GROUP_CHAT_CHILD_DIR";
/// The base URL of the OpenAI-compatible server the child's agents call.
pub const BASE_URL: &str = "AGENTGRAPH_GROUP_CHAT_BASE_URL";
/// The agents, in round robin order.
pub const AGENTS: [&str; 3] = ["optimist", "pessimist", "realist"];
/// The turns the chat takes.
pub const ROUNDS: u32 = 6;
