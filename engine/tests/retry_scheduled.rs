//! Retries longer than `RunConfig::max_inline_backoff`: the run stops with
//! `RunOutcome::RetryScheduled` instead of sleeping, keeps its finished tasks' writes and the
//! retrying task's attempts, and goes on where it was when it is continued.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_checkpoint::SledStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, Error, GraphBuilder, Mode,
    PendingStatus, RetryAt, RetryPolicy, RunConfig, RunOutcome, RunStatus, START, StoreInspector,
};
use common::{Calls, Trace, TraceUpdate, memory, stores};

/// The delay of every retry of `flaky`: far above the inline limit.
const BACKOFF: Duration = Duration::from_millis(600);
const INLINE: Duration = Duration::from_millis(50);

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts)
        .backoff(BACKOFF, BACKOFF)
        .factor(1.0)
        .jitter(false)
}

/// START -> {flaky, steady} -> END: `flaky` fails until its attempt `ok_at` (recording the
/// attempt numbers its context gives), `steady` always finishes.
fn graph(
    calls: &Calls,
    seen: &Arc<Mutex<Vec<u32>>>,
    ok_at: u32,
    attempts: u32,
) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    let (c, s) = (calls.clone(), seen.clone());
    b.add_node("flaky", move |_, ctx: Context| {
        c.hit("flaky");
        s.lock().unwrap().push(ctx.attempt());
        async move {
            if ctx.attempt() < ok_at {
                return Err::<TraceUpdate, BoxError>("the service is down".into());
            }
            Ok(TraceUpdate::note(format!("flaky at {}", ctx.attempt())).count(1))
        }
    });
    let c = calls.clone();
    b.add_node("steady", move |_, _| {
        c.hit("steady");
        async move { Ok(TraceUpdate::note("steady").count(1)) }
    })
    .retry("flaky", policy(attempts))
    .add_edge(START, "flaky")
    .add_edge(START, "steady")
    .add_edge("flaky", END)
    .add_edge("steady", END);
    b.compile().unwrap()
}

fn config(store: &Arc<dyn CheckpointStore>, run: &str, mode: Mode) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(run)
        .mode(mode)
        .max_inline_backoff(INLINE)
}

fn scheduled(outcome: RunOutcome<Trace>) -> RetryAt {
    match outcome {
        RunOutcome::RetryScheduled(retry) => retry,
        other => panic!("expected a scheduled retry, got {other:?}"),
    }
}

async fn until_due(retry: &RetryAt) {
    let wait = retry.due_at_ms.saturating_sub(RetryAt::now_ms());
    tokio::time::sleep(Duration::from_millis(wait + 5)).await;
}

