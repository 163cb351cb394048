//! MCP tools over streamable HTTP, against `mcp_test_server --http` (built with rmcp's
//! server side) run as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use agentgraph_mcp::{McpClient, McpError};
use agentgraph_nodes::tool::{Tool, ToolContext, ToolError, ToolSet};
use serde_json::json;

/// The server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server() -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp_test_server"))
        .arg("--http")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Server(child), line.trim().to_owned())
}

fn mcp_error(e: &ToolError) -> &McpError {
    match e {
        ToolError::Failed { source, .. } => source.downcast_ref::<McpError>().expect("an McpError"),
        other => panic!("expected ToolError::Failed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_calls_tools_over_streamable_http() {
    let (server, url) = server();
    let client = McpClient::connect_http(&url).await.expect("connects");
    let mut names: Vec<String> = client.tools().iter().map(|t| t.name().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "fail", "key", "sleep"]);
    assert_eq!(client.server_pid().await, None);

    let tools = client
        .tools()
        .into_iter()
        .fold(ToolSet::new(), ToolSet::with)
        .deny("sleep");
    assert!(!tools.is_allowed("sleep"));
    let out = tools
        .call("add", json!({ "a": 20, "b": 22 }), ToolContext::new("k1"))
        .await
        .unwrap();
    assert_eq!(out.content.to_text(), "42");
    let out = tools
        .call(
            "echo",
            json!({ "text": "over http" }),
            ToolContext::new("k2"),
        )
        .await
        .unwrap();
    assert_eq!(out.content.to_text(), "over http");
    let e = tools
        .call("fail", json!({}), ToolContext::new("k3"))
        .await
        .unwrap_err();
    assert!(
        matches!(mcp_error(&e), McpError::ToolFailed { .. }),
        "{e:?}"
    );

    // The server gone: the request cannot be sent, the client connects again once, and
    // nothing answers: a typed error, not a hang or a panic.
    drop(server);
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tools.call("add", json!({ "a": 1, "b": 1 }), ToolContext::new("k4")),
    )
    .await
    .expect("the call ends")
    .unwrap_err();
    assert!(
        matches!(mcp_error(&e), McpError::Initialize { program, .. } if *program == url),
        "{e:?}"
    );
}
