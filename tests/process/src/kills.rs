//! What the crash tests share: the seeded draws of their kill instants, their settings from
//! the environment, a child process with the lines it prints, and copies of a killed child's
//! store directory.

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;

/// The kill instants of one test, drawn from its seed (printed, so a failure replays).
pub struct Draws(ChaCha8Rng);

impl Draws {
    pub fn new(seed: u64) -> Self {
        Draws(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A number below `n` (at least 1).
    pub fn below(&mut self, n: u64) -> u64 {
        Uniform::new(0, n)
            .expect("a non-empty range")
            .sample(&mut self.0)
    }
}

/// The whole number in the environment variable `name`, if it is set.
///
/// # Panics
///
/// When it is set to something else.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number"))
    })
}

/// The seed in the environment variable `name` (to replay a printed one), else one drawn from
/// the clock and the process id.
pub fn seed(name: &str) -> u64 {
    env_u64(name).unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    })
}

/// Copies the directory `from` (a store's) to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// sled itself (without the store's own recovery) opening a copy of the sled store in `dir`,
/// which leaves the store as it was; the copy lives as long as the returned directory.
pub fn raw_sled_copy(dir: &Path) -> (tempfile::TempDir, sled::Result<sled::Db>) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    let db = sled::Config::new().path(copy.path()).open();
    (copy, db)
}

/// A child process and the lines it prints, each with when it arrived. Dropping it kills the
/// child (if it still runs) and reaps it.
pub struct Running {
    pub child: Child,
    pub lines: mpsc::Receiver<(String, Instant)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary `exe` with `var` naming the directory `dir` (its store), its standard
/// output read line by line on a thread of its own.
pub fn spawn_child(exe: &str, var: &str, dir: &Path) -> Running {
    let mut child = Command::new(exe)
        .env(var, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send((line, Instant::now())).is_err() {
                return;
            }
        }
    });
    Running { child, lines }
}
