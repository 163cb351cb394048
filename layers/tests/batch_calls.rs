//! `Batcher`: concurrent calls meet in batches (a fan-out of packets in the parallel
//! executor), each gets its own result, partial and whole failures reach the right calls, a
//! dropped call breaks no other; and, as properties over random callers, sizes and windows:
//! every call is answered exactly once with its own item's result, no batch is larger than
//! allowed, and each caller's items reach the batch function in the order it made them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentgraph_engine::{
    BoxError, Context, END, GraphBuilder, Mode, NodeBuilder, Packet, Route, RunConfig, START,
    async_node,
};
use agentgraph_layers::{
    Batcher, Error, FallbackCause, FallbackLayer, TimedOut, TimeoutLayer, with_cause,
};
use common::{Tally, TallyUpdate};
use proptest::prelude::*;

/// The batches a batch function was given.
type Seen<I> = Arc<Mutex<Vec<Vec<I>>>>;

/// Doubles each item; an item divisible by 7 fails alone.
fn doubler(max_size: usize, window: Duration) -> (Batcher<u32, u32>, Seen<u32>) {
    let seen: Seen<u32> = Arc::default();
    let s = seen.clone();
    let batcher = Batcher::new(max_size, window, move |items: Vec<u32>| {
        s.lock().unwrap().push(items.clone());
        async move {
            Ok(items
                .into_iter()
                .map(|x| {
                    if x.is_multiple_of(7) {
                        Err(format!("{x} is divisible by 7").into())
                    } else {
                        Ok(x * 2)
                    }
                })
                .collect())
        }
    });
    (batcher, seen)
}

