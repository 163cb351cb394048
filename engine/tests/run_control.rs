//! Control of a run: retries, attempt timeouts, step and run timeouts, cancellation and the
//! failure policy, with and without a checkpoint store.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::SledStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, Durability, END, Error, Event, EventKind,
    FailurePolicy, GraphBuilder, Mode, NodeTimedOut, RetryPolicy, RunConfig, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate, invoke_err, memory};
use futures_util::StreamExt;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
#[error("the service said 503")]
struct Unavailable;

#[derive(Debug, thiserror::Error)]
#[error("the request is malformed")]
struct BadRequest;

#[derive(Debug, thiserror::Error)]
#[error("could not fetch the page")]
struct FetchFailed(#[source] BadRequest);

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .jitter(false)
}

/// START -> flaky -> END, where `flaky` fails with `Unavailable` until its `ok_at`-th call.
fn flaky_graph(calls: &Calls, ok_at: u32, policy: RetryPolicy) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    let calls = calls.clone();
    b.add_node("flaky", move |_, ctx: Context| {
        let n = calls.hit("flaky");
        async move {
            assert_eq!(ctx.attempt(), n, "the context counts attempts");
            if n < ok_at {
                return Err::<TraceUpdate, BoxError>(Box::new(Unavailable));
            }
            Ok(TraceUpdate::note(format!("ok at {n}")))
        }
    })
    .retry("flaky", policy)
    .add_edge(START, "flaky")
    .add_edge("flaky", END);
    b.compile().unwrap()
}

fn attempts_of(events: &[Event], node: &str) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeStarted {
                node: n, attempt, ..
            } if &**n == node => Some(*attempt),
            _ => None,
        })
        .collect()
}

async fn collect(stream: agentgraph_engine::EventStream) -> Vec<Event> {
    stream.map(Result::unwrap).collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_node_succeeds_on_attempt_three() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        let calls = Calls::default();
        let g = flaky_graph(&calls, 3, fast_retry(5));
        let run = g.run_with(Trace::default(), RunConfig::new().mode(mode));
        let events = run.events();
        let state = run.await.unwrap();
        assert_eq!(state.log, ["ok at 3"]);
        assert_eq!(calls.get("flaky"), 3);
        let events = collect(events).await;
        assert_eq!(attempts_of(&events, "flaky"), [1, 2, 3]);
        let retries: Vec<u32> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::RetryScheduled { attempt, delay, .. } => {
                    assert!(*delay <= Duration::from_millis(5));
                    Some(*attempt)
                }
                _ => None,
            })
            .collect();
        assert_eq!(retries, [2, 3]);
        let failures = events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::NodeFailed { error, .. } if error == "the service said 503"))
            .count();
        assert_eq!(failures, 2);
    }
}

#[tokio::test]
async fn attempts_run_out() {
    let calls = Calls::default();
    let g = flaky_graph(&calls, 10, fast_retry(3));
    let e = g.invoke(Trace::default()).await.unwrap_err();
    assert!(
        matches!(&e, Error::NodeFailed { node, step: 1, attempts: 3, source, .. }
            if node == "flaky" && source.is::<Unavailable>()),
        "{e:?}"
    );
    assert_eq!(calls.get("flaky"), 3);
    assert!(e.to_string().contains("after 3 attempt(s)"), "{e}");
}

