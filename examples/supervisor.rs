//! A research supervisor with two workers: a searcher, with a tool that searches this
//! repository's documentation, and a writer, without tools. The supervisor is a model: it
//! hands tasks over with `transfer_to_searcher` / `transfer_to_writer` (both at once if it
//! likes), reads their answers, and answers the user when it has enough. Every agent's tokens
//! are printed as they stream, prefixed with its name; the team's conversation is on a thread
//! checkpointed to sled.
//!
//! ```text
//! cargo run --example supervisor -- "How do I resume a run after a crash?"
//! cargo run --example supervisor -- --thread research-2 --max-rounds 4 "What does the monitor serve?"
//! cargo run --example supervisor -- --resume      # go on with a thread's unfinished turn
//! ```
//!
//! The model: `OPENAI_BASE_URL` (and `OPENAI_API_KEY`, `OPENAI_MODEL`) when set, for OpenAI,
//! vLLM, Ollama or any OpenAI-compatible server; otherwise the local llama.cpp server that
//! `scripts/model-server start` installs (once) and starts (found through the URL file it
//! writes in `$TMPDIR`). Its
//! SmolLM2-135M is no research team: expect the protocol (handoffs, reports, a final answer
//! or the round limit), not wisdom.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentgraph::prelude::*;
use agentgraph_nodes::agent::Agent;
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::patterns::{Member, Supervisor, TeamState, TeamStateUpdate};
use agentgraph_nodes::tool::{ToolSet, tool_fn};
use futures_util::StreamExt;
use serde::Deserialize;

/// Arguments of `search_docs`.
#[derive(Deserialize, schemars::JsonSchema)]
struct Search {
    /// A word or phrase to look for (case-insensitive).
    query: String,
}

struct Args {
    thread: String,
    resume: bool,
    max_rounds: u32,
    question: String,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        thread: "research-1".to_owned(),
        resume: false,
        max_rounds: 6,
        question: String::new(),
    };
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--thread" => out.thread = args.next().ok_or("--thread needs an id")?,
            "--resume" => out.resume = true,
            "--max-rounds" => {
                out.max_rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--max-rounds needs a number")?;
            }
            _ => words.push(arg),
        }
    }
    out.question = if words.is_empty() {
        "How does agentgraph resume a run after a crash? Write me a short note.".to_owned()
    } else {
        words.join(" ")
    };
    Ok(out)
}

/// The team: a model supervisor, a searcher with the docs' search, a writer.
fn team(
    model: Arc<OpenAiModel>,
    max_rounds: u32,
) -> Result<CompiledGraph<TeamState>, Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let search = tool_fn(
        "search_docs",
        "Searches agentgraph's documentation (README, ARCHITECTURE, CHANGELOG) for a word or phrase.",
        move |x: Search| {
            let root = root.clone();
            async move {
                Ok::<_, std::convert::Infallible>(common::search_docs(
                    &root,
                    &["README.md", "ARCHITECTURE.md", "CHANGELOG.md"],
                    &x.query,
                ))
            }
        },
    );
    let searcher = Agent::new(model.clone())
        .tools(ToolSet::new().with(search))
        .system_prompt(
            "You are a searcher. Use search_docs to find facts for your task in agentgraph's \
             documentation, then report them briefly, with the file and line.",
        )
        .max_turns(4);
    let writer = Agent::new(model.clone())
        .system_prompt("You are a writer. Write a short, clear note from the facts you are given.")
        .max_turns(2);
    Ok(Supervisor::model(model)
        .worker(Member::new("searcher", searcher).description("Finds facts in the documentation."))
        .worker(Member::new("writer", writer).description("Writes a short note from facts."))
        .max_rounds(max_rounds)
        .compile()?)
}

#[tokio::main]
async fn main() -> ExitCode {
    common::exit(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let (model, base) = common::model()?;
    common::ensure_reachable(&base).await?;
    let graph = team(Arc::new(model), args.max_rounds)?;
    let dir = std::env::temp_dir().join("agentgraph-supervisor-example");
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(&dir)?);
    let config = RunConfig::new().store(store.clone()).store_events(true);
    let run = if args.resume {
        graph.resume(args.thread.as_str(), config)
    } else {
        println!("you: {}", args.question);
        let input = TeamStateUpdate::new().messages(vec![Message::user(args.question)]);
        graph.invoke_thread(args.thread.as_str(), input, config)
    };
    let mut events = run.events();
    let printer = tokio::spawn(async move {
        // Who is speaking: the supervisor's own tokens, or a worker's (a subgraph event).
        let mut speaker: Option<String> = None;
        while let Some(Ok(event)) = events.next().await {
            let (who, text) = match &event.kind {
                EventKind::Token { node, text, .. } => (node.to_string(), text.clone()),
                EventKind::Subgraph { node, event, .. } => match &event.kind {
                    EventKind::Token { text, .. } => (node.to_string(), text.clone()),
                    _ => continue,
                },
                _ => continue,
            };
            if speaker.as_deref() != Some(who.as_str()) {
                print!("\n{who}: ");
                speaker = Some(who);
            }
            print!("{text}");
            use std::io::Write;
            std::io::stdout().flush().ok();
        }
        println!();
    });
    let result = run.await;
    printer.await.ok();
    let state = result?;
    println!("\nwho spoke, in order:");
    for m in &state.messages {
        let calls: Vec<&str> = m.tool_calls().iter().map(|c| c.name.as_str()).collect();
        match (m.name.as_deref(), calls.is_empty()) {
            (Some(name), false) => println!("  {name} -> {}", calls.join(", ")),
            (Some(name), true) => println!("  {name}: {} chars", m.content.to_text().len()),
            _ => {}
        }
    }
    println!(
        "(thread {}: {} messages, checkpointed in {})",
        args.thread,
        state.messages.len(),
        dir.display()
    );
    Ok(())
}
