//! The published JSON Schema (`spec/graph.schema.json`) is the one the types generate (run
//! with `AGENTGRAPH_WRITE_SCHEMA=1` to write it after changing the format), and files are
//! checked against it: every kind and option passes, a parameter a kind does not take fails
//! naming it.

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

/// The errors of the published schema for a YAML file, as text (none: it is valid).
fn schema_errors(yaml: &str) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/graph.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let file: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
    validator
        .iter_errors(&file)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

const HEADER: &str = "version: 1\nmodels: [ { name: m, model: m } ]\nstate: [ { name: messages, type: messages } ]\nnodes:\n";

#[test]
fn files_of_every_kind_and_option_are_valid_under_the_published_schema() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../cli/templates");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let errors = schema_errors(&std::fs::read_to_string(&path).unwrap());
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    let nodes = r#"
  - { name: a, kind: agent, with: { model: m, max_turns: 3, tools: [ add, { tool: add, timeout_ms: 100, retries: 2, retry_delay_ms: 5, max_calls_per_run: 3, needs_approval: true }, { http: { name: h, url: "http://h" }, retries: 1 }, { mcp: { url: "http://h/mcp" }, needs_approval: true } ] } }
  - { name: b, kind: tool, with: { tool: add, args: { a: 1 }, output: messages, needs_approval: true, timeout_ms: 10 } }
  - { name: c, kind: pattern, with: { pattern: swarm, default_agent: x, handoffs: { x: [w] }, max_handoffs: 2, agents: [ { name: x, model: m, sees: task }, { name: w, model: m, reports: everything } ] } }
  - { name: d, kind: pattern, with: { pattern: ensemble, aggregate: judge, model: m, agents: [ { name: x, model: m } ] } }
  - { name: e, kind: pattern, with: { pattern: fallback, agents: [ { name: x, model: m } ] } }
  - { name: f, kind: pattern, with: { pattern: pipeline, agents: [ { name: x, model: m } ] } }
  - { name: g, kind: pattern, with: { pattern: planning, read_only: ["read_*"], approval: false, agents: [ { name: x, model: m } ] } }
  - { name: h, kind: pattern, with: { pattern: group_chat, selector: model, model: m, stop_keyword: DONE, agents: [ { name: x, model: m } ] } }
  - { name: i, kind: my_own_kind, with: { anything: [1, 2] } }
  - { name: j, kind: set, with: { messages: [] } }
"#;
    let errors = schema_errors(&format!("{HEADER}{nodes}"));
    assert!(errors.is_empty(), "{errors:#?}");
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/seeds/load_graph_file/patterns.yaml"
    );
    let errors = schema_errors(&std::fs::read_to_string(seed).unwrap());
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn a_wrong_parameter_for_a_kind_fails_the_schema_naming_it() {
    for (node, wrong) in [
        (
            "{ name: a, kind: agent, with: { model: m, max_turn: 3 } }",
            "'max_turn' was unexpected",
        ),
        (
            "{ name: a, kind: model, with: { model: m, tools: [] } }",
            "'tools' was unexpected",
        ),
        (
            "{ name: a, kind: tool, with: { tool: add, max_calls_per_run: 1 } }",
            "'max_calls_per_run' was unexpected",
        ),
        (
            "{ name: a, kind: http, with: { url: \"http://h\", header: {} } }",
            "'header' was unexpected",
        ),
        (
            "{ name: a, kind: subgraph, with: { file: x.yaml } }",
            "'file' was unexpected",
        ),
        (
            "{ name: a, kind: interrupt, with: { field: messages, prompt: x } }",
            "'prompt' was unexpected",
        ),
        (
            "{ name: a, kind: agent, with: { model: m, max_turns: many } }",
            "\"many\" is not of types \"null\", \"integer\"",
        ),
        (
            "{ name: a, kind: model }",
            "\"with\" is a required property",
        ),
    ] {
        let errors = schema_errors(&format!("{HEADER}  - {node}\n"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains(wrong) && e.starts_with("/nodes/0")),
            "{node}: {errors:#?}"
        );
    }
    // A pattern's parameters depend on which pattern; a tool's options on the item.
    for node in [
        "{ name: a, kind: pattern, with: { pattern: fallback, max_rounds: 2, agents: [ { name: x, model: m } ] } }",
        "{ name: a, kind: pattern, with: { pattern: swarm, agents: [ { name: x, model: m, sees: all } ] } }",
        "{ name: a, kind: pattern, with: { pattern: swarms, agents: [ { name: x, model: m } ] } }",
        "{ name: a, kind: agent, with: { model: m, tools: [ { tool: add, timeout: 5 } ] } }",
        "{ name: a, kind: agent, with: { model: m, tools: [ { tool: add, retries: -1 } ] } }",
    ] {
        let errors = schema_errors(&format!("{HEADER}  - {node}\n"));
        assert!(!errors.is_empty(), "{node} passed the schema");
        assert!(
            errors.iter().all(|e| e.starts_with("/nodes/0/with")),
            "{node}: {errors:#?}"
        );
    }
}
