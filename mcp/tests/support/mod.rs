//! What the MCP tests over HTTP share: the test server as a child process, and the
//! `McpError` inside a tool's failure.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use agentgraph_mcp::McpError;
use agentgraph_nodes::tool::ToolError;

/// The server, killed (SIGKILL) when dropped; its process id is `.0.id()`.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mcp_test_server --http` started on a free port, and the URL it printed.
pub(crate) fn server() -> (Server, String) {
    server_on(0)
}

/// `mcp_test_server --http --port {port}` started (0: a free port), and the URL it printed.
pub(crate) fn server_on(port: u16) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp_test_server"))
        .args(["--http", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        !line.is_empty(),
        "the test server printed no URL (port {port} taken?)"
    );
    (Server(child), line.trim().to_owned())
}

/// The `McpError` a tool failed with.
///
/// # Panics
///
/// When `e` is another failure.
pub(crate) fn mcp_error(e: &ToolError) -> &McpError {
    match e {
        ToolError::Failed { source, .. } => source.downcast_ref::<McpError>().expect("an McpError"),
        other => panic!("expected ToolError::Failed, got {other:?}"),
    }
}
