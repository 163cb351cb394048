//! Export: a graph compiled from a file, or built in Rust from registered kinds, written out
//! as a file; file -> graph -> file is stable, byte for byte, for every edge kind.

use std::sync::Arc;

use agentgraph_engine::{DynSchema, DynState, END, GraphBuilder, Route, START};
use agentgraph_spec::{FieldType, GraphSpec, NodeRegistry};
use serde_json::json;

fn registry() -> NodeRegistry {
    NodeRegistry::builtin()
        .function("count", |s: Arc<DynState>, _| async move {
            Ok(s.update().set("n", 1)?)
        })
        .router("enough?", |s: &DynState| {
            if s.get("n").and_then(|n| n.as_i64()) >= Some(3) {
                Route::to(["fan"])
            } else {
                Route::to(["count"])
            }
        })
}

/// Every edge kind of the format: static, fan-out, router, route, weighted, each, join (with
/// quorum and timeout), go-to, on error; and the node settings.
const EVERY_EDGE: &str = r#"
version: 1
name: every-edge
description: every edge kind
state:
  - { name: n, type: integer, reducer: add }
  - { name: log, type: list, reducer: append }
  - { name: docs, type: list, default: ["a", "b"] }
  - { name: seen, type: list, reducer: append }
  - { name: answer, type: any }
models:
  - { name: local, model: m1, base_url_env: BASE, api_key_env: KEY }
defaults:
  retry: { max_attempts: 2, initial_ms: 1, max_delay_ms: 1, jitter: false }
  timeout_ms: 60000
nodes:
  - { name: count, kind: count, layers: [ { concurrency: 2 }, { rate_per_second: 1000 }, { cache_seconds: 5 } ] }
  - { name: fan, kind: set, with: { log: ["fan"] }, goto: [left, END] }
  - { name: left, kind: set, with: { log: ["left"] }, retry: { max_attempts: 3 } }
  - { name: right, kind: set, with: { log: ["right"] }, timeout_ms: 100, on_error: last }
  - { name: joined, kind: set, with: { log: ["joined"] }, interrupt_before: true }
  - { name: pick, kind: set, with: { log: ["pick"] }, interrupt_after: true }
  - { name: heads, kind: set, with: { log: ["heads"] } }
  - { name: map, kind: collect, with: { field: seen } }
  - { name: ask, kind: interrupt, with: { question: { text: "ok?", options: [1, 2.5, null] }, field: answer } }
  - { name: last, kind: set, deferred: true }
edges:
  - { from: START, to: count }
  - { from: count, router: "enough?", targets: [count, fan] }
  - { from: fan, to: [left, right] }
  - { join: [left, right], to: joined, quorum: 1, timeout_steps: 3 }
  - { from: joined, weights: [ { to: pick, weight: 1.0 }, { to: heads, weight: 0.25 } ] }
  - { from: pick, each: docs, to: map }
  - { from: map, route: 'if seen.len() > 1 { ["ask", "last"] } else { "END" }', targets: [ask, last, END] }
  - { from: ask, to: last }
  - { from: heads, to: last }
  - { from: last, to: END }
"#;

fn export(graph: &agentgraph_engine::CompiledGraph<DynState>) -> String {
    GraphSpec::from_graph(graph, &registry()).unwrap().to_json()
}

#[test]
fn file_graph_file_is_byte_identical() {
    let spec = GraphSpec::from_yaml_str("every.yaml", EVERY_EDGE).unwrap();
    let graph = spec.compile(&registry()).unwrap();
    let json = export(&graph);
    assert_eq!(json, spec.to_json());
    for kind in [
        "\"router\"",
        "\"route\"",
        "\"weights\"",
        "\"each\"",
        "\"join\"",
        "\"goto\"",
        "\"on_error\"",
        "\"quorum\"",
        "\"timeout_steps\"",
        "\"layers\"",
    ] {
        assert!(json.contains(kind), "{kind} is missing from\n{json}");
    }
    // The JSON file, read back: the same graph, and the same file again.
    let again = GraphSpec::from_yaml_str("every.json", &json)
        .unwrap()
        .compile(&registry())
        .unwrap();
    assert_eq!(export(&again), json);
    assert_eq!(again.fingerprint(), graph.fingerprint());
    // From a path too (its digest joins the fingerprint; the file is the same).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("every.json");
    std::fs::write(&path, &json).unwrap();
    let from_path = GraphSpec::from_path(&path, &registry()).unwrap();
    assert_eq!(export(&from_path), json);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), json);
}

