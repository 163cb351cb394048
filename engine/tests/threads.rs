//! Threads: one run id invoked again and again, each time with a new input applied to the
//! state the last invocation left (`CompiledGraph::invoke_thread`). Every invocation is
//! checkpointed on the thread, so history, time travel and forks work across them; a thread
//! whose last invocation did not end refuses a new input until it is resumed; two invocations
//! at once are one too many (busy); joins, the recursion budget and pending tasks never leak
//! from one invocation into the next.

mod common;

use std::sync::Arc;

use agentgraph_engine::{
    CheckpointStore, CompiledGraph, Context, END, Error, EventKind, GraphBuilder, JoinPolicy,
    Resume, RunConfig, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate, cfg, memory, stores};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// `START -> reply -> END`: `reply` answers the last message and counts the turn.
fn echo() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::new();
    b.add_node("reply", |s: Arc<Trace>, _| async move {
        let heard = s.log.last().cloned().unwrap_or_default();
        Ok(TraceUpdate::note(format!("re: {heard}")).count(1))
    })
    .add_edge(START, "reply")
    .add_edge("reply", END);
    b.compile().unwrap()
}

fn say(message: &str) -> TraceUpdate {
    TraceUpdate::note(message)
}

/// The invocation of each checkpoint of `run`, in step order, with its step.
async fn invocations(
    g: &CompiledGraph<Trace>,
    store: &Arc<dyn CheckpointStore>,
    run: &str,
) -> Vec<(u64, u32)> {
    let checkpoints = g.history(store.clone()).checkpoints(run).await.unwrap();
    checkpoints.iter().map(|c| (c.step, c.invocation)).collect()
}

#[tokio::test]
async fn a_conversation_of_three_turns_continues_from_the_last_state() {
    let g = echo();
    for (store, _dir) in stores() {
        for (turn, message) in ["a", "b", "c"].into_iter().enumerate() {
            let run = g.invoke_thread("chat", say(message), cfg(&store, "ignored"));
            assert_eq!(run.run_id(), "chat", "the thread's id is the run's");
            let events = run.events();
            let state = run.await.unwrap();
            assert_eq!(state.count, turn as u64 + 1);
            let kinds: Vec<EventKind> = events.map(|e| e.unwrap().kind).collect().await;
            let invoked: Vec<_> = kinds
                .iter()
                .filter_map(|k| match k {
                    EventKind::ThreadInvoked {
                        invocation,
                        step,
                        fields,
                        ..
                    } => Some((*invocation, *step, fields.clone())),
                    _ => None,
                })
                .collect();
            let turn = turn as u32 + 1;
            assert_eq!(
                invoked,
                [(turn, u64::from(turn - 1) * 2, vec!["log".into()])],
                "one ThreadInvoked per invocation, at its first checkpoint"
            );
            let started = kinds
                .iter()
                .filter(|k| matches!(k, EventKind::RunStarted { .. }))
                .count();
            assert_eq!(started, usize::from(turn == 1), "a new thread starts a run");
        }
        let h = g.history(store.clone());
        let state = h.state("chat", None).await.unwrap();
        assert_eq!(state.log, ["a", "re: a", "b", "re: b", "c", "re: c"]);
        assert_eq!(
            invocations(&g, &store, "chat").await,
            [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3)],
            "history lists every invocation's checkpoints in order"
        );
        let checkpoints = h.checkpoints("chat").await.unwrap();
        for c in checkpoints.iter().filter(|c| c.step > 0 && c.step % 2 == 0) {
            assert_eq!(c.written, ["log"], "an input checkpoint holds the input");
            assert_eq!(c.next, ["reply"]);
        }
        let record = h.run("chat").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(record.last_step, Some(5));
    }
}

