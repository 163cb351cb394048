//! Graphs declared in files, through the `agentgraph` binary as a child process: `validate`
//! (errors at their lines and columns), `run` (events live, `--json` lines), `resume` with an
//! answer, and a changed file refused on resume unless allowed.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

const REVIEW: &str = "version: 1
name: review
state:
  - { name: draft, type: string }
  - { name: verdict, type: any }
  - { name: log, type: list, reducer: append }
nodes:
  - { name: write, kind: set, with: { draft: \"v1\", log: [\"write\"] } }
  - { name: review, kind: interrupt, with: { question: \"approve?\", field: verdict } }
  - { name: publish, kind: set, with: { log: [\"publish\"] } }
edges:
  - { from: START, to: write }
  - { from: write, to: review }
  - { from: review, to: publish }
  - { from: publish, to: END }
";

fn agentgraph(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("agentgraph").unwrap();
    cmd.env_remove("AGENTGRAPH_STORE").args(args);
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn validate_reports_every_error_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", REVIEW);
    let out = agentgraph(&["validate", &good]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("valid (3 nodes)"), "{text}");

    let broken = REVIEW
        .replace("kind: interrupt", "kind: interupt")
        .replace("to: publish }", "to: publsh }");
    let bad = write(dir.path(), "bad.yaml", &broken);
    let out = agentgraph(&["validate", &bad]).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!(
            "{bad}:9:27: node `review`: unknown kind `interupt` (did you mean `interrupt`?)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{bad}:14:25: edge 3: unknown node `publsh` (did you mean `publish`?)"
        )),
        "{err}"
    );
    assert!(err.contains("2 errors in"), "{err}");

    let out = agentgraph(&["--json", "validate", &bad]).assert().failure();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"][0]["line"], 9);
    assert_eq!(doc["errors"][0]["column"], 27);
    assert_eq!(doc["errors"][0]["suggestion"], "interrupt");
}

#[test]
fn run_then_resume_with_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "review.yaml", REVIEW);
    let store = format!("redb:{}", dir.path().join("runs.redb").display());

    let out = agentgraph(&["--store", &store, "run", &file, "--thread", "r1"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("run r1 waits at step"), "{text}");
    assert!(text.contains("\"approve?\""), "{text}");

    let out = agentgraph(&[
        "--store", &store, "--json", "resume", "r1", "--graph", &file, "--answer", "true",
    ])
    .assert()
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 2, "events, then the outcome: {stdout}");
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "completed", "{stdout}");
    assert_eq!(last["state"]["verdict"], true);
    assert_eq!(
        last["state"]["log"],
        serde_json::json!(["write", "publish"])
    );
    assert!(
        lines
            .iter()
            .any(|l| l["kind"].is_object() || l["kind"].is_string()),
        "the events are JSON lines: {stdout}"
    );
}

#[test]
fn a_changed_file_is_refused_on_resume_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "review.yaml", REVIEW);
    let store = format!("redb:{}", dir.path().join("runs.redb").display());
    agentgraph(&["--store", &store, "run", &file, "--thread", "r2"])
        .assert()
        .success();

    write(dir.path(), "review.yaml", &format!("{REVIEW}# edited\n"));
    let out = agentgraph(&[
        "--store", &store, "resume", "r2", "--graph", &file, "--answer", "true",
    ])
    .assert()
    .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("changed since the run started"), "{err}");

    let out = agentgraph(&[
        "--store",
        &store,
        "resume",
        "r2",
        "--graph",
        &file,
        "--answer",
        "\"yes\"",
        "--allow-changed",
    ])
    .assert()
    .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("run r2 completed"), "{text}");
    assert!(text.contains("\"verdict\": \"yes\""), "{text}");
}

#[test]
fn run_without_a_store_takes_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "add.json",
        r#"{"version": 1,
 "state": [{"name": "n", "type": "integer", "reducer": "add"}],
 "nodes": [{"name": "inc", "kind": "set", "with": {"n": 1}}],
 "edges": [{"from": "START", "to": "inc"}, {"from": "inc", "to": "END"}]}"#,
    );
    let input = write(dir.path(), "input.json", r#"{"n": 41}"#);
    let out = agentgraph(&["--json", "run", &file, "--input", &format!("@{input}")])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["state"]["n"], 42, "{stdout}");

    let out = agentgraph(&["run", &file, "--input", r#"{"m": 1}"#])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("no field `m`"), "{err}");
}

#[test]
fn new_writes_templates_that_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    for template in ["review", "map-reduce"] {
        let file = dir.path().join(format!("{template}.yaml"));
        let file = file.to_str().unwrap();
        agentgraph(&["new", template, file]).assert().success();
        agentgraph(&["validate", file]).assert().success();
        let out = agentgraph(&["new", template, file]).assert().failure();
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(err.contains("--force"), "{err}");
    }
    let file = dir.path().join("map-reduce.yaml");
    let out = agentgraph(&[
        "--json",
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"documents": ["a", "b", "c"]}"#,
    ])
    .assert()
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["state"]["summaries"],
        serde_json::json!(["a", "b", "c"]),
        "{stdout}"
    );
    assert_eq!(
        last["state"]["log"],
        serde_json::json!(["split", "combined"]),
        "{stdout}"
    );

    let out = agentgraph(&["new", "reveiw"]).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("did you mean `review`?"), "{err}");
}

