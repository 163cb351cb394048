//! A file-declared MCP tool call (the `mcp` kind of graph files) against the test server,
//! started by the file's `command` over stdio.

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
