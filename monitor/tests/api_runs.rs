//! The JSON API over real runs: the runs list, a run's detail with its interrupts, its
//! checkpoints, its state at each step, its graph as JSON and DOT, and `/metrics`.

mod common;

use std::sync::Arc;

use agentgraph_engine::{
    BoxError, Context, Durability, END, GraphBuilder, GraphDescription, RunConfig, START,
};
use common::{Doc, DocUpdate, Gate, demo, monitor, store, url};
use serde_json::{Value, json};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let response = reqwest::get(url(addr, path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_checkpoints_state_and_graph() {
    let store = store();
    // First the monitor: it installs the process's Prometheus recorder, and what is recorded
    // before a recorder is installed is lost.
    let server = monitor(store.clone()).await;
    let addr = server.local_addr();
    let gate = Gate::open();
    let graph = demo(&gate);
    for id in ["run-a", "run-b", "run-c"] {
        let input = Doc {
            title: format!("title of {id}"),
            target: 2,
            ..Doc::default()
        };
        let config = RunConfig::new().store(store.clone()).run_id(id).monitored();
        graph.run_with(input, config).await.unwrap();
    }

    // The list, then its pages.
    let (status, all) = get(addr, "/api/runs").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["run-a", "run-b", "run-c"]);
    assert_eq!(all["runs"][0]["status"], "completed");
    assert_eq!(all["runs"][0]["last_step"], 6);
    assert_eq!(all["runs"][0]["fingerprint"].as_str().unwrap().len(), 32);
    assert_eq!(all["next"], Value::Null);
    // One JSON shape per object: the API serves the engine's records as they serialize.
    let inspector = agentgraph_engine::StoreInspector::new(store.clone());
    let records = inspector.runs().await.unwrap();
    assert_eq!(all["runs"], serde_json::to_value(&records).unwrap());
    let (_, listed) = get(addr, "/api/runs/run-a/checkpoints").await;
    let checkpoints = inspector.checkpoints("run-a").await.unwrap();
    assert_eq!(listed, serde_json::to_value(&checkpoints).unwrap());
    let (_, page) = get(addr, "/api/runs?limit=2").await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], "run-b");
    let (_, page) = get(addr, "/api/runs?after=run-b&limit=2").await;
    assert_eq!(page["runs"][0]["run_id"], "run-c");
    assert_eq!(page["next"], Value::Null);
    // A limit is capped, not refused.
    let (status, _) = get(addr, "/api/runs?limit=99999999").await;
    assert_eq!(status, 200);

    // A run's detail.
    let (status, run) = get(addr, "/api/runs/run-b").await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["interrupts"], json!([]));
    assert_eq!(run["checkpoints"], 7);
    assert_eq!(run["next"], json!([]));
    let last = store.last_event("run-b").await.unwrap().unwrap();
    assert_eq!(run["last_event"], last);

    // Checkpoints: 0 (the input) to 6, with what each wrote and what comes next.
    let (status, checkpoints) = get(addr, "/api/runs/run-b/checkpoints").await;
    assert_eq!(status, 200);
    let steps: Vec<u64> = checkpoints
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(checkpoints[0]["next"], json!(["plan"]));
    assert_eq!(checkpoints[1]["next"], json!(["search", "write"]));
    assert_eq!(checkpoints[3]["written"], json!(["notes", "rounds"]));

    // The state at every step is the typed state, as JSON.
    let history = graph.history(store.clone());
    for step in 0..=6 {
        let typed = history.state("run-b", Some(step)).await.unwrap();
        let (status, state) = get(addr, &format!("/api/runs/run-b/state?step={step}")).await;
        assert_eq!(status, 200);
        assert_eq!(state, serde_json::to_value(&typed).unwrap(), "step {step}");
    }
    let (_, latest) = get(addr, "/api/runs/run-b/state").await;
    assert_eq!(latest["rounds"], 2);
    assert_eq!(latest["title"], "title of run-b");

    // The graph, as JSON and as DOT.
    let (status, described) = get(addr, "/api/runs/run-b/graph").await;
    assert_eq!(status, 200);
    let described: GraphDescription = serde_json::from_value(described).unwrap();
    assert_eq!(described, graph.describe());
    let response = reqwest::get(url(addr, "/api/runs/run-b/graph.dot"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/vnd.graphviz")
    );
    assert_eq!(response.text().await.unwrap(), graph.describe().to_dot());

    // `/metrics`: the engine's metrics, recorded by the runs above.
    let response = reqwest::get(url(addr, "/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for name in [
        "agentgraph_runs_started_total",
        "agentgraph_runs_finished_total",
        "agentgraph_steps_total",
        "agentgraph_node_duration_seconds_bucket{node=\"plan\"",
        "agentgraph_checkpoint_bytes_bucket",
        "agentgraph_checkpoint_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_shows_what_it_waits_on() {
    #[derive(serde::Serialize)]
    struct Question<'a> {
        draft: &'a str,
    }
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("draft", |_s: Arc<Doc>, _c: Context| async {
        Ok::<_, BoxError>(DocUpdate::new().notes(vec!["drafted".into()]))
    })
    .add_node("review", |_s: Arc<Doc>, ctx: Context| async move {
        let answer: String = ctx.interrupt(&Question { draft: "v1" })?;
        Ok::<_, BoxError>(DocUpdate::new().notes(vec![answer]))
    })
    .add_edge(START, "draft")
    .add_edge("draft", "review")
    .add_edge("review", END);
    let graph = b.compile().unwrap();
    let store = store();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("asks")
        .monitored()
        .durability(Durability::Sync);
    let stopped = graph.run_with(Doc::default(), config).await;
    assert!(matches!(
        stopped,
        Err(agentgraph_engine::Error::Interrupted(_))
    ));

    let server = monitor(store).await;
    let (status, run) = get(server.local_addr(), "/api/runs/asks").await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "interrupted");
    let interrupts = run["interrupts"].as_array().unwrap();
    assert_eq!(interrupts.len(), 1);
    assert_eq!(interrupts[0]["node"], "review");
    assert_eq!(interrupts[0]["kind"], "node");
    assert_eq!(interrupts[0]["payload"], json!({ "draft": "v1" }));
    assert!(!interrupts[0]["id"].as_str().unwrap().is_empty());
    server.shutdown().await.unwrap();
}

