//! The child process of the saga crash test `a_sigkill_during_compensation_runs_each_once`
//! (`tests/saga_sigkill.rs`), which starts it with `AGENTGRAPH_SAGA_CHILD_DIR` set (and
//! `AGENTGRAPH_SAGA_HANG` for the child it kills): it runs or resumes the run in
//! `$AGENTGRAPH_SAGA_CHILD_DIR/store`, and writes how it ended to `outcome.log`. Started
//! without them, it fails.

#[path = "../saga.rs"]
mod saga;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use agentgraph::prelude::*;
use saga::{CHILD_DIR, HANG, Ledger, RUN, append, config, graph};

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        eprintln!(
            "saga_child: the child process of the test \
             `a_sigkill_during_compensation_runs_each_once` (tests/saga_sigkill.rs of \
             agentgraph-process-tests), which starts it with {CHILD_DIR} set; run that test \
             instead"
        );
        return ExitCode::from(2);
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(Path::new(&dir)));
    ExitCode::SUCCESS
}

async fn child(dir: &Path) {
    let store = SledStore::open(dir.join("store"))
        .unwrap_or_else(|e| panic!("sled does not open after a SIGKILL: {e}"));
    let store: Arc<dyn CheckpointStore> = Arc::new(store);
    let graph = graph(dir, std::env::var(HANG).ok());
    let started = store.get_run(RUN).await.expect("read the run record");
    let result = match started {
        Some(_) => graph.resume(RUN, config(&store)).await,
        None => graph.run_with(Ledger::default(), config(&store)).await,
    };
    let line = match result {
        Err(Error::Compensated {
            compensated, cause, ..
        }) => format!(
            "compensated {} (cause {})",
            compensated.join(","),
            if cause.is_some() { "seen" } else { "stored" }
        ),
        other => format!("unexpected {:?}", other.map(|s| s.log)),
    };
    append(dir, "outcome.log", &line);
}
