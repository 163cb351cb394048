//! Memory writes committed exactly with their step, across SIGKILLs. A child process (the
//! binary `memory_child` of this package) runs, on sled and on redb with `Durability::Sync`,
//! levels of two parallel writers and their join; every run of a node adds 1 to a memory
//! counter (read, then write) and puts an item under a key of its own. The parent kills the
//! child with SIGKILL at random instants (some mid-step, after one writer finished and its
//! pending write, with its memory writes, was stored) and starts it again, until the run
//! completes. Then the counter equals the number of nodes of an uninterrupted run and there is
//! exactly one item per node: no memory write was lost, none was applied twice, and no node
//! whose write was committed ran again.
//!
//! `AGENTGRAPH_MEMORY_CRASH_SEED=<n>` replays the kill instants of a printed seed.

#[path = "../src/kills.rs"]
mod kills;
#[path = "../src/memory.rs"]
mod memory;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kills::Draws;
use memory::{CHILD_DIR, KIND, LEVELS, NODES, RUN, graph, open, space};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn spawn_child(dir: &Path, kind: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_memory_child"))
        .env(CHILD_DIR, dir)
        .env(KIND, kind)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child")
}

fn crash_test(kind: &str) {
    let seed = kills::seed("AGENTGRAPH_MEMORY_CRASH_SEED");
    eprintln!("memory crash test on {kind}: AGENTGRAPH_MEMORY_CRASH_SEED={seed}");
    let mut draws = Draws::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut kills = 0;
    let started = Instant::now();
    loop {
        let mut child = spawn_child(dir, kind);
        // A kill between 10 and 150 ms into the child (a run takes about 200 ms).
        let at = Duration::from_millis(10 + draws.below(140));
        let spawned = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if spawned.elapsed() >= at && kills < 12 {
                child.kill().expect("kill the child");
                let status = child.wait().unwrap();
                assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
                kills += 1;
                break None;
            }
            assert!(
                started.elapsed() < CHILD_TIMEOUT * 4,
                "the run did not complete (seed {seed})"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        if let Some(status) = status {
            assert!(status.success(), "the child failed: {status} (seed {seed})");
            assert!(dir.join("done").exists());
            break;
        }
    }
    eprintln!("{kills} kills");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = open(dir, kind);
        let items = store.scan_items(&space()).await.unwrap();
        let totals: Vec<Option<u64>> = ["total-a", "total-b", "total-j"]
            .iter()
            .map(|k| {
                items
                    .iter()
                    .find(|i| i.key == *k)
                    .and_then(|i| i.value.as_u64())
            })
            .collect();
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for item in items.iter().filter(|i| i.key.starts_with("run-")) {
            let node = item.key.split('-').nth(1).unwrap().to_owned();
            *per_node.entry(node).or_default() += 1;
        }
        assert_eq!(
            totals,
            [Some(LEVELS as u64); 3],
            "each branch's counter moved once per level (seed {seed}, {kills} kills)"
        );
        assert_eq!(
            per_node.len(),
            NODES,
            "every node's write is there (seed {seed})"
        );
        assert!(
            per_node.values().all(|&n| n == 1),
            "each node's write is there once: {per_node:?} (seed {seed})"
        );
        let state = graph().history(store).state(RUN, None).await.unwrap();
        let mut log = state.log.clone();
        log.sort();
        log.dedup();
        assert_eq!(state.log.len(), NODES, "every node updated the state once");
        assert_eq!(log.len(), NODES);
    });
}

#[test]
fn sigkill_mid_run_commits_each_memory_write_exactly_once() {
    crash_test("sled");
}

#[test]
fn sigkill_mid_run_commits_each_memory_write_exactly_once_on_redb() {
    crash_test("redb");
}