/// A step stopped in one branch (an interrupt) while another finished: the detail's `next`
/// leaves the finished one out, `finished` and `pending` list it, and `/pending` shows what
/// each task came to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_step_shows_its_finished_tasks() {
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("review", |_s: Arc<Doc>, ctx: Context| async move {
        let answer: String = ctx.interrupt(&"ok?")?;
        Ok::<_, BoxError>(DocUpdate::new().notes(vec![answer]))
    })
    .add_node("draft", |_s: Arc<Doc>, _c: Context| async {
        Ok::<_, BoxError>(DocUpdate::new().notes(vec!["drafted".into()]))
    })
    .add_edge(START, "review")
    .add_edge(START, "draft")
    .add_edge("review", END)
    .add_edge("draft", END);
    let graph = b.compile().unwrap();
    let store = store();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("half")
        .monitored();
    assert!(graph.run_with(Doc::default(), config).await.is_err());

    let server = monitor(store.clone()).await;
    let addr = server.local_addr();
    let (status, run) = get(addr, "/api/runs/half").await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["next"], json!(["review"]));
    assert_eq!(run["finished"], json!(["draft"]));
    let (status, pending) = get(addr, "/api/runs/half/pending").await;
    assert_eq!(status, 200);
    assert_eq!(run["pending"], pending);
    let inspector = agentgraph_engine::StoreInspector::new(store.clone());
    let tasks = inspector.pending("half").await.unwrap();
    assert_eq!(pending, serde_json::to_value(&tasks).unwrap());
    let by_node = |node: &str| {
        pending
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["node"] == node)
            .unwrap()
            .clone()
    };
    let draft = by_node("draft");
    assert_eq!(draft["status"], "done");
    assert_eq!(draft["step"], 1);
    assert_eq!(draft["attempts"], 1);
    assert_eq!(draft["task"].as_str().unwrap().len(), 32);
    let review = by_node("review");
    assert_eq!(review["status"], "interrupted");
    assert_eq!(review["interrupts"], json!([run["interrupts"][0]["id"]]));
    // The checkpoints say the same.
    let (_, checkpoints) = get(addr, "/api/runs/half/checkpoints").await;
    assert_eq!(checkpoints[0]["next"], json!(["review"]));
    assert_eq!(checkpoints[0]["finished"], json!(["draft"]));
    // No such run: 404.
    let (status, _) = get(addr, "/api/runs/nope/pending").await;
    assert_eq!(status, 404);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subgraph_runs_are_reached_with_an_encoded_slash() {
    let child = demo(&Gate::open());
    let mut b = GraphBuilder::<Doc>::new();
    b.add_subgraph("inner", child, Doc::clone, |done: Doc| {
        DocUpdate::new().rounds(done.rounds)
    })
    .add_edge(START, "inner")
    .add_edge("inner", END);
    let graph = b.compile().unwrap();
    let store = store();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("outer")
        .monitored();
    graph
        .run_with(
            Doc {
                target: 1,
                ..Doc::default()
            },
            config,
        )
        .await
        .unwrap();
    let server = monitor(store).await;
    let (_, all) = get(server.local_addr(), "/api/runs").await;
    let child_id = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .find(|id| id.starts_with("outer/@inner/"))
        .expect("the subgraph's run is listed");
    let encoded = child_id.replace('/', "%2F");
    let (status, run) = get(server.local_addr(), &format!("/api/runs/{encoded}")).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["run_id"], child_id.as_str());
    let (status, _) = get(
        server.local_addr(),
        &format!("/api/runs/{encoded}/checkpoints"),
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await.unwrap();
}

