//! `Resume::value`: one value answers the one interrupt a run waits on, without its id; with
//! several left it is an error listing them, with none an error too, and mixed with answers by
//! id it answers the one they leave. A rejected resume leaves the run waiting where it was.

mod common;

use std::collections::HashMap;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, Error, GraphBuilder, InterruptKind, Resume, RunStatus,
    START,
};
use common::{Trace, TraceUpdate, cfg, memory, stopped};

/// START -> [legal, finance] -> END: both ask for a verdict and note it.
fn two_reviews() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["legal", "finance"] {
        b.add_node(name, move |_, ctx: Context| async move {
            let verdict: String = ctx.interrupt(&format!("{name} review"))?;
            Ok::<_, BoxError>(TraceUpdate::note(format!("{name}: {verdict}")))
        });
    }
    b.add_edges(START, ["legal", "finance"])
        .add_edge("legal", END)
        .add_edge("finance", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn one_value_answers_the_one_interrupt_without_its_id() {
    let store = memory();
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("ask", |_, ctx: Context| async move {
        let answer: String = ctx.interrupt("name?")?;
        Ok::<_, BoxError>(TraceUpdate::note(answer))
    })
    .add_node("gated", |_, _| async { Ok(TraceUpdate::note("gated")) })
    .interrupt_before(["gated"])
    .add_edge(START, "ask")
    .add_edge("ask", "gated")
    .add_edge("gated", END);
    let g = b.compile().unwrap();
    let first = stopped(
        g.run_with(Trace::default(), cfg(&store, "one"))
            .await
            .unwrap_err(),
    );
    assert_eq!(first.len(), 1);
    let gate = stopped(
        g.resume_with("one", Resume::value("Ada"), cfg(&store, "one"))
            .await
            .unwrap_err(),
    );
    // The value reached the node; now a gate waits, and a value passes it too.
    assert_eq!((gate.len(), gate[0].kind), (1, InterruptKind::Before));
    let state = g
        .resume_with("one", Resume::value(()), cfg(&store, "one"))
        .await
        .unwrap();
    assert_eq!(state.log, ["Ada", "gated"]);
}

#[tokio::test]
async fn with_several_interrupts_a_value_is_an_error_that_lists_them() {
    let store = memory();
    let g = two_reviews();
    let waiting = stopped(
        g.run_with(Trace::default(), cfg(&store, "two"))
            .await
            .unwrap_err(),
    );
    let e = g
        .resume_with("two", Resume::value("approved"), cfg(&store, "two"))
        .await
        .unwrap_err();
    let Error::AmbiguousResumeValue {
        run,
        waiting: listed,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(run, "two");
    assert_eq!(listed, &waiting);
    let text = e.to_string();
    for i in &waiting {
        assert!(text.contains(&i.id) && text.contains(&i.node), "{text}");
    }
    // Nothing changed: the run waits on both, and answers by id still work.
    let history = g.history(store.clone());
    assert_eq!(history.interrupts("two").await.unwrap(), waiting);
    let record = history.run("two").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Interrupted);
    let resume = Resume::new()
        .answer(&waiting[0].id, "yes")
        .answer(&waiting[1].id, "no");
    let state = g
        .resume_with("two", resume, cfg(&store, "two"))
        .await
        .unwrap();
    assert_eq!(state.log, ["legal: yes", "finance: no"]);
}

#[tokio::test]
async fn with_no_interrupt_a_value_is_an_error() {
    let store = memory();
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("spin", |_, _| async { Ok(TraceUpdate::new().count(1)) })
        .add_edge(START, "spin")
        .add_conditional_edges("spin", ["spin", END], |s: &Trace| {
            if s.count < 3 { "spin" } else { END }
        });
    let g = b.compile().unwrap();
    // A failed run (stopped by its recursion limit) waits on nothing.
    let e = g
        .run_with(Trace::default(), cfg(&store, "none").recursion_limit(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { .. }), "{e:?}");
    let e = g
        .resume_with("none", Resume::value(1), cfg(&store, "none"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::NoInterruptToAnswer { run } if run == "none"),
        "{e:?}"
    );
    // It stays as it was, and resumes.
    let history = g.history(store.clone());
    let record = history.run("none").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(
        g.resume("none", cfg(&store, "none")).await.unwrap().count,
        3
    );
    // A completed run waits on nothing either.
    let e = g
        .resume_with("none", Resume::value(1), cfg(&store, "none"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoInterruptToAnswer { .. }), "{e:?}");
}

#[tokio::test]
async fn mixed_with_answers_by_id_a_value_answers_the_one_they_leave() {
    let store = memory();
    let g = two_reviews();
    let waiting = stopped(
        g.run_with(Trace::default(), cfg(&store, "mix"))
            .await
            .unwrap_err(),
    );

    // Every interrupt answered by id: the value has nothing left to answer.
    let all = Resume::value("x")
        .answer(&waiting[0].id, "a")
        .answer(&waiting[1].id, "b");
    let e = g
        .resume_with("mix", all, cfg(&store, "mix"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoInterruptToAnswer { .. }), "{e:?}");
    // An unknown id is named as such, before the value is placed.
    let unknown = Resume::value("x").answer("nope", "a");
    let e = g
        .resume_with("mix", unknown, cfg(&store, "mix"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UnknownInterrupt { id, .. } if id == "nope"),
        "{e:?}"
    );
    // A value that cannot be encoded names the interrupt it was for.
    let bad: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    let e = g
        .resume_with(
            "mix",
            Resume::value(bad).answer(&waiting[1].id, "b"),
            cfg(&store, "mix"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::AnswerEncode { id, .. } if *id == waiting[0].id),
        "{e:?}"
    );
    // The rejected resumes changed nothing.
    assert_eq!(
        g.history(store.clone()).interrupts("mix").await.unwrap(),
        waiting
    );

    // One answered by id, the other by the value.
    let resume = Resume::value("approved").answer(&waiting[1].id, "rejected");
    let state = g
        .resume_with("mix", resume, cfg(&store, "mix"))
        .await
        .unwrap();
    assert_eq!(state.log, ["legal: approved", "finance: rejected"]);
}
