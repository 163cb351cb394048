//! Human-in-the-loop interrupts: before and after named nodes, from inside nodes, several at
//! once in parallel branches, answered and edited on resume.

mod common;

use std::sync::Arc;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, Error, EventKind, GraphBuilder,
    InterruptKind, Mode, Resume, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate, cfg, stopped, stores};
use futures_util::StreamExt;

/// START -> draft -> review -> publish -> END, each node noting its name.
fn pipeline(calls: &Calls) -> GraphBuilder<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["draft", "review", "publish"] {
        let calls = calls.clone();
        b.add_node(name, move |_, _| {
            calls.hit(name);
            async move { Ok(TraceUpdate::note(name).count(1)) }
        });
    }
    b.add_edge(START, "draft")
        .add_edge("draft", "review")
        .add_edge("review", "publish")
        .add_edge("publish", END);
    b
}

#[tokio::test]
async fn interrupt_before_stops_the_step_and_resume_runs_it() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let mut b = pipeline(&calls);
        b.interrupt_before(["review"]);
        let g = b.compile().unwrap();
        let run = g.run_with(Trace::default(), cfg(&store, "before"));
        let events = run.events();
        let interrupts = stopped(run.await.unwrap_err());
        assert_eq!(interrupts.len(), 1);
        assert_eq!(
            (
                interrupts[0].kind,
                interrupts[0].node.as_str(),
                interrupts[0].step
            ),
            (InterruptKind::Before, "review", 2)
        );
        assert_eq!(calls.get("review"), 0);
        let events: Vec<_> = events.map(Result::unwrap).collect().await;
        assert!(matches!(
            &events.last().unwrap().kind,
            EventKind::RunInterrupted { step: 2, interrupts } if interrupts.len() == 1
        ));
        let record = store.get_run("before").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Interrupted);
        assert_eq!(
            g.history(store.clone()).interrupts("before").await.unwrap(),
            interrupts
        );

        // Resuming passes the gate; a second resume of the finished run does nothing more.
        let state = g.resume("before", cfg(&store, "before")).await.unwrap();
        assert_eq!(state.log, ["draft", "review", "publish"]);
        assert_eq!((calls.get("draft"), calls.get("review")), (1, 1));
        assert!(
            g.history(store.clone())
                .interrupts("before")
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn interrupt_after_stops_once_the_step_is_checkpointed() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let mut b = pipeline(&calls);
        b.interrupt_after(["draft"]);
        let g = b.compile().unwrap();
        let interrupts = stopped(
            g.run_with(Trace::default(), cfg(&store, "after"))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (
                interrupts[0].kind,
                interrupts[0].node.as_str(),
                interrupts[0].step
            ),
            (InterruptKind::After, "draft", 1)
        );
        // The draft is in the checkpoint, for a person to look at.
        let history = g.history(store.clone());
        assert_eq!(history.state("after", None).await.unwrap().log, ["draft"]);
        assert_eq!(history.interrupts("after").await.unwrap(), interrupts);
        let state = g.resume("after", cfg(&store, "after")).await.unwrap();
        assert_eq!(state.log, ["draft", "review", "publish"]);
        assert_eq!(calls.get("draft"), 1);
    }
}

/// START -> ask -> END: `ask` asks twice, and notes both answers.
fn two_questions(calls: &Calls) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    let calls = calls.clone();
    b.add_node("ask", move |state: Arc<Trace>, ctx: Context| {
        calls.hit("ask");
        async move {
            let name: String = ctx.interrupt(&serde_json::json!({ "question": "name?" }))?;
            let age: u32 = ctx.interrupt(&format!("age of {name}? ({} so far)", state.count))?;
            Ok::<_, BoxError>(TraceUpdate::note(format!("{name} is {age}")))
        }
    })
    .add_edge(START, "ask")
    .add_edge("ask", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn a_node_interrupt_is_answered_and_the_node_runs_again() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let g = two_questions(&calls);
        let first = stopped(
            g.run_with(Trace::default(), cfg(&store, "ask"))
                .await
                .unwrap_err(),
        );
        assert_eq!(first[0].kind, InterruptKind::Node);
        assert_eq!(first[0].payload, serde_json::json!({ "question": "name?" }));

        // Without an answer, the node asks again.
        let again = stopped(g.resume("ask", cfg(&store, "ask")).await.unwrap_err());
        assert_eq!(again, first);

        // The first answer leads to the second question.
        let resume = Resume::new().answer(&first[0].id, "Ada");
        let second = stopped(
            g.resume_with("ask", resume, cfg(&store, "ask"))
                .await
                .unwrap_err(),
        );
        assert_ne!(second[0].id, first[0].id);
        assert_eq!(second[0].payload, "age of Ada? (0 so far)");

        // The first answer is kept; the second completes the node.
        let resume = Resume::new().answer(&second[0].id, 36);
        let state = g
            .resume_with("ask", resume, cfg(&store, "ask"))
            .await
            .unwrap();
        assert_eq!(state.log, ["Ada is 36"]);
        assert_eq!(calls.get("ask"), 4);
    }
}

