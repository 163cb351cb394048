//! The child process of the crash test `kills_while_the_store_opens_never_leave_it_unopenable`
//! (`tests/sled_snapshot.rs`), which starts it with `AGENTGRAPH_SNAPSHOT_CHILD_DIR` set: it
//! opens the sled store there, then writes and flushes one checkpoint after another, saying so
//! on its standard output, until it is killed. Started without it, it fails.

#[path = "../sled_snapshot.rs"]
mod sled_snapshot;

use std::io::Write;
use std::process::ExitCode;

use agentgraph::store::{CheckpointStore, SledStore};
use sled_snapshot::{ACKED, CHILD_DIR, OPEN, OPENING, RUN, block_on, write_steps};

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        eprintln!(
            "sled_snapshot_child: the child process of the test \
             `kills_while_the_store_opens_never_leave_it_unopenable` (tests/sled_snapshot.rs of \
             agentgraph-process-tests), which starts it with {CHILD_DIR} set; run that test instead"
        );
        return ExitCode::from(2);
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{OPENING}").unwrap();
    out.flush().unwrap();
    let store = SledStore::open(&dir).unwrap_or_else(|e| panic!("the store does not open: {e}"));
    writeln!(out, "{OPEN}").unwrap();
    out.flush().unwrap();
    let next = block_on(store.latest_checkpoint(RUN))
        .unwrap()
        .map_or(0, |(step, _)| step + 1);
    for step in next.. {
        write_steps(&store, step..step + 1);
        writeln!(out, "{ACKED}{step}").unwrap();
        out.flush().unwrap();
    }
    unreachable!("the child writes until its test kills it")
}
