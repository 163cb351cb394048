//! `CacheLayer` returns a stored result for an input it has seen within its time to live,
//! calls the node for anything else, never stores a failure, keeps go-tos, and runs the node
//! once for concurrent calls with one key.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentgraph_engine::{
    BoxError, Command, CompiledGraph, Context, END, GraphBuilder, Layer, Mode, Node, Packet, Route,
    RunConfig, START, async_node,
};
use agentgraph_layers::{CacheLayer, Error};
use common::{Report, Shielded, Tally, TallyUpdate};

const HOUR: Duration = Duration::from_secs(3600);

/// A node that logs `"{query}#{call number}"`, so that a result tells which call made it.
fn answer(calls: Arc<AtomicU64>) -> impl Node<Tally> {
    async_node(move |s: Arc<Tally>, _| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(TallyUpdate::new().log(vec![format!("{}#{call}", s.query)])) }
    })
}

/// `START -> answer -> END`.
fn graph(answer: impl Node<Tally>) -> CompiledGraph<Tally> {
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("answer", answer)
        .add_edge(START, "answer")
        .add_edge("answer", END);
    b.compile().unwrap()
}

fn query(q: &str) -> Tally {
    Tally {
        query: q.into(),
        ..Tally::default()
    }
}

#[tokio::test]
async fn a_hit_returns_the_stored_update_without_calling_the_node() {
    let calls = Arc::new(AtomicU64::new(0));
    let cache = CacheLayer::new(100, HOUR);
    let g = graph(cache.layer(answer(calls.clone())));

    let first = g.invoke(query("rust")).await.unwrap();
    let second = g.invoke(query("rust")).await.unwrap();
    assert_eq!(first.log, ["rust#1"]);
    assert_eq!(
        second.log,
        ["rust#1"],
        "the first call's update, from the cache"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), 1);
}

