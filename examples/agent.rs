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
//! vLLM, Ollama or any OpenAI-compatible server; otherwise a local llama.cpp server running
//! SmolLM2-135M-Instruct, which `export OPENAI_BASE_URL=$(scripts/model-server start)` installs
//! (once) and starts. A 135M model is no researcher: expect the protocol to work, not wisdom.
//! Every turn is a thread invocation: run it again with another question and the conversation
//! goes on (the thread's history is in `$TMPDIR/agentgraph-agent-example`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use agentgraph_nodes::agent::{Agent, AgentStateUpdate};
use agentgraph_nodes::message::Message;
use agentgraph_nodes::model::openai::OpenAiModel;
use agentgraph_nodes::tool::{ToolSet, tool_fn};
use futures_util::StreamExt;
use serde::Deserialize;

/// Where a local model server listens when `OPENAI_BASE_URL` is not set.
const LOCAL: &str = "http://127.0.0.1:8080/v1";

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

/// Up to 5 lines of the repository's documentation that contain `query`, as `file:line: text`.
fn search_docs(root: &Path, query: &str) -> String {
    let query = query.to_lowercase();
    let mut hits = Vec::new();
    for file in [
        "README.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        "benches/README.md",
    ] {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if line.to_lowercase().contains(&query) && hits.len() < 5 {
                hits.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    if hits.is_empty() {
        format!("nothing in the docs mentions {query:?}")
    } else {
        hits.join("\n")
    }
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
                Ok::<_, std::convert::Infallible>(search_docs(&root, &x.query))
            }
        },
    );
    ToolSet::new().with(calculate).with(search)
}

/// The model the environment names, or the local server's.
fn model() -> Result<(OpenAiModel, String), Box<dyn std::error::Error>> {
    let base = std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| LOCAL.to_owned());
    let name = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let mut builder = OpenAiModel::builder(name)
        .base_url(&base)
        .timeout(Duration::from_secs(120));
    if std::env::var_os("OPENAI_API_KEY").is_none() {
        builder = builder.no_api_key();
    }
    Ok((builder.build()?, base))
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
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let (model, base) = model()?;
    // Say in one line how to get a model when none answers, before anything is stored.
    let reachable = reqwest::Client::new()
        .get(format!("{}/models", base.trim_end_matches('/')))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok();
    if !reachable {
        return Err(format!(
            "no model server answers at {base}: start one with `export OPENAI_BASE_URL=$(scripts/model-server start)`, or set OPENAI_BASE_URL and OPENAI_API_KEY"
        )
        .into());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let graph = Agent::new(Arc::new(model))
        .tools(tools(root))
        .system_prompt(
            "You are a research assistant for the agentgraph project. Use search_docs to find \
             facts in its documentation and calculate for arithmetic; answer briefly.",
        )
        .max_turns(6)
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
