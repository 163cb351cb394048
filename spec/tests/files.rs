//! Graph files: every node and edge kind from a file, run; every validation error with its
//! line and column; the file's digest in the fingerprint.

use std::sync::Arc;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{DynState, Error, Resume, Route, RunConfig};
use agentgraph_spec::{GraphSpec, NodeRegistry};
use serde_json::json;

fn registry() -> NodeRegistry {
    NodeRegistry::builtin()
        .function("count", |s: Arc<DynState>, _| async move {
            Ok(s.update().set("n", 1)?)
        })
        .function(
            "flaky",
            |s: Arc<DynState>, ctx: agentgraph_engine::Context| async move {
                if ctx.attempt() < 2 {
                    return Err("first attempt fails".into());
                }
                Ok(s.update().set("log", json!(["flaky"]))?)
            },
        )
        .router("enough?", |s: &DynState| {
            if s.get("n").and_then(|n| n.as_i64()) >= Some(3) {
                Route::to(["fan"])
            } else {
                Route::to(["count"])
            }
        })
}

const EVERY_KIND: &str = r#"
version: 1
name: every-kind
state:
  - { name: n, type: integer, reducer: add }
  - { name: log, type: list, reducer: append }
  - { name: docs, type: list, default: ["a", "b", "c"] }
  - { name: seen, type: list, reducer: append }
  - { name: answer, type: any }
  - { name: chat, type: messages, reducer: messages }
defaults:
  retry: { max_attempts: 2, initial_ms: 1, max_delay_ms: 1, jitter: false }
nodes:
  - { name: count, kind: count, layers: [ { concurrency: 2 }, { rate_per_second: 1000 } ] }
  - { name: fan, kind: set, with: { log: ["fan"] } }
  - { name: left, kind: set, with: { log: ["left"] } }
  - { name: right, kind: set, with: { log: ["right"] } }
  - { name: joined, kind: set, with: { log: ["joined"] } }
  - { name: pick, kind: set, with: { log: ["pick"] } }
  - { name: heads, kind: set, with: { log: ["heads"] } }
  - { name: map, kind: collect, with: { field: seen } }
  - { name: flaky, kind: flaky, timeout_ms: 5000 }
  - { name: ask, kind: interrupt, with: { question: "ok?", field: answer } }
  - name: greet
    kind: set
    with: { chat: [ { role: user, content: [ { type: text, text: hi } ], id: m1 } ] }
  - { name: last, kind: set, with: { log: ["last"] }, deferred: true }
edges:
  - { from: START, to: count }
  - { from: count, router: "enough?", targets: [count, fan] }
  - { from: fan, to: [left, right] }
  - { join: [left, right], to: joined, quorum: 2 }
  - { from: joined, weights: [ { to: pick, weight: 1.0 }, { to: heads, weight: 0.0 } ] }
  - { from: pick, each: docs, to: map }
  - { from: map, to: flaky }
  - { from: flaky, to: ask }
  - { from: ask, to: greet }
  - { from: greet, to: last }
  - { from: heads, to: last }
  - { from: last, to: END }
"#;

#[tokio::test]
async fn every_kind_runs_from_a_file() {
    let spec = GraphSpec::from_yaml_str("every.yaml", EVERY_KIND).unwrap();
    let graph = spec.compile(&registry()).unwrap();
    assert_eq!(graph.name(), Some("every-kind"));
    let store = MemoryStore::new();
    let config = || RunConfig::new().store(store.clone()).run_id("r").seed(7);
    let err = graph
        .run_with(DynState::new(graph.schema()), config())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err:?}");
    let out = graph
        .resume_with("r", Resume::value("yes"), config())
        .await
        .unwrap();
    assert_eq!(out.get("n"), Some(&json!(3)));
    assert_eq!(
        out.get("log"),
        Some(&json!([
            "fan", "left", "right", "joined", "pick", "flaky", "last"
        ]))
    );
    assert_eq!(out.get("seen"), Some(&json!(["a", "b", "c"])));
    assert_eq!(out.get("answer"), Some(&json!("yes")));
    assert_eq!(out.get("chat").unwrap()[0]["id"], "m1");
}

#[test]
fn the_canonical_json_reads_back_the_same() {
    let spec = GraphSpec::from_yaml_str("every.yaml", EVERY_KIND).unwrap();
    let json = spec.to_json();
    let again = GraphSpec::from_yaml_str("every.json", &json).unwrap();
    assert_eq!(again.to_json(), json);
    again.compile(&registry()).unwrap();
}

