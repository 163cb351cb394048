//! Routers without code: a conditional edge's `route` expression over the state; its
//! sandbox (a huge, deeply nested or slow expression is refused at validation, with the
//! line and column of the expression), and its failures at run time as typed errors naming
//! the edge.

use agentgraph_engine::{DynState, Error};
use agentgraph_spec::{GraphSpec, MAX_EXPR_BYTES, NodeRegistry};
use serde_json::{Value, json};

/// A graph whose edge from `start` is routed by `route` among `targets`, over the fields
/// `score` (number), `tags` (list) and `name` (string).
fn file(route: &str, targets: &str) -> String {
    format!(
        r#"version: 1
state:
  - {{ name: score, type: number }}
  - {{ name: tags, type: list }}
  - {{ name: name, type: string }}
  - {{ name: log, type: list, reducer: append }}
nodes:
  - {{ name: start, kind: set, with: {{}} }}
  - {{ name: good, kind: set, with: {{ log: ["good"] }} }}
  - {{ name: bad, kind: set, with: {{ log: ["bad"] }} }}
edges:
  - {{ from: START, to: start }}
  - from: start
    route: {route}
    targets: [{targets}]
  - {{ from: good, to: END }}
  - {{ from: bad, to: END }}
"#
    )
}

async fn run(route: &str, targets: &str, input: Value) -> Result<DynState, Error> {
    let spec = GraphSpec::from_yaml_str("g.yaml", &file(route, targets)).unwrap();
    let graph = spec.compile(&NodeRegistry::builtin()).unwrap();
    let state = DynState::from_json(graph.schema(), input).unwrap();
    graph.invoke(state).await
}

/// The errors of validating the file with this route, as `line:column: message`.
fn refused(route: &str) -> Vec<String> {
    let spec = GraphSpec::from_yaml_str("g.yaml", &file(route, "good, bad, END")).unwrap();
    match spec.compile(&NodeRegistry::builtin()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    }
}

