//! Per-tool options from files (an agent's `tools` items and a `tool` node: timeout, retries,
//! calls per run, approval) and the patterns `swarm`, `ensemble`, `fallback`, `pipeline` and
//! `planning` from files, against the scripted OpenAI-compatible server.

#[path = "../../nodes/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{DynState, Error, Resume, RunConfig};
use agentgraph_nodes::tool::{ToolContext, tool_fn, tool_fn_with_context};
use agentgraph_spec::{GraphSpec, NodeRegistry};
use serde_json::{Value, json};
use support::{Reply, Scripted, finish_chunk, text_chunk, tool_chunk};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// `add`; `flaky` (fails on its first attempt of each call); `slow` (takes 5 s).
fn registry(flaky_calls: Arc<AtomicU32>) -> NodeRegistry {
    NodeRegistry::builtin()
        .tool(tool_fn("add", "Adds two integers.", |x: Add| async move {
            Ok::<_, std::io::Error>(x.a + x.b)
        }))
        .tool(tool_fn_with_context(
            "flaky",
            "Fails once.",
            move |_: NoArgs, ctx: ToolContext| {
                let calls = flaky_calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if ctx.attempt() == 1 {
                        Err("try again")
                    } else {
                        Ok(format!("attempt {}", ctx.attempt()))
                    }
                }
            },
        ))
        .tool(tool_fn("slow", "Slow.", |_: NoArgs| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::io::Error>("late")
        }))
}

fn say(text: &str) -> Reply {
    Reply::sse([text_chunk(text), finish_chunk("stop")])
}

fn calls(calls: &[(&str, &str, Value)]) -> Reply {
    let mut chunks: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (id, name, args))| tool_chunk(i as u32, Some(id), Some(name), &args.to_string()))
        .collect();
    chunks.push(finish_chunk("tool_calls"));
    Reply::sse(chunks)
}

