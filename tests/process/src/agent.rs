//! What the agent crash test (`tests/agent_sigkill.rs`) and its child process (the binary
//! `agent_child`, `src/bin/agent_child.rs`) share: the thread, the tool, the side-effect log.
#![allow(dead_code, unreachable_pub)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// The thread the child's agent chats on.
pub const THREAD: &str = "research";
/// Tells the child where to work: its store is `$dir/store`, its side effects
/// `$dir/effects.log`, the tokens it streamed `$dir/tokens.log`.
pub const CHILD_DIR: &str = "AGENTGRAPH_AGENT_CHILD_DIR";
/// The base URL of the OpenAI-compatible server the child's model calls.
pub const BASE_URL: &str = "AGENTGRAPH_AGENT_BASE_URL";
/// With this set to a key, the `lookup` of that key hangs after recording its start (a window
/// for the test's SIGKILL during a tool call).
pub const HANG_ON: &str = "AGENTGRAPH_AGENT_HANG_ON";

/// Appends `line` to `file` in `dir`, synced: what happened survives the process being killed
/// right after.
pub fn record(dir: &Path, file: &str, line: &str) {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))
        .expect("open a log");
    // One write per line: parallel tools append to one file, and O_APPEND keeps a single
    // small write whole.
    log.write_all(format!("{line}\n").as_bytes())
        .expect("write a log line");
    log.sync_all().expect("sync a log");
}

/// The lines of `file` in `dir`, in order.
pub fn lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