#[path = "../../nodes/tests/support/mod.rs"]
mod support;

/// The API key of the agent tests: it must reach the model server and nowhere else.
const SECRET: &str = "sk-agentgraph-test-secret-5d41402abc";

/// Every file under `dir`, as bytes.
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A streamed answer calling one tool.
fn call(id: &str, name: &str, args: &str) -> support::Reply {
    support::Reply::sse([
        support::tool_chunk(0, Some(id), Some(name), args),
        support::finish_chunk("tool_calls"),
    ])
}

fn say(text: &str) -> support::Reply {
    support::Reply::sse([support::text_chunk(text), support::finish_chunk("stop")])
}

#[test]
fn a_file_agent_calls_an_http_tool_and_its_key_stays_secret() {
    use axum::routing::post;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(support::Scripted::start([
        call("c1", "lookup", r#"{"q": "joins"}"#),
        say("A join waits for its predecessors."),
    ]));
    let tool_url = rt.block_on(async {
        let app = axum::Router::new().route(
            "/lookup",
            post(|body: axum::body::Bytes| async move {
                let args: Value = serde_json::from_slice(&body).unwrap();
                axum::Json(serde_json::json!({ "passage": format!("about {}", args["q"].as_str().unwrap()) }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/lookup", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "agent.yaml",
        &format!(
            "version: 1
models:
  - {{ name: main, model: scripted, base_url_env: AGENTGRAPH_TEST_BASE_URL, api_key_env: AGENTGRAPH_TEST_API_KEY, max_retries: 0 }}
state:
  - {{ name: messages, type: messages, reducer: messages }}
nodes:
  - name: assistant
    kind: agent
    with:
      model: main
      system: Answer from the docs.
      tools: [ {{ http: {{ name: lookup, url: \"{tool_url}\", parameters: {{ type: object }} }} }} ]
edges:
  - {{ from: START, to: assistant }}
  - {{ from: assistant, to: END }}
"
        ),
    );
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let store = format!("redb:{}", store_dir.join("runs.redb").display());
    let out = agentgraph(&[
        "--store",
        &store,
        "--json",
        "run",
        &file,
        "--thread",
        "t1",
        "--input",
        r#"{"messages": [{"role": "user", "content": "What is a join?"}]}"#,
    ])
    .env("AGENTGRAPH_TEST_BASE_URL", &server.base_url)
    .env("AGENTGRAPH_TEST_API_KEY", SECRET)
    .assert()
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "completed", "{stdout}");
    let messages = last["state"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{stdout}");
    assert_eq!(
        messages[2]["content"]["json"]["passage"], "about joins",
        "{stdout}"
    );
    assert_eq!(messages[3]["content"], "A join waits for its predecessors.");

    // The key reached the model server, and only there.
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(
            r.headers["authorization"].to_str().unwrap(),
            format!("Bearer {SECRET}")
        );
    }
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    let show = agentgraph(&["--store", &store, "--json", "show", "t1"])
        .assert()
        .success();
    assert!(!contains(&show.get_output().stdout, SECRET));
    let files = all_bytes(&store_dir);
    assert!(!files.is_empty());
    for (path, bytes) in files {
        assert!(!contains(&bytes, SECRET), "the key is in {path}");
    }
}

#[test]
fn the_agent_templates_validate_and_the_chat_agent_runs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(support::Scripted::start([say("Hello!")]));
    let dir = tempfile::tempdir().unwrap();
    for template in ["chat-agent", "supervisor"] {
        let file = dir.path().join(format!("{template}.yaml"));
        let file = file.to_str().unwrap();
        agentgraph(&["new", template, file]).assert().success();
        agentgraph(&["validate", file])
            .env_remove("OPENAI_BASE_URL")
            .assert()
            .success();
    }
    let file = dir.path().join("chat-agent.yaml");
    let out = agentgraph(&[
        "--json",
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
    ])
    .env("OPENAI_BASE_URL", &server.base_url)
    .env("OPENAI_API_KEY", SECRET)
    .assert()
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["state"]["messages"][1]["content"], "Hello!",
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET));
    let body = &server.requests()[0].body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["tools"][0]["function"]["name"], "search");
}