#[test]
fn a_graph_built_in_rust_is_written_out() {
    let mut spec = GraphSpec::new();
    spec.field("n", FieldType::Integer, Some("add"))
        .field("log", FieldType::List, Some("append"))
        .field("docs", FieldType::List, None)
        .field("seen", FieldType::List, Some("append"))
        .node("count", "count", json!(null))
        .node("fan", "set", json!({ "log": ["fan"] }))
        .node("left", "set", json!({ "log": ["left"] }))
        .node("right", "set", json!({ "log": ["right"] }))
        .node("joined", "set", json!({ "log": ["joined"] }))
        .node("pick", "set", json!({ "log": ["pick"] }))
        .node("heads", "set", json!({ "log": ["heads"] }))
        .node("map", "collect", json!({ "field": "seen" }))
        .node("last", "set", json!({ "log": ["last"] }))
        .edge("START", ["count"])
        .router("count", "enough?", ["count", "fan"])
        .edge("fan", ["left", "right"])
        .join(["left", "right"], "joined", Some(2), None)
        .weighted("joined", [("pick", 1.0), ("heads", 0.0)])
        .each("pick", "docs", "map")
        .route("map", r#"["last"]"#, ["last"])
        .edge("heads", ["last"])
        .edge("last", ["END"]);
    spec.nodes[8].deferred = true;
    let graph = spec.compile(&registry()).unwrap();
    let json = export(&graph);
    let again = GraphSpec::from_yaml_str("built.json", &json)
        .unwrap()
        .compile(&registry())
        .unwrap();
    assert_eq!(export(&again), json);
    assert_eq!(again.fingerprint(), graph.fingerprint());
}

#[tokio::test]
async fn the_exported_file_runs_the_same() {
    let mut spec = GraphSpec::new();
    spec.field("n", FieldType::Integer, Some("add"))
        .node("count", "count", json!(null))
        .edge("START", ["count"])
        .route(
            "count",
            r#"if n < 3 { "count" } else { "END" }"#,
            ["count", "END"],
        );
    let graph = spec.compile(&registry()).unwrap();
    let out = graph.invoke(DynState::new(graph.schema())).await.unwrap();
    let again = GraphSpec::from_yaml_str("g.json", &export(&graph))
        .unwrap()
        .compile(&registry())
        .unwrap();
    let out_again = again.invoke(DynState::new(again.schema())).await.unwrap();
    assert_eq!(out.get("n"), Some(&json!(3)));
    assert_eq!(out_again.to_json(), out.to_json());
}

#[test]
fn a_graph_of_closures_or_unregistered_kinds_is_not_exported() {
    let schema = DynSchema::builder().build().unwrap();
    let mut b = GraphBuilder::<DynState>::with_schema(schema);
    b.add_node("noop", |s: Arc<DynState>, _| async move { Ok(s.update()) })
        .add_edge(START, "noop")
        .add_edge("noop", END);
    let err = GraphSpec::from_graph(&b.compile().unwrap(), &registry()).unwrap_err();
    assert!(err.to_string().contains("has no file form"), "{err}");

    let spec = GraphSpec::from_yaml_str("every.yaml", EVERY_EDGE).unwrap();
    let graph = spec.compile(&registry()).unwrap();
    let err = GraphSpec::from_graph(&graph, &NodeRegistry::builtin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `count`: the registry has no kind `count`\nedge 2: the registry has no router `enough?`"
    );
}