#[tokio::test]
async fn time_travel_and_a_fork_work_across_invocations() {
    let g = echo();
    let store = memory();
    for message in ["a", "b", "c"] {
        g.invoke_thread("chat", say(message), cfg(&store, "x"))
            .await
            .unwrap();
    }
    let h = g.history(store.clone());
    // The state at the end of turn 1.
    assert_eq!(h.state("chat", Some(1)).await.unwrap().log, ["a", "re: a"]);
    // The state after turn 2's input, before its reply.
    assert_eq!(
        h.state("chat", Some(2)).await.unwrap().log,
        ["a", "re: a", "b"]
    );
    // A fork from the end of turn 1 takes another second turn.
    h.fork("chat", 1, "chat-other", |_| {}).await.unwrap();
    let other = g
        .invoke_thread("chat-other", say("x"), cfg(&store, "x"))
        .await
        .unwrap();
    assert_eq!(other.log, ["a", "re: a", "x", "re: x"]);
    assert_eq!(
        invocations(&g, &store, "chat-other").await,
        [(1, 1), (2, 2), (3, 2)]
    );
    // The original is untouched, and goes on.
    let chat = g
        .invoke_thread("chat", say("d"), cfg(&store, "x"))
        .await
        .unwrap();
    assert_eq!(chat.log.len(), 8);
    assert_eq!(chat.log[6..], ["d", "re: d"]);
}

#[tokio::test]
async fn a_run_started_with_run_with_takes_its_next_input_as_a_thread() {
    let g = echo();
    let store = memory();
    let first = g
        .run_with(
            Trace {
                log: vec!["hello".into()],
                ..Trace::default()
            },
            cfg(&store, "chat"),
        )
        .await
        .unwrap();
    assert_eq!(first.log, ["hello", "re: hello"]);
    let next = g
        .invoke_thread("chat", say("again"), cfg(&store, "x"))
        .await
        .unwrap();
    assert_eq!(next.log, ["hello", "re: hello", "again", "re: again"]);
    assert_eq!(
        invocations(&g, &store, "chat").await,
        [(0, 1), (1, 1), (2, 2), (3, 2)]
    );
}

/// `START -> ask -> END`: `ask` waits for an answer when the last message is a question.
fn asking() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::new();
    b.add_node("ask", |s: Arc<Trace>, ctx: Context| async move {
        let last = s.log.last().cloned().unwrap_or_default();
        if last.ends_with('?') {
            let answer: String = ctx.interrupt(&format!("answer {last}"))?;
            return Ok(TraceUpdate::note(answer));
        }
        if last == "boom" {
            return Err("the node failed".into());
        }
        Ok(TraceUpdate::note(format!("re: {last}")))
    })
    .add_edge(START, "ask")
    .add_edge("ask", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn an_interrupted_thread_refuses_a_new_input_until_it_is_answered() {
    let g = asking();
    for (store, _dir) in stores() {
        let config = || cfg(&store, "x");
        let stop = g
            .invoke_thread("chat", say("why?"), config())
            .await
            .unwrap_err();
        assert!(matches!(stop, Error::Interrupted(_)), "{stop:?}");
        let before = invocations(&g, &store, "chat").await;
        let refused = g
            .invoke_thread("chat", say("hello"), config())
            .await
            .unwrap_err();
        match &refused {
            Error::ThreadNotReady { thread, status } => {
                assert_eq!((thread.as_str(), *status), ("chat", RunStatus::Interrupted));
            }
            other => panic!("expected ThreadNotReady, got {other:?}"),
        }
        assert!(refused.to_string().contains("resume it"), "{refused}");
        assert_eq!(
            invocations(&g, &store, "chat").await,
            before,
            "nothing written"
        );
        let record = g.history(store.clone()).run("chat").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Interrupted, "still waiting");

        let answered = g
            .resume_with("chat", Resume::value("because"), config())
            .await
            .unwrap();
        assert_eq!(answered.log, ["why?", "because"]);
        let next = g.invoke_thread("chat", say("ok"), config()).await.unwrap();
        assert_eq!(next.log, ["why?", "because", "ok", "re: ok"]);
        assert_eq!(
            invocations(&g, &store, "chat").await,
            [(0, 1), (1, 1), (2, 2), (3, 2)],
            "the resume belongs to the invocation it ended"
        );
    }
}

