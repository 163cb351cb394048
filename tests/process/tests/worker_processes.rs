//! Workers as real processes (`worker_child`) sharing runs through one PostgreSQL: a worker
//! killed with SIGKILL mid-run has the run resumed by another after the claim's TTL, running
//! only the unfinished task again; a worker paused with SIGSTOP past its lease wakes up
//! (SIGCONT) to have its next write refused as fenced, and the run's result is the other
//! worker's.
//!
//! They need a PostgreSQL server: `AGENTGRAPH_TEST_POSTGRES_URL` (scripts/test starts one).

#[path = "../src/kills.rs"]
mod kills;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgraph::postgres::worker::{JobInfo, Queue};
use agentgraph::postgres::{PostgresOptions, PostgresStore};
use serde_json::json;

const URL_VAR: &str = "AGENTGRAPH_TEST_POSTGRES_URL";

fn url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{URL_VAR} is not set: the worker process tests need a PostgreSQL server. Run them \
             with ./scripts/test (which starts one), or start one with `scripts/postgres start DIR` \
             and export {URL_VAR}=<the URL it prints>"
        )
    })
}

fn fresh_schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("p_{name}_{}_{nanos}", std::process::id())
}

async fn queue(schema: &str) -> Queue {
    let options = PostgresOptions::new(&url())
        .unwrap()
        .with_schema(schema)
        .unwrap();
    Queue::new(&PostgresStore::connect_with(options).await.unwrap())
}

/// A worker process, its standard output's lines gathered as they come.
struct WorkerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WorkerChild {
    fn start(schema: &str, id: &str, ttl_ms: u64, effects: &Path, pause_ms: u64) -> WorkerChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_worker_child"))
            .args([&url(), schema, id, &ttl_ms.to_string()])
            .arg(effects)
            .arg(pause_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start worker_child");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let gathered = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                gathered.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take();
        let w = WorkerChild {
            child,
            stdin,
            lines,
        };
        w.wait_line("ready");
        w
    }

