//! The state of a stopped step: after a step stops (an interrupt in one branch, a failure in
//! another), the finished siblings' saved writes show in `GraphHistory::pending`,
//! `pending_state` and `StoreInspector::pending`, `next` leaves them out, and a resume does not
//! run them again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, Error, GraphBuilder, PendingStatus, Resume, START,
    StoreInspector,
};
use common::{Calls, Trace, TraceUpdate, cfg, stopped, stores};

/// `START -> [ask, write] -> END`: `write` appends to the log; `ask` either asks (an
/// interrupt) or fails while `fail` is set, and sets `last`.
fn siblings(calls: &Calls, fail: Option<Arc<AtomicBool>>) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    let (c1, c2) = (calls.clone(), calls.clone());
    b.add_node("ask", move |_, ctx: Context| {
        c1.hit("ask");
        let fail = fail.clone();
        async move {
            let last: String = match &fail {
                Some(fail) if fail.load(Ordering::SeqCst) => return Err("down".into()),
                Some(_) => "fixed".to_owned(),
                None => ctx.interrupt(&"name?")?,
            };
            Ok::<_, BoxError>(TraceUpdate::new().last(last).count(1))
        }
    })
    .add_node("write", move |_, _| {
        c2.hit("write");
        async move { Ok(TraceUpdate::note("draft").count(10)) }
    })
    .add_edge(START, "ask")
    .add_edge(START, "write")
    .add_edge("ask", END)
    .add_edge("write", END);
    b.compile().unwrap()
}

/// What the views show of the stopped step of `run`, whose `ask` did not finish with
/// `status`, while `write` did.
async fn views_show_the_finished_sibling(
    g: &CompiledGraph<Trace>,
    store: &Arc<dyn agentgraph_engine::CheckpointStore>,
    run: &str,
    status: PendingStatus,
) -> Trace {
    let history = g.history(store.clone());
    let checkpoints = history.checkpoints(run).await.unwrap();
    let newest = checkpoints.last().unwrap();
    assert_eq!(newest.step, 0);
    assert_eq!(newest.next, ["ask"]);
    assert_eq!(newest.finished, ["write"]);
    // The untyped view says the same.
    let untyped = StoreInspector::new(store.clone());
    let plain = untyped.checkpoints(run).await.unwrap();
    assert_eq!(plain.last().unwrap().next, newest.next);
    assert_eq!(plain.last().unwrap().finished, newest.finished);

    let pending = history.pending(run).await.unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let (ask, write) = (&pending[0], &pending[1]);
    assert_eq!((ask.node.as_str(), ask.status), ("ask", status));
    assert_eq!(
        (write.node.as_str(), write.status),
        ("write", PendingStatus::Done)
    );
    assert_eq!(write.step, 1);
    assert_eq!(write.attempts, 1);
    assert_eq!(
        write.written.as_deref(),
        Some(&["log".into(), "count".into()][..])
    );
    assert_eq!(ask.written, None);
    let plain = untyped.pending(run).await.unwrap();
    assert_eq!(plain.len(), 2);
    assert_eq!(plain[1].status, PendingStatus::Done);
    assert_eq!(plain[1].written, None);
    assert_eq!(plain[1].task, write.task);

    // The committed state has nothing of the step; the tentative one has `write`'s write.
    assert_eq!(history.state(run, None).await.unwrap(), Trace::default());
    let tentative = history.pending_state(run).await.unwrap();
    assert_eq!(tentative.step, 0);
    assert_eq!(tentative.state.log, ["draft"]);
    assert_eq!(tentative.state.count, 10);
    assert_eq!(tentative.applied.len(), 1);
    assert_eq!(tentative.applied[0], *write);
    tentative.state
}

#[tokio::test]
async fn an_interrupted_step_shows_its_finished_sibling() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let g = siblings(&calls, None);
        let interrupts = stopped(
            g.run_with(Trace::default(), cfg(&store, "ask"))
                .await
                .unwrap_err(),
        );
        let pending = g.history(store.clone()).pending("ask").await.unwrap();
        assert_eq!(pending[0].interrupts, [interrupts[0].id.clone()]);
        let tentative =
            views_show_the_finished_sibling(&g, &store, "ask", PendingStatus::Interrupted).await;

        let resume = Resume::new().answer(&interrupts[0].id, "Ada");
        let done = g
            .resume_with("ask", resume, cfg(&store, "ask"))
            .await
            .unwrap();
        assert_eq!(calls.get("write"), 1, "the finished sibling ran again");
        assert_eq!(calls.get("ask"), 2);
        // The final state is the tentative one plus the rest of the step.
        let mut expected = tentative;
        expected.last = "Ada".to_owned();
        expected.count += 1;
        assert_eq!(done, expected);
        let history = g.history(store.clone());
        assert!(history.pending("ask").await.unwrap().is_empty());
        assert!(
            history.checkpoints("ask").await.unwrap()[1]
                .finished
                .is_empty()
        );
        assert_eq!(history.pending_state("ask").await.unwrap().state, done);
    }
}

#[tokio::test]
async fn a_failed_step_shows_its_finished_sibling() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let fail = Arc::new(AtomicBool::new(true));
        let g = siblings(&calls, Some(fail.clone()));
        let e = g
            .run_with(Trace::default(), cfg(&store, "fail"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NodeFailed { .. }), "{e:?}");
        let tentative =
            views_show_the_finished_sibling(&g, &store, "fail", PendingStatus::Failed).await;
        let pending = g.history(store.clone()).pending("fail").await.unwrap();
        assert!(pending[0].error.as_deref().unwrap().contains("down"));

        fail.store(false, Ordering::SeqCst);
        let done = g.resume("fail", cfg(&store, "fail")).await.unwrap();
        assert_eq!(calls.get("write"), 1, "the finished sibling ran again");
        let mut expected = tentative;
        expected.last = "fixed".to_owned();
        expected.count += 1;
        assert_eq!(done, expected);
    }
}

#[tokio::test]
async fn a_finished_run_has_nothing_pending() {
    let store = common::memory();
    let g = common::counting_chain(2);
    let done = g
        .run_with(Trace::default(), cfg(&store, "done"))
        .await
        .unwrap();
    let history = g.history(store.clone());
    assert!(history.pending("done").await.unwrap().is_empty());
    let tentative = history.pending_state("done").await.unwrap();
    assert_eq!(tentative.state, done);
    assert_eq!(tentative.step, 2);
    assert!(tentative.applied.is_empty());
    assert!(matches!(
        history.pending("nope").await,
        Err(Error::RunNotFound(_))
    ));
}
