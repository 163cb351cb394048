//! `agentgraph show` prints what a run used, as stored with its newest checkpoint (steps,
//! tokens, cost, tool calls, wall time), and the budget that stopped it; `--json` carries the
//! same as `usage`.

mod common;

use std::path::Path;
use std::sync::Arc;

use agentgraph::prelude::*;
use agentgraph::run::{Budget, PriceTable};
use common::{Work, WorkUpdate, json, stdout};

/// A sled store at `dir` with run `spender`, stopped by its token budget after two steps of
/// 150 tokens and a tool call each.
fn store(dir: &Path) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
        let mut b = GraphBuilder::<Work>::new();
        b.add_node("ask", |_, ctx: Context| async move {
            ctx.record_model_usage("gpt-x", 100, 50);
            ctx.record_tool_calls(1);
            Ok::<_, BoxError>(WorkUpdate::new().n(1))
        })
        .add_edge(START, "ask")
        .add_conditional_edges(
            "ask",
            ["ask", END],
            |w: &Work| {
                if w.n < 10 { "ask" } else { END }
            },
        );
        let config = RunConfig::new()
            .store(store.clone())
            .run_id("spender")
            .store_events(true)
            .prices(PriceTable::new().price("gpt-x", 2.0, 4.0))
            .budget(Budget::new().max_tokens(300));
        let result = b.compile().unwrap().run_with(Work::default(), config).await;
        assert!(
            matches!(result, Err(Error::BudgetExceeded(_))),
            "{result:?}"
        );
    });
}

#[test]
fn show_prints_a_runs_stored_usage_and_the_budget_that_stopped_it() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());

    let text = stdout(dir.path(), &["show", "spender"]);
    assert!(text.contains("budget_exceeded"), "{text}");
    assert!(
        text.contains("2 steps, 300 tokens, $0.000800, 2 tool calls"),
        "{text}"
    );
    assert!(
        text.contains("its run budget of 300 tokens (300 tokens used), before step 3"),
        "{text}"
    );

    let shown = json(dir.path(), &["show", "spender"]);
    let usage = &shown["usage"];
    assert_eq!(usage["step"], 2, "{shown}");
    assert_eq!(usage["total"]["steps"], 2);
    assert_eq!(usage["total"]["tokens"], 300);
    assert_eq!(usage["total"]["cost_nanos"], 800_000);
    assert_eq!(usage["total"]["tool_calls"], 2);
    assert_eq!(usage["stopped_by"]["budget"], "tokens");
    assert_eq!(usage["stopped_by"]["scope"], "run");
    assert_eq!(usage["stopped_by"]["limit"], 300);
}

/// A run whose step stopped because a budget refused one of its tasks (`charge_tool_calls`)
/// while the other finished: `pending` lists the refused task as `over_budget`, and `show`
/// counts the finished task's tool call with the stored usage.
#[test]
fn pending_shows_a_task_refused_by_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut b = GraphBuilder::<Work>::new();
        b.add_node("small", |_, ctx: Context| async move {
            ctx.charge_tool_calls(1)?;
            Ok::<_, BoxError>(WorkUpdate::new().n(1))
        })
        .add_node("large", |_, ctx: Context| async move {
            ctx.charge_tool_calls(5)?;
            Ok::<_, BoxError>(WorkUpdate::new().n(1))
        })
        .add_edge(START, "small")
        .add_edge(START, "large")
        .add_edge("small", END)
        .add_edge("large", END);
        let config = RunConfig::new()
            .store(store)
            .run_id("refused")
            .mode(Mode::Sequential)
            .budget(Budget::new().max_tool_calls(3));
        let result = b.compile().unwrap().run_with(Work::default(), config).await;
        assert!(
            matches!(result, Err(Error::BudgetExceeded(_))),
            "{result:?}"
        );
    });

    let tasks = json(dir.path(), &["pending", "refused"]);
    let status: Vec<(&str, &str)> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["node"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status, [("small", "done"), ("large", "over_budget")]);
    let text = stdout(dir.path(), &["pending", "refused"]);
    assert!(
        text.contains("refused by a budget: runs on a resume with a higher one"),
        "{text}"
    );
    let shown = json(dir.path(), &["show", "refused"]);
    assert_eq!(shown["usage"]["total"]["tool_calls"], 1, "{shown}");
}
