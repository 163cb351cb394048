//! The monitor, watching a demo that never stops: a research loop with two branches in
//! parallel, a flaky search that fails and is retried, and a human approval (an interrupt)
//! answered a few seconds later, run after run, stored in sled under
//! `target/monitor-example-store`.
//!
//! ```text
//! cargo run --example monitor            # then open http://127.0.0.1:7070/
//! cargo run --example monitor -- 8080    # another port
//! ```
//!
//! Ctrl-C stops it. In an application, enable the `monitor` feature and call
//! `agentgraph::monitor::serve(addr, store)`; this example reaches the same crate as
//! `agentgraph_monitor`, so that it runs without `--features monitor`.

use std::sync::Arc;
use std::time::Duration;

use agentgraph::inspect::{RunStatus, StoreInspector};
use agentgraph::prelude::*;
use agentgraph_monitor as monitor;
use serde::{Deserialize, Serialize};

/// Runs kept in the store; older ones are deleted.
const KEEP: usize = 20;

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
struct Research {
    question: String,
    #[reducer(append)]
    findings: Vec<String>,
    draft: String,
    #[reducer(add)]
    rounds: u32,
    approved_by: String,
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn plan(state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
    pause(700).await;
    Ok(ResearchUpdate::new().findings(vec![format!("round {}: plan", state.rounds + 1)]))
}

/// Fails its first attempt every other round: the retry policy runs it again.
async fn search(state: Arc<Research>, ctx: Context) -> Result<ResearchUpdate, BoxError> {
    pause(1200).await;
    if state.rounds.is_multiple_of(2) && ctx.attempt() == 1 {
        return Err("the search service timed out".into());
    }
    Ok(ResearchUpdate::new().findings(vec![format!("found sources on {}", state.question)]))
}

async fn draft(state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
    pause(1600).await;
    Ok(ResearchUpdate::new().draft(format!(
        "{} findings so far on {}",
        state.findings.len(),
        state.question
    )))
}

async fn review(_state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
    pause(800).await;
    Ok(ResearchUpdate::new().rounds(1))
}

/// Asks a person to approve: the run stops here until it is resumed with an answer.
async fn approve(state: Arc<Research>, ctx: Context) -> Result<ResearchUpdate, BoxError> {
    let reviewer: String = ctx.interrupt(&format!("approve this draft? {}", state.draft))?;
    Ok(ResearchUpdate::new().approved_by(reviewer))
}

fn graph() -> Result<CompiledGraph<Research>, agentgraph::graph::GraphError> {
    let mut b = GraphBuilder::<Research>::new();
    b.add_node("plan", plan)
        .add_node("search", search)
        .add_node("draft", draft)
        .add_node("review", review)
        .add_node("approve", approve)
        .retry(
            "search",
            RetryPolicy::new(3).backoff(Duration::from_millis(600), Duration::from_secs(2)),
        )
        .add_edge(START, "plan")
        .add_edges("plan", ["search", "draft"])
        .add_join(["search", "draft"], "review")
        .add_conditional_edges("review", ["plan", "approve"], |s: &Research| {
            if s.rounds < 3 { "plan" } else { "approve" }
        })
        .add_edge("approve", END);
    b.compile()
}

fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .monitored()
        // Each step is in the store as soon as it is done, so the page shows it at once.
        .durability(Durability::Sync)
}

/// One run: to its approval, a pause while "someone" reads the draft, then the answer.
async fn one_run(
    graph: &CompiledGraph<Research>,
    store: &Arc<dyn CheckpointStore>,
    n: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let topics = [
        "durable agents",
        "graph schedulers",
        "event logs",
        "retries",
    ];
    let input = Research {
        question: topics[n as usize % topics.len()].to_owned(),
        ..Research::default()
    };
    let run = graph.run_with(input, config(store));
    let id = run.run_id().to_owned();
    println!("run {id} started");
    let interrupts = match run.await {
        Err(agentgraph::Error::Interrupted(stop)) => stop.interrupts,
        other => return Err(format!("the run should stop at its approval: {other:?}").into()),
    };
    println!("run {id} waits for approval");
    pause(4000).await;
    let resume = Resume::new().answer(&interrupts[0].id, "the demo reviewer");
    let done = graph.resume_with(&id, resume, config(store)).await?;
    println!("run {id} approved by {}", done.approved_by);
    Ok(())
}

/// Deletes all but the newest `KEEP` finished runs.
async fn prune(store: &Arc<dyn CheckpointStore>) -> Result<(), agentgraph::Error> {
    let inspector = StoreInspector::new(store.clone());
    let mut runs: Vec<_> = inspector
        .runs()
        .await?
        .into_iter()
        .filter(|r| !r.run_id.contains('/') && r.status == RunStatus::Completed)
        .collect();
    runs.sort_by_key(|r| r.created_at_ms);
    for old in runs.iter().rev().skip(KEEP) {
        inspector.delete(&old.run_id).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::args().nth(1) {
        Some(port) => port.parse()?,
        None => 7070,
    };
    let store: Arc<dyn CheckpointStore> =
        Arc::new(SledStore::open("target/monitor-example-store")?);
    let server = monitor::serve(([127, 0, 0, 1], port).into(), store.clone()).await?;
    println!("monitor at {} (Ctrl-C to stop)", server.url());

    let graph = graph()?;
    let demo = async {
        let mut n = 0;
        loop {
            one_run(&graph, &store, n).await?;
            prune(&store).await?;
            n += 1;
            pause(1000).await;
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = tokio::select! {
        r = demo => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    println!("stopping");
    server.shutdown().await?;
    result
}