#[tokio::test]
async fn an_unknown_interrupt_id_or_a_wrong_answer_type_is_an_error() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let g = two_questions(&Calls::default());
    let first = stopped(
        g.run_with(Trace::default(), cfg(&store, "ask"))
            .await
            .unwrap_err(),
    );
    let e = g
        .resume_with("ask", Resume::new().answer("nope", 1), cfg(&store, "ask"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UnknownInterrupt { id, pending, .. } if id == "nope" && *pending == first[0].id),
        "{e:?}"
    );
    // An answer of the wrong type fails the node, naming the interrupt.
    let e = g
        .resume_with(
            "ask",
            Resume::new().answer(&first[0].id, 7),
            cfg(&store, "ask"),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("is not a `alloc::string::String`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parallel_interrupts_are_resumed_with_two_values() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let calls = Calls::default();
        let mut b = GraphBuilder::<Trace>::new();
        for name in ["legal", "finance"] {
            let calls = calls.clone();
            b.add_node(name, move |_, ctx: Context| {
                calls.hit(name);
                async move {
                    let verdict: String = ctx.interrupt(&format!("{name} review"))?;
                    Ok::<_, BoxError>(TraceUpdate::note(format!("{name}: {verdict}")))
                }
            });
        }
        let c = calls.clone();
        b.add_node("plain", move |_, _| {
            c.hit("plain");
            async { Ok(TraceUpdate::note("plain").count(1)) }
        });
        b.add_edges(START, ["legal", "finance", "plain"]);
        b.add_node("done", |_, _| async { Ok(TraceUpdate::note("done")) });
        b.add_join(["legal", "finance", "plain"], "done")
            .add_edge("done", END);
        let g = b.compile().unwrap();
        let run = format!("parallel-{mode:?}");
        let interrupts = stopped(
            g.run_with(Trace::default(), cfg(&store, &run).mode(mode))
                .await
                .unwrap_err(),
        );
        let nodes: Vec<_> = interrupts.iter().map(|i| i.node.as_str()).collect();
        assert_eq!(nodes, ["legal", "finance"]);
        let resume = Resume::new()
            .answer(&interrupts[1].id, "approved")
            .answer(&interrupts[0].id, "rejected");
        let state = g
            .resume_with(&run, resume, cfg(&store, &run).mode(mode))
            .await
            .unwrap();
        assert_eq!(
            state.log,
            ["legal: rejected", "finance: approved", "plain", "done"]
        );
        // `plain` finished before the stop and kept its write.
        assert_eq!(
            (calls.get("legal"), calls.get("finance"), calls.get("plain")),
            (2, 2, 1)
        );
    }
}

#[tokio::test]
async fn the_state_can_be_edited_at_an_interrupt() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let mut b = pipeline(&calls);
        b.interrupt_before(["publish"]);
        let g = b.compile().unwrap();
        stopped(
            g.run_with(Trace::default(), cfg(&store, "edit"))
                .await
                .unwrap_err(),
        );
        let resume = Resume::new().update(TraceUpdate::note("edited by a person").last("x".into()));
        let run = g.resume_with("edit", resume, cfg(&store, "edit"));
        let state = run.await.unwrap();
        assert_eq!(
            state.log,
            ["draft", "review", "edited by a person", "publish"]
        );
        assert_eq!(state.last, "x");
        // The edit is part of the checkpoint it was made at.
        let history = g.history(store.clone());
        let at_2 = history.state("edit", Some(2)).await.unwrap();
        assert_eq!(at_2.log, ["draft", "review", "edited by a person"]);
    }
}

#[tokio::test]
async fn without_a_store_an_interrupt_still_stops_the_run() {
    let calls = Calls::default();
    let mut b = pipeline(&calls);
    b.interrupt_before(["review"]);
    let interrupts = stopped(
        b.compile()
            .unwrap()
            .invoke(Trace::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(interrupts[0].node, "review");
}

#[test]
fn interrupt_settings_name_existing_nodes() {
    let mut b = pipeline(&Calls::default());
    b.interrupt_before(["reveiw"]);
    let e = b.compile().unwrap_err();
    assert_eq!(
        e.to_string(),
        "interrupt_before names node `reveiw`, which does not exist; add the node first"
    );
}
