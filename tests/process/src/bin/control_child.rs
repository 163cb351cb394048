//! The first process of the cross-process tests (`tests/control_processes.rs`), which start it
//! with `AGENTGRAPH_CONTROL_CHILD_DIR` and `AGENTGRAPH_CONTROL_CHILD_ROLE` set, in one of two
//! roles: `subgraph` runs the order graph until the interrupt inside its subgraph stops it;
//! `backoff` runs the flaky graph and waits to be killed during the delay before its third
//! attempt. Started without them, it fails.

#[path = "../control.rs"]
mod control;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentgraph::prelude::*;
use control::{CHILD_DIR, CHILD_ROLE, Order, config, flaky, graph};
use futures_util::StreamExt;

fn main() -> ExitCode {
    let (Some(dir), Ok(role)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_ROLE)) else {
        eprintln!(
            "control_child: the first process of the tests of tests/control_processes.rs \
             (agentgraph-process-tests), which start it with {CHILD_DIR} and {CHILD_ROLE} set; \
             run those tests instead"
        );
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.join("db")).unwrap());
        match role.as_str() {
            "subgraph" => {
                let input = Order {
                    item: "a chair".into(),
                    log: Vec::new(),
                };
                match graph(&dir).run_with(input, config(&store)).await {
                    Err(Error::Interrupted(_)) => {}
                    other => panic!("expected the run to stop at the interrupt: {other:?}"),
                }
            }
            "backoff" => {
                let run = flaky(&dir).run_with(Order::default(), config(&store));
                let mut events = run.events();
                let handle = run.spawn();
                while let Some(e) = events.next().await {
                    // Emitted once the retry is durable: tell the parent, which kills us.
                    if let EventKind::RetryScheduled { attempt: 3, .. } = e.unwrap().kind {
                        std::fs::write(dir.join("retry-3-scheduled"), b"").unwrap();
                    }
                }
                panic!("the run should have been killed: {:?}", handle.await);
            }
            other => panic!("unknown role {other}"),
        }
    });
    ExitCode::SUCCESS
}
