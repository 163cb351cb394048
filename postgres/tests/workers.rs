//! Workers sharing runs through the queue, in one process (the process tests kill and pause
//! real worker processes): a submitted run completes, threads take their inputs in turn, an
//! interrupted run is resumed from another store handle, a cancellation reaches the worker,
//! the concurrency caps hold, and two workers never run one job.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use agentgraph::run::{DynResume, GraphRegistry};
use agentgraph::store::RunStatus;
use agentgraph_postgres::PostgresStore;
use agentgraph_postgres::worker::{Queue, Worker};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{spawn, wait_for};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Notes {
    #[reducer(append)]
    notes: Vec<String>,
    #[reducer(add)]
    n: i64,
    approved: bool,
}

type Effects = Arc<Mutex<HashMap<String, u32>>>;

/// `a → b → c`, each appending its name, recording its idempotency key, and holding the
/// number of runs at once in `live` (the most seen in `peak`) for `pause`.
fn chain(
    effects: Effects,
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    pause: Duration,
) -> CompiledGraph<Notes> {
    let mut g = GraphBuilder::<Notes>::new();
    for name in ["a", "b", "c"] {
        let (effects, live, peak) = (effects.clone(), live.clone(), peak.clone());
        g.add_node(name, move |_, ctx: Context| {
            let (effects, live, peak) = (effects.clone(), live.clone(), peak.clone());
            async move {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
                live.fetch_sub(1, Ordering::SeqCst);
                *effects
                    .lock()
                    .unwrap()
                    .entry(ctx.idempotency_key())
                    .or_default() += 1;
                Ok(NotesUpdate::new().notes(vec![name.to_owned()]))
            }
        });
    }
    g.add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    g.compile().unwrap()
}

fn registry(effects: Effects, pause: Duration) -> (GraphRegistry, Arc<AtomicUsize>) {
    let peak = Arc::new(AtomicUsize::new(0));
    let chain = chain(effects, Arc::default(), peak.clone(), pause);

    let mut review = GraphBuilder::<Notes>::new();
    review
        .add_node("review", |_, ctx: Context| async move {
            let ok: bool = ctx.interrupt("approve?")?;
            Ok(NotesUpdate::new().approved(ok))
        })
        .add_edge(START, "review")
        .add_edge("review", END);

    let mut chat = GraphBuilder::<Notes>::new();
    chat.add_node("reply", |s: Arc<Notes>, _| async move {
        let heard = s.notes.last().cloned().unwrap_or_default();
        Ok(NotesUpdate::new().notes(vec![format!("you said {heard}")]))
    })
    .add_edge(START, "reply")
    .add_edge("reply", END);

    let mut ticker = GraphBuilder::<Notes>::new();
    ticker
        .add_node("tick", |_, _| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(NotesUpdate::new().n(1))
        })
        .add_edge(START, "tick")
        .add_conditional_edges("tick", ["tick", END], |s: &Notes| {
            if s.n >= 1_000 { END } else { "tick" }
        });

    let registry = GraphRegistry::new()
        .with("chain", chain)
        .with("review", review.compile().unwrap())
        .with("chat", chat.compile().unwrap())
        .with("ticker", ticker.compile().unwrap());
    (registry, peak)
}