#[tokio::test(start_paused = true)]
async fn a_fan_out_of_packets_is_answered_in_batches_each_task_its_own_result() {
    let (batcher, seen) = doubler(4, Duration::from_millis(5));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node("double", move |_, ctx: Context| {
        let batcher = batcher.clone();
        async move {
            let x: u32 = ctx.input()?;
            // A failed item is noted, not raised: the other tasks go on either way.
            let note = match batcher.call(x).await {
                Ok(y) => format!("{x}->{y}"),
                Err(e) => format!("{x}: {e}"),
            };
            Ok(TallyUpdate::note(note).calls(1))
        }
    })
    .add_conditional_edges(START, ["double"], |_: &Tally| {
        Route::packets((1..=10u32).map(|i| Packet::new("double", &i)))
    })
    .add_edge("double", END);
    let done = b
        .compile()
        .unwrap()
        .run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel))
        .await
        .unwrap();
    assert_eq!(done.calls, 10);
    let want: Vec<String> = (1..=10u32)
        .map(|x| {
            if x == 7 {
                "7: 7 is divisible by 7".to_owned()
            } else {
                format!("{x}->{}", x * 2)
            }
        })
        .collect();
    assert_eq!(done.log, want, "merged in packet order");
    let sizes: Vec<usize> = seen.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [4, 4, 2],
        "two full batches, then the window sends the rest"
    );
    let all: Vec<u32> = seen.lock().unwrap().concat();
    assert_eq!(
        all,
        (1..=10).collect::<Vec<_>>(),
        "each item once, in call order"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_call_times_out_in_the_graph_breaks_no_other() {
    // Batches of 3 within 100 ms: packets 0..3 fill one at once; packet 3 starts the next,
    // whose window outlasts its timeout layer (50 ms): its call is dropped, a fallback
    // answers for it, and its batch, left empty, is never made.
    let (batcher, seen) = doubler(3, Duration::from_millis(100));
    let node = NodeBuilder::new()
        .layer(FallbackLayer::from_fallback(with_cause(
            |_: Arc<Tally>, ctx: Context, cause: FallbackCause<Tally>| async move {
                let x: u32 = ctx.input()?;
                let timed_out = cause.error().is_some_and(|e| e.is::<TimedOut>());
                Ok(TallyUpdate::note(format!("{x} timed out: {timed_out}")))
            },
        )))
        .layer(TimeoutLayer::new(Duration::from_millis(50)))
        .node(async_node(move |_: Arc<Tally>, ctx: Context| {
            let batcher = batcher.clone();
            async move {
                let x: u32 = ctx.input()?;
                let y = batcher.call(x).await?;
                Ok(TallyUpdate::note(format!("{x}->{y}")))
            }
        }));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("double", node)
        .add_conditional_edges(START, ["double"], |_: &Tally| {
            Route::packets((1..=4u32).map(|i| Packet::new("double", &i)))
        })
        .add_edge("double", END);
    let done = b
        .compile()
        .unwrap()
        .run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel))
        .await
        .unwrap();
    assert_eq!(done.log, ["1->2", "2->4", "3->6", "4 timed out: true"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*seen.lock().unwrap(), [vec![1, 2, 3]]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_fails_as_a_whole_fails_each_of_its_calls() {
    let batcher = Batcher::new(8, Duration::from_millis(1), |_: Vec<u32>| async {
        Err::<Vec<Result<u32, BoxError>>, BoxError>("the service is down".into())
    });
    let (a, b) = tokio::join!(batcher.call(1), batcher.call(2));
    for e in [a.unwrap_err(), b.unwrap_err()] {
        match e.downcast_ref::<Error>() {
            Some(Error::BatchFailed { calls, source }) => {
                assert_eq!(*calls, 2);
                assert_eq!(source.to_string(), "the service is down");
            }
            _ => panic!("{e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_function_that_returns_too_few_results_fails_every_call() {
    let batcher = Batcher::new(8, Duration::from_millis(1), |items: Vec<u32>| async move {
        Ok(items.into_iter().skip(1).map(Ok).collect())
    });
    let (a, b) = tokio::join!(batcher.call(1), batcher.call(2));
    for e in [a.unwrap_err(), b.unwrap_err()] {
        assert!(matches!(
            e.downcast_ref::<Error>(),
            Some(Error::BatchSize {
                expected: 2,
                returned: 1
            })
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_batch_function_answers_every_call_with_batch_lost() {
    let batcher: Batcher<u32, u32> =
        Batcher::new(8, Duration::from_millis(1), |_: Vec<u32>| async {
            panic!("bug in the batch function");
            #[allow(unreachable_code)]
            Ok(Vec::new())
        });
    let e = batcher.call(1).await.unwrap_err();
    assert!(matches!(e.downcast_ref::<Error>(), Some(Error::BatchLost)));
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_batch_goes_is_left_out_and_breaks_no_other() {
    let (batcher, seen) = doubler(8, Duration::from_millis(10));
    let a = tokio::spawn(batcher.call(1));
    let b = tokio::spawn(batcher.call(2));
    let c = tokio::spawn(batcher.call(3));
    tokio::time::sleep(Duration::from_millis(1)).await;
    b.abort();
    assert_eq!(a.await.unwrap().unwrap(), 2);
    assert_eq!(c.await.unwrap().unwrap(), 6);
    assert_eq!(*seen.lock().unwrap(), [vec![1, 3]]);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_its_batch_runs_breaks_no_other() {
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let batcher = Batcher::new(8, Duration::from_millis(1), move |items: Vec<u32>| {
        let s = s.clone();
        async move {
            s.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(items.into_iter().map(|x| Ok(x + 1)).collect())
        }
    });
    let a = tokio::spawn(batcher.call(1));
    let b = tokio::spawn(batcher.call(2));
    started.notified().await;
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());
    assert_eq!(b.await.unwrap().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_only_dropped_calls_is_not_made() {
    let (batcher, seen) = doubler(8, Duration::from_millis(10));
    let a = tokio::spawn(batcher.call(1));
    tokio::time::sleep(Duration::from_millis(1)).await;
    a.abort();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(seen.lock().unwrap().is_empty());
    // The batcher still works.
    assert_eq!(batcher.call(4).await.unwrap(), 8);
}

/// One caller's calls: the items it makes, one after another, each after a pause (ms).
#[derive(Debug, Clone)]
struct Caller {
    calls: Vec<(u32, u64)>,
}

fn caller() -> impl Strategy<Value = Caller> {
    proptest::collection::vec((0u32..1_000, 0u64..8), 1..12).prop_map(|calls| Caller { calls })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_call_is_answered_once_with_its_own_result_in_order(
        callers in proptest::collection::vec(caller(), 1..8),
        max_size in 1usize..6,
        window_ms in 0u64..6,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        // Items are tagged with their caller and index, so that each is unique.
        let seen: Seen<(usize, usize, u32)> = Arc::default();
        let s = seen.clone();
        let batcher = Batcher::new(max_size, Duration::from_millis(window_ms), move |items: Vec<(usize, usize, u32)>| {
            s.lock().unwrap().push(items.clone());
            async move {
                // Some batches take a while, so that batches overlap.
                if items.len().is_multiple_of(2) {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                Ok(items
                    .into_iter()
                    .map(|(_, _, x)| if x.is_multiple_of(7) { Err(format!("{x}").into()) } else { Ok(x * 2) })
                    .collect())
            }
        });
        let answers: Vec<Vec<Result<u32, String>>> = rt.block_on(async {
            let tasks: Vec<_> = callers
                .iter()
                .enumerate()
                .map(|(c, caller)| {
                    let batcher = batcher.clone();
                    let caller = caller.clone();
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        for (i, (x, pause)) in caller.calls.into_iter().enumerate() {
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                            got.push(batcher.call((c, i, x)).await.map_err(|e| e.to_string()));
                        }
                        got
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.unwrap());
            }
            all
        });
        // Each call got exactly its own item's result (partial failures to the right call),
        // in the order the caller made them.
        for (caller, got) in callers.iter().zip(&answers) {
            let want: Vec<Result<u32, String>> = caller
                .calls
                .iter()
                .map(|(x, _)| if x.is_multiple_of(7) { Err(format!("{x}")) } else { Ok(x * 2) })
                .collect();
            prop_assert_eq!(got, &want);
        }
        // Every item reached the batch function exactly once, no batch too large.
        let batches = seen.lock().unwrap().clone();
        prop_assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= max_size));
        let mut items: Vec<(usize, usize)> = batches.concat().into_iter().map(|(c, i, _)| (c, i)).collect();
        let total: usize = callers.iter().map(|c| c.calls.len()).sum();
        prop_assert_eq!(items.len(), total);
        // In the order of the batches, each caller's items come in the order it made them.
        for (c, caller) in callers.iter().enumerate() {
            let order: Vec<usize> = items.iter().filter(|(cc, _)| *cc == c).map(|(_, i)| *i).collect();
            prop_assert_eq!(order, (0..caller.calls.len()).collect::<Vec<_>>());
        }
        items.sort_unstable();
        items.dedup();
        prop_assert_eq!(items.len(), total);
    }

    #[test]
    fn concurrent_calls_of_one_caller_each_get_their_own_result(
        items in proptest::collection::vec(0u32..1_000, 1..40),
        max_size in 1usize..10,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (batcher, seen) = doubler(max_size, Duration::from_millis(2));
        let got: Vec<Result<u32, String>> = rt.block_on(async {
            futures_util::future::join_all(items.iter().map(|x| batcher.call(*x)))
                .await
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect()
        });
        let want: Vec<Result<u32, String>> = items
            .iter()
            .map(|x| if x.is_multiple_of(7) { Err(format!("{x} is divisible by 7")) } else { Ok(x * 2) })
            .collect();
        prop_assert_eq!(got, want);
        let batches = seen.lock().unwrap().clone();
        // Made all at once: full batches, then the rest.
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let mut expected = vec![max_size; items.len() / max_size];
        if items.len() % max_size != 0 {
            expected.push(items.len() % max_size);
        }
        prop_assert_eq!(sizes, expected);
        prop_assert_eq!(batches.concat(), items);
    }
}
