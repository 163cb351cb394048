//! Resume after a crash. A run is killed half-way, then resumed where it stopped, with its
//! events printed all along.
//!
//! The example starts itself again as a child process, which runs a small graph: outline,
//! then two rounds of three parallel tasks (two searches and a CPU-bound word count) joined by
//! a review, then publish. Every step is checkpointed to sled with `Durability::Sync`, and
//! every task that finishes while its siblings still run is saved at once as a pending write.
//! The child streams its events to the parent as JSON lines (`[child]`). In the middle of
//! step 4, when the fast tasks have finished and the slow search is half-way, the parent kills
//! the child with SIGKILL. It then resumes the same run from the same store, in its own
//! process (`[resume]`): `RunResumed` says which checkpoint it resumed from and how many
//! finished tasks it restored, and only the unfinished task of step 4 runs again. At the end
//! it prints the final state, checks it against a run that was never killed, and lists the
//! run's checkpoints.
//!
//! Run it with `cargo run --example resume`. The store is `target/resume-store`, emptied at
//! each start.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

const RUN: &str = "article-1";
/// The step the parent kills the child in.
const KILL_STEP: u64 = 4;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
struct Article {
    topic: String,
    outline: String,
    #[reducer(append)]
    notes: Vec<String>,
    #[reducer(add)]
    words: u64,
    #[reducer(add)]
    drafts: u32,
    text: String,
}

async fn outline(state: Arc<Article>, _ctx: Context) -> Result<ArticleUpdate, BoxError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(ArticleUpdate::new().outline(format!("{}: why, how, what next", state.topic)))
}

async fn search_web(state: Arc<Article>, _ctx: Context) -> Result<ArticleUpdate, BoxError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(ArticleUpdate::new().notes(vec![format!("web, draft {}", state.drafts + 1)]))
}

/// The slow one: four pages, with a progress event after each.
async fn search_archive(state: Arc<Article>, ctx: Context) -> Result<ArticleUpdate, BoxError> {
    for page in 1..=4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ctx.emit("page", &page);
    }
    Ok(ArticleUpdate::new().notes(vec![format!("archive, draft {}", state.drafts + 1)]))
}

/// CPU-bound: runs on the rayon pool.
fn count_words(state: &Article, _ctx: &Context) -> Result<ArticleUpdate, BoxError> {
    std::thread::sleep(Duration::from_millis(50));
    let words = state.notes.iter().chain([&state.outline]);
    Ok(ArticleUpdate::new().words(words.map(|n| n.split_whitespace().count() as u64).sum()))
}

async fn review(_state: Arc<Article>, _ctx: Context) -> Result<ArticleUpdate, BoxError> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(ArticleUpdate::new().drafts(1))
}

async fn publish(state: Arc<Article>, _ctx: Context) -> Result<ArticleUpdate, BoxError> {
    Ok(ArticleUpdate::new().text(format!(
        "{} ({} drafts, {} words counted, sources: {})",
        state.outline,
        state.drafts,
        state.words,
        state.notes.join(", ")
    )))
}

fn graph() -> Result<CompiledGraph<Article>, agentgraph::graph::GraphError> {
    let branches = ["search_web", "search_archive", "count_words"];
    let mut graph = GraphBuilder::<Article>::new();
    graph
        .add_node("outline", outline)
        .add_node("search_web", search_web)
        .add_node("search_archive", search_archive)
        .add_cpu_node("count_words", count_words)
        .add_node("review", review)
        .add_node("publish", publish)
        .add_edge(START, "outline")
        .add_edges("outline", branches)
        .add_join(branches, "review")
        .add_conditional_edges(
            "review",
            ["search_web", "search_archive", "count_words", "publish"],
            move |s: &Article| {
                if s.drafts < 2 {
                    Route::to(branches)
                } else {
                    Route::to(["publish"])
                }
            },
        )
        .add_edge("publish", END);
    graph.compile()
}

fn input() -> Article {
    Article {
        topic: "durable workflows".into(),
        ..Default::default()
    }
}

fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(RUN)
        .durability(Durability::Sync)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.get(1).map(String::as_str) {
        Some("--child") => runtime.block_on(child(Path::new(&args[2]))),
        _ => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/resume-store");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            run_and_kill_child(&dir)?;
            runtime.block_on(resume(&dir))
        }
    }
}

/// The child: starts the run and writes its events to stdout, one JSON object a line.
async fn child(dir: &Path) -> Result<(), Box<dyn Error>> {
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir)?);
    let run = graph()?.run_with(input(), config(&store));
    let mut events = run.events();
    let handle = run.spawn();
    while let Some(event) = events.next().await {
        println!("{}", serde_json::to_string(&event?)?);
    }
    handle.await?;
    Ok(())
}

/// Starts the child, prints its events, and kills it in the middle of step 4.
fn run_and_kill_child(dir: &Path) -> Result<(), Box<dyn Error>> {
    println!("[parent] the store is {}", dir.display());
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()?;
    println!("[parent] started the child (pid {})\n", child.id());
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let event: Event = serde_json::from_str(&line?)?;
        println!("[child]  {event}");
        // Half-way through the slow search of the second round: the other two tasks of the
        // step have finished, and their pending writes are on disk.
        if let EventKind::Custom { step, payload, .. } = &event.kind
            && *step == KILL_STEP
            && *payload == 2
        {
            child.kill()?; // SIGKILL: no destructor, no flush, nothing runs after it
            let status = child.wait()?;
            println!("\n[parent] killed the child in the middle of step {KILL_STEP} ({status})");
            return Ok(());
        }
    }
    Err("the child finished before it could be killed".into())
}

/// Resumes the killed run in this process, then shows its state and history.
async fn resume(dir: &Path) -> Result<(), Box<dyn Error>> {
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir)?);
    let graph = graph()?;
    let history = graph.history(store.clone());
    let record = history
        .run(RUN)
        .await?
        .ok_or("the run is not in the store")?;
    let checkpoints = history.checkpoints(RUN).await?;
    let last = checkpoints.last().ok_or("the run has no checkpoint")?;
    println!(
        "[parent] the store has run {RUN}: {:?}, last checkpoint after step {}",
        record.status, last.step
    );
    println!("[parent] resuming it here\n");

    let run = graph.resume(RUN, config(&store));
    let mut events = run.events();
    let handle = run.spawn();
    while let Some(event) = events.next().await {
        println!("[resume] {}", event?);
    }
    let state = handle.await?;

    println!("\n{}", state.text);
    let uninterrupted = graph.invoke(input()).await?;
    println!(
        "the same as a run that was never killed: {}",
        if state == uninterrupted { "yes" } else { "NO" }
    );
    assert_eq!(state, uninterrupted);

    println!("\nthe checkpoints of {RUN}:");
    for cp in history.checkpoints(RUN).await? {
        println!(
            "  after step {}: wrote {:<38} next: {}",
            cp.step,
            cp.written.join(","),
            if cp.next.is_empty() {
                "-".to_owned()
            } else {
                cp.next.join(",")
            }
        );
    }
    Ok(())
}
