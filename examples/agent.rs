//! A small research agent: a chat model with two local tools, a calculator and a search over
//! this repository's documentation, on a thread checkpointed to sled. Its tokens and tool
//! calls are printed as they happen.
//!
//! ```text
//! cargo run --example agent -- "How fast is an in-memory step? And what is 405 / 0.4?"
//! cargo run --example agent -- --thread research-2 "What does the monitor serve?"
//! cargo run --example agent -- --resume          # go on with a thread's unfinished turn
//! ```
//!
//! The model: `OPENAI_BASE_URL` (and `OPENAI_API_KEY`, `OPENAI_MODEL`) when set, for OpenAI,
//! vLLM, Ollama or any OpenAI-compatible server; otherwise the local llama.cpp server running
//! SmolLM2-135M-Instruct that `scripts/model-server start` installs (once) and starts (the
//! example finds its address in `$TMPDIR/agentgraph-model-server.pid.url`); otherwise a server
//! on `127.0.0.1:8080`. A 135M model is no researcher: expect the protocol to work, not
//! wisdom. Answers are capped at 400 tokens, sampled at temperature 0.
//! Every turn is a thread invocation: run it again with another question and the conversation
//! goes on (the thread's history is in `$TMPDIR/agentgraph-agent-example`).

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentgraph::prelude::*;
use agentgraph_nodes::agent::{Agent, AgentStateUpdate};
use agentgraph_nodes::message::Message;
use agentgraph_nodes::tool::{ToolSet, tool_fn};
use futures_util::StreamExt;
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// Arguments of `calculate`.
#[derive(Deserialize, schemars::JsonSchema)]
struct Calculate {
    /// The left operand.
    a: f64,
    /// The operation.
    op: Op,
    /// The right operand.
    b: f64,
}

/// Arguments of `search_docs`.
#[derive(Deserialize, schemars::JsonSchema)]
struct Search {
    /// A word or phrase to look for (case-insensitive).
    query: String,
}

fn tools(root: PathBuf) -> ToolSet {
    let calculate = tool_fn(
        "calculate",
        "Computes a op b, for op one of add, sub, mul, div.",
        |x: Calculate| async move {
            let value = match x.op {
                Op::Add => x.a + x.b,
                Op::Sub => x.a - x.b,
                Op::Mul => x.a * x.b,
                Op::Div if x.b == 0.0 => return Err("division by zero"),
                Op::Div => x.a / x.b,
            };
            println!("\n  [calculate] = {value}");
            Ok(value)
        },
    );
    let search = tool_fn(
        "search_docs",
        "Searches agentgraph's documentation (README, ARCHITECTURE, CHANGELOG, benchmarks) for a word or phrase.",
        move |x: Search| {
            let root = root.clone();
            async move {
                println!("\n  [search_docs] {:?}", x.query);
                Ok::<_, std::convert::Infallible>(common::search_docs(
                    &root,
                    &[
                        "README.md",
                        "ARCHITECTURE.md",
                        "CHANGELOG.md",
                        "benches/README.md",
                    ],
                    &x.query,
                ))
            }
        },
    );
    ToolSet::new().with(calculate).with(search)
}

struct Args {
    thread: String,
    resume: bool,
    question: String,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        thread: "research-1".to_owned(),
        resume: false,
        question: String::new(),
    };
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--thread" => out.thread = args.next().ok_or("--thread needs an id")?,
            "--resume" => out.resume = true,
            _ => words.push(arg),
        }
    }
    out.question = if words.is_empty() {
        "How fast is one in-memory step of agentgraph? Search the docs, then compute 405 divided by 0.4."
            .to_owned()
    } else {
        words.join(" ")
    };
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    common::exit(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let (model, base) = common::model()?;
    common::ensure_reachable(&base).await?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let graph = Agent::new(Arc::new(model))
        .tools(tools(root))
        .system_prompt(
            "You are a research assistant for the agentgraph project. Use search_docs to find \
             facts in its documentation and calculate for arithmetic; answer briefly.",
        )
        .max_turns(6)
        .request_with(|request| request.max_tokens(400).temperature(0.0))
        .compile()?;
    let dir = std::env::temp_dir().join("agentgraph-agent-example");
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(&dir)?);
    let config = RunConfig::new().store(store.clone()).store_events(true);
    let run = if args.resume {
        graph.resume(args.thread.as_str(), config)
    } else {
        println!("you: {}", args.question);
        let input = AgentStateUpdate::new().messages(vec![Message::user(args.question)]);
        graph.invoke_thread(args.thread.as_str(), input, config)
    };
    let mut events = run.events();
    let printer = tokio::spawn(async move {
        let mut speaking = false;
        while let Some(Ok(event)) = events.next().await {
            match &event.kind {
                EventKind::Token { text, .. } => {
                    if !speaking {
                        print!("agent: ");
                        speaking = true;
                    }
                    print!("{text}");
                    use std::io::Write;
                    std::io::stdout().flush().ok();
                }
                EventKind::NodeFinished { node, .. } if &**node == "model" => {
                    if speaking {
                        println!();
                    }
                    speaking = false;
                }
                _ => {}
            }
        }
    });
    let state = run.await?;
    printer.await.ok();
    let turns = graph.history(store).checkpoints(&args.thread).await?;
    println!(
        "(thread {}: {} messages, invocation {}, checkpointed in {})",
        args.thread,
        state.messages.len(),
        turns.last().map_or(1, |c| c.invocation),
        dir.display()
    );
    Ok(())
}
