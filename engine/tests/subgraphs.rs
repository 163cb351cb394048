//! Subgraphs: state mapping, nested events, namespaced checkpoints, crash-resume and
//! interrupts inside a child graph.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_checkpoint::{MemoryStore, SledStore};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, Durability, END, Error, EventKind,
    GraphBuilder, InterruptKind, Mode, Resume, RunConfig, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Inner {
    topic: String,
    #[reducer(append)]
    steps: Vec<String>,
}

/// START -> one -> two -> three -> END over `Inner`; `two` asks for a value when `ask` is set.
/// `gate` holds `three` back until it is released.
fn child(calls: &Calls, ask: bool, gate: &Arc<AtomicBool>) -> CompiledGraph<Inner> {
    let mut b = GraphBuilder::<Inner>::new();
    for name in ["one", "two", "three"] {
        let (calls, gate) = (calls.clone(), gate.clone());
        b.add_node(name, move |s: Arc<Inner>, ctx: Context| {
            calls.hit(name);
            let gate = gate.clone();
            async move {
                let mut note = format!("{name}({})", s.topic);
                if name == "two" && ask {
                    let answer: String = ctx.interrupt(&format!("how should {} go?", s.topic))?;
                    note = format!("{note}={answer}");
                }
                if name == "three" {
                    while !gate.load(Ordering::SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
                Ok::<_, BoxError>(InnerUpdate::new().steps(vec![note]))
            }
        });
    }
    b.add_edge(START, "one")
        .add_edge("one", "two")
        .add_edge("two", "three")
        .add_edge("three", END);
    b.compile().unwrap()
}

/// START -> before -> sub -> after -> END over `Trace`, `sub` running `inner`.
fn parent(calls: &Calls, inner: CompiledGraph<Inner>) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["before", "after"] {
        let calls = calls.clone();
        b.add_node(name, move |_, _| {
            calls.hit(name);
            async move { Ok(TraceUpdate::note(name)) }
        });
    }
    b.add_subgraph(
        "sub",
        inner,
        |t: &Trace| Inner {
            topic: format!("{} notes", t.log.len()),
            steps: Vec::new(),
        },
        |i: Inner| TraceUpdate::new().log(i.steps).count(1),
    )
    .add_edge(START, "before")
    .add_edge("before", "sub")
    .add_edge("sub", "after")
    .add_edge("after", END);
    b.compile().unwrap()
}

fn open() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subgraph_maps_state_in_and_out_and_nests_its_events() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        let calls = Calls::default();
        let g = parent(&calls, child(&calls, false, &open()));
        let run = g.run_with(Trace::default(), RunConfig::new().mode(mode));
        let events = run.events();
        let state = run.await.unwrap();
        assert_eq!(
            state.log,
            [
                "before",
                "one(1 notes)",
                "two(1 notes)",
                "three(1 notes)",
                "after"
            ]
        );
        assert_eq!(state.count, 1);
        let events: Vec<_> = events.map(Result::unwrap).collect().await;
        let nested: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Subgraph { node, event, .. } => match &event.kind {
                    EventKind::NodeFinished { node: inner, .. } => Some(format!("{node}/{inner}")),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(nested, ["sub/one", "sub/two", "sub/three"]);
        // The child's events come before the subgraph node finishes in the parent.
        let sub_done = events
            .iter()
            .position(
                |e| matches!(&e.kind, EventKind::NodeFinished { node, .. } if &**node == "sub"),
            )
            .unwrap();
        let last_nested = events
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::Subgraph { .. }))
            .unwrap();
        assert!(last_nested < sub_done);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_a_subgraph_resumes_the_child_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let calls = Calls::default();
    let gate = Arc::new(AtomicBool::new(false));
    let g = parent(&calls, child(&calls, false, &gate));
    let config = || {
        RunConfig::new()
            .store(store.clone())
            .run_id("parent")
            .durability(Durability::Sync)
    };
    let run = g.run_with(Trace::default(), config());
    let mut events = run.events();
    let fut = run.into_future();
    // The "crash": the run is dropped once the child has checkpointed its step 2 and is
    // held at `three`.
    tokio::select! {
        r = fut => panic!("the run ended: {r:?}"),
        () = async {
            while let Some(e) = events.next().await {
                if let EventKind::Subgraph { event, .. } = &e.unwrap().kind
                    && matches!(event.kind, EventKind::CheckpointSaved { step: 2, .. })
                {
                    return;
                }
            }
        } => {}
    }
    assert_eq!((calls.get("one"), calls.get("two")), (1, 1));

    // The child is stored under the parent's run.
    let runs = g.history(store.clone()).runs().await.unwrap();
    let ids: Vec<_> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[1].starts_with("parent/@sub/"), "{ids:?}");

    gate.store(true, Ordering::SeqCst);
    let state = loop {
        match g.resume("parent", config()).await {
            Err(Error::Store(agentgraph_engine::StoreError::RunBusy { .. })) => {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(
        state.log,
        [
            "before",
            "one(1 notes)",
            "two(1 notes)",
            "three(1 notes)",
            "after"
        ]
    );
    // The child's finished steps did not run again.
    assert_eq!(
        (calls.get("before"), calls.get("one"), calls.get("two")),
        (1, 1, 1)
    );
    assert_eq!(calls.get("after"), 1);

    // Deleting the parent deletes its child.
    g.history(store.clone()).delete("parent").await.unwrap();
    assert!(g.history(store.clone()).runs().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_interrupt_inside_a_subgraph_stops_the_parent_and_takes_its_answer() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let calls = Calls::default();
    let g = parent(&calls, child(&calls, true, &open()));
    let config = || RunConfig::new().store(store.clone()).run_id("asks");
    let e = g.run_with(Trace::default(), config()).await.unwrap_err();
    let Error::Interrupted(stop) = e else {
        panic!("{e:?}")
    };
    let i = &stop.interrupts[0];
    assert_eq!(
        (i.kind, i.node.as_str(), i.path.as_slice()),
        (InterruptKind::Node, "two", ["sub".to_owned()].as_slice())
    );
    assert_eq!(i.payload, "how should 1 notes go?");
    assert_eq!(
        store.get_run("asks").await.unwrap().unwrap().status,
        RunStatus::Interrupted
    );
    assert_eq!(
        g.history(store.clone()).interrupts("asks").await.unwrap(),
        stop.interrupts
    );

    let resume = Resume::new().answer(&i.id, "carefully");
    let state = g.resume_with("asks", resume, config()).await.unwrap();
    assert_eq!(
        state.log,
        [
            "before",
            "one(1 notes)",
            "two(1 notes)=carefully",
            "three(1 notes)",
            "after"
        ]
    );
    // `one` finished in the child before the interrupt and did not run again.
    assert_eq!((calls.get("one"), calls.get("two")), (1, 2));
}

/// Defect 12: starting run `team` deleted run `team/1`, taken for one of its subgraph runs.
/// Subgraph runs are named `{run}/@{node}/{task}` and `/@` is reserved for them: starting a
/// run deletes the subgraph runs an earlier, lost run of its id left, and nothing else.
#[tokio::test]
async fn starting_a_run_deletes_only_the_subgraph_runs_of_its_id() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let calls = Calls::default();
    let g = parent(&calls, child(&calls, false, &open()));
    let config = |id: &str| RunConfig::new().store(store.clone()).run_id(id);
    let history = g.history(store.clone());
    let ids = || async {
        let runs = history.runs().await.unwrap();
        runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>()
    };

    let first = g
        .run_with(Trace::default(), config("team/1"))
        .await
        .unwrap();
    let stored = ids().await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored[1].starts_with("team/1/@sub/"), "{stored:?}");
    // The subgraph run an earlier run `team` left when it was lost.
    let stale = "team/@sub/00000000000000000000000000000000";
    let mut batch = agentgraph_checkpoint::WriteBatch::new();
    batch.put_run(agentgraph_engine::RunRecord::new(
        stale,
        RunStatus::Running,
        0,
        0,
    ));
    store.commit(batch).await.unwrap();

    let second = g.run_with(Trace::default(), config("team")).await.unwrap();
    assert_eq!(second, first);
    let stored = ids().await;
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert_eq!(stored[0], "team");
    assert!(stored[1].starts_with("team/1"), "{stored:?}");
    assert!(stored[2].starts_with("team/1/@sub/"), "{stored:?}");
    assert!(stored[3].starts_with("team/@sub/"), "{stored:?}");
    assert!(!stored.iter().any(|id| id == stale), "{stored:?}");
    assert_eq!(history.state("team/1", None).await.unwrap(), first);
    assert_eq!(
        agentgraph_engine::StoreInspector::parent_run(&stored[2]),
        Some("team/1")
    );
    assert_eq!(
        history.inspector().subgraph_runs("team").await.unwrap(),
        [stored[3].clone()]
    );

    // Deleting `team` deletes its subgraph run, not `team/1` or its subgraph run.
    history.delete("team").await.unwrap();
    assert_eq!(ids().await, stored[1..3]);
}

/// An id with the subgraph mark `/@` is refused for a new run and a fork, with a typed error,
/// before anything is stored.
#[tokio::test]
async fn a_run_id_with_the_subgraph_mark_is_refused() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let calls = Calls::default();
    let g = parent(&calls, child(&calls, false, &open()));
    let config = |id: &str| RunConfig::new().store(store.clone()).run_id(id);
    for id in ["team/@sub/1", "/@", "a/@"] {
        let e = g.run_with(Trace::default(), config(id)).await.unwrap_err();
        assert!(
            matches!(&e, Error::ReservedRunId(run) if run == id),
            "{e:?}"
        );
        assert!(e.to_string().contains("reserved"), "{e}");
    }
    // Without a store too: the id is the same whether or not it is stored.
    let e = g
        .run_with(Trace::default(), RunConfig::new().run_id("x/@y"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReservedRunId(_)), "{e:?}");
    assert_eq!(calls.get("before"), 0);
    let history = g.history(store.clone());
    assert!(history.runs().await.unwrap().is_empty());

    // Ids with `@` or `/` elsewhere are a user's to choose; a fork into a marked id is refused.
    g.run_with(Trace::default(), config("me@team/1"))
        .await
        .unwrap();
    let e = history
        .fork("me@team/1", 0, "me@team/1/@fork", |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReservedRunId(_)), "{e:?}");
    // A checkpoint the run does not have is told apart from a run the store does not have.
    let e = history
        .fork("me@team/1", 99, "copy", |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::CheckpointNotFound { run, step: 99 } if run == "me@team/1"),
        "{e:?}"
    );
    let e = history.state("nope", Some(1)).await.unwrap_err();
    assert!(
        matches!(&e, Error::RunNotFound(run) if run == "nope"),
        "{e:?}"
    );
}