fn compile_with(registry: &NodeRegistry, text: &str) -> agentgraph_engine::CompiledGraph<DynState> {
    GraphSpec::from_yaml_str("g.yaml", text)
        .unwrap()
        .compile(registry)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn compile(text: &str) -> agentgraph_engine::CompiledGraph<DynState> {
    compile_with(&registry(Arc::default()), text)
}

fn user(text: &str) -> Value {
    json!({ "messages": [ { "role": "user", "content": text } ] })
}

/// The messages of the final state.
fn messages(out: &DynState) -> Vec<agentgraph_nodes::Message> {
    serde_json::from_value(out.get("messages").unwrap().clone()).unwrap()
}

/// The tool results, by call id, in order.
fn tool_results(out: &DynState) -> Vec<(String, String)> {
    messages(out)
        .iter()
        .filter_map(|m| {
            m.call_id()
                .map(|id| (id.to_owned(), m.content.to_text().into_owned()))
        })
        .collect()
}

fn agent_file(url: &str, tools: &str) -> String {
    format!(
        r#"
version: 1
models: [ {{ name: m, model: m, base_url: "{url}", max_retries: 0 }} ]
state: [ {{ name: messages, type: messages, reducer: messages }} ]
nodes:
  - name: assistant
    kind: agent
    with:
      model: m
      tools: {tools}
edges: [ {{ from: START, to: assistant }}, {{ from: assistant, to: END }} ]
"#
    )
}

#[tokio::test]
async fn an_agent_s_tool_options_from_the_file_are_enforced() {
    let server = Scripted::start([
        calls(&[
            ("c1", "flaky", json!({})),
            ("c2", "slow", json!({})),
            ("c3", "add", json!({ "a": 1, "b": 2 })),
            ("c4", "add", json!({ "a": 3, "b": 4 })),
        ]),
        say("Done."),
    ])
    .await;
    let flaky = Arc::new(AtomicU32::new(0));
    let graph = compile_with(
        &registry(flaky.clone()),
        &agent_file(
            &server.base_url,
            r#"
        - { tool: flaky, retries: 2, retry_delay_ms: 1 }
        - { tool: slow, timeout_ms: 50 }
        - { tool: add, max_calls_per_run: 1 }"#,
        ),
    );
    let input = DynState::from_json(graph.schema(), user("go")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    let results = tool_results(&out);
    assert_eq!(
        results[0],
        ("c1".into(), "attempt 2".into()),
        "retried once"
    );
    assert_eq!(flaky.load(Ordering::SeqCst), 2);
    assert!(results[1].1.contains("timed out"), "{results:?}");
    assert_eq!(results[2], ("c3".into(), "3".into()));
    assert!(results[3].1.contains("at most 1 times"), "{results:?}");
    assert_eq!(messages(&out).last().unwrap().content.to_text(), "Done.");
}

#[tokio::test]
async fn an_agent_s_tool_that_needs_approval_interrupts_and_takes_edited_arguments() {
    let server = Scripted::start([
        calls(&[("c1", "add", json!({ "a": 1, "b": 2 }))]),
        say("Done."),
    ])
    .await;
    let graph = compile(&agent_file(
        &server.base_url,
        "[ { tool: add, needs_approval: true } ]",
    ));
    let config = RunConfig::new().store(MemoryStore::new()).run_id("approve");
    let input = DynState::from_json(graph.schema(), user("1 + 2?")).unwrap();
    let Err(Error::Interrupted(stop)) = graph.run_with(input, config.clone()).await else {
        panic!("the call waits for its approval")
    };
    let payload = &stop.interrupts[0].payload;
    assert_eq!(payload["kind"], "tool_approval");
    assert_eq!(payload["tool"], "add");
    assert_eq!(payload["arguments"], json!({ "a": 1, "b": 2 }));
    let edit = json!({ "decision": "edit", "arguments": { "a": 10, "b": 20 } });
    let out = graph
        .resume_with("approve", Resume::value(edit), config)
        .await
        .unwrap();
    assert_eq!(tool_results(&out), [("c1".to_owned(), "30".to_owned())]);
}

const TOOL_NODE: &str = r#"
version: 1
state: [ { name: sum, type: any }, { name: note, type: any } ]
nodes:
  - { name: add, kind: tool, with: { tool: add, args: { a: 2, b: 3 }, output: sum, needs_approval: true } }
  - { name: flaky, kind: tool, with: { tool: flaky, retries: 1, retry_delay_ms: 1, output: note } }
edges: [ { from: START, to: flaky }, { from: flaky, to: add }, { from: add, to: END } ]
"#;

#[tokio::test]
async fn a_tool_node_retries_and_asks_for_approval() {
    let graph = compile(TOOL_NODE);
    let store = MemoryStore::new();
    for (run, answer, expected) in [
        ("approved", json!({ "decision": "approve" }), Ok(json!(5))),
        (
            "edited",
            json!({ "decision": "edit", "arguments": { "a": 40, "b": 2 } }),
            Ok(json!(42)),
        ),
        (
            "rejected",
            json!({ "decision": "reject", "reason": "not today" }),
            Err("the call of tool `add` was rejected: not today"),
        ),
    ] {
        let config = RunConfig::new().store(store.clone()).run_id(run);
        let Err(Error::Interrupted(stop)) = graph
            .run_with(DynState::new(graph.schema()), config.clone())
            .await
        else {
            panic!("{run}: the call waits for its approval")
        };
        assert_eq!(stop.interrupts[0].payload["tool"], "add");
        assert_eq!(
            stop.interrupts[0].payload["arguments"],
            json!({ "a": 2, "b": 3 })
        );
        let done = graph.resume_with(run, Resume::value(answer), config).await;
        match expected {
            Ok(sum) => {
                let out = done.unwrap();
                assert_eq!(out.get("sum"), Some(&sum), "{run}");
                assert_eq!(out.get("note"), Some(&json!("attempt 2")), "{run}");
            }
            Err(message) => {
                let e = done.unwrap_err().to_string();
                assert!(e.contains(message), "{run}: {e}");
            }
        }
    }
}

fn team_file(url: &str, models: &[&str], with: &str) -> String {
    let models: Vec<String> = models
        .iter()
        .map(|m| format!("  - {{ name: {m}, model: {m}, base_url: \"{url}\", max_retries: 0 }}"))
        .collect();
    format!(
        r#"
version: 1
models:
{}
state: [ {{ name: messages, type: messages, reducer: messages }} ]
nodes:
  - name: team
    kind: pattern
    with:
{with}
edges: [ {{ from: START, to: team }}, {{ from: team, to: END }} ]
"#,
        models.join("\n")
    )
}

/// Each message as `name: text` (`role: text` without a name), tool messages left out.
fn said(out: &DynState) -> Vec<String> {
    messages(out)
        .iter()
        .filter(|m| m.call_id().is_none() && !m.content.to_text().is_empty())
        .map(|m| {
            let who = m.name.clone().unwrap_or_else(|| m.role.as_str().to_owned());
            format!("{who}: {}", m.content.to_text())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_from_a_file_hands_the_conversation_over() {
    let server = Scripted::start_keyed([
        (
            "triage",
            vec![calls(&[(
                "h1",
                "transfer_to_billing",
                json!({ "message": "a refund" }),
            )])],
        ),
        ("billing", vec![say("Refunded.")]),
    ])
    .await;
    let graph = compile(&team_file(
        &server.base_url,
        &["triage", "billing", "support"],
        r#"      pattern: swarm
      default_agent: triage
      handoffs: { triage: [billing, support] }
      max_handoffs: 2
      agents:
        - { name: support, model: support }
        - { name: triage, model: triage }
        - { name: billing, model: billing, description: Refunds. }"#,
    ));
    let input = DynState::from_json(graph.schema(), user("My money back!")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(server.keys(), ["triage", "billing"]);
    assert_eq!(said(&out), ["user: My money back!", "billing: Refunded."]);
    // Triage was offered both handoffs.
    let offered: Vec<String> = server.requests_for("triage")[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(offered, ["transfer_to_billing", "transfer_to_support"]);
}

/// With `active_field`, the agent that spoke last is kept in the state: the next invocation,
/// given that state, goes to it, not to the default agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarms_active_agent_is_kept_in_a_state_field() {
    let server = Scripted::start_keyed([
        (
            "triage",
            vec![calls(&[(
                "h1",
                "transfer_to_billing",
                json!({ "message": "a refund" }),
            )])],
        ),
        ("billing", vec![say("Refunded."), say("It is on its way.")]),
    ])
    .await;
    let file = team_file(
        &server.base_url,
        &["triage", "billing"],
        r#"      pattern: swarm
      default_agent: triage
      active_field: active
      agents:
        - { name: triage, model: triage }
        - { name: billing, model: billing }"#,
    )
    .replace(
        "state: [ { name: messages, type: messages, reducer: messages } ]",
        "state: [ { name: messages, type: messages, reducer: messages }, { name: active, type: string } ]",
    );
    let graph = compile(&file);
    let input = DynState::from_json(graph.schema(), user("My money back!")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(out.get("active"), Some(&json!("billing")));

    let mut next = out.to_json();
    next["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "role": "user", "content": "When?" }));
    let out = graph
        .invoke(DynState::from_json(graph.schema(), next).unwrap())
        .await
        .unwrap();
    assert_eq!(server.keys(), ["triage", "billing", "billing"]);
    assert_eq!(
        said(&out).last().map(String::as_str),
        Some("billing: It is on its way.")
    );

    // The field must be a string field of the state.
    let wrong = GraphSpec::from_yaml_str(
        "g.yaml",
        &file.replace("active_field: active", "active_field: messages"),
    )
    .unwrap()
    .compile(&registry(Arc::default()))
    .unwrap_err()
    .to_string();
    assert!(
        wrong.contains("`active_field`: field `messages` is"),
        "{wrong}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_from_a_file_votes() {
    let server = Scripted::start_keyed([
        ("a", vec![say("Paris")]),
        ("b", vec![say("Lyon")]),
        ("c", vec![say("paris.")]),
    ])
    .await;
    let graph = compile(&team_file(
        &server.base_url,
        &["a", "b", "c"],
        r#"      pattern: ensemble
      aggregate: majority_vote
      agents: [ { name: a, model: a }, { name: b, model: b }, { name: c, model: c } ]"#,
    ));
    let input = DynState::from_json(graph.schema(), user("Capital of France?")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(server.requests().len(), 3);
    assert_eq!(messages(&out).last().unwrap().content.to_text(), "Paris");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_from_a_file_is_judged_by_its_model() {
    let server = Scripted::start_keyed([
        ("a", vec![say("Paris")]),
        ("b", vec![say("Lyon")]),
        ("judge", vec![say("2")]),
    ])
    .await;
    let graph = compile(&team_file(
        &server.base_url,
        &["a", "b", "judge"],
        r#"      pattern: ensemble
      aggregate: judge
      model: judge
      agents: [ { name: a, model: a }, { name: b, model: b } ]"#,
    ));
    let input = DynState::from_json(graph.schema(), user("Capital?")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(server.requests_for("judge").len(), 1);
    assert_eq!(messages(&out).last().unwrap().content.to_text(), "Lyon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_chain_from_a_file_goes_on_after_a_failure() {
    // `small` has no script: the server answers 500, so its agent fails.
    let server = Scripted::start_keyed([("large", vec![say("42")])]).await;
    let graph = compile(&team_file(
        &server.base_url,
        &["small", "large"],
        r#"      pattern: fallback
      agents: [ { name: small, model: small }, { name: large, model: large } ]"#,
    ));
    let input = DynState::from_json(graph.schema(), user("6 x 7?")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(said(&out), ["user: 6 x 7?", "large: 42"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_from_a_file_runs_its_agents_in_order() {
    let server = Scripted::start_keyed([
        ("draft", vec![say("A draft.")]),
        ("edit", vec![say("An edited draft.")]),
    ])
    .await;
    let graph = compile(&team_file(
        &server.base_url,
        &["draft", "edit"],
        r#"      pattern: pipeline
      agents:
        - { name: draft, model: draft }
        - { name: edit, model: edit, sees: everything }"#,
    ));
    let input = DynState::from_json(graph.schema(), user("Write.")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(server.keys(), ["draft", "edit"]);
    assert_eq!(
        said(&out),
        ["user: Write.", "draft: A draft.", "edit: An edited draft."]
    );
    // The editor saw the draft.
    let seen = server.requests_for("edit")[0].body["messages"].to_string();
    assert!(seen.contains("A draft."), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_mode_from_a_file_plans_waits_for_review_then_executes() {
    let server =
        Scripted::start_keyed([("dev", vec![say("1. read the file"), say("Did it.")])]).await;
    let graph = compile_with(
        &registry(Arc::default()),
        &team_file(
            &server.base_url,
            &["dev"],
            r#"      pattern: planning
      read_only: [ "add" ]
      approval: true
      agents: [ { name: dev, model: dev, tools: [ add, flaky ] } ]"#,
        ),
    );
    let config = RunConfig::new().store(MemoryStore::new()).run_id("plan");
    let input = DynState::from_json(graph.schema(), user("Fix the bug.")).unwrap();
    let Err(Error::Interrupted(stop)) = graph.run_with(input, config.clone()).await else {
        panic!("the plan waits for its review")
    };
    let review = &stop.interrupts[0].payload;
    assert_eq!(review["kind"], "plan_review");
    assert_eq!(review["plan"], "1. read the file");
    // While planning, only the read-only tool was offered.
    let planning = &server.requests_for("dev")[0].body["tools"];
    let offered: Vec<&str> = planning
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["add"]);
    let out = graph
        .resume_with(
            "plan",
            Resume::value(json!({ "decision": "approve" })),
            config,
        )
        .await
        .unwrap();
    assert_eq!(messages(&out).last().unwrap().content.to_text(), "Did it.");
    let executing = &server.requests_for("dev")[1].body["tools"];
    assert_eq!(executing.as_array().unwrap().len(), 2, "{executing}");
}

#[test]
fn the_fuzz_seed_of_every_pattern_and_tool_option_compiles() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/seeds/load_graph_file/patterns.yaml"
    );
    let graph =
        GraphSpec::from_path(path, &registry(Arc::default())).unwrap_or_else(|e| panic!("{e}"));
    assert!(graph.schema().index_of("messages").is_some());
}
