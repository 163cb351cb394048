//! The child process of the thread test (`tests/thread_turns.rs`), which starts it with
//! `AGENTGRAPH_THREAD_CHILD_DIR` set and one argument: a message, which it gives the thread
//! `conversation` of `$AGENTGRAPH_THREAD_CHILD_DIR/store` as its next input, or `--resume`,
//! which resumes the thread's unfinished invocation. It prints the thread's messages as JSON
//! and exits 0; it exits 3 when the thread refuses the input (its last invocation did not
//! end). Started without the variable, it fails.

#[path = "../thread.rs"]
mod thread;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use thread::{CHILD_DIR, NOT_READY, THINK_MS, THREAD, config, graph};

fn main() -> ExitCode {
    let (Some(dir), Some(arg)) = (std::env::var_os(CHILD_DIR), std::env::args().nth(1)) else {
        eprintln!(
            "thread_child: the child process of the test `tests/thread_turns.rs` of \
             agentgraph-process-tests, which starts it with {CHILD_DIR} set and a message; \
             run that test instead"
        );
        return ExitCode::from(2);
    };
    let think = std::env::var(THINK_MS)
        .ok()
        .map(|ms| Duration::from_millis(ms.parse().expect("THINK_MS is a number")));
    let dir = PathBuf::from(dir);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let store: Arc<dyn CheckpointStore> =
                Arc::new(SledStore::open(dir.join("store")).expect("the sled store opens"));
            let graph = graph(dir, think);
            let run = if arg == "--resume" {
                graph.resume(THREAD, config(&store))
            } else {
                let input = thread::ConversationUpdate::new().messages(vec![arg]);
                graph.invoke_thread(THREAD, input, config(&store))
            };
            match run.await {
                Ok(state) => {
                    let json = serde_json::to_string(&state.messages).expect("messages as JSON");
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e @ Error::ThreadNotReady { .. }) => {
                    eprintln!("{e}");
                    ExitCode::from(NOT_READY)
                }
                Err(e) => panic!("the invocation failed: {e}"),
            }
        })
}