#[tokio::test]
async fn a_non_retryable_error_fails_at_once_and_shows_its_cause_chain() {
    let calls = Calls::default();
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("fetch", move |_, _| {
        c.hit("fetch");
        async { Err::<TraceUpdate, BoxError>(Box::new(FetchFailed(BadRequest))) }
    })
    .default_retry(fast_retry(5).retry_if(|e| !e.is::<FetchFailed>()))
    .add_edge(START, "fetch")
    .add_edge("fetch", END);
    let e = invoke_err(b).await;
    assert_eq!(calls.get("fetch"), 1);
    assert!(matches!(&e, Error::NodeFailed { attempts: 1, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "node `fetch` failed at step 1 (task {}) after 1 attempt(s): could not fetch the page: the request is malformed",
            match &e {
                Error::NodeFailed { task, .. } => task.to_string(),
                _ => unreachable!(),
            }
        )
    );
}

#[tokio::test]
async fn panics_are_not_retried() {
    let calls = Calls::default();
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("boom", move |_, _| {
        c.hit("boom");
        async {
            if true {
                panic!("a bug");
            }
            Ok(TraceUpdate::note("unreachable"))
        }
    })
    .retry("boom", fast_retry(5))
    .add_edge(START, "boom")
    .add_edge("boom", END);
    let e = invoke_err(b).await;
    assert!(matches!(e, Error::NodePanicked { .. }), "{e:?}");
    assert_eq!(calls.get("boom"), 1);
}

/// START -> hang -> END: an async node that never finishes, or a CPU-bound one that spins
/// until it is told it was cancelled (and records that it was).
fn hanging_graph(cpu: bool, told: &Arc<AtomicBool>, timeout: Duration) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    if cpu {
        let told = told.clone();
        b.add_cpu_node("hang", move |_, ctx: &Context| {
            while !ctx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            told.store(true, Ordering::SeqCst);
            Ok(TraceUpdate::note("late result"))
        });
    } else {
        b.add_node("hang", |_, _| async {
            std::future::pending::<()>().await;
            Ok(TraceUpdate::note("never"))
        });
    }
    b.timeout("hang", timeout)
        .add_edge(START, "hang")
        .add_edge("hang", END);
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_hangs_past_its_timeout_fails_in_both_modes() {
    for cpu in [false, true] {
        for mode in [Mode::Sequential, Mode::Parallel] {
            let told = Arc::new(AtomicBool::new(false));
            let g = hanging_graph(cpu, &told, Duration::from_millis(30));
            let e = g
                .run_with(Trace::default(), RunConfig::new().mode(mode))
                .await
                .unwrap_err();
            match &e {
                Error::NodeFailed { node, source, .. } => {
                    assert_eq!(node, "hang");
                    let t = source.downcast_ref::<NodeTimedOut>().expect("a timeout");
                    assert_eq!(t.after, Duration::from_millis(30));
                }
                other => panic!("cpu {cpu}, {mode:?}: {other:?}"),
            }
            if cpu {
                // The CPU-bound node was told, and its late result was discarded.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !told.load(Ordering::SeqCst) {
                    assert!(std::time::Instant::now() < deadline, "never told");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn timed_out_attempts_are_retried_by_policy() {
    let calls = Calls::default();
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("slow_then_fast", move |_, _| {
        let n = c.hit("slow_then_fast");
        async move {
            if n < 3 {
                std::future::pending::<()>().await;
            }
            Ok(TraceUpdate::note(format!("attempt {n}")))
        }
    })
    .timeout("slow_then_fast", Duration::from_millis(20))
    .retry("slow_then_fast", fast_retry(3))
    .add_edge(START, "slow_then_fast")
    .add_edge("slow_then_fast", END);
    let g = b.compile().unwrap();
    assert_eq!(g.invoke(Trace::default()).await.unwrap().log, ["attempt 3"]);

    // A policy may refuse timeouts.
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("hang", |_, _| async {
        std::future::pending::<()>().await;
        Ok(TraceUpdate::note("never"))
    })
    .default_timeout(Duration::from_millis(10))
    .default_retry(fast_retry(3).retry_if(|e| !e.is::<NodeTimedOut>()))
    .add_edge(START, "hang")
    .add_edge("hang", END);
    let e = invoke_err(b).await;
    assert!(matches!(e, Error::NodeFailed { attempts: 1, .. }), "{e:?}");
}

/// START -> [quick, slow] -> END: `quick` finishes at once, `slow` waits for `release` (or
/// forever), and tells `started` when it begins.
fn pair_graph(calls: &Calls, started: &Arc<Notify>, release: &Arc<Notify>) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("quick", move |_, _| {
        c.hit("quick");
        async { Ok(TraceUpdate::note("quick").count(1)) }
    });
    let (c, started, release) = (calls.clone(), started.clone(), release.clone());
    b.add_node("slow", move |_, _| {
        c.hit("slow");
        let (started, release) = (started.clone(), release.clone());
        async move {
            started.notify_one();
            release.notified().await;
            Ok(TraceUpdate::note("slow").count(10))
        }
    });
    b.add_edges(START, ["quick", "slow"])
        .add_edge("quick", END)
        .add_edge("slow", END);
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_mid_step_resumes_only_its_unfinished_task() {
    let store = memory();
    let calls = Calls::default();
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let g = pair_graph(&calls, &started, &release);
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("cancel-me")
            .durability(Durability::Sync)
    };
    let handle = g.run_with(Trace::default(), config()).spawn();
    started.notified().await;
    // `quick` has finished or will; wait until its pending write is stored, then cancel.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store
        .get_pending_writes("cancel-me", 1)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    handle.cancel();
    let e = handle.await.unwrap_err();
    assert!(matches!(e, Error::Cancelled { step: 1 }), "{e:?}");
    let record = store.get_run("cancel-me").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Cancelled);

    // Resumed: `quick` kept its write; only `slow` runs again.
    release.notify_one();
    let state = g.resume("cancel-me", config()).await.unwrap();
    assert_eq!(state.count, 11);
    assert_eq!((calls.get("quick"), calls.get("slow")), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_handle_cancels_an_awaited_run_and_a_cpu_node_is_told() {
    let told = Arc::new(AtomicBool::new(false));
    // No timeout of its own: only the cancellation reaches it.
    let g = hanging_graph(true, &told, Duration::from_secs(3600));
    let run = g.run(Trace::default());
    let cancel = run.cancel_handle();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let e = run.await.unwrap_err();
    canceller.await.unwrap();
    assert!(matches!(e, Error::Cancelled { step: 1 }), "{e:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !told.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "never told");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_timeout_cancels_the_unfinished_tasks_and_keeps_the_finished() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        let store = memory();
        let calls = Calls::default();
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let g = pair_graph(&calls, &started, &release);
        let config = || {
            RunConfig::new()
                .store(store.clone())
                .run_id("slow-step")
                .mode(mode)
        };
        let run = g.run_with(
            Trace::default(),
            config().step_timeout(Duration::from_millis(50)),
        );
        let events = run.events();
        let e = run.await.unwrap_err();
        assert!(
            matches!(&e, Error::StepTimedOut { step: 1, unfinished, .. } if unfinished == "slow"),
            "{e:?}"
        );
        let events = collect(events).await;
        assert!(events.iter().any(
            |e| matches!(&e.kind, EventKind::NodeCancelled { node, .. } if &**node == "slow")
        ));
        release.notify_one();
        let state = g.resume("slow-step", config()).await.unwrap();
        assert_eq!(state.count, 11, "{mode:?}");
        assert_eq!(calls.get("quick"), 1, "{mode:?}");
    }
}

#[tokio::test]
async fn a_run_timeout_stops_the_run_resumably() {
    let store = memory();
    let slow = Arc::new(AtomicBool::new(true));
    let s = slow.clone();
    let g = common::chain(5, move |_, ctx: Context| {
        let slow = s.load(Ordering::SeqCst) && ctx.step() == 3;
        async move {
            if slow {
                std::future::pending::<()>().await;
            }
            Ok(TraceUpdate::note(ctx.node()).count(1))
        }
    });
    let config = || RunConfig::new().store(store.clone()).run_id("deadline");
    let e = g
        .run_with(
            Trace::default(),
            config().run_timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RunTimedOut { step: 3, .. }), "{e:?}");
    assert_eq!(
        store.get_run("deadline").await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    slow.store(false, Ordering::SeqCst);
    let state = g.resume("deadline", config()).await.unwrap();
    assert_eq!(state.log, ["n0", "n1", "n2", "n3", "n4"]);
}

/// START -> [fails, sibling] -> END: `fails` fails at once; `sibling` waits until it is
/// cancelled, or for `release`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_siblings_stops_the_other_tasks_of_the_step() {
    let calls = Calls::default();
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("fails", move |_, _| {
        c.hit("fails");
        async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err::<TraceUpdate, BoxError>("no".into())
        }
    });
    let (c, flag) = (calls.clone(), cancelled.clone());
    b.add_cpu_node("sibling", move |_, ctx: &Context| {
        c.hit("sibling");
        while !ctx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        flag.store(true, Ordering::SeqCst);
        Ok(TraceUpdate::note("sibling"))
    });
    b.add_edges(START, ["fails", "sibling"])
        .add_edge("fails", END)
        .add_edge("sibling", END);
    let g = b.compile().unwrap();
    let run = g.run_with(
        Trace::default(),
        RunConfig::new().on_failure(FailurePolicy::CancelSiblings),
    );
    let events = run.events();
    let e = run.await.unwrap_err();
    assert!(
        matches!(&e, Error::NodeFailed { node, .. } if node == "fails"),
        "{e:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cancelled.load(Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sibling was never told"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let events = collect(events).await;
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, EventKind::NodeCancelled { node, .. } if &**node == "sibling")
        )
    );
}

/// A run dropped while a retry waits out its backoff (as a crash leaves it: nothing more is
/// written) resumes at the next attempt, not the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_backoff_resumes_at_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let calls = Calls::default();
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("flaky", move |_, ctx: Context| {
        c.hit("flaky");
        async move {
            if ctx.attempt() < 4 {
                return Err::<TraceUpdate, BoxError>(Box::new(Unavailable));
            }
            Ok(TraceUpdate::note(format!("attempt {}", ctx.attempt())))
        }
    })
    // Delays of 1 ms, then 300 ms (the crash comes during it), then 300 ms.
    .retry(
        "flaky",
        RetryPolicy::new(5)
            .backoff(Duration::from_millis(1), Duration::from_millis(300))
            .factor(300.0)
            .jitter(false),
    )
    .add_edge(START, "flaky")
    .add_edge("flaky", END);
    let g = b.compile().unwrap();
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("backoff")
            .durability(Durability::Sync)
    };
    let run = g.run_with(Trace::default(), config());
    let mut events = run.events();
    let fut = std::future::IntoFuture::into_future(run);
    tokio::select! {
        r = fut => panic!("the run ended: {:?}", r.map(|s| s.log)),
        () = async {
            while let Some(e) = events.next().await {
                if matches!(e.unwrap().kind, EventKind::RetryScheduled { attempt: 3, .. }) {
                    return;
                }
            }
        } => {}
    }
    // The run is gone, mid-backoff.
    assert_eq!(calls.get("flaky"), 2);
    let pending = store.get_pending_writes("backoff", 1).await.unwrap();
    assert_eq!(pending.len(), 1, "the retry is persisted before its delay");

    let run = g.resume("backoff", config());
    let events = run.events();
    let state = run.await.unwrap();
    assert_eq!(state.log, ["attempt 4"]);
    assert_eq!(calls.get("flaky"), 4);
    let events = collect(events).await;
    assert_eq!(
        attempts_of(&events, "flaky"),
        [3, 4],
        "the attempt count continues"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Panics on odd input: a step or run timeout of `Duration::MAX` ("no limit, in effect")
//    overflows `Instant + Duration` in the scheduler.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_step_timeout_of_duration_max_does_not_panic() {
    let g = common::chain(2, |_, _| async { Ok(TraceUpdate::new().count(1)) });
    let run = g.run_with(
        Trace::default(),
        RunConfig::new().step_timeout(Duration::MAX),
    );
    let result = tokio::spawn(run.into_future()).await;
    assert!(result.is_ok(), "the run panicked: {:?}", result.err());
    assert_eq!(result.unwrap().unwrap().count, 2);
}

#[tokio::test]
async fn a_run_timeout_of_duration_max_does_not_panic() {
    let g = common::chain(2, |_, _| async { Ok(TraceUpdate::new().count(1)) });
    let run = g.run_with(
        Trace::default(),
        RunConfig::new().run_timeout(Duration::MAX),
    );
    let result = tokio::spawn(run.into_future()).await;
    assert!(result.is_ok(), "the run panicked: {:?}", result.err());
    assert_eq!(result.unwrap().unwrap().count, 2);
}
