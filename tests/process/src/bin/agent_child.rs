//! The child process of the agent crash test (`tests/agent_sigkill.rs`), which starts it with
//! `AGENTGRAPH_AGENT_CHILD_DIR` and `AGENTGRAPH_AGENT_BASE_URL` set and one argument: a user
//! message, which it gives the tool-calling agent on the thread `research` of
//! `$AGENTGRAPH_AGENT_CHILD_DIR/store`, or `--resume`, which resumes the thread's unfinished
//! invocation. Its tool `lookup` records every start and end in `effects.log`, and each call's
//! idempotency key in `keys.log`; every streamed token goes to `tokens.log`. It prints the
//! agent's final answer. Started without the variables, it fails.

#[path = "../agent.rs"]
mod agent;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent::{BASE_URL, CHILD_DIR, HANG_ON, THREAD, record};
use agentgraph::nodes::agent::{Agent, AgentStateUpdate};
use agentgraph::nodes::message::Message;
use agentgraph::nodes::model::openai::OpenAiModel;
use agentgraph::nodes::tool::{ToolContext, ToolSet, tool_fn_with_context};
use agentgraph::prelude::*;
use futures_util::StreamExt;
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
struct Lookup {
    /// What to look up.
    key: String,
}

fn main() -> ExitCode {
    let (Some(dir), Ok(base_url), Some(arg)) = (
        std::env::var_os(CHILD_DIR),
        std::env::var(BASE_URL),
        std::env::args().nth(1),
    ) else {
        eprintln!(
            "agent_child: the child process of the test `tests/agent_sigkill.rs` of \
             agentgraph-process-tests, which starts it with {CHILD_DIR} and {BASE_URL} set and \
             a message; run that test instead"
        );
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let hang_on = std::env::var(HANG_ON).ok();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(dir, base_url, hang_on, arg))
}

async fn child(dir: PathBuf, base_url: String, hang_on: Option<String>, arg: String) -> ExitCode {
    let store: Arc<dyn CheckpointStore> =
        Arc::new(SledStore::open(dir.join("store")).expect("the sled store opens"));
    let model = OpenAiModel::builder("scripted-model")
        .base_url(&base_url)
        .no_api_key()
        .max_retries(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a model");
    let effects = Arc::new(dir.clone());
    let tools = ToolSet::new().with(tool_fn_with_context(
        "lookup",
        "Looks a key up.",
        move |args: Lookup, ctx: ToolContext| {
            let dir = effects.clone();
            let hang = hang_on.as_deref() == Some(args.key.as_str());
            let key = ctx.idempotency_key().to_owned();
            async move {
                record(&dir, "effects.log", &format!("start {}", args.key));
                record(&dir, "keys.log", &format!("{} {key}", args.key));
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                record(&dir, "effects.log", &format!("done {}", args.key));
                Ok::<_, std::convert::Infallible>(format!("value of {}", args.key))
            }
        },
    ));
    let graph = Agent::new(Arc::new(model))
        .tools(tools)
        .compile()
        .expect("the agent compiles");
    let config = RunConfig::new()
        .store(store.clone())
        .durability(Durability::Sync);
    let run = if arg == "--resume" {
        graph.resume(THREAD, config)
    } else {
        let input = AgentStateUpdate::new().messages(vec![Message::user(arg)]);
        graph.invoke_thread(THREAD, input, config)
    };
    let mut events = run.events();
    let tokens = dir.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let EventKind::Token { text, .. } = &event.kind {
                record(&tokens, "tokens.log", text);
            }
        }
    });
    let state = run.await.expect("the agent's run");
    watcher.await.ok();
    let answer = state
        .reply()
        .map(|m| m.content.to_text())
        .unwrap_or_default();
    println!("{answer}");
    ExitCode::SUCCESS
}
