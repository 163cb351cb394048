//! The node library's kinds from files: `model`, `agent` (with a registered tool and an HTTP
//! tool), `tool`, `http`, `subgraph` (includes, cycles, the fingerprint) and `pattern`
//! (supervisor, group chat), against the scripted OpenAI-compatible server; every error of
//! their parameters with its line, column and suggestion.

#[path = "../../nodes/tests/support/mod.rs"]
mod support;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{DynState, RunConfig};
use agentgraph_nodes::tool::tool_fn;
use agentgraph_spec::{GraphSpec, NodeRegistry};
use serde_json::{Value, json};
use support::{Reply, Scripted, finish_chunk, text_chunk, tool_chunk};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

fn registry() -> NodeRegistry {
    NodeRegistry::builtin().tool(tool_fn("add", "Adds two integers.", |x: Add| async move {
        Ok::<_, std::io::Error>(x.a + x.b)
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

fn compile(text: &str) -> agentgraph_engine::CompiledGraph<DynState> {
    GraphSpec::from_yaml_str("g.yaml", text)
        .unwrap()
        .compile(&registry())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn user(text: &str) -> Value {
    json!({ "messages": [ { "role": "user", "content": text } ] })
}

/// The text of each message, by role.
fn transcript(out: &DynState) -> Vec<String> {
    let messages: Vec<agentgraph_nodes::Message> =
        serde_json::from_value(out.get("messages").unwrap().clone()).unwrap();
    messages
        .iter()
        .map(|m| format!("{}: {}", m.role.as_str(), m.content.to_text()))
        .collect()
}

/// A file whose one node, `assistant`, is an agent on model `small` (at `base_url`, no
/// retries of its own) with the parameters `with` (a YAML flow mapping).
fn one_agent(base_url: &str, with: &str) -> agentgraph_engine::CompiledGraph<DynState> {
    compile(&format!(
        r#"
version: 1
models:
  - {{ name: small, model: test-model, base_url: "{base_url}", max_retries: 0 }}
state:
  - {{ name: messages, type: messages, reducer: messages }}
nodes:
  - name: assistant
    kind: agent
    with: {with}
edges:
  - {{ from: START, to: assistant }}
  - {{ from: assistant, to: END }}
"#
    ))
}

#[tokio::test]
async fn a_file_agents_model_call_limit_and_timeout_are_applied() {
    let server = Scripted::start([
        // Over the timeout: the call is made again.
        Reply::sse([text_chunk("Slow"), text_chunk("."), finish_chunk("stop")])
            .paced(std::time::Duration::from_secs(30)),
        calls(&[("c1", "add", json!({ "a": 2, "b": 3 }))]),
        say("not asked"),
    ])
    .await;
    let graph = one_agent(
        &server.base_url,
        "{ model: small, tools: [add], max_model_calls: 1, model_timeout_ms: 1000 }",
    );
    let input = DynState::from_json(graph.schema(), user("2 + 3?")).unwrap();
    let e = graph
        .run_with(
            input,
            RunConfig::new().store(MemoryStore::new()).run_id("a"),
        )
        .await
        .unwrap_err();
    let text = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(
        text.contains("the agent reached its limit of 1 model calls in this run"),
        "{text}"
    );
    // The slow call, then the one that asked for `add`; the third was refused.
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_file_agent_calls_a_registered_tool_then_answers() {
    let server = Scripted::start([
        calls(&[("c1", "add", json!({ "a": 2, "b": 3 }))]),
        say("It is 5."),
    ])
    .await;
    let graph = one_agent(
        &server.base_url,
        "{ model: small, system: You add numbers., tools: [add], max_turns: 4, temperature: 0.5 }",
    );
    let store = MemoryStore::new();
    let input = DynState::from_json(graph.schema(), user("2 + 3?")).unwrap();
    let out = graph
        .run_with(input, RunConfig::new().store(store.clone()).run_id("a"))
        .await
        .unwrap();
    assert_eq!(
        transcript(&out),
        [
            "user: 2 + 3?",
            "assistant: ",
            "tool: 5",
            "assistant: It is 5."
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0].body;
    assert_eq!(first["model"], "test-model");
    assert_eq!(first["temperature"], 0.5);
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(first["messages"][0]["content"], "You add numbers.");
    assert_eq!(first["tools"][0]["function"]["name"], "add");
    assert!(requests[0].headers.get("authorization").is_none());
    // The tool's result went back to the model.
    let second = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(second.last().unwrap()["role"], "tool");
    assert_eq!(second.last().unwrap()["content"], "5");
}

#[tokio::test]
async fn a_model_node_appends_its_answer_with_the_file_s_settings() {
    let server = Scripted::start([say("Bonjour")]).await;
    let graph = compile(&format!(
        r#"
version: 1
models:
  - {{ name: small, model: m1, base_url: "{}", temperature: 0.25, max_tokens: 50 }}
state:
  - {{ name: messages, type: messages, reducer: messages }}
  - {{ name: reply, type: string }}
nodes:
  - {{ name: translate, kind: model, with: {{ model: small, system: "In French.", max_tokens: 20, output: reply }} }}
edges:
  - {{ from: START, to: translate }}
  - {{ from: translate, to: END }}
"#,
        server.base_url
    ));
    let input = DynState::from_json(graph.schema(), user("Hello")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(transcript(&out), ["user: Hello", "assistant: Bonjour"]);
    assert_eq!(out.get("reply"), Some(&json!("Bonjour")));
    let body = &server.requests()[0].body;
    assert_eq!(body["temperature"], 0.25);
    assert_eq!(body["max_tokens"], 20);
    assert_eq!(body["messages"][0]["content"], "In French.");
}

#[tokio::test]
async fn a_model_node_over_an_overwritten_field_writes_the_whole_conversation() {
    let server = Scripted::start([say("two")]).await;
    let graph = compile(&format!(
        r#"
version: 1
models: [ {{ name: m, model: m, base_url: "{}" }} ]
state: [ {{ name: messages, type: messages }} ]
nodes: [ {{ name: one, kind: model, with: {{ model: m }} }} ]
edges: [ {{ from: START, to: one }}, {{ from: one, to: END }} ]
"#,
        server.base_url
    ));
    let input = DynState::from_json(graph.schema(), user("one")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(transcript(&out), ["user: one", "assistant: two"]);
}

/// A server answering `GET /items/{id}` with `{"id": id}` and `POST /echo` with its body.
async fn http_server() -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/items/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>, h: axum::http::HeaderMap| async move {
                axum::Json(json!({ "id": id, "token": h.get("x-token").map(|v| v.to_str().unwrap().to_owned()) }))
            }),
        )
        .route("/echo", post(|body: axum::body::Bytes| async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, task)
}

#[tokio::test]
async fn tool_and_http_nodes_write_their_results() {
    let (url, server) = http_server().await;
    let graph = compile(&format!(
        r#"
version: 1
state:
  - {{ name: id, type: string, default: "42" }}
  - {{ name: more, type: object, default: {{ b: 40 }} }}
  - {{ name: sum, type: any }}
  - {{ name: item, type: any }}
  - {{ name: echoed, type: any }}
nodes:
  - {{ name: add, kind: tool, with: {{ tool: add, args: {{ a: 2, b: 1 }}, args_from: more, output: sum }} }}
  - {{ name: fetch, kind: http, with: {{ url: "{url}/items/{{id}}", output: item, headers: {{ x-token: t1 }} }} }}
  - name: echo
    kind: tool
    with:
      http: {{ name: echo, url: "{url}/echo" }}
      args: {{ hello: world }}
      output: echoed
edges:
  - {{ from: START, to: [add, fetch, echo] }}
  - {{ from: add, to: END }}
  - {{ from: fetch, to: END }}
  - {{ from: echo, to: END }}
"#
    ));
    let out = graph.invoke(DynState::new(graph.schema())).await.unwrap();
    assert_eq!(out.get("sum"), Some(&json!(42)));
    assert_eq!(out.get("item"), Some(&json!({ "id": "42", "token": "t1" })));
    assert_eq!(out.get("echoed"), Some(&json!({ "hello": "world" })));
    server.abort();
}

const CHILD: &str = r#"
version: 1
state:
  - { name: n, type: integer }
  - { name: note, type: string }
nodes:
  - { name: ten, kind: set, with: { n: 10, note: "from the child" } }
edges:
  - { from: START, to: ten }
  - { from: ten, to: END }
"#;

const PARENT: &str = r#"
version: 1
state:
  - { name: n, type: integer, default: 1 }
  - { name: note, type: string }
  - { name: other, type: boolean }
nodes:
  - { name: inner, kind: subgraph, with: { path: parts/child.yaml, outputs: [note] } }
edges:
  - { from: START, to: inner }
  - { from: inner, to: END }
"#;

#[tokio::test]
async fn a_subgraph_file_runs_as_a_node_and_its_digest_is_in_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("parts")).unwrap();
    std::fs::write(dir.path().join("parts/child.yaml"), CHILD).unwrap();
    let parent = dir.path().join("parent.yaml");
    std::fs::write(&parent, PARENT).unwrap();
    let graph = GraphSpec::from_path(&parent, &registry()).unwrap();
    let store = MemoryStore::new();
    let out = graph
        .run_with(
            DynState::new(graph.schema()),
            RunConfig::new().store(store.clone()).run_id("p"),
        )
        .await
        .unwrap();
    // Only the listed output came back.
    assert_eq!(out.get("note"), Some(&json!("from the child")));
    assert_eq!(out.get("n"), Some(&json!(1)));
    let first = graph.fingerprint();
    std::fs::write(
        dir.path().join("parts/child.yaml"),
        format!("{CHILD}# changed\n"),
    )
    .unwrap();
    let again = GraphSpec::from_path(&parent, &registry()).unwrap();
    assert_ne!(again.fingerprint(), first, "the included file changed");
}

#[test]
fn files_that_include_each_other_are_refused_with_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let include = |other: &str| {
        format!(
            "version: 1\nstate: [ {{ name: n, type: integer }} ]\nnodes:\n  - {{ name: sub, kind: subgraph, with: {{ path: {other} }} }}\nedges: [ {{ from: START, to: sub }}, {{ from: sub, to: END }} ]\n"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), include("b.yaml")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), include("a.yaml")).unwrap();
    let err = GraphSpec::from_path(dir.path().join("a.yaml"), &registry())
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.yaml:4:"), "{err}");
    assert!(err.contains("in a cycle"), "{err}");
    let cycle = err.split("in a cycle: ").nth(1).unwrap();
    let names: Vec<&str> = cycle
        .split(" includes ")
        .map(|f| f.rsplit('/').next().unwrap().trim_end_matches(['`', '\n']))
        .take(3)
        .collect();
    assert_eq!(names[..3], ["a.yaml", "b.yaml", "a.yaml"], "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_chat_from_a_file_takes_turns() {
    let server = Scripted::start_keyed([
        ("alice", vec![say("Hi, I am Alice.")]),
        ("bob", vec![say("Hi, I am Bob.")]),
    ])
    .await;
    let graph = compile(&format!(
        r#"
version: 1
models:
  - {{ name: alice, model: alice, base_url: "{url}" }}
  - {{ name: bob, model: bob, base_url: "{url}" }}
state: [ {{ name: messages, type: messages, reducer: messages }} ]
nodes:
  - name: chat
    kind: pattern
    with:
      pattern: group_chat
      max_rounds: 2
      agents:
        - {{ name: alice, model: alice, description: Opens. }}
        - {{ name: bob, model: bob, description: Answers. }}
edges: [ {{ from: START, to: chat }}, {{ from: chat, to: END }} ]
"#,
        url = server.base_url
    ));
    let input = DynState::from_json(graph.schema(), user("Introduce yourselves.")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(server.keys(), ["alice", "bob"]);
    let said = transcript(&out);
    assert_eq!(said[0], "user: Introduce yourselves.");
    assert!(
        said.iter().any(|m| m.ends_with("Hi, I am Alice.")),
        "{said:?}"
    );
    assert!(
        said.iter().any(|m| m.ends_with("Hi, I am Bob.")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_from_a_file_hands_over_to_a_worker() {
    let server = Scripted::start_keyed([
        (
            "boss",
            vec![
                calls(&[("h1", "transfer_to_writer", json!({ "task": "write it" }))]),
                say("Done."),
            ],
        ),
        ("writer", vec![say("Written.")]),
    ])
    .await;
    let graph = compile(&format!(
        r#"
version: 1
models:
  - {{ name: boss, model: boss, base_url: "{url}" }}
  - {{ name: writer, model: writer, base_url: "{url}" }}
state: [ {{ name: messages, type: messages, reducer: messages }} ]
nodes:
  - name: team
    kind: pattern
    with:
      pattern: supervisor
      model: boss
      max_rounds: 3
      agents:
        - {{ name: writer, model: writer, description: Writes. }}
edges: [ {{ from: START, to: team }}, {{ from: team, to: END }} ]
"#,
        url = server.base_url
    ));
    let input = DynState::from_json(graph.schema(), user("Write something.")).unwrap();
    let out = graph.invoke(input).await.unwrap();
    assert_eq!(server.keys(), ["boss", "writer", "boss"]);
    let said = transcript(&out);
    assert_eq!(said[0], "user: Write something.");
    assert_eq!(said.last().unwrap(), "assistant: Done.");
}

/// Each broken file with every error expected: `line:column: subject: message`.
const BROKEN: &[(&str, &str, &[&str])] = &[
    (
        "a misspelt model reference",
        "version: 1\nmodels:\n  - { name: small, model: m, base_url: \"http://127.0.0.1:9/v1\" }\nstate: [ { name: messages, type: messages } ]\nnodes:\n  - { name: a, kind: model, with: { model: smal } }\n",
        &["6:35: node `a`: unknown model `smal` (did you mean `small`?)"],
    ),
    (
        "a misspelt parameter, tool and messages field",
        "version: 1\nmodels:\n  - { name: m, model: m, base_url: \"http://127.0.0.1:9/v1\" }\nstate: [ { name: chat, type: messages } ]\nnodes:\n  - { name: a, kind: agent, with: { model: m, max_turn: 3 } }\n  - { name: b, kind: agent, with: { model: m, messages: chat, tools: [ad] } }\n  - { name: c, kind: model, with: { model: m, messages: chats } }\n",
        &[
            "6:35: node `a`: `agent` takes no parameter `max_turn` (did you mean `max_turns`?)",
            "7:35: node `b`: unknown tool `ad` (did you mean `add`?)",
            "8:35: node `c`: `messages`: the state has no field `chats` (did you mean `chat`?)",
        ],
    ),
    (
        "a pattern's problems",
        "version: 1\nmodels:\n  - { name: m, model: m, base_url: \"http://127.0.0.1:9/v1\" }\nstate: [ { name: messages, type: messages } ]\nnodes:\n  - { name: a, kind: pattern, with: { pattern: supervisr, agents: [ { name: w, model: m } ] } }\n  - { name: b, kind: pattern, with: { pattern: group_chat, agents: [ { name: w, model: mm } ] } }\n",
        &[
            "6:37: node `a`: `pattern`: unknown pattern `supervisr` (did you mean `supervisor`?)",
            "7:37: node `b`: `agents`: `w`: unknown model `mm` (did you mean `m`?)",
        ],
    ),
    (
        "an unset base URL variable and a subgraph's missing file",
        "version: 1\nmodels:\n  - { name: m, model: m, base_url_env: AGENTGRAPH_TEST_NO_SUCH_VARIABLE }\nstate: [ { name: messages, type: messages } ]\nnodes:\n  - { name: a, kind: model, with: { model: m } }\n  - { name: b, kind: subgraph, with: { path: nowhere.yaml } }\n",
        &[
            "6:35: node `a`: model `m`: the environment variable `AGENTGRAPH_TEST_NO_SUCH_VARIABLE` (its `base_url_env`) is not set",
            "7:38: node `b`: `path`: cannot read `./nowhere.yaml`: No such file or directory (os error 2)",
        ],
    ),
    (
        "a secret header written in the file, an MCP node without a server",
        "version: 1\nstate: [ { name: out, type: any } ]\nnodes:\n  - { name: a, kind: http, with: { url: \"http://h/x\", headers: { Authorization: Bearer-sk-1 } } }\n  - { name: b, kind: mcp, with: { tool: add } }\n",
        &[
            "4:34: node `a`: `headers`: a secret is not written in the file: name its environment variable in `headers_env`",
            "5:33: node `b`: `command` (stdio) or `url` is required",
        ],
    ),
    (
        "layers on a subgraph kind",
        "version: 1\nmodels:\n  - { name: m, model: m, base_url: \"http://127.0.0.1:9/v1\" }\nstate: [ { name: messages, type: messages } ]\nnodes:\n  - { name: a, kind: agent, with: { model: m }, layers: [ { concurrency: 1 } ] }\n",
        &["6:13: node `a`: kind `agent` runs a subgraph: it takes no `layers`"],
    ),
    (
        "an agent's tool options",
        "version: 1\nmodels:\n  - { name: m, model: m, base_url: \"http://127.0.0.1:9/v1\" }\nstate: [ { name: messages, type: messages } ]\nnodes:\n  - { name: a, kind: agent, with: { model: m, tools: [ { tool: add, timeout: 5 } ] } }\n  - { name: b, kind: agent, with: { model: m, tools: [ { tool: add, retries: many } ] } }\n  - { name: c, kind: agent, with: { model: m, tools: [ { tool: add, http: { name: x, url: \"http://h\" } } ] } }\n  - { name: d, kind: agent, with: { model: m, tools: [ { tool: add, retry_delay_ms: 10 } ] } }\n  - { name: e, kind: agent, with: { model: m, tools: [ { tool: add, needs_approval: \"no\" } ] } }\n  - { name: f, kind: agent, with: { model: m, tools: [ { tol: add } ] } }\n",
        &[
            "6:35: node `a`: `tools`: `add`: no tool option `timeout` (did you mean `timeout_ms`?)",
            "7:35: node `b`: `tools`: `add`: `retries` is a whole number",
            "8:35: node `c`: `tools`: one of `tool`, `http` or `mcp` per item, not `tool` and `http`",
            "9:35: node `d`: `tools`: `add`: `retry_delay_ms` is the delay between `retries`: set `retries`",
            "10:35: node `e`: `tools`: `add`: `needs_approval` is `true` or `false`",
            "11:35: node `f`: `tools`: no tool option `tol` (did you mean `tool`?)",
        ],
    ),
    (
        "an agent's limits",
        "version: 1\nmodels:\n  - { name: m, model: m, base_url: \"http://127.0.0.1:9/v1\" }\nstate: [ { name: messages, type: messages } ]\nnodes:\n  - { name: a, kind: agent, with: { model: m, model_timeout_ms: 0 } }\n  - { name: b, kind: agent, with: { model: m, max_model_calls: -1 } }\n  - { name: c, kind: pattern, with: { pattern: swarm, agents: [ { name: w, model: m, max_model_calls: 3 } ] } }\n",
        &[
            "6:35: node `a`: `model_timeout_ms` is at least 1",
            "7:35: node `b`: `max_model_calls` is a whole number",
            "8:37: node `c`: `agents`: `max_model_calls` limits a single agent's run: in a pattern, an agent sees the others' answers too; use `max_turns`",
        ],
    ),
    (
        "a tool node's options",
        "version: 1\nstate: [ { name: out, type: any } ]\nnodes:\n  - { name: a, kind: tool, with: { tool: add, max_calls_per_run: 2 } }\n  - { name: b, kind: tool, with: { tool: add, timeout_ms: 0 } }\n  - { name: c, kind: tool, with: { tool: add, retrys: 2 } }\n",
        &[
            "4:34: node `a`: `max_calls_per_run` limits an agent's calls: a `tool` node calls its tool once each time it runs",
            "5:34: node `b`: `timeout_ms` is at least 1",
            "6:34: node `c`: `tool` takes no parameter `retrys` (did you mean `retries`?)",
        ],
    ),
    (
        "the problems of the swarm, ensemble, fallback and planning patterns",
        "version: 1\nmodels:\n  - { name: m, model: m, base_url: \"http://127.0.0.1:9/v1\" }\nstate: [ { name: messages, type: messages } ]\nnodes:\n  - { name: a, kind: pattern, with: { pattern: swarm, handoffs: { w: [billing] }, agents: [ { name: w, model: m } ] } }\n  - { name: b, kind: pattern, with: { pattern: swarm, default_agent: x, agents: [ { name: w, model: m } ] } }\n  - { name: c, kind: pattern, with: { pattern: ensemble, aggregate: majority, agents: [ { name: w, model: m } ] } }\n  - { name: d, kind: pattern, with: { pattern: ensemble, aggregate: judge, agents: [ { name: w, model: m } ] } }\n  - { name: e, kind: pattern, with: { pattern: fallback, max_rounds: 2, agents: [ { name: w, model: m } ] } }\n  - { name: f, kind: pattern, with: { pattern: planning, read_only: [ \"[\" ], agents: [ { name: w, model: m } ] } }\n  - { name: g, kind: pattern, with: { pattern: pipeline, agents: [ { name: w, model: m, sees: all } ] } }\n  - { name: h, kind: pattern, with: { pattern: group_chat, agents: [ { name: w, model: m, sees: task } ] } }\n  - { name: i, kind: pattern, with: { pattern: swarm, agents: [ { name: w, model: m }, { name: w, model: m } ] } }\n",
        &[
            "6:37: node `a`: `handoffs`: no agent `billing`",
            "7:37: node `b`: `default_agent`: no agent `x`",
            "8:37: node `c`: `aggregate`: unknown aggregate `majority` (did you mean `majority_vote`?)",
            "9:37: node `d`: `aggregate: judge` needs the judge's `model`",
            "10:37: node `e`: `pattern: fallback` takes no parameter `max_rounds`",
            "11:37: node `f`: `read_only`: invalid tool name pattern `[`: error parsing glob '[': unclosed character class; missing ']'",
            "12:37: node `g`: `agents`: `w`: `sees`: unknown value `all`",
            "13:37: node `h`: `agents` takes no parameter `sees`",
            "14:37: node `i`: agent name `w` is used twice, or reserved by the pattern: give each agent a name of its own",
        ],
    ),
];

#[test]
fn every_parameter_error_has_its_line_and_column() {
    let mut wrong = Vec::new();
    for (what, text, expected) in BROKEN {
        let errors = GraphSpec::from_yaml_str("", text)
            .unwrap()
            .compile(&registry())
            .map(drop)
            .unwrap_err();
        let got: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
        if &got != expected {
            wrong.push(format!("{what}: {got:#?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_builtin_registry_has_the_library_s_kinds() {
    let registry = NodeRegistry::builtin();
    let kinds: Vec<&str> = registry.kinds().collect();
    for kind in [
        "agent", "http", "mcp", "model", "pattern", "subgraph", "tool",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}