    fn has_line(&self, line: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l == line)
    }

    fn wait_line(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.has_line(line) {
            assert!(
                Instant::now() < deadline,
                "the worker printed no `{line}` within 30 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Closes its standard input: it shuts down gracefully and exits 0.
    fn stop(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the worker exits cleanly: {status}");
    }
}

impl Drop for WorkerChild {
    fn drop(&mut self) {
        // Never left running (a test that failed half-way included).
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The effects file's lines, counted.
fn effects(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

fn wait_effects(path: &Path, what: &str, done: impl Fn(&HashMap<String, usize>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&effects(path)) {
        assert!(
            Instant::now() < deadline,
            "no {what} within 30 s: {:?}",
            effects(path)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many times `node`'s tasks started.
fn started(counts: &HashMap<String, usize>, node: &str) -> usize {
    counts
        .iter()
        .filter(|(l, _)| l.starts_with("start ") && l.split(' ').nth(2) == Some(node))
        .map(|(_, n)| n)
        .sum()
}

async fn wait_job(queue: &Queue, run: &str, status: &str) -> JobInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = queue.job(run).await.unwrap();
        if let Some(job) = job.as_ref().filter(|j| j.status == status) {
            return job.clone();
        }
        assert!(
            Instant::now() < deadline,
            "run {run} not {status} within 60 s: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every task finished exactly once: each `done` line once, and as many as `tasks`.
fn assert_done_once(counts: &HashMap<String, usize>, tasks: usize) {
    let done: Vec<_> = counts
        .iter()
        .filter(|(l, _)| l.starts_with("done "))
        .collect();
    assert_eq!(done.len(), tasks, "every task finished: {counts:?}");
    assert!(
        done.iter().all(|(_, n)| **n == 1),
        "no task finished twice: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_run_is_resumed_by_another_running_only_the_unfinished_task() {
    let schema = fresh_schema("kill");
    let dir = tempfile::tempdir().unwrap();
    let effects_file = dir.path().join("effects");
    let queue = queue(&schema).await;
    let run = queue.submit("chain", json!({})).await.unwrap();

    let first = WorkerChild::start(&schema, "first", 1_000, &effects_file, 300);
    // s1 and s2 finished (and, durability Sync, were committed before s3 started): kill the
    // worker while s3 runs.
    wait_effects(&effects_file, "start of s3", |c| started(c, "s3") > 0);
    first.signal("-KILL");
    drop(first);
    let killed_at = Instant::now();

    let second = WorkerChild::start(&schema, "second", 1_000, &effects_file, 300);
    let job = wait_job(&queue, &run, "done").await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(500),
        "taken over after the claim's TTL"
    );
    assert_eq!(job.worker.as_deref(), Some("second"));
    assert_eq!(
        job.attempts, 2,
        "claimed by the killed worker, then by the second"
    );
    assert_eq!(
        job.output.unwrap()["notes"],
        json!(["s1", "s2", "s3", "s4", "s5"])
    );
    let counts = effects(&effects_file);
    assert_done_once(&counts, 5);
    let starts: Vec<usize> = ["s1", "s2", "s3", "s4", "s5"]
        .iter()
        .map(|n| started(&counts, n))
        .collect();
    assert_eq!(
        starts,
        [1, 1, 2, 1, 1],
        "only the killed task ran again: {counts:?}"
    );
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_is_fenced_and_the_run_is_the_other_workers() {
    let schema = fresh_schema("stop");
    let dir = tempfile::tempdir().unwrap();
    let effects_file = dir.path().join("effects");
    let queue = queue(&schema).await;
    let run = queue.submit("chain", json!({})).await.unwrap();

    let paused = WorkerChild::start(&schema, "paused", 600, &effects_file, 400);
    wait_effects(&effects_file, "start of s2", |c| started(c, "s2") > 0);
    paused.signal("-STOP");
    // Past its lease (and its claim): another worker takes the run over and finishes it.
    std::thread::sleep(Duration::from_millis(800));
    let other = WorkerChild::start(&schema, "other", 600, &effects_file, 400);
    let job = wait_job(&queue, &run, "done").await;
    assert_eq!(job.worker.as_deref(), Some("other"));
    let result = job.output.clone().unwrap();
    assert_eq!(result["notes"], json!(["s1", "s2", "s3", "s4", "s5"]));

    // The paused worker wakes up: its s2 finishes, and its step's write is refused.
    paused.signal("-CONT");
    paused.wait_line("fenced");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = queue.job(&run).await.unwrap().unwrap();
    assert_eq!(
        (after.status.as_str(), after.worker.as_deref()),
        ("done", Some("other"))
    );
    assert_eq!(
        after.output.unwrap(),
        result,
        "the run's result is the other worker's"
    );
    let counts = effects(&effects_file);
    assert_eq!(
        started(&counts, "s3"),
        1,
        "the fenced worker never got past s2: {counts:?}"
    );
    paused.stop();
    other.stop();
}

/// The torture test, scaled for CI: 3 worker processes on one PostgreSQL, 200 runs of a graph
/// with parallel branches and a retried node (its backoff scheduled in the database: the job
/// is put back in the queue until the retry is due), a random worker SIGKILLed every 150 to 400 ms
/// and replaced at once. Every run completes with the state of an uninterrupted run; a task
/// finishes twice only when a kill cut it between its end and its step's commit (at most the
/// tasks a worker runs at once, per kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_lose_no_run_and_no_acknowledged_task() {
    use rand::distr::{Distribution, Uniform};
    use rand::{RngExt, SeedableRng};

    const RUNS: usize = 200;
    // What a kill can cut between a task's end and its step's commit: 4 runs at once per
    // worker, 3 parallel tasks per step.
    const CUT_PER_KILL: usize = 4 * 3;
    let seed = kills::seed("AGENTGRAPH_TORTURE_SEED");
    eprintln!("torture seed {seed} (AGENTGRAPH_TORTURE_SEED to replay the kill schedule)");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let schema = fresh_schema("torture");
    let dir = tempfile::tempdir().unwrap();
    let effects_file = dir.path().join("effects");
    let queue = queue(&schema).await;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let run = format!("t-{i}");
        queue.submit_with_id("fan", &run, json!({})).await.unwrap();
        runs.push(run);
    }
    let start = |n: usize| WorkerChild::start(&schema, &format!("w{n}"), 500, &effects_file, 30);
    let mut started = 3;
    let mut workers: Vec<WorkerChild> = (0..3).map(start).collect();
    let pause = Uniform::new(150u64, 400).unwrap();
    let deadline = Instant::now() + Duration::from_secs(50);
    let mut kills = 0;
    loop {
        let mut done = 0;
        for run in &runs {
            if queue
                .job(run)
                .await
                .unwrap()
                .is_some_and(|j| j.status == "done")
            {
                done += 1;
            }
        }
        if done == RUNS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {RUNS} runs done within 50 s (seed {seed})"
        );
        tokio::time::sleep(Duration::from_millis(pause.sample(&mut rng))).await;
        let victim = rng.random_range(0..workers.len());
        let killed = workers.swap_remove(victim);
        killed.signal("-KILL");
        drop(killed);
        kills += 1;
        workers.push(start(started));
        started += 1;
    }
    for w in workers {
        w.stop();
    }
    let expected = json!(["a", "b1", "b2", "b3", "c"]);
    for run in &runs {
        let job = queue.job(run).await.unwrap().unwrap();
        // `b2`'s retry went through the database: the job was put back in the queue until
        // it was due, and claimed again.
        assert!(job.attempts >= 2, "run {run}: {job:?} (seed {seed})");
        let notes = job.output.unwrap()["notes"].clone();
        let mut sorted: Vec<String> = serde_json::from_value(notes.clone()).unwrap();
        sorted.sort();
        assert_eq!(json!(sorted), expected, "run {run}: {notes} (seed {seed})");
    }
    let counts = effects(&effects_file);
    let done: Vec<_> = counts
        .iter()
        .filter(|(l, _)| l.starts_with("done "))
        .collect();
    assert_eq!(done.len(), RUNS * 5, "every task finished (seed {seed})");
    let twice = done.iter().filter(|(_, n)| **n > 1).count();
    assert!(
        kills >= 3,
        "the workers were killed {kills} times only (seed {seed})"
    );
    assert!(
        twice <= kills * CUT_PER_KILL,
        "{twice} tasks finished twice with {kills} kills (seed {seed}): {:?}",
        done.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    eprintln!(
        "torture: {RUNS} runs, {kills} kills, {twice} tasks cut between their end and their commit"
    );
}

/// A rolling restart: a second process with the same worker id starts, the first shuts down
/// gracefully (its runs finish), and no run is stranded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_with_one_worker_id_strands_no_run() {
    let schema = fresh_schema("rolling");
    let dir = tempfile::tempdir().unwrap();
    let effects_file = dir.path().join("effects");
    let queue = queue(&schema).await;
    let mut runs = Vec::new();
    for i in 0..20 {
        let run = format!("r-{i}");
        queue
            .submit_with_id("chain", &run, json!({}))
            .await
            .unwrap();
        runs.push(run);
    }
    let old = WorkerChild::start(&schema, "same", 1_000, &effects_file, 50);
    wait_effects(&effects_file, "a first task", |c| !c.is_empty());
    let new = WorkerChild::start(&schema, "same", 1_000, &effects_file, 50);
    old.stop();
    for run in &runs {
        let job = wait_job(&queue, run, "done").await;
        assert_eq!(
            job.output.unwrap()["notes"],
            json!(["s1", "s2", "s3", "s4", "s5"])
        );
    }
    assert_done_once(&effects(&effects_file), 20 * 5);
    new.stop();
}

/// A thread's input given by a worker killed mid-invocation: the next worker resumes the
/// invocation (the input is not given twice), running only the killed task again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_thread_invocation_is_resumed_not_given_again() {
    let schema = fresh_schema("thread_kill");
    let dir = tempfile::tempdir().unwrap();
    let effects_file = dir.path().join("effects");
    let queue = queue(&schema).await;
    queue
        .submit_thread("chain", "th-1", json!({ "notes": ["input"] }))
        .await
        .unwrap();
    let first = WorkerChild::start(&schema, "first", 1_000, &effects_file, 300);
    wait_effects(&effects_file, "start of s3", |c| started(c, "s3") > 0);
    first.signal("-KILL");
    drop(first);
    let second = WorkerChild::start(&schema, "second", 1_000, &effects_file, 300);
    let job = wait_job(&queue, "th-1", "done").await;
    assert_eq!((job.worker.as_deref(), job.attempts), (Some("second"), 2));
    assert_eq!(
        job.output.unwrap()["notes"],
        json!(["input", "s1", "s2", "s3", "s4", "s5"])
    );
    let counts = effects(&effects_file);
    assert_done_once(&counts, 5);
    assert_eq!(started(&counts, "s3"), 2, "{counts:?}");
    assert_eq!(started(&counts, "s2"), 1, "{counts:?}");
    second.stop();
}

/// A tenant capped at one job in flight, its place held by a worker that is SIGKILLed: the
/// tenant's other job waits `queued` (held by the cap) while the killed worker's claim lasts,
/// and the place frees when the claim expires: another worker runs both runs, one after the
/// other (their tasks never interleave), resuming the killed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_place_under_its_tenants_cap_frees_when_its_claim_expires() {
    use agentgraph::store::TenantId;

    let schema = fresh_schema("cap_kill");
    let dir = tempfile::tempdir().unwrap();
    let effects_file = dir.path().join("effects");
    let all = queue(&schema).await;
    let tenant = TenantId::new("acme").unwrap();
    all.set_tenant_limit(&tenant, 1).await.unwrap();
    let acme = all.clone().tenant(tenant.clone());
    acme.submit_with_id("chain", "cap-a", json!({}))
        .await
        .unwrap();
    acme.submit_with_id("chain", "cap-b", json!({}))
        .await
        .unwrap();

    // The first worker could run 4 jobs at once: it runs one of acme's.
    let first = WorkerChild::start(&schema, "first", 1_000, &effects_file, 300);
    wait_effects(&effects_file, "start of s3", |c| started(c, "s3") > 0);
    let held = acme.job("cap-b").await.unwrap().unwrap();
    assert_eq!((held.status.as_str(), held.attempts), ("queued", 0));
    assert!(held.held_by_tenant_cap, "{held:?}");
    first.signal("-KILL");
    drop(first);

    let second = WorkerChild::start(&schema, "second", 1_000, &effects_file, 300);
    let a = wait_job(&acme, "cap-a", "done").await;
    let b = wait_job(&acme, "cap-b", "done").await;
    assert_eq!((a.worker.as_deref(), a.attempts), (Some("second"), 2));
    assert_eq!((b.worker.as_deref(), b.attempts), (Some("second"), 1));
    let notes = json!(["s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(
        (
            a.output.unwrap()["notes"].clone(),
            b.output.unwrap()["notes"].clone()
        ),
        (notes.clone(), notes)
    );
    // One run at a time: the effects file's lines, by run, in blocks: `cap-a` until the kill,
    // then `cap-b` whole and the rest of `cap-a` (or `cap-a`'s rest first).
    let text = std::fs::read_to_string(&effects_file).unwrap();
    let mut blocks: Vec<&str> = Vec::new();
    for run in text.lines().filter_map(|l| l.split(' ').nth(1)) {
        if blocks.last() != Some(&run) {
            blocks.push(run);
        }
    }
    assert!(
        blocks == ["cap-a", "cap-b", "cap-a"] || blocks == ["cap-a", "cap-b"],
        "acme's runs ran one at a time: {text}"
    );
    let limit = all.tenant_limit(&tenant).await.unwrap().unwrap();
    assert_eq!((limit.in_flight, limit.queued), (0, 0));
    second.stop();
}
