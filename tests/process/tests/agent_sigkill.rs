//! The tool-calling agent killed with SIGKILL, twice, in a real child process (`agent_child`)
//! on a sled store, against the scripted OpenAI-compatible server of the node library's tests:
//! first while the third of three parallel tool calls runs (the first two finished), then
//! while the model streams its final answer. Each resume re-runs only what had not finished:
//! the finished tool calls never run again, the killed one runs once more, and the model is
//! asked again only for the answer whose stream was cut.

#[path = "../src/agent.rs"]
mod agent;
#[path = "../../../nodes/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::{BASE_URL, CHILD_DIR, HANG_ON, lines};
use serde_json::Value;
use support::{Reply, Scripted, finish_chunk, text_chunk, tool_chunk};

fn child(dir: &Path, base_url: &str, arg: &str, hang_on: Option<&str>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent_child"));
    c.arg(arg)
        .env(CHILD_DIR, dir)
        .env(BASE_URL, base_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = hang_on {
        c.env(HANG_ON, key);
    }
    c.spawn().expect("start agent_child")
}

/// Waits until `done` holds, or the child ends (a failure), for up to a minute.
fn wait_until(child: &mut Child, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).ok();
            }
            panic!("the child ended ({status}) before {what}: {err}");
        }
        assert!(Instant::now() < deadline, "no {what} within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(mut child: Child) {
    child.kill().expect("SIGKILL the child");
    assert!(!child.wait().unwrap().success(), "the child was killed");
}

fn count(log: &[String], line: &str) -> usize {
    log.iter().filter(|l| *l == line).count()
}

/// A streamed answer calling `lookup` for each key.
fn lookups(keys: &[&str]) -> Reply {
    let mut chunks: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let args = serde_json::json!({ "key": k }).to_string();
            tool_chunk(i as u32, Some(&format!("call-{k}")), Some("lookup"), &args)
        })
        .collect();
    chunks.push(finish_chunk("tool_calls"));
    Reply::sse(chunks)
}

/// The final answer, streamed word by word, `pause` apart.
fn answer(pause: Duration) -> Reply {
    let words = ["a", "b", "and", "c", "are", "looked", "up"];
    let mut chunks: Vec<Value> = words.iter().map(|w| text_chunk(&format!("{w} "))).collect();
    chunks.push(finish_chunk("stop"));
    Reply::sse(chunks).paced(pause)
}

#[test]
fn a_killed_agent_resumes_without_repeating_finished_tool_calls() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // 1: three tool calls; 2: the final answer, slowly (the second kill lands in it); 3: the
    // final answer again, for the resume after that kill.
    let server = rt.block_on(Scripted::start([
        lookups(&["a", "b", "c"]),
        answer(Duration::from_millis(400)),
        answer(Duration::ZERO),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let effects = || lines(dir, "effects.log");

    // The first process: `lookup c` hangs once `a` and `b` have finished.
    let mut first = child(dir, &server.base_url, "look up a, b and c", Some("c"));
    wait_until(&mut first, "the three lookups", || {
        let log = effects();
        ["done a", "done b", "start c"]
            .iter()
            .all(|l| count(&log, l) == 1)
    });
    // `a` and `b` returned; their results are written (synced) right after: give that a
    // moment, far longer than it takes.
    std::thread::sleep(Duration::from_millis(500));
    kill(first);
    assert_eq!(server.requests().len(), 1, "one model call so far");

    // The second process resumes: only `c` runs again; then the model streams its answer,
    // and the process is killed in the middle of it.
    let mut second = child(dir, &server.base_url, "--resume", None);
    wait_until(&mut second, "part of the streamed answer", || {
        lines(dir, "tokens.log").len() >= 2
    });
    kill(second);
    let log = effects();
    assert_eq!(count(&log, "start a"), 1, "{log:?}");
    assert_eq!(count(&log, "start b"), 1, "{log:?}");
    assert_eq!(count(&log, "start c"), 2, "{log:?}");
    assert_eq!(count(&log, "done c"), 1, "{log:?}");
    assert_eq!(server.requests().len(), 2, "the answer was asked for once");

    // The third process resumes: the answer is asked for again (its stream was cut), and no
    // tool runs.
    let third = child(dir, &server.base_url, "--resume", None);
    let out = third.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "a b and c are looked up"
    );
    assert_eq!(effects(), log, "no tool ran after the second kill");
    // The call of `c` that ran again kept the killed attempt's idempotency key; each call has
    // its own.
    let keys = lines(dir, "keys.log");
    let key_of = |call: &str| -> Vec<&str> {
        keys.iter()
            .filter_map(|l| l.strip_prefix(call)?.strip_prefix(' '))
            .collect()
    };
    let (a, b, c) = (key_of("a"), key_of("b"), key_of("c"));
    assert_eq!((a.len(), b.len(), c.len()), (1, 1, 2), "{keys:?}");
    assert_eq!(c[0], c[1], "{keys:?}");
    assert!(a[0] != b[0] && b[0] != c[0] && a[0] != c[0], "{keys:?}");
    assert!(!c[0].is_empty());
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one more model call: the cut answer's");
    // The last two calls asked the same thing: the history with the three results.
    assert_eq!(requests[1].body["messages"], requests[2].body["messages"]);
    let messages = requests[2].body["messages"].as_array().unwrap();
    let results: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(results, ["value of a", "value of b", "value of c"]);
    assert_eq!(server.left(), 0);
}
