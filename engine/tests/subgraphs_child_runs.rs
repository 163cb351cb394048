//! Subgraph child runs: their events reach the parent's subscriber (or it is told what it
//! missed), a parent allowed a graph change resumes its changed child, and a new run never
//! takes the child runs a lost run of the same id left.

mod common;

use std::sync::Arc;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, Durability, END, EventKind, GraphBuilder, Mode, Resume,
    RunConfig, START,
};
use common::{Trace, TraceUpdate, crash_when, memory, stopped, sync_cfg};
use futures_util::StreamExt;
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// 6. Subgraphs.
// ---------------------------------------------------------------------------------------------

#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, agentgraph_macros::State,
)]
#[state(crate = agentgraph_engine)]
struct Inner {
    #[reducer(add)]
    n: u64,
}

/// A child chain of `len` trivial nodes.
fn child_chain(len: usize) -> CompiledGraph<Inner> {
    let mut b = GraphBuilder::<Inner>::new();
    let names: Vec<String> = (0..len).map(|i| format!("c{i}")).collect();
    for name in &names {
        b.add_node(name.clone(), |_, _| async { Ok(InnerUpdate::new().n(1)) });
    }
    b.add_edge(START, &names[0]);
    for w in names.windows(2) {
        b.add_edge(&w[0], &w[1]);
    }
    b.add_edge(&names[len - 1], END);
    b.compile().unwrap()
}

/// A subgraph's events reach the parent's subscriber, or the subscriber is told how many it
/// missed (DESIGN §7: "a slow subscriber is told how many events it missed"). A child that
/// never waits runs to its end in one poll of the relay; the relay then drains the child's
/// stream with `now_or_never`, which tokio's cooperative budget cuts off after about 128
/// events: the rest are dropped without a word. (Past the child's own capacity, 4,096 events,
/// the child stream's `Missed` errors are dropped silently too.) A 200-node child (about 800
/// events) shows it; a 20-node child passes.
#[tokio::test]
async fn a_subgraph_never_drops_events_silently() {
    let len = 200;
    let mut b = GraphBuilder::<Trace>::new();
    b.add_subgraph(
        "sub",
        child_chain(len),
        |_: &Trace| Inner::default(),
        |c: Inner| TraceUpdate::new().count(c.n),
    )
    .add_edge(START, "sub")
    .add_edge("sub", END);
    let g = b.compile().unwrap();
    // The parent's own buffer is large enough for everything.
    let run = g.run_with(
        Trace::default(),
        RunConfig::new()
            .event_capacity(1 << 20)
            .mode(Mode::Sequential),
    );
    let events = run.events();
    let state = run.await.unwrap();
    assert_eq!(state.count, len as u64);
    let (mut nested, mut lagged) = (0usize, 0u64);
    let events: Vec<_> = events.collect().await;
    for e in events {
        match e {
            Ok(e) => {
                if let EventKind::Subgraph { event, .. } = &e.kind
                    && matches!(event.kind, EventKind::NodeStarted { .. })
                {
                    nested += 1;
                }
            }
            Err(missed) => lagged += missed.0,
        }
    }
    assert!(
        nested == len || lagged > 0,
        "the parent's subscriber saw {nested} of the child's {len} NodeStarted events and was \
         told of no missed event"
    );
}

/// A parent resumed with `allow_graph_change(true)` after its subgraph's graph changed (which
/// changes the parent's fingerprint too: it includes the child's) resumes the child without
/// that permission: the child fails with `GraphChanged`, and so does every later resume.
#[tokio::test]
async fn a_parent_allowed_a_graph_change_resumes_its_changed_subgraph() {
    let store = memory();
    let child = |extra: bool| {
        let mut b = GraphBuilder::<Inner>::new();
        b.add_node("ask", |_, ctx: Context| async move {
            let n: u64 = ctx.interrupt("n?")?;
            Ok::<_, BoxError>(InnerUpdate::new().n(n))
        })
        .add_edge(START, "ask");
        if extra {
            b.add_node("more", |_, _| async { Ok(InnerUpdate::new().n(100)) })
                .add_edge("ask", "more")
                .add_edge("more", END);
        } else {
            b.add_edge("ask", END);
        }
        b.compile().unwrap()
    };
    let parent = |inner: CompiledGraph<Inner>| {
        let mut b = GraphBuilder::<Trace>::new();
        b.add_subgraph(
            "sub",
            inner,
            |_: &Trace| Inner::default(),
            |c: Inner| TraceUpdate::new().count(c.n),
        )
        .add_edge(START, "sub")
        .add_edge("sub", END);
        b.compile().unwrap()
    };
    let v1 = parent(child(false));
    let asked = stopped(
        v1.run_with(Trace::default(), sync_cfg(&store, "p"))
            .await
            .unwrap_err(),
    );
    // The child graph is changed (a node added) and the parent resumed, allowing the change.
    let v2 = parent(child(true));
    assert_ne!(v1.fingerprint(), v2.fingerprint());
    let result = v2
        .resume_with(
            "p",
            Resume::new().answer(&asked[0].id, 1),
            sync_cfg(&store, "p").allow_graph_change(true),
        )
        .await;
    match result {
        Ok(state) => assert_eq!(state.count, 101),
        Err(e) => panic!("the permission did not reach the child run: {e}"),
    }
}

/// A child run is found by its id alone (`{run}/@{node}/{task id}`, all derived from the parent's
/// run id), so a child left by an earlier parent of the same id is taken for this parent's own.
/// With `Durability::Exit` a crash loses the whole parent ("a crash loses the whole run"), but
/// the child, which completed, wrote itself at its end: a new run under the same id (with a
/// different input) gets the old child's result without running the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_never_takes_the_child_runs_of_a_lost_run_of_the_same_id() {
    let store = memory();
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let waiting = Arc::new(Notify::new());
    let mut child = GraphBuilder::<Inner>::new();
    child
        .add_node("add_ten", |_, _| async { Ok(InnerUpdate::new().n(10)) })
        .add_edge(START, "add_ten")
        .add_edge("add_ten", END);
    let mut b = GraphBuilder::<Trace>::new();
    let (h, w) = (hang.clone(), waiting.clone());
    b.add_subgraph(
        "sub",
        child.compile().unwrap(),
        |t: &Trace| Inner { n: t.count },
        |c: Inner| TraceUpdate::new().last(c.n.to_string()),
    )
    .add_node("after", move |_, _| {
        let (hang, waiting) = (h.clone(), w.clone());
        async move {
            if hang.load(std::sync::atomic::Ordering::SeqCst) {
                waiting.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(TraceUpdate::new())
        }
    })
    .add_edge(START, "sub")
    .add_edge("sub", "after")
    .add_edge("after", END);
    let g = b.compile().unwrap();
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("job")
            .durability(Durability::Exit)
    };
    let one = Trace {
        count: 1,
        ..Trace::default()
    };
    crash_when(g.run_with(one, config()), &waiting).await;
    assert!(
        store.get_run("job").await.unwrap().is_none(),
        "Exit durability: the crashed run left nothing"
    );

    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let five = Trace {
        count: 5,
        ..Trace::default()
    };
    let state = g.run_with(five, config()).await.unwrap();
    assert_eq!(
        state.last, "15",
        "the subgraph's result belongs to another run's input"
    );
}