#[tokio::test]
async fn a_different_state_misses() {
    let calls = Arc::new(AtomicU64::new(0));
    let g = graph(CacheLayer::new(100, HOUR).layer(answer(calls.clone())));

    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#1"]);
    assert_eq!(g.invoke(query("go")).await.unwrap().log, ["go#2"]);
    // The default key reads the whole state: a field the node ignores still tells calls apart.
    let other = Tally {
        other: 7,
        ..query("rust")
    };
    assert_eq!(g.invoke(other).await.unwrap().log, ["rust#3"]);
    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#1"]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_key_of_your_own_decides_what_tells_calls_apart() {
    let calls = Arc::new(AtomicU64::new(0));
    let cache = CacheLayer::new(100, HOUR).with_key(|s: &Tally, _: &Context| s.query.clone());
    let g = graph(cache.layer(answer(calls.clone())));

    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#1"]);
    let other = Tally {
        other: 7,
        ..query("rust")
    };
    assert_eq!(g.invoke(other).await.unwrap().log, ["rust#1"]);
    assert_eq!(g.invoke(query("go")).await.unwrap().log, ["go#2"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn packet_inputs_are_part_of_the_default_key() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let node = CacheLayer::new(100, HOUR).layer(async_node(move |_: Arc<Tally>, ctx: Context| {
        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let input: String = ctx.input()?;
            Ok(TallyUpdate::new().log(vec![format!("{input}#{call}")]))
        }
    }));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("answer", node)
        .add_conditional_edges(START, ["answer"], |_: &Tally| {
            Route::packets(["x", "y", "x"].map(|i| Packet::new("answer", i)))
        })
        .add_edge("answer", END);
    let g = b.compile().unwrap();

    // One task after the other: the third (input "x" again) hits what the first stored.
    let done = g
        .run_with(Tally::default(), RunConfig::new().mode(Mode::Sequential))
        .await
        .unwrap();
    assert_eq!(done.log, ["x#1", "y#2", "x#1"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn results_expire_after_the_time_to_live() {
    // The cache reads the real clock. Only the expiry is timed here, and only from below: the
    // test sleeps six times the time to live.
    let calls = Arc::new(AtomicU64::new(0));
    let cache = CacheLayer::new(100, Duration::from_millis(50));
    let g = graph(cache.layer(answer(calls.clone())));

    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#2"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalidate_all_drops_every_result() {
    let calls = Arc::new(AtomicU64::new(0));
    let cache = CacheLayer::new(100, HOUR);
    let g = graph(cache.layer(answer(calls.clone())));

    g.invoke(query("rust")).await.unwrap();
    cache.invalidate_all();
    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#2"]);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let flaky = async_node(move |s: Arc<Tally>, _| {
        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call == 1 {
                return Err::<TallyUpdate, BoxError>("the service is down".into());
            }
            Ok(TallyUpdate::new().log(vec![format!("{}#{call}", s.query)]))
        }
    });
    let g = graph(CacheLayer::new(100, HOUR).layer(flaky));

    let err = g.invoke(query("rust")).await.unwrap_err();
    let source = std::error::Error::source(&err).expect("the node's error");
    assert_eq!(
        source.to_string(),
        "the service is down",
        "the node's own error"
    );
    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#2"]);
    assert_eq!(g.invoke(query("rust")).await.unwrap().log, ["rust#2"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_go_to_is_cached_with_the_update() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let pick = async_node(move |_: Arc<Tally>, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(Command::new(TallyUpdate::note("pick")).goto("b")) }
    });
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("pick", CacheLayer::new(100, HOUR).layer(pick))
        .add_node("a", |_, _| async { Ok(TallyUpdate::note("a")) })
        .add_node("b", |_, _| async { Ok(TallyUpdate::note("b")) })
        .add_edge(START, "pick")
        .add_goto_edges("pick", ["a", "b"])
        .add_edge("a", END)
        .add_edge("b", END);
    let g = b.compile().unwrap();

    for _ in 0..2 {
        assert_eq!(g.invoke(Tally::default()).await.unwrap().log, ["pick", "b"]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn one_layer_on_two_nodes_keeps_their_results_apart() {
    let calls = Arc::new(AtomicU64::new(0));
    let cache = CacheLayer::new(100, HOUR);
    let mut b = GraphBuilder::<Tally>::new();
    // Both nodes run in one step, on one snapshot: only the node's name tells their keys apart.
    b.add_node_with("one", cache.layer(answer(calls.clone())))
        .add_node_with("two", cache.clone().layer(answer(calls.clone())))
        .add_edges(START, ["one", "two"])
        .add_edge("one", END)
        .add_edge("two", END);
    let g = b.compile().unwrap();
    let sequential = || RunConfig::new().mode(Mode::Sequential);

    let done = g.run_with(query("q"), sequential()).await.unwrap();
    assert_eq!(done.log, ["q#1", "q#2"]);
    let again = g.run_with(query("q"), sequential()).await.unwrap();
    assert_eq!(again.log, ["q#1", "q#2"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), 2);
}

// Paused time on one thread: every task reaches the cache before the first call's sleep ends.
#[tokio::test(start_paused = true)]
async fn concurrent_calls_with_one_key_run_the_node_once() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let slow = async_node(move |_: Arc<Tally>, ctx: Context| {
        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let input: String = ctx.input()?;
            Ok(TallyUpdate::new().log(vec![format!("{input}#{call}")]))
        }
    });
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("answer", CacheLayer::new(100, HOUR).layer(slow))
        .add_conditional_edges(START, ["answer"], |_: &Tally| {
            Route::packets((0..4).map(|_| Packet::new("answer", "same")))
        })
        .add_edge("answer", END);
    let done = b
        .compile()
        .unwrap()
        .run_with(Tally::default(), RunConfig::new().mode(Mode::Parallel))
        .await
        .unwrap();
    assert_eq!(done.log, ["same#1"; 4]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// Paused time on one thread: the second call reaches the cache while the first one runs.
#[tokio::test(start_paused = true)]
async fn a_failure_reaches_the_calls_that_waited_for_it_and_is_not_stored() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let flaky = async_node(move |_: Arc<Tally>, ctx: Context| {
        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if call == 1 {
                return Err::<TallyUpdate, BoxError>("the service is down".into());
            }
            let input: String = ctx.input()?;
            Ok(TallyUpdate::note(format!("{input}#{call}")))
        }
    });
    let (node, mut probe) = Shielded::new(CacheLayer::new(100, HOUR).layer(flaky));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("answer", node)
        .add_conditional_edges(START, ["answer"], |_: &Tally| {
            Route::packets((0..2).map(|_| Packet::new("answer", "same")))
        })
        .add_edge("answer", END);
    let g = b.compile().unwrap();
    let parallel = || RunConfig::new().mode(Mode::Parallel);

    assert!(g.run_with(Tally::default(), parallel()).await.is_err());
    let mut failures = vec![probe.next().await, probe.next().await];
    failures.sort_by_key(|r| format!("{r:?}"));
    let shared = Error::Shared {
        node: "answer".into(),
        message: "the service is down".into(),
    };
    assert_eq!(
        failures,
        [
            Report::Failed(shared.to_string()),
            Report::Failed("the service is down".into()),
        ],
        "the caller gets the node's own error, the waiter a shared one"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the waiter did not call the node"
    );

    let done = g.run_with(Tally::default(), parallel()).await.unwrap();
    assert_eq!(done.log, ["same#2", "same#2"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