async fn status(store: &Arc<dyn CheckpointStore>, run: &str) -> RunStatus {
    store.get_run(run).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backoff_stops_the_run_and_a_continue_goes_on() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        for (store, _dir) in stores() {
            let (calls, seen) = (Calls::default(), Arc::new(Mutex::new(Vec::new())));
            let g = graph(&calls, &seen, 3, 5);
            let started = RetryAt::now_ms();
            let outcome = g
                .run_with(Trace::default(), config(&store, "r", mode))
                .outcome()
                .await
                .unwrap();
            let first = scheduled(outcome);
            assert_eq!((first.run_id.as_str(), first.step), ("r", 1), "{mode:?}");
            assert_eq!(first.tasks.len(), 1);
            let task = &first.tasks[0];
            assert_eq!((task.node.as_str(), task.attempt), ("flaky", 2));
            assert_eq!(task.due_at_ms, first.due_at_ms);
            assert!(first.due_at_ms >= started + BACKOFF.as_millis() as u64);
            assert_eq!(status(&store, "r").await, RunStatus::RetryScheduled);
            // The stopped step: `steady` finished (its write kept), `flaky` retries then.
            let pending = StoreInspector::new(store.clone())
                .pending("r")
                .await
                .unwrap();
            let by_node = |n: &str| pending.iter().find(|t| t.node == n).unwrap().clone();
            assert_eq!(by_node("steady").status, PendingStatus::Done);
            let flaky = by_node("flaky");
            assert_eq!(flaky.status, PendingStatus::Retrying);
            assert_eq!(
                (flaky.attempts, flaky.retry_at_ms),
                (1, Some(first.due_at_ms))
            );

            // Continued before it is due: it stops again at once, running nothing.
            let early = g
                .resume("r", config(&store, "r", mode))
                .outcome()
                .await
                .unwrap();
            assert_eq!(scheduled(early), first);
            assert_eq!(calls.get("flaky"), 1);

            // When due: attempt 2 fails too, and attempt 3 is scheduled.
            until_due(&first).await;
            let second = scheduled(
                g.resume("r", config(&store, "r", mode))
                    .outcome()
                    .await
                    .unwrap(),
            );
            assert_eq!((second.step, second.tasks[0].attempt), (1, 3));
            assert!(second.due_at_ms >= first.due_at_ms + BACKOFF.as_millis() as u64);

            until_due(&second).await;
            let state = g.resume("r", config(&store, "r", mode)).await.unwrap();
            assert_eq!(*seen.lock().unwrap(), [1, 2, 3], "{mode:?}");
            assert_eq!(
                calls.get("steady"),
                1,
                "a finished sibling never runs again"
            );
            assert_eq!(state.count, 2);
            let mut log = state.log.clone();
            log.sort();
            assert_eq!(log, ["flaky at 3", "steady"]);
            assert_eq!(status(&store, "r").await, RunStatus::Completed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_budget_is_spent_across_stops() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        let store = memory();
        let (calls, seen) = (Calls::default(), Arc::new(Mutex::new(Vec::new())));
        let g = graph(&calls, &seen, u32::MAX, 2);
        // A plain `.await` returns the stop as an error.
        let Err(Error::RetryScheduled(retry)) = g
            .run_with(Trace::default(), config(&store, "b", mode))
            .await
        else {
            panic!("expected a scheduled retry");
        };
        assert_eq!(retry.tasks[0].attempt, 2);
        until_due(&retry).await;
        let e = g.resume("b", config(&store, "b", mode)).await.unwrap_err();
        match e {
            Error::NodeFailed { node, attempts, .. } => {
                assert_eq!((node.as_str(), attempts), ("flaky", 2))
            }
            other => panic!("expected the node's failure, got {other:?}"),
        }
        assert_eq!(*seen.lock().unwrap(), [1, 2]);
        assert_eq!(calls.get("steady"), 1);
        assert_eq!(status(&store, "b").await, RunStatus::Failed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_backoffs_and_runs_without_a_store_wait_inline() {
    let (calls, seen) = (Calls::default(), Arc::new(Mutex::new(Vec::new())));
    let g = graph(&calls, &seen, 2, 3);
    // No store: nothing could continue the run, so it sleeps through the delay.
    let state = g
        .run_with(
            Trace::default(),
            RunConfig::new().max_inline_backoff(INLINE),
        )
        .await
        .unwrap();
    assert_eq!(state.count, 2);
    assert_eq!(*seen.lock().unwrap(), [1, 2]);

    // A limit above the delay: inline, as without the option.
    let store = memory();
    seen.lock().unwrap().clear();
    let config = config(&store, "s", Mode::Parallel).max_inline_backoff(Duration::from_secs(5));
    let outcome = g
        .run_with(Trace::default(), config)
        .outcome()
        .await
        .unwrap();
    assert_eq!(outcome.completed().map(|s| s.count), Some(2));
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_retry_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (calls, seen) = (Calls::default(), Arc::new(Mutex::new(Vec::new())));
    let g = graph(&calls, &seen, 2, 3);
    let retry = {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
        let outcome = g
            .run_with(Trace::default(), config(&store, "p", Mode::Parallel))
            .outcome()
            .await
            .unwrap();
        scheduled(outcome)
    };
    // The process is gone; another opens the store (the run let go of it before it returned).
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    assert_eq!(status(&store, "p").await, RunStatus::RetryScheduled);
    let pending = StoreInspector::new(store.clone())
        .pending("p")
        .await
        .unwrap();
    let flaky = pending.iter().find(|t| t.node == "flaky").unwrap();
    assert_eq!((flaky.status, flaky.attempts), (PendingStatus::Retrying, 1));
    assert_eq!(flaky.retry_at_ms, Some(retry.due_at_ms));
    assert!(
        pending
            .iter()
            .any(|t| t.node == "steady" && t.status == PendingStatus::Done)
    );

    until_due(&retry).await;
    let state = g
        .resume("p", config(&store, "p", Mode::Parallel))
        .await
        .unwrap();
    assert_eq!(state.count, 2);
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    assert_eq!(calls.get("steady"), 1);
}

/// A step with a task waiting at an interrupt and another waiting for a retry stops for the
/// retry first; once the retry has run, the run stops at the interrupt, still unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_before_the_interrupts_of_its_step() {
    let store = memory();
    let (calls, seen) = (Calls::default(), Arc::new(Mutex::new(Vec::new())));
    let mut b = GraphBuilder::<Trace>::new();
    let s = seen.clone();
    b.add_node("flaky", move |_, ctx: Context| {
        s.lock().unwrap().push(ctx.attempt());
        async move {
            if ctx.attempt() < 2 {
                return Err::<TraceUpdate, BoxError>("down".into());
            }
            Ok(TraceUpdate::note("flaky"))
        }
    });
    let c = calls.clone();
    b.add_node("ask", move |_, ctx: Context| {
        c.hit("ask");
        async move {
            let answer: String = ctx.interrupt("name?")?;
            Ok(TraceUpdate::note(answer))
        }
    })
    .retry("flaky", policy(3))
    .add_edge(START, "flaky")
    .add_edge(START, "ask")
    .add_edge("flaky", END)
    .add_edge("ask", END);
    let g = b.compile().unwrap();
    let retry = scheduled(
        g.run_with(Trace::default(), config(&store, "i", Mode::Parallel))
            .outcome()
            .await
            .unwrap(),
    );
    assert_eq!(retry.tasks[0].node, "flaky");
    until_due(&retry).await;
    let outcome = g
        .resume("i", config(&store, "i", Mode::Parallel))
        .outcome()
        .await
        .unwrap();
    let stop = outcome
        .interrupted()
        .expect("the interrupt is still unanswered");
    assert_eq!(stop.interrupts[0].node, "ask");
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    let resume = agentgraph_engine::Resume::value("ann");
    let state = g
        .resume_with("i", resume, config(&store, "i", Mode::Parallel))
        .await
        .unwrap();
    let mut log = state.log;
    log.sort();
    assert_eq!(log, ["ann", "flaky"]);
    assert_eq!(
        *seen.lock().unwrap(),
        [1, 2],
        "the finished retry never runs again"
    );
}
