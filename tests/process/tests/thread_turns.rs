//! A conversation across process restarts: every turn of the thread `conversation` is given by
//! a new child process (`thread_child`) on one sled store, so each invocation starts from the
//! state the last process left. One turn is killed with SIGKILL in the middle: the next input
//! is refused (the killed invocation did not end), a resume finishes the killed turn without
//! running its finished node again, and the conversation goes on.

#[path = "../src/thread.rs"]
mod thread;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use thread::{CHILD_DIR, NOT_READY, THINK_MS, THREAD, effects};

fn child(dir: &Path, arg: &str, think_ms: Option<u64>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thread_child"));
    c.arg(arg)
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ms) = think_ms {
        c.env(THINK_MS, ms.to_string());
    }
    c
}

/// Runs a child to its end; its output.
fn turn(dir: &Path, arg: &str) -> Output {
    child(dir, arg, None).output().expect("start thread_child")
}

/// The messages a child that ended well printed.
fn messages(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "thread_child failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the child prints the messages as JSON")
}

/// Waits until `line` is among the side effects, or the child ends (a failure).
fn wait_for_effect(dir: &Path, line: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !effects(dir).iter().any(|l| l == line) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended ({status}) before `{line}`");
        }
        assert!(Instant::now() < deadline, "no `{line}` within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn expected(turns: &[&str]) -> Vec<String> {
    turns
        .iter()
        .flat_map(|m| [m.to_string(), format!("re: {m}")])
        .collect()
}

#[test]
fn a_conversation_goes_on_across_processes_and_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // Three turns, each in a process of its own.
    for (i, message) in ["one", "two", "three"].into_iter().enumerate() {
        let got = messages(&turn(dir, message));
        assert_eq!(
            got,
            expected(&["one", "two", "three"][..=i]),
            "turn {}",
            i + 1
        );
    }

    // The fourth turn is killed while `think` waits, after it recorded its start.
    let mut fourth = child(dir, "four", Some(60_000)).spawn().unwrap();
    wait_for_effect(dir, "think four", &mut fourth);
    // `think` of turn 4 has started; give its step's start a moment to be durable (the
    // input's checkpoint is written before the step starts).
    fourth.kill().expect("SIGKILL the child");
    let status = fourth.wait().unwrap();
    assert!(!status.success(), "the child was killed");

    // The killed invocation did not end: a new input is refused, and nothing is written.
    let refused = turn(dir, "five");
    assert_eq!(
        refused.status.code(),
        Some(i32::from(NOT_READY)),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("resume it"),
        "the refusal says what to do"
    );

    // A resume finishes turn 4; then turn 5.
    let resumed = messages(&turn(dir, "--resume"));
    assert_eq!(resumed, expected(&["one", "two", "three", "four"]));
    let fifth = messages(&turn(dir, "five"));
    assert_eq!(fifth, expected(&["one", "two", "three", "four", "five"]));

    // Every reply ran once per turn; `think` of turn 4 ran again after the kill (it had not
    // finished), no other node ran twice.
    let log = effects(dir);
    for m in ["one", "two", "three", "four", "five"] {
        let count = |l: &str| log.iter().filter(|e| *e == l).count();
        assert_eq!(count(&format!("reply {m}")), 1, "reply {m}: {log:?}");
        let thinks = count(&format!("think {m}"));
        assert_eq!(
            thinks,
            if m == "four" { 2 } else { 1 },
            "think {m}: {log:?}"
        );
    }

    // The store lists every invocation's checkpoints in order: the input, think, reply.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.join("store")).unwrap());
        let graph = thread::graph(dir.to_path_buf(), None);
        let h = graph.history(store.clone());
        let checkpoints = h.checkpoints(THREAD).await.unwrap();
        let invocations: Vec<u32> = checkpoints.iter().map(|c| c.invocation).collect();
        assert_eq!(
            invocations,
            [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5],
            "{checkpoints:?}"
        );
        // Time travel: the state at the end of turn 1.
        let first = h.state(THREAD, Some(2)).await.unwrap();
        assert_eq!(first.messages, expected(&["one"]));
        assert_eq!(first.turns, 1);
        let record = h.run(THREAD).await.unwrap().unwrap();
        assert_eq!(record.status, agentgraph::inspect::RunStatus::Completed);
    });
}