/// A thread invoked three times (`CompiledGraph::invoke_thread`): its checkpoints carry their
/// invocation, the detail counts them, and its event stream sends a `thread_invoked` event
/// at the start of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threads_invocations_are_in_its_checkpoints_and_events() {
    let store = store();
    let graph = demo(&Gate::open());
    // Each invocation asks for one round more: its input, then plan, search + write, review.
    for turn in 1..=3 {
        let input = DocUpdate::new()
            .notes(vec![format!("user {turn}")])
            .target(turn);
        let config = RunConfig::new().store(store.clone()).monitored();
        let done = graph.invoke_thread("chat", input, config).await.unwrap();
        assert_eq!(done.rounds, turn);
    }
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("plain")
        .monitored();
    let input = Doc {
        target: 1,
        ..Doc::default()
    };
    graph.run_with(input, config).await.unwrap();

    let server = monitor(store.clone()).await;
    let addr = server.local_addr();
    let (status, checkpoints) = get(addr, "/api/runs/chat/checkpoints").await;
    assert_eq!(status, 200);
    let invocations: Vec<(u64, u64)> = checkpoints
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["step"].as_u64().unwrap(),
                c["invocation"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(u64, u64)> = (0..12).map(|step| (step, step / 4 + 1)).collect();
    assert_eq!(invocations, want);
    // An invocation's first checkpoint holds its input, and runs from START again.
    assert_eq!(checkpoints[4]["written"], json!(["notes", "target"]));
    assert_eq!(checkpoints[4]["next"], json!(["plan"]));
    let inspector = agentgraph_engine::StoreInspector::new(store.clone());
    let typed = inspector.checkpoints("chat").await.unwrap();
    assert_eq!(checkpoints, serde_json::to_value(&typed).unwrap());

    let (_, run) = get(addr, "/api/runs/chat").await;
    assert_eq!(run["invocations"], 3);
    assert_eq!(run["checkpoints"], 12);
    let (_, plain) = get(addr, "/api/runs/plain").await;
    assert_eq!(plain["invocations"], 1);
    let (_, checkpoints) = get(addr, "/api/runs/plain/checkpoints").await;
    assert!(
        checkpoints
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["invocation"] == 1)
    );

    // The event stream: one `thread_invoked` per invocation, at its input's step.
    let response = reqwest::get(url(addr, "/api/runs/chat/events"))
        .await
        .unwrap();
    let mut sse = common::SseReader::new(response);
    let mut invoked = Vec::new();
    while let Some(event) = sse.next().await {
        match event.event.as_deref() {
            Some("end") => break,
            Some("thread_invoked") => {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                assert_eq!(data["kind"]["fields"], json!(["notes", "target"]));
                invoked.push((
                    data["kind"]["invocation"].as_u64().unwrap(),
                    data["kind"]["step"].as_u64().unwrap(),
                ));
            }
            _ => {}
        }
    }
    assert_eq!(invoked, [(1, 0), (2, 4), (3, 8)]);
    server.shutdown().await.unwrap();
}

