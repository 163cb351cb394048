//! The API against its OpenAPI document (`monitor/openapi.json`, served at `/openapi.json`):
//! every route the router serves is in it, and schemathesis, run against a live monitor with
//! runs and the control API, finds no server error and no response that the document does not
//! allow (status codes, content types, schemas).
//!
//! schemathesis comes from `scripts/test`, which installs it into a virtual environment under
//! `~/.cache/agentgraph/` and passes its path as `AGENTGRAPH_SCHEMATHESIS`.

mod common;

use std::time::Duration;

use agentgraph_engine::{
    BoxError, Context, END, GraphBuilder, GraphRegistry, RetryPolicy, RunConfig, START,
};
use agentgraph_monitor::Monitor;
use common::{Doc, DocUpdate, store};
use serde_json::Value;

const TOKEN: &str = "openapi-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_api_as_documented() {
    let Some(schemathesis) = std::env::var_os("AGENTGRAPH_SCHEMATHESIS") else {
        panic!(
            "AGENTGRAPH_SCHEMATHESIS is not set: run this test through ./scripts/test, which \
             installs schemathesis under ~/.cache/agentgraph/ (or point the variable at a \
             `schemathesis` executable: pip install 'schemathesis==4.*')"
        );
    };
    let store = store();
    let mut ask = GraphBuilder::<Doc>::new();
    ask.named("ask")
        .add_node("ask", |_, ctx: Context| async move {
            let answer: String = ctx.interrupt("title?")?;
            Ok::<_, BoxError>(DocUpdate::new().title(answer))
        })
        .add_edge(START, "ask")
        .add_edge("ask", END);
    let mut count = GraphBuilder::<Doc>::new();
    count
        .named("count")
        .add_node("inc", |_, _| async { Ok(DocUpdate::new().rounds(1)) })
        .add_edge(START, "inc")
        .add_edge("inc", END);
    // A run that waits for its retry (status `retry_scheduled`).
    let mut flaky = GraphBuilder::<Doc>::new();
    flaky
        .named("flaky")
        .add_node("down", |_, _| async {
            Err::<DocUpdate, BoxError>("the service is down".into())
        })
        .add_edge(START, "down")
        .add_edge("down", END)
        .retry(
            "down",
            RetryPolicy::new(3).backoff(Duration::from_secs(3600), Duration::from_secs(3600)),
        );
    let (ask, count) = (ask.compile().unwrap(), count.compile().unwrap());
    let config = RunConfig::new().store(store.clone()).monitored();
    count
        .run_with(Doc::default(), config.clone().run_id("done"))
        .await
        .unwrap();
    let _ = ask
        .run_with(Doc::default(), config.clone().run_id("waiting"))
        .await;
    let retrying = flaky
        .compile()
        .unwrap()
        .run_with(
            Doc::default(),
            config
                .clone()
                .run_id("retrying")
                .max_inline_backoff(Duration::from_secs(1)),
        )
        .await;
    assert!(matches!(
        retrying,
        Err(agentgraph_engine::Error::RetryScheduled(_))
    ));
    // A run stopped by its budget (status `budget_exceeded`) before its first step.
    let over = count
        .run_with(
            Doc::default(),
            config
                .clone()
                .run_id("over-budget")
                .budget(agentgraph_engine::Budget::new().max_steps(0)),
        )
        .await;
    assert!(matches!(
        over,
        Err(agentgraph_engine::Error::BudgetExceeded(_))
    ));
    // Memory items, for the memory routes.
    let mut batch = agentgraph_checkpoint::WriteBatch::new();
    batch.put_item(agentgraph_engine::items::Item::new(
        agentgraph_engine::items::Namespace::new(["users", "ann"]),
        "likes",
        serde_json::json!({"drink": "tea"}),
    ));
    store.commit(batch).await.unwrap();
    let registry = GraphRegistry::new().with("ask", ask).with("count", count);
    let server = Monitor::new(store)
        .bind(([127, 0, 0, 1], 0).into())
        .token(TOKEN)
        .metrics(false)
        .control(registry, RunConfig::new().monitored())
        .serve()
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());

    // The document is served, and lists every API route.
    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/api/runs",
        "/api/runs/{run}",
        "/api/runs/{run}/checkpoints",
        "/api/runs/{run}/pending",
        "/api/runs/{run}/state",
        "/api/runs/{run}/graph",
        "/api/runs/{run}/graph.dot",
        "/api/graphs",
        "/api/graphs/{graph}/runs",
        "/api/runs/{run}/resume",
        "/api/runs/{run}/cancel",
        "/api/memory",
        "/api/memory/namespaces",
        "/api/runs/{run}/prune",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    // Every method of every JSON route behind the token check, as
    // `agentgraph_monitor::routes` lists them (the event stream and `/metrics` are not JSON).
    for route in agentgraph_monitor::routes() {
        let json = !matches!(route.path, "/metrics" | "/api/runs/{run}/events");
        if route.access == agentgraph_monitor::Access::Public || !json {
            continue;
        }
        let method = route.method.to_lowercase();
        assert!(
            doc["paths"][route.path][method.as_str()].is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
    }

    let output = tokio::process::Command::new(schemathesis)
        .args([
            "run",
            &format!("{base}/openapi.json"),
            "--url",
            &base,
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--request-timeout",
            "10",
        ])
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), output)
        .await
        .expect("schemathesis finished in 10 minutes")
        .expect("schemathesis runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}"
    );
    server.shutdown().await.unwrap();
}
