//! The child process of the crash test `kills_in_the_middle_of_batches_leave_each_whole_or_absent`
//! (`tests/sled_commits.rs`), which starts it with `AGENTGRAPH_COMMITS_CHILD_DIR` set: it opens
//! the sled store there and commits one step's batch after another, flushing every
//! `FLUSH_EVERY` batches and saying so on its standard output, until it is killed. Started
//! without it, it fails.

#[path = "../sled_commits.rs"]
mod sled_commits;

use std::io::Write;
use std::process::ExitCode;

use agentgraph::store::{CheckpointStore, SledStore};
use sled_commits::{ACKED, CHILD_DIR, FLUSH_EVERY, OPEN, batch, block_on, held_step};

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        eprintln!(
            "sled_commits_child: the child process of the test \
             `kills_in_the_middle_of_batches_leave_each_whole_or_absent` (tests/sled_commits.rs \
             of agentgraph-process-tests), which starts it with {CHILD_DIR} set; run that test \
             instead"
        );
        return ExitCode::from(2);
    };
    let store = SledStore::open(&dir).unwrap_or_else(|e| panic!("the store does not open: {e}"));
    let next = held_step(&store)
        .unwrap_or_else(|e| panic!("the store holds no whole batch: {e}"))
        .map_or(0, |step| step + 1);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{OPEN}").unwrap();
    out.flush().unwrap();
    block_on(async {
        for step in next.. {
            store.commit(batch(step)).await.unwrap();
            if step % FLUSH_EVERY == FLUSH_EVERY - 1 {
                store.flush().await.unwrap();
                writeln!(out, "{ACKED}{step}").unwrap();
                out.flush().unwrap();
            }
        }
    });
    unreachable!("the child writes until its test kills it")
}
