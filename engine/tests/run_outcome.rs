//! `Run::outcome` and `RunHandle::outcome`: a stop at interrupts is an outcome, not an error;
//! every other error stays one.

mod common;

use std::sync::Arc;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{
    CheckpointStore, Context, END, Error, GraphBuilder, InterruptKind, Resume, RunConfig,
    RunOutcome, START,
};
use common::{Trace, TraceUpdate};

fn cfg(store: &Arc<dyn CheckpointStore>, run: &str) -> RunConfig {
    RunConfig::new().store(store.clone()).run_id(run)
}

/// START -> ask -> END: `ask` interrupts, then notes the answer.
fn asking() -> agentgraph_engine::CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("ask", |_, ctx: Context| async move {
        let answer: String = ctx.interrupt("name?")?;
        Ok(TraceUpdate::note(answer))
    })
    .add_edge(START, "ask")
    .add_edge("ask", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn a_completed_run_is_a_completed_outcome() {
    let graph = common::chain(2, |_, _| async { Ok(TraceUpdate::new().count(1)) });
    let outcome = graph.run(Trace::default()).outcome().await.unwrap();
    assert!(outcome.interrupted().is_none());
    assert_eq!(outcome.completed().map(|t| t.count), Some(2));
    let spawned = graph.run(Trace::default()).spawn().outcome().await.unwrap();
    assert_eq!(spawned.completed().map(|t| t.count), Some(2));
}

#[tokio::test]
async fn an_interrupted_run_is_an_interrupted_outcome_until_resumed() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let graph = asking();
    let outcome = graph
        .run_with(Trace::default(), cfg(&store, "q"))
        .outcome()
        .await
        .unwrap();
    let RunOutcome::Interrupted(stop) = &outcome else {
        panic!("expected an interrupt, got {outcome:?}");
    };
    assert_eq!((stop.run_id.as_str(), stop.step), ("q", 1));
    assert_eq!(stop.interrupts[0].kind, InterruptKind::Node);
    assert_eq!(stop.interrupts[0].node, "ask");
    assert!(outcome.interrupted().is_some());
    let id = stop.interrupts[0].id.clone();

    // Resumed without an answer, it stops again: spawned, the same outcome.
    let again = graph
        .resume("q", cfg(&store, "q"))
        .spawn()
        .outcome()
        .await
        .unwrap();
    assert!(matches!(&again, RunOutcome::Interrupted(s) if s.interrupts[0].id == id));

    let done = graph
        .resume_with("q", Resume::new().answer(&id, "Ada"), cfg(&store, "q"))
        .outcome()
        .await
        .unwrap();
    assert_eq!(done.completed().unwrap().log, ["Ada"]);

    // The plain API still returns the stop as an error.
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let e = graph
        .run_with(Trace::default(), cfg(&store, "q"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)));
}

#[tokio::test]
async fn other_errors_stay_errors() {
    let graph = common::chain(1, |_, _| async { Err("no".into()) });
    let e = graph.run(Trace::default()).outcome().await.unwrap_err();
    assert!(matches!(e, Error::NodeFailed { .. }), "{e:?}");
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let e = graph.resume("none", cfg(&store, "none")).outcome().await;
    assert!(matches!(e, Err(Error::RunNotFound(_))), "{e:?}");
}
