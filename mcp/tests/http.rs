//! MCP tools over streamable HTTP, against `mcp_test_server --http` (built with rmcp's
//! server side) run as a child process.

mod support;

use std::time::Duration;

use agentgraph_mcp::{McpClient, McpError};
use agentgraph_nodes::tool::{Tool, ToolContext, ToolError, ToolSet};
use serde_json::{Value, json};
use support::{mcp_error, server, server_on};

/// The port of an `http://127.0.0.1:{port}/...` URL.
fn port_of(url: &str) -> u16 {
    let rest = url.strip_prefix("http://").unwrap();
    let addr: std::net::SocketAddr = rest.split('/').next().unwrap().parse().unwrap();
    addr.port()
}

/// Calls `tool` under a loose guard (20 s), so that a call that does not end fails the test
/// instead of hanging it: its text, or its error.
async fn call(tools: &ToolSet, tool: &str, args: Value, key: &str) -> Result<String, ToolError> {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tools.call(tool, args, ToolContext::new(key)),
    )
    .await
    .expect("the call ends")?;
    Ok(out.content.to_text().into_owned())
}

/// A client of the server at `url`, and its tools in a set.
async fn connect(url: &str) -> (McpClient, ToolSet) {
    let client = McpClient::connect_http(url).await.expect("connects");
    let tools = client
        .tools()
        .into_iter()
        .fold(ToolSet::new(), ToolSet::with);
    (client, tools)
}

/// `e` says that no server answers at `url` (the client tried to connect again, once).
fn assert_unreachable(e: &ToolError, url: &str) {
    assert!(
        matches!(mcp_error(e), McpError::Initialize { program, .. } if *program == url),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_calls_tools_over_streamable_http() {
    let (server, url) = server();
    let (client, tools) = connect(&url).await;
    let mut names: Vec<String> = client.tools().iter().map(|t| t.name().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "fail", "key", "pid", "sleep"]);
    assert_eq!(client.server_pid().await, None);

    let tools = tools.deny("sleep");
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
    assert_unreachable(&e, &url);
}

/// One client across a server restart: the server is killed (SIGKILL) between two calls and
/// another one started on the same port, which does not know the client's session; the
/// client's next call succeeds, answered by the new server (a new session), and so do the
/// calls after it. The new server answers the old session with `404`, on which rmcp opens a
/// new session and sends the call again; were that off, the call would fail to be sent and
/// `McpClient` would connect again itself (both off, this test fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_reconnects_to_a_server_restarted_on_the_same_port() {
    let (first, url) = server();
    let first_pid = first.0.id();
    let (_client, tools) = connect(&url).await;
    assert!(tools.is_allowed("pid"));
    assert_eq!(
        call(&tools, "pid", json!({}), "k1").await.unwrap(),
        first_pid.to_string()
    );
    assert_eq!(
        call(&tools, "add", json!({ "a": 20, "b": 22 }), "k2")
            .await
            .unwrap(),
        "42"
    );

    // SIGKILL, and waited for: the port is free.
    drop(first);
    let (second, second_url) = server_on(port_of(&url));
    assert_eq!(
        second_url, url,
        "the new server listens where the first one did"
    );
    let second_pid = second.0.id();
    assert_ne!(second_pid, first_pid);

    let answered_by = call(&tools, "pid", json!({}), "k3")
        .await
        .expect("the first call after the restart succeeds");
    assert_eq!(
        answered_by,
        second_pid.to_string(),
        "the new server answered"
    );
    assert_eq!(
        call(&tools, "add", json!({ "a": 1, "b": 2 }), "k4")
            .await
            .unwrap(),
        "3"
    );
    assert_eq!(
        call(&tools, "echo", json!({ "text": "still here" }), "k5")
            .await
            .unwrap(),
        "still here"
    );
}

/// One client across a server that is down for a while: a call made while nothing listens
/// fails with a typed error (`McpError::Initialize`: the client tried to connect again once),
/// and once a server is started again on the same port the client's next call succeeds,
/// answered by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_while_the_server_is_down_fails_and_the_next_one_reconnects() {
    let (first, url) = server();
    let first_pid = first.0.id();
    let (_client, tools) = connect(&url).await;
    assert_eq!(
        call(&tools, "pid", json!({}), "k1").await.unwrap(),
        first_pid.to_string()
    );

    drop(first);
    let e = call(&tools, "add", json!({ "a": 1, "b": 1 }), "k2")
        .await
        .unwrap_err();
    assert_unreachable(&e, &url);

    let (second, second_url) = server_on(port_of(&url));
    assert_eq!(second_url, url);
    assert_eq!(
        call(&tools, "pid", json!({}), "k3")
            .await
            .expect("the first call after the restart succeeds"),
        second.0.id().to_string(),
        "the new server answered"
    );
}
