//! A group chat: three personas debate a question in turns (round robin), and you take part as
//! the fourth speaker, through an interrupt. Each persona's answer streams as it comes.
//!
//! ```text
//! cargo run --example group_chat -- "Should we rewrite it in Rust?"
//! GROUP_CHAT_ANSWER="Ship it." cargo run --example group_chat   # not interactive
//! ```
//!
//! Your turn: type a line (an empty line, or `exit`, ends the chat). When stdin is not a
//! terminal, your answer is `GROUP_CHAT_ANSWER` (or "Go on."). The chat ends after two rounds
//! of the four speakers, or when someone says `TERMINATE`.
//!
//! The model: `OPENAI_BASE_URL` (and `OPENAI_API_KEY`, `OPENAI_MODEL`) when set, for OpenAI,
//! vLLM, Ollama or any OpenAI-compatible server; otherwise the local llama.cpp server running
//! SmolLM2-135M-Instruct that `scripts/model-server start` installs (once) and starts (found
//! through the URL file it writes in `$TMPDIR`). A 135M model debates poorly: expect the
//! turns, not the wit.

mod common;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use agentgraph::prelude::*;
use agentgraph_nodes::agent::Agent;
use agentgraph_nodes::patterns::group_chat::{
    ChatAgent, GroupChat, GroupChatState, Stop, UserTurn,
};
use futures_util::StreamExt;

/// The chat's run id in its (in-memory) store.
const RUN: &str = "debate";

/// Your answer: a line of stdin, or `GROUP_CHAT_ANSWER` when stdin is not a terminal.
fn your_answer(asked: &UserTurn) -> String {
    if !std::io::stdin().is_terminal() {
        let answer = std::env::var("GROUP_CHAT_ANSWER").unwrap_or_else(|_| "Go on.".to_owned());
        println!("{}: {answer}", asked.agent);
        return answer;
    }
    print!("{} (empty line or `exit` to end): ", asked.agent);
    std::io::stdout().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok();
    match line.trim() {
        "" | "exit" => "TERMINATE".to_owned(),
        said => said.to_owned(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    common::exit(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let question = if question.is_empty() {
        "Should a small team write its next service in Rust?".to_owned()
    } else {
        question
    };
    let (model, base) = common::model()?;
    common::ensure_reachable(&base).await?;
    let model = Arc::new(model);
    let persona = |name: &str, prompt: &str| {
        let agent = Agent::new(model.clone())
            .system_prompt(format!(
                "You are the {name} in a debate with the optimist, the skeptic, the engineer and \
                 a human. {prompt} Answer in two sentences at most."
            ))
            .request_with(|r| r.max_tokens(120));
        ChatAgent::model(name, agent)
    };
    let graph = GroupChat::new()
        .agent(persona("optimist", "You see the upside of every idea."))
        .agent(persona(
            "skeptic",
            "You question every claim and ask for evidence.",
        ))
        .agent(persona(
            "engineer",
            "You weigh costs and propose a concrete next step.",
        ))
        .agent(ChatAgent::user("you"))
        .stop_when(Stop::max_rounds(8) | Stop::keyword("TERMINATE"))
        .compile()?;

    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let config = || RunConfig::new().run_id(RUN).store(store.clone());
    println!("question: {question}");
    let mut run = graph.run_with(GroupChatState::new(question), config());
    let done = loop {
        let mut events = run.events();
        let printer = tokio::spawn(async move {
            let mut speaking: Option<String> = None;
            while let Some(Ok(event)) = events.next().await {
                if let EventKind::Token { node, text, .. } = &event.kind {
                    if speaking.as_deref() != Some(&**node) {
                        print!("{}{node}: ", if speaking.is_some() { "\n" } else { "" });
                        speaking = Some(node.to_string());
                    }
                    print!("{text}");
                    std::io::stdout().flush().ok();
                }
            }
            if speaking.is_some() {
                println!();
            }
        });
        let result = run.await;
        printer.await.ok();
        match result {
            Ok(done) => break done,
            Err(Error::Interrupted(stop)) => {
                let asked: UserTurn = serde_json::from_value(stop.interrupts[0].payload.clone())?;
                let answer = your_answer(&asked);
                run = graph.resume_with(RUN, Resume::value(answer), config());
            }
            Err(e) => return Err(e.into()),
        }
    };
    println!("(the chat ended after {} turns)", done.turns);
    Ok(())
}