#[tokio::test]
async fn a_failed_thread_refuses_a_new_input_until_it_is_resumed() {
    let g = asking();
    let store = memory();
    let failed = g
        .invoke_thread("chat", say("boom"), cfg(&store, "x"))
        .await
        .unwrap_err();
    assert!(matches!(failed, Error::NodeFailed { .. }), "{failed:?}");
    let refused = g
        .invoke_thread("chat", say("hello"), cfg(&store, "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            Error::ThreadNotReady {
                status: RunStatus::Failed,
                ..
            }
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invocations_at_once_one_proceeds_the_other_is_busy() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let mut b = GraphBuilder::<Trace>::new();
    let (e, r) = (entered.clone(), release.clone());
    b.add_node("slow", move |_, _| {
        let (e, r) = (e.clone(), r.clone());
        async move {
            e.notify_one();
            r.notified().await;
            Ok(TraceUpdate::note("done"))
        }
    })
    .add_edge(START, "slow")
    .add_edge("slow", END);
    let g = b.compile().unwrap();
    for (store, _dir) in stores() {
        let first = g
            .invoke_thread("chat", say("one"), cfg(&store, "x"))
            .spawn();
        entered.notified().await;
        let second = g
            .invoke_thread("chat", say("two"), cfg(&store, "x"))
            .await
            .unwrap_err();
        assert!(second.is_busy(), "{second:?}");
        release.notify_one();
        assert_eq!(first.await.unwrap().log, ["one", "done"]);
        let h = g.history(store.clone());
        assert_eq!(h.state("chat", None).await.unwrap().log, ["one", "done"]);
        // Once the first is done, the thread takes the second.
        let second = g
            .invoke_thread("chat", say("two"), cfg(&store, "x"))
            .spawn();
        entered.notified().await;
        release.notify_one();
        assert_eq!(second.await.unwrap().log, ["one", "done", "two", "done"]);
    }
}

#[tokio::test]
async fn the_recursion_limit_bounds_each_invocation() {
    // Three steps per invocation: a -> b -> c.
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "c"] {
        b.add_node(
            name,
            move |_, _| async move { Ok(TraceUpdate::new().count(1)) },
        );
    }
    b.add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    let g = b.compile().unwrap();
    let store = memory();
    for turn in 1..=5 {
        let state = g
            .invoke_thread("t", say("go"), cfg(&store, "x").recursion_limit(3))
            .await
            .unwrap();
        assert_eq!(state.count, 3 * turn);
    }
    let limited = g
        .invoke_thread("t", say("go"), cfg(&store, "x").recursion_limit(2))
        .await
        .unwrap_err();
    assert!(matches!(limited, Error::RecursionLimit { limit: 2 }));
}

#[tokio::test]
async fn each_invocation_passes_its_joins_afresh() {
    // START routes to `a` or `b` by the input; `j` joins both, and fires once neither can
    // still arrive: with `a` alone in one invocation, with `b` alone in the next.
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "j"] {
        common::logger(&mut b, name);
    }
    b.add_conditional_edges(START, ["a", "b"], |s: &Trace| {
        if s.log.last().is_some_and(|m| m == "left") {
            "a"
        } else {
            "b"
        }
    })
    .add_join(["a", "b"], "j")
    .add_edge("j", END);
    let g = b.compile().unwrap();
    let store = memory();
    g.invoke_thread("t", say("left"), cfg(&store, "x"))
        .await
        .unwrap();
    let state = g
        .invoke_thread("t", say("right"), cfg(&store, "x"))
        .await
        .unwrap();
    assert_eq!(state.log, ["left", "a", "j", "right", "b", "j"]);

    // The same with a quorum join of one of two: it fires in each invocation on its own.
    let quorum = Calls::default();
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "j"] {
        let calls = quorum.clone();
        b.add_node(name, move |_, _| {
            calls.hit(name);
            async move { Ok(TraceUpdate::note(name)) }
        });
    }
    b.add_edge(START, "a")
        .add_edge(START, "b")
        .add_join_with(["a", "b"], "j", JoinPolicy::quorum(1))
        .add_edge("j", END);
    let g = b.compile().unwrap();
    for _ in 0..3 {
        g.invoke_thread("q", say("go"), cfg(&store, "x"))
            .await
            .unwrap();
    }
    assert_eq!(quorum.get("j"), 3, "one firing per invocation");
    let log = g.history(store.clone()).state("q", None).await.unwrap().log;
    assert_eq!(log.iter().filter(|m| *m == "j").count(), 3);
}

