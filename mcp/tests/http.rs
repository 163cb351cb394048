//! MCP tools over streamable HTTP, against `mcp_test_server --http` (built with rmcp's
//! server side) run as a child process.

mod support;

use agentgraph_mcp::{McpClient, McpError};
use agentgraph_nodes::tool::{Tool, ToolContext, ToolSet};
use serde_json::json;
use support::{mcp_error, server};

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
