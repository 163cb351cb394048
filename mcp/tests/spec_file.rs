//! A file-declared MCP tool call (the `mcp` kind of graph files) against the test server,
//! started by the file's `command` over stdio; an agent's MCP tools with their options.

use agentgraph_engine::DynState;
use agentgraph_spec::{GraphSpec, NodeRegistry};
use serde_json::json;

fn file(tool: &str) -> String {
    format!(
        r#"
version: 1
state:
  - {{ name: b, type: object, default: {{ b: 40 }} }}
  - {{ name: sum, type: any }}
  - {{ name: echoed, type: any }}
nodes:
  - name: add
    kind: mcp
    with: {{ command: ["{server}"], tool: {tool}, args: {{ a: 2 }}, args_from: b, output: sum }}
  - name: echo
    kind: mcp
    with: {{ command: ["{server}"], tool: echo, args: {{ text: hello }}, output: echoed }}
edges:
  - {{ from: START, to: add }}
  - {{ from: add, to: echo }}
  - {{ from: echo, to: END }}
"#,
        server = env!("CARGO_BIN_EXE_mcp_test_server"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_calls_a_tool_of_an_mcp_server_it_starts() {
    let graph = GraphSpec::from_yaml_str("mcp.yaml", &file("add"))
        .unwrap()
        .compile(&NodeRegistry::builtin())
        .unwrap();
    let out = graph.invoke(DynState::new(graph.schema())).await.unwrap();
    assert_eq!(out.get("sum"), Some(&json!("42")));
    assert_eq!(out.get("echoed"), Some(&json!("hello")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_mcp_tool_fails_the_node_with_a_suggestion() {
    let graph = GraphSpec::from_yaml_str("mcp.yaml", &file("ad"))
        .unwrap()
        .compile(&NodeRegistry::builtin())
        .unwrap();
    let err = graph
        .invoke(DynState::new(graph.schema()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the MCP server has no tool `ad` (did you mean `add`?)"),
        "{err}"
    );
}

/// The scripted OpenAI-compatible server of the node library's tests.
#[path = "../../nodes/tests/support/mod.rs"]
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_agent_offers_and_calls_the_tools_of_an_mcp_server() {
    let server = support::Scripted::start([
        support::Reply::sse([
            support::tool_chunk(0, Some("c1"), Some("add"), r#"{"a": 2, "b": 3}"#),
            support::finish_chunk("tool_calls"),
        ]),
        support::Reply::sse([support::text_chunk("5."), support::finish_chunk("stop")]),
    ])
    .await;
    let text = format!(
        r#"
version: 1
models: [ {{ name: m, model: m, base_url: "{url}" }} ]
state: [ {{ name: messages, type: messages, reducer: messages }} ]
nodes:
  - name: agent
    kind: agent
    with:
      model: m
      tools: [ {{ mcp: {{ command: ["{mcp}"] }} }} ]
      deny: [fail, sleep]
edges: [ {{ from: START, to: agent }}, {{ from: agent, to: END }} ]
"#,
        url = server.base_url,
        mcp = env!("CARGO_BIN_EXE_mcp_test_server"),
    );
    let graph = GraphSpec::from_yaml_str("agent.yaml", &text)
        .unwrap()
        .compile(&NodeRegistry::builtin())
        .unwrap();
    let input = DynState::from_json(
        graph.schema(),
        json!({ "messages": [ { "role": "user", "content": "2 + 3?" } ] }),
    )
    .unwrap();
    let out = graph.invoke(input).await.unwrap();
    let messages = out.get("messages").unwrap().as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["content"], "5");
    assert_eq!(messages[3]["content"], "5.");
    let requests = server.requests();
    let mut offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    offered.sort();
    assert_eq!(
        offered,
        ["add", "echo", "key", "pid"],
        "the denied tools are not offered"
    );
    drop(graph);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_item_s_tool_options_apply_to_each_of_the_server_s_tools() {
    let server = support::Scripted::start([
        support::Reply::sse([
            support::tool_chunk(0, Some("c1"), Some("sleep"), r#"{"ms": 5000}"#),
            support::tool_chunk(1, Some("c2"), Some("echo"), r#"{"text": "one"}"#),
            support::tool_chunk(2, Some("c3"), Some("echo"), r#"{"text": "two"}"#),
            support::finish_chunk("tool_calls"),
        ]),
        support::Reply::sse([support::text_chunk("Done."), support::finish_chunk("stop")]),
    ])
    .await;
    let text = format!(
        r#"
version: 1
models: [ {{ name: m, model: m, base_url: "{url}" }} ]
state: [ {{ name: messages, type: messages, reducer: messages }} ]
nodes:
  - name: agent
    kind: agent
    with:
      model: m
      tools: [ {{ mcp: {{ command: ["{mcp}"] }}, timeout_ms: 200, max_calls_per_run: 1 }} ]
edges: [ {{ from: START, to: agent }}, {{ from: agent, to: END }} ]
"#,
        url = server.base_url,
        mcp = env!("CARGO_BIN_EXE_mcp_test_server"),
    );
    let graph = GraphSpec::from_yaml_str("agent.yaml", &text)
        .unwrap()
        .compile(&NodeRegistry::builtin())
        .unwrap();
    let input = DynState::from_json(
        graph.schema(),
        json!({ "messages": [ { "role": "user", "content": "go" } ] }),
    )
    .unwrap();
    let out = graph.invoke(input).await.unwrap();
    let results: Vec<String> = out.get("messages").unwrap().as_array().unwrap()[2..5]
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(results[0].contains("timed out after 200ms"), "{results:?}");
    assert_eq!(results[1], "one");
    assert!(results[2].contains("at most 1 times"), "{results:?}");
    drop(graph);
}