#[test]
fn the_file_digest_is_part_of_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(&path, EVERY_KIND).unwrap();
    let first = GraphSpec::from_path(&path, &registry())
        .unwrap()
        .fingerprint();
    assert_eq!(
        GraphSpec::from_path(&path, &registry())
            .unwrap()
            .fingerprint(),
        first
    );
    std::fs::write(&path, format!("{EVERY_KIND}# a comment\n")).unwrap();
    assert_ne!(
        GraphSpec::from_path(&path, &registry())
            .unwrap()
            .fingerprint(),
        first
    );
}

/// Each broken file with every error expected: `line:column: subject: message`.
const BROKEN: &[(&str, &str, &[&str])] = &[
    (
        "a misspelt top-level key",
        "version: 1\nnodez: []\n",
        &[
            "2:1: unknown field `nodez`, expected one of version, name, description, state, models, nodes, edges, defaults (did you mean `nodes`?)",
        ],
    ),
    (
        "an unsupported version",
        "version: 9\n",
        &["1:10: format version 9 is not supported (this build reads 1)"],
    ),
    (
        "a YAML syntax error",
        "version: 1\nnodes: [\n",
        &["2:8: unclosed bracket '['"],
    ),
    (
        "an unknown kind, node and router",
        "version: 1\nnodes:\n  - { name: a, kind: sett }\n  - { name: b, kind: set, with: {} }\nedges:\n  - { from: START, to: a }\n  - { from: a, to: bb }\n  - { from: b, router: rout, targets: [END] }\n",
        &[
            "3:22: node `a`: unknown kind `sett` (did you mean `set`?)",
            "7:20: edge 2: unknown node `bb` (did you mean `b`?)",
            "8:24: edge 3: unknown router `rout` (did you mean `route`?)",
        ],
    ),
    (
        "state field problems",
        "version: 1\nstate:\n  - { name: n, type: string, reducer: add }\n  - { name: m, type: list, reducer: apend }\n  - { name: n, type: integer }\n  - { name: k, type: integer, default: \"x\" }\n",
        &[
            "3:39: field `n`: the reducer `add` does not merge string values",
            "4:37: field `m`: unknown reducer `apend` (did you mean `append`?)",
            "5:13: field `n`: declared twice (first at 3:13)",
            "6:40: field `k`: the default is not integer",
        ],
    ),
    (
        "node problems",
        "version: 1\nstate:\n  - { name: n, type: integer }\nnodes:\n  - { name: a, kind: set, with: { m: 1 } }\n  - { name: a, kind: set }\n  - { name: END, kind: set }\n  - { name: c, kind: set, retry: { max_attempts: 0 }, goto: [dd] }\n",
        &[
            "5:33: node `a`: the state has no field `m` (did you mean `n`?)",
            "6:13: node `a`: declared twice (first at 5:13)",
            "7:13: node `END`: this name is reserved",
            "8:50: node `c`: `max_attempts` counts every attempt: at least 1",
            "8:62: node `c`: unknown node `dd`",
        ],
    ),
    (
        "edge forms",
        "version: 1\nstate:\n  - { name: s, type: string }\nnodes:\n  - { name: a, kind: set }\nedges:\n  - { from: START }\n  - { join: [a], from: a, to: a }\n  - { from: a, each: s, to: a }\n  - { from: a, weights: [ { to: a, weight: -1 } ] }\n",
        &[
            "7:13: edge 1: the edge has no `to`",
            "8:24: edge 2: a join has no `from`: its sources are `join`",
            "9:22: edge 3: field `s` is string, not a list",
            "10:44: edge 4: weight -1 must be finite and not negative",
        ],
    ),
    (
        "model declarations",
        "version: 1\nmodels:\n  - { name: m, model: x, api_key: sk-do-not-print-me }\n  - { name: m, model: y, base_url: \"http://h/v1\", base_url_env: URL }\n  - { name: k, model: z, api_key_env: sk-also-secret }\n",
        &[
            "3:35: model `m`: a secret is never written in the file: name the environment variable that holds it with `api_key_env`",
            "4:13: model `m`: declared twice (first at 3:13)",
            "5:39: model `k`: this names an environment variable (letters, digits and `_`, not starting with a digit), not its value",
        ],
    ),
    (
        "what compile() checks",
        "version: 1\nnodes:\n  - { name: a, kind: set }\n  - { name: lost, kind: set }\nedges:\n  - { from: START, to: a }\n  - { from: a, to: END }\n  - { from: lost, to: END }\n",
        &[
            "4:13: node `lost`: node `lost` is unreachable from START; add an edge into it or remove it",
        ],
    ),
];

#[test]
fn every_error_has_its_line_and_column() {
    let registry = registry().router("route", |_: &DynState| Route::end());
    for (what, text, expected) in BROKEN {
        let errors = match GraphSpec::from_yaml_str("", text) {
            Ok(spec) => spec.compile(&registry).map(drop).unwrap_err(),
            Err(errors) => errors,
        };
        let got: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
        assert_eq!(&got, expected, "{what}");
    }
}
