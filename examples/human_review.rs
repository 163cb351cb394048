//! An approval step. A writer node drafts a press release; a review node asks a person for a
//! decision with `ctx.interrupt(...)`, which stops the run: it is checkpointed to the sled
//! store and the process exits, printing what the run waits for. A second invocation resumes
//! it with the decision. Rejecting sends the draft back to the writer with the note, and the
//! run stops again at the next review; approving publishes it.
//!
//! ```text
//! cargo run --example human_review                    # start; stops at the review
//! cargo run --example human_review -- approve         # resume with the decision
//! cargo run --example human_review -- reject "shorter, please"
//! cargo run --example human_review -- --new           # forget the run and start again
//! ```
//!
//! The store lives in `target/human-review-store` (`--store DIR` to change it). The writer
//! has a retry policy, so a flaky failure of it is retried with backoff instead of failing the
//! run.

use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

const RUN: &str = "press-release";

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
struct Release {
    topic: String,
    draft: String,
    /// Every decision taken, in order.
    #[reducer(append)]
    decisions: Vec<String>,
    #[reducer(add)]
    revisions: u32,
    published: bool,
}

/// What the reviewer is asked, and what they answer.
#[derive(Debug, Serialize, Deserialize)]
struct Question {
    draft: String,
    revision: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
enum Decision {
    Approve,
    Reject { note: String },
}

async fn write(state: Arc<Release>, _ctx: Context) -> Result<ReleaseUpdate, BoxError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let draft = match state.decisions.last() {
        None => format!(
            "agentgraph ships {}: durable graphs of agents, written in Rust, resumable after any crash.",
            state.topic
        ),
        Some(note) => format!("agentgraph ships {} ({note}).", state.topic),
    };
    Ok(ReleaseUpdate::new().draft(draft).revisions(1))
}

async fn review(state: Arc<Release>, ctx: Context) -> Result<ReleaseUpdate, BoxError> {
    let question = Question {
        draft: state.draft.clone(),
        revision: state.revisions,
    };
    // Stops the run here until a decision is given; returns it when the run is resumed.
    let decision: Decision = ctx.interrupt(&question)?;
    Ok(match decision {
        Decision::Approve => ReleaseUpdate::new().decisions(vec!["approved".into()]),
        Decision::Reject { note } => ReleaseUpdate::new().decisions(vec![note]),
    })
}

async fn publish(state: Arc<Release>, _ctx: Context) -> Result<ReleaseUpdate, BoxError> {
    println!("\n  PUBLISHED: {}\n", state.draft);
    Ok(ReleaseUpdate::new().published(true))
}

fn graph() -> Result<CompiledGraph<Release>, agentgraph::graph::GraphError> {
    let mut b = GraphBuilder::<Release>::new();
    b.add_node("write", write)
        .add_node("review", review)
        .add_node("publish", publish)
        .retry(
            "write",
            RetryPolicy::new(3).backoff(Duration::from_millis(50), Duration::from_secs(1)),
        )
        .add_edge(START, "write")
        .add_edge("write", "review")
        .add_conditional_edges("review", ["publish", "write"], |s: &Release| {
            match s.decisions.last().map(String::as_str) {
                Some("approved") => "publish",
                _ => "write",
            }
        })
        .add_edge("publish", END);
    b.compile()
}

/// Runs `run` to its end or its next stop, printing its events.
async fn drive(run: agentgraph::run::Run<Release>) -> agentgraph::Result<Release> {
    let mut events = run.events();
    let handle = run.spawn();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => println!("{event}"),
            Err(missed) => eprintln!("{missed}"),
        }
    }
    handle.await
}

/// Prints what the run waits for and how to answer.
fn explain(interrupts: &[Interrupt]) {
    for i in interrupts {
        println!(
            "\nthe run waits for a decision on `{}` (interrupt {}):",
            i.node, i.id
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&i.payload).unwrap_or_default()
        );
    }
    println!("\nanswer with one of:");
    println!("  cargo run --example human_review -- approve");
    println!("  cargo run --example human_review -- reject \"what to change\"");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.iter().position(|a| a == "--store") {
        Some(i) => std::path::PathBuf::from(args.get(i + 1).ok_or("--store takes a directory")?),
        None => {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/human-review-store")
        }
    };
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(&dir)?);
    let graph = graph()?;
    let history = graph.history(store.clone());
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .durability(Durability::Sync)
    };

    if args.iter().any(|a| a == "--new") && history.run(RUN).await?.is_some() {
        history.delete(RUN).await?;
        println!("forgot run {RUN}");
    }
    let decision = match args.first().map(String::as_str) {
        Some("approve") => Some(Decision::Approve),
        Some("reject") => Some(Decision::Reject {
            note: args.get(1).cloned().unwrap_or_else(|| "try again".into()),
        }),
        _ => None,
    };

    let result = match (history.run(RUN).await?, decision) {
        (None, _) => {
            println!("starting run {RUN} (checkpoints in {})\n", dir.display());
            let input = Release {
                topic: "version 0.1".into(),
                ..Release::default()
            };
            drive(graph.run_with(input, config().run_id(RUN))).await
        }
        (Some(record), None) => {
            println!("run {RUN} is {:?}", record.status);
            let waiting = history.interrupts(RUN).await?;
            if waiting.is_empty() {
                println!("nothing to decide; start again with `-- --new`");
            } else {
                explain(&waiting);
            }
            return Ok(());
        }
        (Some(_), Some(decision)) => {
            let waiting = history.interrupts(RUN).await?;
            let Some(first) = waiting.first() else {
                println!("run {RUN} waits for nothing; start again with `-- --new`");
                return Ok(());
            };
            println!("resuming run {RUN} with {decision:?}\n");
            let resume = Resume::new().answer(&first.id, &decision);
            drive(graph.resume_with(RUN, resume, config())).await
        }
    };
    match result {
        Ok(state) => println!(
            "run {RUN} finished: published = {}, after {} revision(s); decisions: {:?}",
            state.published, state.revisions, state.decisions
        ),
        Err(Error::Interrupted(stop)) => explain(&stop.interrupts),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
