//! The published JSON Schema (`spec/graph.schema.json`) is the one the types generate. Run
//! with `AGENTGRAPH_WRITE_SCHEMA=1` to write it after changing the format.

#[test]
fn the_published_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/graph.schema.json");
    let generated = serde_json::to_string_pretty(&agentgraph_spec::json_schema()).unwrap() + "\n";
    if std::env::var_os("AGENTGRAPH_WRITE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let published = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        published == generated,
        "spec/graph.schema.json is out of date: run AGENTGRAPH_WRITE_SCHEMA=1 cargo test -p agentgraph-spec --test schema"
    );
}
