//! A group chat killed with SIGKILL in a real child process (`group_chat_child`) on a sled
//! store, against the scripted OpenAI-compatible server of the node library's tests: three
//! personas in round robin for six turns, killed while the fourth turn streams. The resumed
//! chat goes on at the fourth turn: the three finished turns are never asked for again (the
//! server counts the requests per turn), the cut one is asked for once more, and the transcript
//! holds each turn once, in order.

#[path = "../src/agent.rs"]
mod agent;
#[path = "../src/group_chat.rs"]
mod group_chat;
#[path = "../../../nodes/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::lines;
use group_chat::{AGENTS, BASE_URL, CHILD_DIR};
use serde_json::Value;
use support::{Reply, Scripted, finish_chunk, text_chunk};

fn child(dir: &Path, base_url: &str, arg: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_group_chat_child"))
        .arg(arg)
        .env(CHILD_DIR, dir)
        .env(BASE_URL, base_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start group_chat_child")
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

/// A turn's answer streamed word by word, `pause` apart.
fn words(text: &str, pause: Duration) -> Reply {
    let mut chunks: Vec<Value> = text.split_inclusive(' ').map(text_chunk).collect();
    chunks.push(finish_chunk("stop"));
    Reply::sse(chunks).paced(pause)
}

/// The turn a request asks for: its messages are the persona, the topic and one per turn
/// before it.
fn turn_of(request: &Value) -> usize {
    request["messages"].as_array().unwrap().len() - 1
}

#[test]
fn a_killed_group_chat_resumes_at_its_unfinished_turn() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fast = Duration::ZERO;
    let server = rt.block_on(Scripted::start([
        words("It will work.", fast),
        words("It will fail.", fast),
        words("It depends.", fast),
        // Turn 4, slowly: the kill lands in it.
        words(
            "Look at the numbers first, then decide.",
            Duration::from_millis(400),
        ),
        // Turn 4 again, for the resumed chat; then turns 5 and 6.
        words("Here is why it works.", fast),
        words("Here is why it fails.", fast),
        words("So: it depends.", fast),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let mut first = child(dir, &server.base_url, "Will the launch work?");
    wait_until(&mut first, "part of the fourth turn", || {
        lines(dir, "tokens.log").contains(&"optimist Look ".to_owned())
    });
    first.kill().expect("SIGKILL the child");
    assert!(!first.wait().unwrap().success(), "the child was killed");
    assert_eq!(
        server.requests().len(),
        4,
        "three turns and part of a fourth"
    );
    let streamed_before = lines(dir, "tokens.log").len();

    let second = child(dir, &server.base_url, "--resume");
    let out = second.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let transcript: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        transcript,
        [
            "optimist: It will work.",
            "pessimist: It will fail.",
            "realist: It depends.",
            "optimist: Here is why it works.",
            "pessimist: Here is why it fails.",
            "realist: So: it depends.",
        ]
    );

    // The requests per turn: once each, but the fourth (cut by the kill) twice.
    let requests = server.requests();
    let mut per_turn: BTreeMap<usize, usize> = BTreeMap::new();
    for r in &requests {
        *per_turn.entry(turn_of(&r.body)).or_default() += 1;
    }
    assert_eq!(
        per_turn,
        BTreeMap::from([(1, 1), (2, 1), (3, 1), (4, 2), (5, 1), (6, 1)])
    );
    // Each asked the persona whose turn it was; the two asks of turn 4 were the same.
    for r in &requests {
        let persona = r.body["messages"][0]["content"].as_str().unwrap();
        let speaker = AGENTS[(turn_of(&r.body) - 1) % AGENTS.len()];
        assert_eq!(persona, format!("You are the {speaker}."));
    }
    assert_eq!(requests[3].body["messages"], requests[4].body["messages"]);
    assert_eq!(server.left(), 0);

    // The resumed process streamed turns 4 to 6 only.
    let tokens = lines(dir, "tokens.log");
    let again: String = tokens[streamed_before..]
        .iter()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        again,
        "Here is why it works.Here is why it fails.So: it depends."
    );
}
