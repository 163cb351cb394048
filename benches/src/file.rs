//! Graphs declared in files (`file_compile_1000`, `file_chain_1000`): a chain of `set` nodes
//! written as YAML, the same chain as [`chain`](crate::chain) builds in Rust.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use agentgraph_engine::{CompiledGraph, DynSchema, DynState};
use agentgraph_spec::{GraphSpec, NodeRegistry};

/// A chain of `nodes` `set` nodes as a YAML file: each adds 1 to the integer field `n`
/// (reducer `add`), `START -> n0 -> ... -> END`, as [`chain`](crate::chain) in Rust.
///
/// # Examples
///
/// ```
/// let text = agentgraph_benches::file_chain_yaml(3);
/// assert!(text.contains("- { from: n2, to: END }"));
/// ```
pub fn file_chain_yaml(nodes: usize) -> String {
    let mut out = String::from(
        "version: 1\nname: file-chain\nstate:\n  - { name: n, type: integer, reducer: add }\nnodes:\n",
    );
    for i in 0..nodes {
        out.push_str(&format!(
            "  - {{ name: n{i}, kind: set, with: {{ n: 1 }} }}\n"
        ));
    }
    out.push_str("edges:\n  - { from: START, to: n0 }\n");
    for i in 1..nodes {
        out.push_str(&format!("  - {{ from: n{}, to: n{i} }}\n", i - 1));
    }
    out.push_str(&format!("  - {{ from: n{}, to: END }}\n", nodes - 1));
    out
}

/// Reads, validates and compiles the graph file at `path` with the built-in kinds.
///
/// # Panics
///
/// If the file is not a valid graph.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("chain.yaml");
/// std::fs::write(&path, agentgraph_benches::file_chain_yaml(5)).unwrap();
/// assert_eq!(agentgraph_benches::load_file_graph(&path).node_names().len(), 5);
/// ```
pub fn load_file_graph(path: &Path) -> CompiledGraph<DynState> {
    GraphSpec::from_path(path, &NodeRegistry::builtin()).expect("the file graph compiles")
}

/// The schema the input of [`file_input`] is made with (set it once before timing).
pub static FILE_SCHEMA: OnceLock<Arc<DynSchema>> = OnceLock::new();

/// The initial state of a file graph over [`FILE_SCHEMA`] (a `fn`, as the timing helpers take).
///
/// # Panics
///
/// If [`FILE_SCHEMA`] is not set.
///
/// # Examples
///
/// ```
/// let graph = agentgraph_spec::GraphSpec::from_yaml_str("c.yaml", &agentgraph_benches::file_chain_yaml(2))
///     .unwrap()
///     .compile(&agentgraph_spec::NodeRegistry::builtin())
///     .unwrap();
/// let _ = agentgraph_benches::FILE_SCHEMA.set(graph.schema().clone());
/// assert_eq!(agentgraph_benches::file_input().get("n"), Some(&serde_json::json!(0)));
/// ```
pub fn file_input() -> DynState {
    DynState::new(FILE_SCHEMA.get().expect("FILE_SCHEMA is set"))
}
