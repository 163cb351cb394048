//! The child process of the memory crash test (`tests/memory_sigkill.rs`), which starts it
//! with `AGENTGRAPH_MEMORY_CHILD_DIR` and `AGENTGRAPH_MEMORY_CHILD_KIND` set: it runs or
//! resumes the run in that directory's store, and writes `done` there when the run completed.
//! Started without them, it fails.

#[path = "../memory.rs"]
mod memory;

use std::path::Path;
use std::process::ExitCode;

use memory::{CHILD_DIR, KIND, RUN, Trail, config, graph, open};

fn main() -> ExitCode {
    let (Some(dir), Ok(kind)) = (std::env::var_os(CHILD_DIR), std::env::var(KIND)) else {
        eprintln!(
            "memory_child: the child process of tests/memory_sigkill.rs of \
             agentgraph-process-tests, which starts it with {CHILD_DIR} and {KIND} set; run \
             that test instead"
        );
        return ExitCode::from(2);
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(Path::new(&dir), &kind));
    ExitCode::SUCCESS
}

async fn child(dir: &Path, kind: &str) {
    let store = open(dir, kind);
    let graph = graph();
    let started = store.get_run(RUN).await.expect("read the run record");
    let result = match started {
        Some(_) => graph.resume(RUN, config(&store)).await,
        None => graph.run_with(Trail::default(), config(&store)).await,
    };
    result.expect("the run completes");
    drop(store);
    std::fs::write(dir.join("done"), b"done").unwrap();
}
