//! `agentgraph run FILE --watch` as a child process: it runs the file, then runs it again with
//! the same input after each change; an edit that does not validate prints its errors and
//! keeps the last good graph; a save that changes nothing starts nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

fn graph(n: i64, route: &str) -> String {
    format!(
        "version: 1
state:
  - {{ name: n, type: integer, reducer: add }}
  - {{ name: path, type: string }}
nodes:
  - {{ name: inc, kind: set, with: {{ n: {n} }} }}
  - {{ name: small, kind: set, with: {{ path: small }} }}
  - {{ name: big, kind: set, with: {{ path: big }} }}
edges:
  - {{ from: START, to: inc }}
  - {{ from: inc, route: '{route}', targets: [small, big] }}
  - {{ from: small, to: END }}
  - {{ from: big, to: END }}
"
    )
}

/// The child, and its stdout and stderr lines as they come.
struct Watch {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
}

impl Watch {
    fn start(file: &Path) -> Watch {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("agentgraph"))
            .env_remove("AGENTGRAPH_STORE")
            .args(["--json", "run", file.to_str().unwrap(), "--watch"])
            .args(["--input", r#"{"n": 100}"#])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |stream: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()));
        let err = lines(Box::new(child.stderr.take().unwrap()));
        Watch { child, out, err }
    }

    /// The next final state on stdout.
    fn next_state(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.out.recv_timeout(left) else {
                break;
            };
            let value: Value = serde_json::from_str(&line).unwrap_or_default();
            if value["status"] == "completed" {
                return value["state"].clone();
            }
        }
        panic!(
            "no completed run within 60 s; stderr: {:?}",
            self.err.try_iter().collect::<Vec<_>>()
        );
    }

    /// Waits for a stderr line containing `text`.
    fn stderr_line(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.err.recv_timeout(left) else {
                break;
            };
            if line.contains(text) {
                return line;
            }
            seen.push(line);
        }
        panic!("no stderr line with {text:?} within 60 s: {seen:?}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the file as an editor that saves by replacing it would.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_watched_file_runs_again_on_each_valid_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.yaml");
    std::fs::write(&path, graph(1, r#"if n > 150 { "big" } else { "small" }"#)).unwrap();
    let watch = Watch::start(&path);

    let first = watch.next_state();
    assert_eq!(
        (first["n"].as_i64(), first["path"].as_str()),
        (Some(101), Some("small"))
    );
    watch.stderr_line("watching");

    // A change: the next run uses the new graph, with the same input.
    std::thread::sleep(Duration::from_millis(300));
    save(
        &path,
        &graph(70, r#"if n > 150 { "big" } else { "small" }"#),
    );
    let second = watch.next_state();
    assert_eq!(
        (second["n"].as_i64(), second["path"].as_str()),
        (Some(170), Some("big"))
    );
    watch.stderr_line("changed: run 2, on the new graph");

    // An edit that does not validate: its error, and the last good graph kept.
    save(
        &path,
        &graph(70, r#"if m > 150 { "big" } else { "small" }"#),
    );
    let error = watch.stderr_line("which is not a field of the state");
    assert!(error.contains("graph.yaml:11:"), "{error}");
    watch.stderr_line("the last good graph is kept");

    // Fixed: a third run, on the fixed file (the route changed too).
    save(&path, &graph(1, r#"if n > 100 { "big" } else { "small" }"#));
    let third = watch.next_state();
    assert_eq!(
        (third["n"].as_i64(), third["path"].as_str()),
        (Some(101), Some("big"))
    );
    watch.stderr_line("changed: run 3");

    // A save that leaves the text as it was starts nothing; the next real change does.
    save(&path, &graph(1, r#"if n > 100 { "big" } else { "small" }"#));
    std::thread::sleep(Duration::from_millis(800));
    save(&path, &graph(2, r#"if n > 100 { "big" } else { "small" }"#));
    let fourth = watch.next_state();
    assert_eq!(fourth["n"].as_i64(), Some(102));
    watch.stderr_line("changed: run 4");
}

#[test]
fn watch_and_thread_do_not_go_together() {
    let out = Command::new(assert_cmd::cargo::cargo_bin("agentgraph"))
        .args(["run", "g.yaml", "--watch", "--thread", "t1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}