/// A run's session is in the runs list and its detail (the record's `metadata`, `ttl_ms`,
/// `expires_at_ms`), and the list takes `user`, `tag`, `label` and `title` filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_by_their_session() {
    use agentgraph_checkpoint::RunMetadata;

    let store = store();
    let server = monitor(store.clone()).await;
    let addr = server.local_addr();
    let gate = Gate::open();
    let graph = demo(&gate);
    let ann = RunMetadata::new()
        .with_user("ann")
        .with_title("Refund for order 17")
        .with_tags(["support", "billing"])
        .with_label("channel", "email");
    let bob = RunMetadata::new().with_user("bob").with_tag("support");
    for (id, meta) in [("a", Some(ann)), ("b", Some(bob)), ("c", None)] {
        let mut config = RunConfig::new().store(store.clone()).run_id(id);
        if let Some(meta) = meta {
            config = config
                .metadata(meta)
                .ttl(std::time::Duration::from_secs(3600));
        }
        let input = Doc {
            target: 1,
            ..Doc::default()
        };
        graph.run_with(input, config).await.unwrap();
    }
    let ids = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, all) = get(addr, "/api/runs").await;
    assert_eq!(ids(&all), ["a", "b", "c"]);
    assert_eq!(
        all["runs"][0]["metadata"],
        json!({
            "user": "ann",
            "title": "Refund for order 17",
            "tags": ["billing", "support"],
            "labels": { "channel": "email" },
        })
    );
    assert_eq!(all["runs"][0]["ttl_ms"], 3_600_000);
    assert!(all["runs"][0]["expires_at_ms"].is_u64());
    assert_eq!(all["runs"][2]["metadata"]["tags"], json!([]));
    assert_eq!(all["runs"][2]["expires_at_ms"], Value::Null);
    let records = agentgraph_engine::StoreInspector::new(store.clone())
        .runs()
        .await
        .unwrap();
    assert_eq!(all["runs"], serde_json::to_value(&records).unwrap());

    for (query, want) in [
        ("user=ann", vec!["a"]),
        ("user=bob", vec!["b"]),
        ("user=carol", vec![]),
        ("tag=support", vec!["a", "b"]),
        ("tag=support,billing", vec!["a"]),
        ("user=bob&tag=billing", vec![]),
        ("label=channel%3Demail", vec!["a"]),
        ("title=ORDER%2017", vec!["a"]),
    ] {
        let (status, page) = get(addr, &format!("/api/runs?{query}")).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(ids(&page), want, "{query}");
        assert_eq!(page["next"], Value::Null, "{query}");
    }
    // Filtered pages.
    let (_, page) = get(addr, "/api/runs?tag=support&limit=1").await;
    assert_eq!(
        (ids(&page), &page["next"]),
        (vec!["a".to_owned()], &json!("a"))
    );
    let (_, page) = get(addr, "/api/runs?tag=support&limit=1&after=a").await;
    assert_eq!(ids(&page), ["b"]);
    // A label is key=value; a filter has a bounded length.
    let (status, body) = get(addr, "/api/runs?label=channel").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("key=value"),
        "{body}"
    );
    let (status, _) = get(addr, &format!("/api/runs?user={}", "x".repeat(2000))).await;
    assert_eq!(status, 400);

    // The detail has them too.
    let (_, run) = get(addr, "/api/runs/a").await;
    assert_eq!(run["metadata"]["user"], "ann");
    assert_eq!(run["ttl_ms"], 3_600_000);
    server.shutdown().await.unwrap();
}

/// A run's detail carries the usage stored with its newest checkpoint, and the budget that
/// stopped it; a run that used nothing countable shows zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_shows_its_stored_usage_and_the_budget_that_stopped_it() {
    let store = store();
    let server = monitor(store.clone()).await;
    let addr = server.local_addr();
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("ask", |_, ctx: Context| async move {
        ctx.record_model_usage("gpt-x", 100, 50);
        ctx.record_tool_calls(1);
        Ok::<_, BoxError>(DocUpdate::new().rounds(1))
    })
    .add_edge(START, "ask")
    .add_conditional_edges(
        "ask",
        ["ask", END],
        |d: &Doc| {
            if d.rounds < 5 { "ask" } else { END }
        },
    );
    let graph = b.compile().unwrap();
    let prices = agentgraph_engine::PriceTable::new().price("gpt-x", 2.0, 4.0);
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("spender")
        .monitored()
        .prices(prices)
        .budget(agentgraph_engine::Budget::new().max_tokens(300));
    let result = graph.run_with(Doc::default(), config).await;
    assert!(matches!(
        result,
        Err(agentgraph_engine::Error::BudgetExceeded(_))
    ));

    let (status, run) = get(addr, "/api/runs/spender").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "budget_exceeded");
    let usage = &run["usage"];
    assert_eq!(usage["step"], 2, "{usage}");
    assert_eq!(usage["total"]["steps"], 2);
    assert_eq!(usage["total"]["tokens"], 300);
    assert_eq!(usage["total"]["tool_calls"], 2);
    // 2 x (100 prompt tokens at $2/M + 50 completion tokens at $4/M) = $0.0008.
    assert_eq!(usage["total"]["cost_nanos"], 800_000);
    assert_eq!(
        usage["stopped_by"],
        json!({
            "run_id": "spender", "scope": "run", "budget": "tokens",
            "limit": 300, "used": 300, "step": 3,
        })
    );
    let inspector = agentgraph_engine::StoreInspector::new(store.clone());
    let stored = inspector.usage("spender").await.unwrap().unwrap();
    assert_eq!(*usage, serde_json::to_value(&stored).unwrap());

    // A completed run: its totals, no budget.
    let gate = Gate::open();
    let input = Doc {
        target: 2,
        ..Doc::default()
    };
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("plain")
        .monitored();
    demo(&gate).run_with(input, config).await.unwrap();
    let (_, run) = get(addr, "/api/runs/plain").await;
    assert_eq!(run["usage"]["total"]["tokens"], 0);
    assert_eq!(run["usage"]["stopped_by"], Value::Null);
    assert!(run["usage"]["total"]["steps"].as_u64().unwrap() > 0);
}
