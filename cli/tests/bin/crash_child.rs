//! The child process of the test `a_crashed_run_reads_as_running_at_its_last_durable_step`
//! (`tests/cli_crash.rs`), which starts it with `AGENTGRAPH_CLI_CRASH_DIR` set and kills it:
//! it runs a long monitored run `crashed` on a sled store in that directory and prints
//! `saved <step>` once each checkpoint is durable. Started without it, it fails. Built only
//! with the `crash-child` feature, which the tests turn on.

#[path = "../common/graph.rs"]
mod graph;

use std::process::ExitCode;
use std::sync::Arc;

use agentgraph::prelude::*;
use futures_util::StreamExt;
use graph::{Work, graph};

/// Tells the child where the store is (tests/cli_crash.rs sets it).
const CHILD_DIR: &str = "AGENTGRAPH_CLI_CRASH_DIR";

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        eprintln!(
            "agentgraph-cli-crash-child: the child process of the test \
             `a_crashed_run_reads_as_running_at_its_last_durable_step` (cli/tests/cli_crash.rs), \
             which starts it with {CHILD_DIR} set and kills it; run that test instead"
        );
        return ExitCode::from(2);
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
        let config = RunConfig::new()
            .store(store)
            .run_id("crashed")
            .durability(Durability::Sync)
            .monitored();
        let input = Work {
            topic: "slow".to_owned(),
            ..Work::default()
        };
        let run = graph().run_with(input, config);
        let mut events = run.events();
        let _handle = run.spawn();
        while let Some(Ok(event)) = events.next().await {
            if let EventKind::CheckpointSaved { step, .. } = event.kind {
                // Emitted after the flush: the checkpoint is durable.
                println!("saved {step}");
            }
        }
        unreachable!("the run takes 1,000 steps: the test kills it long before");
    });
    ExitCode::SUCCESS
}
