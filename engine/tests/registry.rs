//! Graphs driven by name with JSON (`GraphRegistry`, `DynGraph`): a run from the state's JSON,
//! a thread's inputs, a resume with answers and an update, bad JSON named, cancellation.

mod common;

use agentgraph_engine::{
    BoxError, Context, DynOutcome, DynResume, END, Error, GraphBuilder, GraphRegistry, RunStatus,
    START,
};
use common::{Trace, TraceUpdate, cfg, memory};
use serde_json::json;

fn registry() -> GraphRegistry {
    let mut ask = GraphBuilder::<Trace>::new();
    ask.add_node("ask", |_, ctx: Context| async move {
        let answer: String = ctx.interrupt("name?")?;
        Ok::<_, BoxError>(TraceUpdate::note(answer).count(1))
    })
    .add_edge(START, "ask")
    .add_edge("ask", END);
    let mut slow = GraphBuilder::<Trace>::new();
    slow.add_node("slow", |_, _| async {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        Ok(TraceUpdate::new())
    })
    .add_edge(START, "slow")
    .add_edge("slow", END);
    GraphRegistry::new()
        .with("chain", common::counting_chain(3))
        .with("ask", ask.compile().unwrap())
        .with("slow", slow.compile().unwrap())
}

#[tokio::test]
async fn a_run_starts_from_the_states_json_and_ends_as_json() {
    let registry = registry();
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["ask", "chain", "slow"]
    );
    let store = memory();
    let chain = registry.get("chain").unwrap();
    let run = chain
        .start(json!({ "log": ["given"], "count": 10 }), cfg(&store, "r1"))
        .unwrap();
    assert_eq!(run.run_id(), "r1");
    let DynOutcome::Completed { state } = run.outcome().await.unwrap() else {
        panic!("expected a completed run")
    };
    assert_eq!(state["count"], 13);
    assert_eq!(state["log"][0], "given");
    assert_eq!(
        store.get_run("r1").await.unwrap().unwrap().status,
        RunStatus::Completed
    );
}

#[tokio::test]
async fn a_thread_takes_update_json_turn_after_turn() {
    let registry = registry();
    let store = memory();
    let chain = registry.get("chain").unwrap();
    for turn in 1..=2 {
        let run = chain
            .invoke_thread("t".into(), json!({ "count": 100 }), cfg(&store, "ignored"))
            .unwrap();
        assert_eq!(run.run_id(), "t");
        let DynOutcome::Completed { state } = run.outcome().await.unwrap() else {
            panic!("expected a completed turn")
        };
        assert_eq!(state["count"], 103 * turn);
    }
}

#[tokio::test]
async fn an_interrupted_run_is_resumed_with_json_answers() {
    let registry = registry();
    let store = memory();
    let ask = registry.get("ask").unwrap();
    let run = ask.start(json!({}), cfg(&store, "q")).unwrap();
    let DynOutcome::Interrupted { stop } = run.outcome().await.unwrap() else {
        panic!("expected an interrupt")
    };
    assert_eq!(stop.interrupts.len(), 1);
    let as_json = serde_json::to_value(DynOutcome::Interrupted { stop: stop.clone() }).unwrap();
    assert_eq!(as_json["status"], "interrupted");
    assert_eq!(as_json["run_id"], "q");

    let resume: DynResume = serde_json::from_value(json!({
        "answers": { stop.interrupts[0].id.clone(): "Ada" },
        "update": { "count": 5 },
    }))
    .unwrap();
    let run = ask.resume("q".into(), resume, cfg(&store, "q")).unwrap();
    let DynOutcome::Completed { state } = run.outcome().await.unwrap() else {
        panic!("expected the resumed run to complete")
    };
    assert_eq!(state["log"], json!(["Ada"]));
    assert_eq!(state["count"], 6);
}

#[tokio::test]
async fn json_that_is_not_the_graphs_is_an_error_naming_what_it_was_for() {
    let registry = registry();
    let chain = registry.get("chain").unwrap();
    let e = chain
        .start(json!({ "count": "ten" }), cfg(&memory(), "bad"))
        .unwrap_err();
    assert!(matches!(e, Error::Json { .. }), "{e:?}");
    assert!(e.to_string().contains("the run's input"), "{e}");
    let e = chain
        .invoke_thread("t".into(), json!([1, 2]), cfg(&memory(), "t"))
        .unwrap_err();
    assert!(e.to_string().contains("the thread's input"), "{e}");
    let e = serde_json::from_value::<DynResume>(json!({ "answer": 1 })).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
}

#[tokio::test]
async fn a_run_is_cancelled_through_its_handle() {
    let registry = registry();
    let store = memory();
    let run = registry
        .get("slow")
        .unwrap()
        .start(json!({}), cfg(&store, "s"))
        .unwrap();
    let (id, _events, cancel, outcome) = run.into_parts();
    assert_eq!(id, "s");
    cancel.cancel();
    let e = outcome.await.unwrap_err();
    assert!(matches!(e, Error::Cancelled { .. }), "{e:?}");
}
