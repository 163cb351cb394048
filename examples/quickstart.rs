//! A small research agent: plan, search two sources in parallel (fan-out), wait for both
//! (join), synthesize on the CPU pool, loop until confident enough (conditional edge), then
//! pick a writing style at random, reproducibly (weighted edge). Every step is checkpointed to
//! the embedded sled store, every event is printed as it happens, and the run's checkpoint
//! history is listed at the end.
//!
//! Run it with `cargo run --example quickstart` (add `-- --seed 7` to change the weighted
//! choice, `-- --sequential` to run the branches one after another, `-- --store DIR` to keep
//! the store somewhere else than `target/quickstart-store`).

use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// The state every node reads, and the reducers that merge what they write.
#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
struct Research {
    question: String,
    /// Both searches append here in the same step; append merges them in plan order.
    #[reducer(append)]
    findings: Vec<String>,
    #[reducer(add)]
    rounds: u32,
    #[reducer(max)]
    confidence: u32,
    summary: String,
    report: String,
}

async fn plan(state: Arc<Research>, ctx: Context) -> Result<ResearchUpdate, BoxError> {
    let round = state.rounds + 1;
    ctx.emit(
        "plan",
        &format!("round {round}: look for '{}'", state.question),
    );
    Ok(ResearchUpdate::new().rounds(1))
}

async fn search_web(state: Arc<Research>, ctx: Context) -> Result<ResearchUpdate, BoxError> {
    for page in 1..=3 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        ctx.emit(
            "progress",
            &serde_json::json!({ "source": "web", "page": page }),
        );
    }
    Ok(ResearchUpdate::new().findings(vec![format!(
        "web: 3 pages on {} (round {})",
        state.question, state.rounds
    )]))
}

async fn search_papers(state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
    tokio::time::sleep(Duration::from_millis(40)).await;
    Ok(ResearchUpdate::new().findings(vec![format!(
        "papers: 2 surveys on {} (round {})",
        state.question, state.rounds
    )]))
}

/// CPU-bound: runs on the rayon pool, never blocking the async runtime.
fn synthesize(state: &Research, _ctx: &Context) -> Result<ResearchUpdate, BoxError> {
    let words: usize = state
        .findings
        .iter()
        .map(|f| f.split_whitespace().count())
        .sum();
    let confidence = (words as u32 * 3).min(100);
    Ok(ResearchUpdate::new()
        .summary(format!("{} findings, {words} words", state.findings.len()))
        .confidence(confidence))
}

async fn write_brief(state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
    Ok(ResearchUpdate::new().report(format!("Brief: {}.", state.summary)))
}

async fn write_detailed(state: Arc<Research>, _ctx: Context) -> Result<ResearchUpdate, BoxError> {
    Ok(ResearchUpdate::new().report(format!(
        "Detailed: {}. Sources: {}",
        state.summary,
        state.findings.join("; ")
    )))
}

fn graph() -> Result<CompiledGraph<Research>, agentgraph::graph::GraphError> {
    let mut graph = GraphBuilder::<Research>::new();
    graph
        .add_node("plan", plan)
        .add_node("search_web", search_web)
        .add_node("search_papers", search_papers)
        .add_cpu_node("synthesize", synthesize)
        .add_node("write_brief", write_brief)
        .add_node("write_detailed", write_detailed)
        .add_node("style", |_, _| async { Ok(ResearchUpdate::new()) })
        .add_edge(START, "plan")
        .add_edges("plan", ["search_web", "search_papers"])
        .add_join(["search_web", "search_papers"], "synthesize")
        .add_conditional_edges("synthesize", ["plan", "style"], |s: &Research| {
            if s.confidence < 60 { "plan" } else { "style" }
        })
        .add_weighted_edges("style", [("write_brief", 0.7), ("write_detailed", 0.3)])
        .add_edge("write_brief", END)
        .add_edge("write_detailed", END);
    graph.compile()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = match args.iter().position(|a| a == "--seed") {
        Some(i) => args.get(i + 1).ok_or("--seed takes a number")?.parse()?,
        None => 42,
    };
    let mode = if args.iter().any(|a| a == "--sequential") {
        Mode::Sequential
    } else {
        Mode::Parallel
    };
    let dir = match args.iter().position(|a| a == "--store") {
        Some(i) => std::path::PathBuf::from(args.get(i + 1).ok_or("--store takes a directory")?),
        None => {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/quickstart-store")
        }
    };
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(&dir)?);

    let graph = graph()?;
    println!(
        "graph {} ({} nodes), seed {seed}, {mode:?} mode\n",
        graph.fingerprint(),
        graph.node_names().len()
    );

    let input = Research {
        question: "durable agent runtimes".into(),
        ..Default::default()
    };
    let config = RunConfig::new()
        .mode(mode)
        .seed(seed)
        .store(store.clone())
        .durability(Durability::Sync);
    let run = graph.run_with(input, config);
    println!("run {} checkpoints to {}\n", run.run_id(), dir.display());
    let run_id = run.run_id().to_owned();
    let mut events = run.events();
    let handle = run.spawn();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => println!("{event}"),
            Err(missed) => eprintln!("{missed}"),
        }
    }
    let state = handle.await?;
    println!("\n{}\n", state.report);

    let history = graph.history(store);
    for cp in history.checkpoints(&run_id).await? {
        println!(
            "checkpoint {:>2}: wrote {:<28} {:>5} bytes, next: {}",
            cp.step,
            cp.written.join(","),
            cp.blob_bytes,
            if cp.next.is_empty() {
                "-".to_string()
            } else {
                cp.next.join(",")
            }
        );
    }
    let runs = history.runs().await?;
    println!(
        "\nthe store holds {} run(s); resume any unfinished one with `graph.resume(id, config)`",
        runs.len()
    );
    Ok(())
}