#[tokio::test]
async fn a_thread_is_pruned_deleted_and_listed_like_any_run() {
    let g = echo();
    let store = memory();
    for message in ["a", "b", "c"] {
        g.invoke_thread("chat", say(message), cfg(&store, "x"))
            .await
            .unwrap();
    }
    let h = g.history(store.clone());
    assert!(h.runs().await.unwrap().iter().any(|r| r.run_id == "chat"));
    assert_eq!(h.prune("chat", 1).await.unwrap(), 5);
    let next = g
        .invoke_thread("chat", say("d"), cfg(&store, "x"))
        .await
        .unwrap();
    assert_eq!(
        next.log.len(),
        8,
        "a pruned thread goes on from its last state"
    );
    assert_eq!(
        invocations(&g, &store, "chat").await,
        [(5, 3), (6, 4), (7, 4)]
    );
    h.delete("chat").await.unwrap();
    let fresh = g
        .invoke_thread("chat", say("new"), cfg(&store, "x"))
        .await
        .unwrap();
    assert_eq!(
        fresh.log,
        ["new", "re: new"],
        "a deleted thread starts over"
    );
}

#[tokio::test]
async fn a_thread_needs_a_store_and_its_graph() {
    let g = echo();
    let no_store = g
        .invoke_thread("chat", say("a"), RunConfig::new())
        .await
        .unwrap_err();
    assert!(matches!(no_store, Error::NoStore));
    let store = memory();
    g.invoke_thread("chat", say("a"), cfg(&store, "x"))
        .await
        .unwrap();
    let other = asking();
    let changed = other
        .invoke_thread("chat", say("b"), cfg(&store, "x"))
        .await
        .unwrap_err();
    assert!(matches!(changed, Error::GraphChanged { .. }), "{changed:?}");
    let reserved = g
        .invoke_thread("a/@b/c", say("a"), cfg(&store, "x"))
        .await
        .unwrap_err();
    assert!(matches!(reserved, Error::ReservedRunId(_)), "{reserved:?}");
}

#[tokio::test]
async fn a_threads_stored_events_go_on_from_one_invocation_to_the_next() {
    let g = echo();
    for (store, _dir) in stores() {
        for message in ["a", "b", "c"] {
            g.invoke_thread("chat", say(message), cfg(&store, "x").store_events(true))
                .await
                .unwrap();
        }
        let events = g
            .history(store.clone())
            .events("chat", None, 1000)
            .await
            .unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (0..events.len() as u64).collect::<Vec<_>>(),
            "numbered without gaps or repeats across invocations"
        );
        let invoked: Vec<u32> = events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::ThreadInvoked { invocation, .. } => Some(invocation),
                _ => None,
            })
            .collect();
        assert_eq!(invoked, [1, 2, 3]);
        let finished = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RunFinished { .. }))
            .count();
        assert_eq!(finished, 3, "each invocation ends with RunFinished");
    }
}

#[tokio::test]
async fn a_failed_invocation_compensated_in_full_lets_the_thread_go_on() {
    // START -> book -> pay -> END; `book` is undone by `unbook`; `pay` fails on "fail".
    let mut b = GraphBuilder::<Trace>::new();
    common::logger(&mut b, "book");
    common::logger(&mut b, "unbook");
    b.add_node("pay", |s: Arc<Trace>, _| async move {
        if s.log.iter().rev().nth(1).is_some_and(|m| m == "fail") {
            return Err("the payment failed".into());
        }
        Ok(TraceUpdate::note("pay"))
    })
    .add_edge(START, "book")
    .add_edge("book", "pay")
    .add_edge("pay", END)
    .compensate("book", "unbook");
    let g = b.compile().unwrap();
    let store = memory();
    g.invoke_thread("t", say("ok"), cfg(&store, "x"))
        .await
        .unwrap();
    let failed = g
        .invoke_thread("t", say("fail"), cfg(&store, "x"))
        .await
        .unwrap_err();
    assert!(matches!(failed, Error::Compensated { .. }), "{failed:?}");
    let state = g.history(store.clone()).state("t", None).await.unwrap();
    assert_eq!(
        state.log,
        ["ok", "book", "pay", "fail", "book", "unbook"],
        "only the failed invocation's booking is undone"
    );
    let next = g
        .invoke_thread("t", say("again"), cfg(&store, "x"))
        .await
        .unwrap();
    assert_eq!(next.log[6..], ["again", "book", "pay"]);
}
