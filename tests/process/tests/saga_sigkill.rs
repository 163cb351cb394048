//! A saga across a SIGKILL during its compensations. A child process (the binary `saga_child`
//! of this package) runs, on sled with `Durability::Sync`, `book -> reserve -> pay` where `pay`
//! fails for good: the run compensates `reserve` (`release`) then `book` (`unbook`). One
//! compensation hangs on its first attempt, and the parent kills the child with SIGKILL while
//! it hangs; a new child resumes the run. Then:
//!
//! - every compensation's side effect happened exactly once, and so did every forward step
//!   (a compensation that finished before the kill did not run again; the one that was killed
//!   ran again, once); the state holds each compensation's update once, in reverse order;
//! - the run ended `Failed`, compensated, and a third child that resumes it runs nothing.
//!
//! Once with the kill in the first compensation (right after the failure was checkpointed),
//! once in the second (after the first was checkpointed).

#[path = "../src/saga.rs"]
mod saga;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use agentgraph_checkpoint::RunStatus;
use saga::{CHILD_DIR, HANG, Ledger, RUN, graph, lines};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn spawn_child(dir: &Path, hang: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_saga_child"));
    command
        .env(CHILD_DIR, dir)
        .env_remove(HANG)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(hang) = hang {
        command.env(HANG, hang);
    }
    command.spawn().expect("start the child")
}

/// Waits until `ready()` or the child ends (a failure: it should not).
fn wait_until(child: &mut Child, ready: impl Fn() -> bool, what: &str) {
    let started = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended ({status}) before {what}");
        }
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child took too long to reach {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run_to_end(dir: &Path) {
    let mut child = spawn_child(dir, None);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the child failed: {status}");
            return;
        }
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child took too long");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
}

async fn stored(dir: &Path) -> (RunStatus, Option<String>, Ledger) {
    let store: Arc<dyn CheckpointStore> =
        Arc::new(SledStore::open(dir.join("store")).expect("sled opens after the children"));
    let history = graph(dir, None).history(store);
    let record = history.run(RUN).await.unwrap().expect("the run is stored");
    let state = history.state(RUN, None).await.unwrap();
    (record.status, record.error, state)
}

fn kill_during(hang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // The first child fails at `pay`, compensates, and hangs in `hang`: killed there.
    let mut child = spawn_child(dir, Some(hang));
    wait_until(
        &mut child,
        || dir.join("hanging").exists(),
        &format!("`{hang}` hangs"),
    );
    child.kill().expect("kill the child");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    let effects = lines(dir, "effects.log");
    assert_eq!(
        count(&effects, hang),
        0,
        "`{hang}` was killed before its effect"
    );
    assert!(lines(dir, "outcome.log").is_empty());

    // The second child resumes: the compensations still to run, each once.
    run_to_end(dir);
    let effects = lines(dir, "effects.log");
    for (line, n) in [
        ("book", 1),
        ("reserve", 1),
        ("pay failed", 2),
        ("release", 1),
        ("unbook", 1),
    ] {
        assert_eq!(count(&effects, line), n, "{hang}: `{line}` in {effects:?}");
    }
    let started = lines(dir, "started.log");
    assert_eq!(
        count(&started, hang),
        2,
        "the killed compensation ran again, once"
    );
    let other = if hang == "release" {
        "unbook"
    } else {
        "release"
    };
    assert_eq!(count(&started, other), 1, "the other one ran once");
    assert_eq!(
        lines(dir, "outcome.log"),
        ["compensated reserve,book (cause stored)"]
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (status, error, state) = runtime.block_on(stored(dir));
    assert_eq!(status, RunStatus::Failed);
    let error = error.expect("the error is stored");
    assert!(
        error.contains("node `pay` failed") && error.contains("undid reserve, book"),
        "{error}"
    );
    assert_eq!(
        state.log,
        ["book", "reserve", "release reserve", "unbook book"],
        "each compensation's update merged once, in reverse order"
    );

    // A third child finds nothing to do.
    run_to_end(dir);
    assert_eq!(lines(dir, "effects.log"), effects, "nothing ran again");
    assert_eq!(lines(dir, "started.log"), started);
    assert_eq!(
        lines(dir, "outcome.log")[1],
        "compensated reserve,book (cause stored)"
    );
    let (status, _, again) = runtime.block_on(stored(dir));
    assert_eq!((status, again), (RunStatus::Failed, state));
}

#[test]
fn a_sigkill_during_compensation_runs_each_once() {
    kill_during("release");
    kill_during("unbook");
}