fn log(state: &DynState) -> Value {
    state.get("log").cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_expression_chooses_the_target() {
    let route = r#"'if score > 0.5 { "good" } else { "bad" }'"#;
    let high = run(route, "good, bad", json!({ "score": 0.9 }))
        .await
        .unwrap();
    assert_eq!(log(&high), json!(["good"]));
    let low = run(route, "good, bad", json!({ "score": 0.1 }))
        .await
        .unwrap();
    assert_eq!(log(&low), json!(["bad"]));
}

#[tokio::test]
async fn a_list_fans_out_and_end_ends() {
    let both = run(r#"'["good", "bad"]'"#, "good, bad", json!({}))
        .await
        .unwrap();
    assert_eq!(log(&both), json!(["good", "bad"]));
    let end = run(
        r#"'if tags.is_empty() { "END" } else { "good" }'"#,
        "good, bad, END",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(log(&end), json!([]));
    let tagged = run(
        r#"'if "urgent" in tags { "good" } else { "END" }'"#,
        "good, bad, END",
        json!({ "tags": ["urgent"] }),
    )
    .await
    .unwrap();
    assert_eq!(log(&tagged), json!(["good"]));
}

#[tokio::test]
async fn the_whole_state_is_a_map() {
    let route = r#"'if state["name"].len() > 3 { "good" } else { "bad" }'"#;
    let out = run(route, "good, bad", json!({ "name": "Ada Lovelace" }))
        .await
        .unwrap();
    assert_eq!(log(&out), json!(["good"]));
}

#[tokio::test]
async fn failures_at_run_time_are_typed_errors_naming_the_edge() {
    // A target the edge does not list.
    let err = run(r#"'"goood"'"#, "good, bad", json!({}))
        .await
        .unwrap_err();
    let Error::RouteFailed { from, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(from, "start");
    assert_eq!(
        message,
        "edge 2 (line 14, column 12): the expression chose `goood`, which is not one of the edge's targets (good, bad) (did you mean `good`?)"
    );
    // Not a name.
    let err = run("'score * 2'", "good, bad", json!({ "score": 2 }))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "edge 2 (line 14, column 12): the expression returned an i64 `4`, not a target's name"
        ),
        "{err}"
    );
    // A failure of the expression itself on this state.
    let err = run("'tags[3]'", "good, bad", json!({ "tags": [] }))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RouteFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("edge 2"), "{err}");
    // A limit reached on this state only.
    let err = run(
        r#"'if tags.len() > 0 { "x".pad(100000, "y") } else { "good" }'"#,
        "good, bad",
        json!({ "tags": [1] }),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("larger than the sandbox allows"),
        "{err}"
    );
}

#[test]
fn a_huge_expression_is_refused() {
    let huge = format!("'{}\"good\"'", "1 + ".repeat(MAX_EXPR_BYTES / 4));
    assert_eq!(
        refused(&huge),
        [format!(
            "14:12: edge 2: the expression is {} bytes long; the most is {MAX_EXPR_BYTES}",
            MAX_EXPR_BYTES / 4 * 4 + 6
        )]
    );
}

#[test]
fn a_deeply_nested_expression_is_refused() {
    for deep in [
        format!("'{}\"good\"{}'", "(".repeat(1000), ")".repeat(1000)),
        format!("'{}\"good\"{}'", "[".repeat(1000), "]".repeat(1000)),
        format!("'{}true'", "!".repeat(2000)),
        format!("'{}1'", "-".repeat(2000)),
        format!("'{}1'", "1 + ".repeat(900)),
        format!("'{}'", "f(".repeat(1000)),
    ] {
        let errors = refused(&deep);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("14:12: edge 2: the expression"),
            "{errors:?}"
        );
    }
    let errors = refused(&format!("'{}\"good\"{}'", "(".repeat(100), ")".repeat(100)));
    assert!(
        errors[0].contains("nests more than 32 levels deep (at 1:"),
        "{errors:?}"
    );
}

#[test]
fn a_slow_expression_is_refused() {
    // Loops are statements, refused; closures, which could nest `map` calls, too.
    let list = format!("[{}]", ["0"; 60].join(","));
    let cubic = format!("'{list}.map(|x| {list}.map(|y| {list}.map(|z| z).len()).len())'");
    assert_eq!(
        refused(&cubic),
        [
            "14:12: edge 2: closures (`|x| ...`) are not allowed in an expression: it has no loops and no functions of its own (at 1:127 of the expression)"
        ]
    );
    assert!(refused("'while true { 1 }'")[0].contains("does not parse"));
    // Values made past the sandbox's sizes, on the state the graph starts from.
    for slow in [
        r#"'"x" + "y".pad(1000000, "y")'"#,
        "'[0] + [0].pad(1000000, 0)'",
        r#"'if name == "" { "x".pad(1000000, "y") } else { "good" }'"#,
    ] {
        let errors = refused(slow);
        assert_eq!(errors.len(), 1, "{slow}: {errors:?}");
        assert!(
            errors[0].starts_with("14:12: edge 2: the expression")
                && errors[0].ends_with("on the state the graph starts from"),
            "{slow}: {errors:?}"
        );
    }
}

#[test]
fn statements_io_and_unknown_names_are_refused() {
    let cases = [
        (
            "'scor > 1'",
            "reads `scor`, which is not a field of the state (did you mean `score`?)",
        ),
        ("'for x in tags { x }'", "does not parse"),
        ("'let x = 1'", "does not parse"),
        (r#"'eval("1")'"#, "does not parse"),
        (r#"'print("hi")'"#, ""),
        ("'import \"fs\"'", "does not parse"),
        ("'score >'", "does not parse"),
        ("''", "the expression is empty"),
    ];
    for (route, expected) in cases {
        let spec = GraphSpec::from_yaml_str("g.yaml", &file(route, "good, bad")).unwrap();
        let result = spec.compile(&NodeRegistry::builtin());
        if expected.is_empty() {
            // Allowed, and harmless: printing goes nowhere.
            continue;
        }
        let errors = result.unwrap_err();
        let text = errors.to_string();
        assert!(
            text.starts_with("g.yaml:14:12: edge 2: ") || text.starts_with("14:12: edge 2: "),
            "{route}: {text}"
        );
        assert!(text.contains(expected), "{route}: {text}");
    }
}

#[test]
fn a_route_edge_lists_its_targets() {
    let text = file("'\"good\"'", "good, bad").replace("    targets: [good, bad]\n", "");
    let spec = GraphSpec::from_yaml_str("g.yaml", &text).unwrap();
    let errors = spec.compile(&NodeRegistry::builtin()).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "13:11: edge 2: a `route` edge lists its `targets`"
    );
}
