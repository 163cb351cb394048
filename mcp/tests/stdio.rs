//! MCP tools against a real MCP server (`mcp_test_server`, built with rmcp's server side)
//! run as a child process over stdio.

use std::process::Command;
use std::time::Duration;

use agentgraph_mcp::{McpClient, McpError};
use agentgraph_nodes::tool::{Tool, ToolContext, ToolError, ToolSet};
use serde_json::json;

async fn client() -> McpClient {
    McpClient::spawn(Command::new(env!("CARGO_BIN_EXE_mcp_test_server")))
        .await
        .expect("the test server starts")
}

fn tool_set(client: &McpClient) -> ToolSet {
    client
        .tools()
        .into_iter()
        .fold(ToolSet::new(), ToolSet::with)
}

fn mcp_error(e: &ToolError) -> &McpError {
    match e {
        ToolError::Failed { source, .. } => source.downcast_ref::<McpError>().expect("an McpError"),
        other => panic!("expected ToolError::Failed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_servers_tools_with_their_schemas() {
    let client = client().await;
    let mut names: Vec<String> = client.tools().iter().map(|t| t.name().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "fail", "key", "pid", "sleep"]);
    let add = client
        .tools()
        .into_iter()
        .find(|t| t.name() == "add")
        .unwrap();
    assert_eq!(add.description(), "Adds two integers.");
    let schema = add.parameters();
    assert_eq!(schema["type"], "object");
    assert!(schema["properties"]["a"].is_object(), "{schema}");
    assert!(schema["properties"]["b"].is_object(), "{schema}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_add_and_echo_on_one_connection() {
    let client = client().await;
    let tools = tool_set(&client);
    let pid = client.server_pid().await.expect("a server runs");
    let out = tools
        .call("add", json!({ "a": 2, "b": 40 }), ToolContext::new("k1"))
        .await
        .unwrap();
    assert_eq!(out.content.to_text(), "42");
    let out = tools
        .call("echo", json!({ "text": "héllo" }), ToolContext::new("k2"))
        .await
        .unwrap();
    assert_eq!(out.content.to_text(), "héllo");
    // Arguments are checked against the server's schema before the call.
    let e = tools
        .call("add", json!({ "a": "two" }), ToolContext::new("k3"))
        .await
        .unwrap_err();
    assert!(matches!(e, ToolError::InvalidArguments { .. }), "{e:?}");
    assert_eq!(
        client.server_pid().await,
        Some(pid),
        "the connection is reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_result_is_a_tool_error() {
    let client = client().await;
    let tools = tool_set(&client);
    let e = tools
        .call("fail", json!({}), ToolContext::new("k"))
        .await
        .unwrap_err();
    assert!(
        matches!(mcp_error(&e), McpError::ToolFailed { tool, message } if tool == "fail" && message == "this tool always fails"),
        "{e:?}"
    );
    let message = e.to_message("call_1");
    assert!(message.is_error());
    assert!(message.content.to_text().contains("this tool always fails"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_lists_filter_mcp_tools() {
    let client = client().await;
    let tools = tool_set(&client)
        .deny("fail")
        .deny("key")
        .deny("pid")
        .deny_pattern("s*")
        .unwrap();
    let mut offered: Vec<&str> = tools.offered().map(|t| t.name()).collect();
    offered.sort();
    assert_eq!(offered, ["add", "echo"]);
    let e = tools
        .call("fail", json!({}), ToolContext::new("k"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ToolError::NotAllowed { ref tool, .. } if tool == "fail"),
        "{e:?}"
    );
    let e = tools
        .call("sleep", json!({ "ms": 1 }), ToolContext::new("k"))
        .await
        .unwrap_err();
    assert!(matches!(e, ToolError::NotAllowed { .. }), "{e:?}");

    let only_echo = tool_set(&client).allow("echo");
    assert_eq!(
        only_echo.offered().map(|t| t.name()).collect::<Vec<_>>(),
        ["echo"]
    );
    let out = only_echo
        .call("echo", json!({ "text": "ok" }), ToolContext::new("k"))
        .await
        .unwrap();
    assert_eq!(out.content.to_text(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_fails_the_call_and_the_next_call_restarts_it() {
    let client = client().await;
    let tools = tool_set(&client);
    let pid = client.server_pid().await.expect("a server runs");

    let sleeping = {
        let tools = tools.clone();
        tokio::spawn(async move {
            tools
                .call("sleep", json!({ "ms": 30_000 }), ToolContext::new("k"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sleeping.is_finished(), "the call is in flight");
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let e = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the call ends when the server dies")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(mcp_error(&e), McpError::ServerDied { tool, .. } if tool == "sleep"),
        "{e:?}"
    );

    let out = tools
        .call("add", json!({ "a": 1, "b": 1 }), ToolContext::new("k2"))
        .await
        .unwrap();
    assert_eq!(out.content.to_text(), "2");
    let new_pid = client.server_pid().await.expect("a new server runs");
    assert_ne!(new_pid, pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_died_between_calls_is_restarted_by_the_next_call() {
    let client = client().await;
    let tools = tool_set(&client);
    let pid = client.server_pid().await.expect("a server runs");
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let out = tools
        .call("echo", json!({ "text": "again" }), ToolContext::new("k"))
        .await
        .unwrap();
    assert_eq!(out.content.to_text(), "again");
    assert_ne!(client.server_pid().await, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_its_tasks_idempotency_key_in_meta() {
    let client = client().await;
    let tools = tool_set(&client);
    for key in ["run-1/3/tools/0", "run-1/3/tools/1"] {
        let out = tools
            .call("key", json!({}), ToolContext::new(key))
            .await
            .unwrap();
        assert_eq!(out.content.to_text(), key);
    }
}
