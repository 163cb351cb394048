//! The child process of the crash test `sigkill_at_random_instants_loses_no_acknowledged_step`
//! (`tests/crash_sigkill.rs`), which starts it with `AGENTGRAPH_CRASH_CHILD_DIR` and
//! `AGENTGRAPH_CRASH_CHILD_ID` set and the store's kind (`sled`, the default, or `redb`) as
//! its argument: it runs or resumes the run in the store in `$AGENTGRAPH_CRASH_CHILD_DIR`
//! (`store` for sled, `store.redb` for redb), and appends the step of every `CheckpointSaved`
//! event to `acked-<id>.log`. Started without them, it fails.

#[path = "../crash.rs"]
mod crash;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use agentgraph::prelude::*;
use crash::{CHILD_DIR, CHILD_ID, Effects, RUN, Tally, config, graph, open_store};
use futures_util::StreamExt;

fn main() -> ExitCode {
    let (Some(dir), Ok(id)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_ID)) else {
        eprintln!(
            "crash_child: the child process of the test \
             `sigkill_at_random_instants_loses_no_acknowledged_step` (tests/crash_sigkill.rs of \
             agentgraph-process-tests), which starts it with {CHILD_DIR} and {CHILD_ID} set; \
             run that test instead"
        );
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let kind = std::env::args().nth(1).unwrap_or_else(|| "sled".to_owned());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(&dir, &id, &kind));
    ExitCode::SUCCESS
}

async fn child(dir: &Path, id: &str, kind: &str) {
    let store = open_store(dir, kind).unwrap_or_else(|e| panic!("{e}"));
    let graph = graph(Effects::File(Arc::new(
        dir.join(format!("effects-{id}.log")),
    )));
    let started = store.get_run(RUN).await.expect("read the run record");
    let run = match started {
        Some(_) => graph.resume(RUN, config(&store)),
        None => graph.run_with(Tally::default(), config(&store)),
    };
    let mut events = run.events();
    let acked = dir.join(format!("acked-{id}.log"));
    let acks = tokio::spawn(async move {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(acked)
            .expect("open the acknowledgement log");
        while let Some(event) = events.next().await {
            // A missed event only makes the acknowledgements a lower bound.
            if let Ok(Event {
                kind: EventKind::CheckpointSaved { step, .. },
                ..
            }) = event
            {
                log.write_all(format!("{step}\n").as_bytes())
                    .expect("append to the acknowledgement log");
            }
        }
    });
    run.await.expect("the run finishes");
    acks.await.unwrap();
}
