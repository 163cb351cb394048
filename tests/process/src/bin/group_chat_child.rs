//! The child process of the group chat crash test (`tests/group_chat_sigkill.rs`), which
//! starts it with `AGENTGRAPH_GROUP_CHAT_CHILD_DIR` and `AGENTGRAPH_GROUP_CHAT_BASE_URL` set and
//! one argument: a topic, which starts a round-robin chat of three personas (the run `debate`
//! of `$AGENTGRAPH_GROUP_CHAT_CHILD_DIR/store`, `Durability::Sync`), or `--resume`, which
//! resumes it. Every streamed token goes to `tokens.log`; at the end it prints one line per
//! turn, `speaker: text`. Started without the variables, it fails.

#[path = "../agent.rs"]
mod agent;
#[path = "../group_chat.rs"]
mod group_chat;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent::record;
use agentgraph::nodes::agent::Agent;
use agentgraph::nodes::model::openai::OpenAiModel;
use agentgraph::nodes::patterns::group_chat::{ChatAgent, GroupChat, GroupChatState, Stop};
use agentgraph::prelude::*;
use futures_util::StreamExt;
use group_chat::{AGENTS, BASE_URL, CHILD_DIR, ROUNDS, RUN};

fn main() -> ExitCode {
    let (Some(dir), Ok(base_url), Some(arg)) = (
        std::env::var_os(CHILD_DIR),
        std::env::var(BASE_URL),
        std::env::args().nth(1),
    ) else {
        eprintln!(
            "group_chat_child: the child process of the test `tests/group_chat_sigkill.rs` of \
             agentgraph-process-tests, which starts it with {CHILD_DIR} and {BASE_URL} set and \
             a topic; run that test instead"
        );
        return ExitCode::from(2);
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(PathBuf::from(dir), base_url, arg))
}

async fn child(dir: PathBuf, base_url: String, arg: String) -> ExitCode {
    let store: Arc<dyn CheckpointStore> =
        Arc::new(SledStore::open(dir.join("store")).expect("the sled store opens"));
    let model = Arc::new(
        OpenAiModel::builder("scripted-model")
            .base_url(&base_url)
            .no_api_key()
            .max_retries(0)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a model"),
    );
    let mut chat = GroupChat::new().stop_when(Stop::max_rounds(ROUNDS));
    for name in AGENTS {
        let agent = Agent::new(model.clone()).system_prompt(format!("You are the {name}."));
        chat = chat.agent(ChatAgent::model(name, agent));
    }
    let graph = chat.compile().expect("the chat compiles");
    let config = RunConfig::new()
        .store(store)
        .durability(Durability::Sync)
        .run_id(RUN);
    let run = if arg == "--resume" {
        graph.resume(RUN, config)
    } else {
        graph.run_with(GroupChatState::new(arg), config)
    };
    let mut events = run.events();
    let tokens = dir.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let EventKind::Token { node, text, .. } = &event.kind {
                record(&tokens, "tokens.log", &format!("{node} {text}"));
            }
        }
    });
    let state = run.await.expect("the chat's run");
    watcher.await.ok();
    for m in &state.messages[1..] {
        println!(
            "{}: {}",
            m.name.as_deref().unwrap_or_default(),
            m.content.to_text()
        );
    }
    ExitCode::SUCCESS
}