fn worker(store: &PostgresStore, registry: GraphRegistry, id: &str) -> Worker {
    Worker::new(store.clone(), registry, id)
        .lease_ttl(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(200))
        .shutdown_timeout(Duration::from_secs(5))
        .run_config(|| RunConfig::new().durability(Durability::Sync))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_run_completes_on_a_worker() {
    let store = support::fresh_store("w_submit").await;
    let effects = Effects::default();
    let (registry, _) = registry(effects.clone(), Duration::ZERO);
    let queue = Queue::new(&store);
    // Submitted before any worker: found by the worker's first look.
    let early = queue
        .submit("chain", json!({ "notes": ["x"] }))
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1);
    let running = spawn(worker(&store, registry, "w1"));
    let late = queue.submit("chain", json!({})).await.unwrap();
    assert!(
        queue
            .submit_with_id("chain", "fixed-1", json!({}))
            .await
            .unwrap()
    );
    assert!(
        !queue
            .submit_with_id("chain", "fixed-1", json!({}))
            .await
            .unwrap(),
        "idempotent"
    );

    let job = wait_for(&queue, &early, "done").await;
    assert_eq!(job.output.unwrap()["notes"], json!(["x", "a", "b", "c"]));
    assert_eq!((job.worker.as_deref(), job.attempts), (Some("w1"), 1));
    let job = wait_for(&queue, &late, "done").await;
    assert_eq!(job.output.unwrap()["notes"], json!(["a", "b", "c"]));
    wait_for(&queue, "fixed-1", "done").await;
    let record = store.get_run(&early).await.unwrap().unwrap();
    assert_eq!(record.status, agentgraph::store::RunStatus::Completed);
    assert_eq!(queue.depth().await.unwrap(), 0);

    // An input that is not the state's JSON fails the job, with the reason.
    let bad = queue.submit("chain", json!({ "notes": 7 })).await.unwrap();
    let job = wait_for(&queue, &bad, "failed").await;
    assert!(job.error.unwrap().contains("input"));

    let stats = running.stop().await;
    assert_eq!(
        (stats.claimed(), stats.completed(), stats.failed()),
        (4, 3, 1)
    );
    assert!(effects.lock().unwrap().values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_jobs_take_their_inputs_in_turn() {
    let store = support::fresh_store("w_thread").await;
    let (registry, _) = registry(Effects::default(), Duration::ZERO);
    let queue = Queue::new(&store);
    let running = spawn(worker(&store, registry, "w1"));
    queue
        .submit_thread("chat", "chat-1", json!({ "notes": ["hi"] }))
        .await
        .unwrap();
    wait_for(&queue, "chat-1", "done").await;
    queue
        .submit_thread("chat", "chat-1", json!({ "notes": ["bye"] }))
        .await
        .unwrap();
    let job = wait_for(&queue, "chat-1", "done").await;
    assert_eq!(job.kind, "thread");
    assert_eq!(
        job.output.unwrap()["notes"],
        json!(["hi", "you said hi", "bye", "you said bye"])
    );
    // Inputs queued at once, two workers: taken one at a time, in order.
    let second = spawn(worker(&store, registry_with_peak(Duration::ZERO).0, "w2"));
    for word in ["one", "two", "three"] {
        queue
            .submit_thread("chat", "chat-2", json!({ "notes": [word] }))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = queue.job("chat-2").await.unwrap().unwrap();
        if job.status == "done" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        job.output.unwrap()["notes"],
        json!([
            "one",
            "you said one",
            "two",
            "you said two",
            "three",
            "you said three"
        ])
    );
    let (a, b) = (running.stop().await, second.stop().await);
    assert_eq!(
        a.released() + b.released(),
        0,
        "no job found its thread busy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_is_resumed_from_another_store_handle() {
    let schema = support::fresh_schema("w_resume");
    let store = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let (registry, _) = registry(Effects::default(), Duration::ZERO);
    let running = spawn(worker(&store, registry, "w1"));
    let queue = Queue::new(&store);
    let run = queue.submit("review", json!({})).await.unwrap();
    let job = wait_for(&queue, &run, "interrupted").await;
    assert_eq!(job.output.unwrap()["interrupts"][0]["payload"], "approve?");

    // Another process, in all but name: its own pool.
    let other = Queue::new(
        &PostgresStore::connect_with(support::options(&schema))
            .await
            .unwrap(),
    );
    let resume: DynResume = serde_json::from_value(json!({ "value": true })).unwrap();
    other.resume(&run, resume).await.unwrap();
    let job = wait_for(&other, &run, "done").await;
    assert_eq!(
        (job.kind.as_str(), job.output.unwrap()["approved"].clone()),
        ("resume", json!(true))
    );
    let unknown = other
        .resume("never-queued", DynResume::default())
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("never-queued"), "{unknown}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_reaches_the_worker() {
    let store = support::fresh_store("w_cancel").await;
    let (registry, _) = registry(Effects::default(), Duration::ZERO);
    let queue = Queue::new(&store);
    // A queued job is cancelled where it lies.
    let queued = queue.submit("ticker", json!({})).await.unwrap();
    assert!(queue.cancel(&queued).await.unwrap());
    assert_eq!(
        queue.job(&queued).await.unwrap().unwrap().status,
        "cancelled"
    );

    let running = spawn(worker(&store, registry, "w1"));
    let run = queue.submit("ticker", json!({})).await.unwrap();
    wait_for(&queue, &run, "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    assert!(queue.cancel(&run).await.unwrap());
    let job = wait_for(&queue, &run, "cancelled").await;
    // The notification, not the heartbeat (every 667 ms), carried it.
    assert!(
        asked.elapsed() < Duration::from_millis(600),
        "{:?}",
        asked.elapsed()
    );
    assert!(job.error.unwrap().contains("cancelled"));
    let stats = running.stop().await;
    assert_eq!(stats.cancelled(), 1);
    assert!(!queue.cancel(&run).await.unwrap(), "nothing left to cancel");
    let record = store.get_run(&run).await.unwrap().unwrap();
    assert_ne!(record.status, agentgraph::store::RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_caps_hold() {
    let store = support::fresh_store("w_caps").await;
    let (registry, peak) = registry(Effects::default(), Duration::from_millis(100));
    let queue = Queue::new(&store);
    let mut runs = Vec::new();
    for _ in 0..6 {
        runs.push(queue.submit("chain", json!({})).await.unwrap());
    }
    let running = spawn(worker(&store, registry.clone(), "w1").concurrency(2));
    for run in &runs {
        wait_for(&queue, run, "done").await;
    }
    running.stop().await;
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "two runs at a time, and no more"
    );

    // A cap on the graph, under a larger one on the worker.
    let store = support::fresh_store("w_caps_graph").await;
    let (registry, peak) = registry_with_peak(Duration::from_millis(100));
    let queue = Queue::new(&store);
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(queue.submit("chain", json!({})).await.unwrap());
    }
    let running = spawn(
        worker(&store, registry, "w1")
            .concurrency(8)
            .graph_concurrency("chain", 1),
    );
    for run in &runs {
        wait_for(&queue, run, "done").await;
    }
    running.stop().await;
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

fn registry_with_peak(pause: Duration) -> (GraphRegistry, Arc<AtomicUsize>) {
    registry(Effects::default(), pause)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_run_one_job() {
    let schema = support::fresh_schema("w_two");
    let first = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let second = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let effects = Effects::default();
    let (registry, _) = registry(effects.clone(), Duration::from_millis(5));
    let queue = Queue::new(&first);
    let mut runs = Vec::new();
    for _ in 0..40 {
        runs.push(queue.submit("chain", json!({})).await.unwrap());
    }
    let a = spawn(worker(&first, registry.clone(), "a").concurrency(4));
    let b = spawn(worker(&second, registry, "b").concurrency(4));
    for run in &runs {
        wait_for(&queue, run, "done").await;
    }
    let (a, b) = (a.stop().await, b.stop().await);
    assert_eq!(a.claimed() + b.claimed(), 40, "each job claimed once");
    assert!(
        a.claimed() > 0 && b.claimed() > 0,
        "both worked: {} {}",
        a.claimed(),
        b.claimed()
    );
    let effects = effects.lock().unwrap();
    assert_eq!(effects.len(), 120, "three tasks of each of 40 runs");
    assert!(effects.values().all(|n| *n == 1), "no task ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_past_its_timeout_hands_the_job_back_and_another_worker_resumes_it() {
    let store = support::fresh_store("w_shutdown").await;
    let (registry, _) = registry(Effects::default(), Duration::from_millis(300));
    let queue = Queue::new(&store);
    let run = queue.submit("chain", json!({})).await.unwrap();
    let first = spawn(worker(&store, registry.clone(), "first").shutdown_timeout(Duration::ZERO));
    wait_for(&queue, &run, "running").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = first.stop().await;
    assert_eq!((stats.released(), stats.completed()), (1, 0));
    let job = queue.job(&run).await.unwrap().unwrap();
    assert_eq!(
        job.status, "queued",
        "handed back at once, not left to expire"
    );

    let second = spawn(worker(&store, registry, "second"));
    let job = wait_for(&queue, &run, "done").await;
    assert_eq!((job.worker.as_deref(), job.attempts), (Some("second"), 2));
    assert_eq!(job.output.unwrap()["notes"], json!(["a", "b", "c"]));
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclaimed_thread_job_gives_its_input_once() {
    let store = support::fresh_store("w_thread_once").await;
    let schema = store.options().schema().to_owned();
    let (registry, _) = registry(Effects::default(), Duration::ZERO);
    let queue = Queue::new(&store);
    let admin = support::admin().await;
    // As if a worker claimed the job, recorded the thread's step (none yet) and died before
    // giving the input: the next claim gives it.
    queue
        .submit_thread("chat", "chat-3", json!({ "notes": ["hi"] }))
        .await
        .unwrap();
    admin
        .execute(
            &format!(
                "UPDATE {schema}.jobs SET status = 'running', attempts = 1, base_step = -1, \
                 claim_until = clock_timestamp() - interval '1 second' WHERE run_id = 'chat-3'"
            ),
            &[],
        )
        .await
        .unwrap();
    let running = spawn(worker(&store, registry, "w1"));
    let job = wait_for(&queue, "chat-3", "done").await;
    assert_eq!(job.attempts, 2);
    assert_eq!(job.output.unwrap()["notes"], json!(["hi", "you said hi"]));

    // As if the worker gave the input, the invocation ended, and the worker died before
    // marking the job done: the next claim returns the invocation's end, without giving the
    // input again.
    admin
        .execute(
            &format!(
                "UPDATE {schema}.jobs SET status = 'running', \
                 claim_until = clock_timestamp() - interval '1 second' WHERE run_id = 'chat-3'"
            ),
            &[],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = queue.job("chat-3").await.unwrap().unwrap();
        if job.status == "done" && job.attempts == 3 {
            break job;
        }
        assert!(Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job.output.unwrap()["notes"], json!(["hi", "you said hi"]));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_jobs_are_listed() {
    let store = support::fresh_store("w_list").await;
    let (registry, _) = registry(Effects::default(), Duration::ZERO);
    let queue = Queue::new(&store);
    assert!(queue.workers().await.unwrap().is_empty());
    let first = queue.submit("chain", json!({})).await.unwrap();
    let queued = queue.jobs(Some("queued"), 0, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].run.as_str(), queued[0].graph.as_str()),
        (first.as_str(), "chain")
    );

    let running = spawn(worker(&store, registry, "lister").concurrency(3));
    wait_for(&queue, &first, "done").await;
    let workers = queue.workers().await.unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    let w = &workers[0];
    assert_eq!(
        (w.id.as_str(), w.concurrency, w.stopped),
        ("lister", 3, false)
    );
    assert_eq!(w.graphs, ["chain", "chat", "review", "ticker"]);
    assert!(w.last_seen_ms >= w.started_at_ms);

    let second = queue.submit("chain", json!({})).await.unwrap();
    wait_for(&queue, &second, "done").await;
    let done = queue.jobs(Some("done"), 0, 10).await.unwrap();
    let runs: Vec<&str> = done.iter().map(|j| j.run.as_str()).collect();
    assert_eq!(runs, [first.as_str(), second.as_str()]);
    let page = queue.jobs(None, done[0].id, 10).await.unwrap();
    assert_eq!(page.len(), 1, "the page after the first job");
    assert!(queue.jobs(Some("queued"), 0, 10).await.unwrap().is_empty());

    running.stop().await;
    let workers = queue.workers().await.unwrap();
    assert!(workers[0].stopped, "{workers:?}");
    assert_eq!(workers[0].running, 0);
}

/// START → {flaky, side} → END: `flaky` fails until its third attempt, with a backoff of
/// `backoff` between attempts; every attempt of each task is counted in `effects` under its
/// idempotency key and attempt.
fn flaky_registry(effects: Effects, backoff: Duration) -> GraphRegistry {
    let mut g = GraphBuilder::<Notes>::new();
    let e = effects.clone();
    g.add_node("flaky", move |_, ctx: Context| {
        let effects = e.clone();
        async move {
            let key = format!("flaky {} #{}", ctx.idempotency_key(), ctx.attempt());
            *effects.lock().unwrap().entry(key).or_default() += 1;
            if ctx.attempt() < 3 {
                return Err::<NotesUpdate, BoxError>("the service is down".into());
            }
            Ok(NotesUpdate::new().notes(vec![format!("flaky at {}", ctx.attempt())]))
        }
    });
    g.add_node("side", move |_, ctx: Context| {
        let effects = effects.clone();
        async move {
            let key = format!("side {} #{}", ctx.idempotency_key(), ctx.attempt());
            *effects.lock().unwrap().entry(key).or_default() += 1;
            Ok(NotesUpdate::new().n(1))
        }
    })
    .retry(
        "flaky",
        RetryPolicy::new(5)
            .backoff(backoff, backoff)
            .factor(1.0)
            .jitter(false),
    )
    .add_edge(START, "flaky")
    .add_edge(START, "side")
    .add_edge("flaky", END)
    .add_edge("side", END);
    GraphRegistry::new().with("flaky", g.compile().unwrap())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_backoff_waits_in_the_queue_not_on_a_lease() {
    let schema = support::fresh_schema("w_backoff");
    let store = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let backoff = Duration::from_millis(1_500);
    let effects = Effects::default();
    let config = |w: Worker| {
        w.max_inline_backoff(Duration::from_millis(200))
            .poll_interval(Duration::from_millis(50))
    };
    let w1 = spawn(config(worker(
        &store,
        flaky_registry(effects.clone(), backoff),
        "w1",
    )));
    let queue = Queue::new(&store);
    let submitted = now_ms();
    let run = queue.submit("flaky", json!({})).await.unwrap();

    // The first attempt fails: the job goes back to the queue until the retry is due.
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = queue.job(&run).await.unwrap().unwrap();
        if job.status == "queued" && job.attempts == 1 {
            break job;
        }
        assert!(Instant::now() < deadline, "not re-queued: {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(job.worker.is_none(), "the claim is released: {job:?}");
    assert!(
        job.available_at_ms >= submitted + backoff.as_millis() as i64
            && job.available_at_ms > now_ms(),
        "available at the retry's due time, in the future: {job:?}"
    );
    let listed = queue.jobs(Some("queued"), 0, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].available_at_ms, job.available_at_ms);
    let record = store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::RetryScheduled);
    assert_eq!(w1.stats.retries_scheduled(), 1);

    // No lease is held while it waits: another process takes the run's lease at once (the
    // worker's release, made as the run ended, may be a moment behind).
    let other = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let taken = loop {
        match other.acquire_lease(&run, Duration::from_secs(5)).await {
            Ok(lease) => break lease,
            Err(e) => {
                assert!(Instant::now() < deadline, "the lease is still held: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert!(
        now_ms() < job.available_at_ms,
        "the lease was free before the retry was due"
    );
    other.release_lease(taken).await.unwrap();

    // Any worker claims it when due; the run goes on with attempt 2, waits again, then
    // completes with attempt 3.
    let w2 = spawn(config(worker(
        &store,
        flaky_registry(effects.clone(), backoff),
        "w2",
    )));
    let done = wait_for(&queue, &run, "done").await;
    assert!(now_ms() >= job.available_at_ms + backoff.as_millis() as i64);
    assert_eq!(done.output.unwrap()["notes"], json!(["flaky at 3"]));
    assert_eq!(done.attempts, 3, "claimed once per attempt of `flaky`");
    let effects = effects.lock().unwrap().clone();
    let mut attempts: Vec<(String, u32)> = effects
        .iter()
        .map(|(k, n)| {
            (
                k.split(' ').next().unwrap().to_owned() + &k[k.find('#').unwrap()..],
                *n,
            )
        })
        .collect();
    attempts.sort();
    assert_eq!(
        attempts,
        [
            ("flaky#1".to_owned(), 1),
            ("flaky#2".to_owned(), 1),
            ("flaky#3".to_owned(), 1),
            ("side#1".to_owned(), 1),
        ],
        "each attempt ran once, and the finished sibling never again"
    );
    let scheduled = w1.stop().await.retries_scheduled() + w2.stop().await.retries_scheduled();
    assert_eq!(scheduled, 2);
    assert_eq!(
        store.get_run(&run).await.unwrap().unwrap().status,
        RunStatus::Completed
    );
}
