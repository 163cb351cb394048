//! The event stream: order, sequence numbers, custom events, slow subscribers, serialization.

mod common;

use std::time::Duration;

use agentgraph_engine::{
    Context, END, Event, EventKind, GraphBuilder, Missed, Mode, RunConfig, START,
};
use common::{Trace, TraceUpdate};
use futures_util::StreamExt;

fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::RunStarted { .. } => "run_started".to_string(),
            EventKind::StepStarted { step, tasks } => format!(
                "step {step}: {}",
                tasks.iter().map(|t| &*t.node).collect::<Vec<_>>().join(",")
            ),
            EventKind::NodeStarted { node, attempt, .. } => format!("start {node} #{attempt}"),
            EventKind::NodeFinished { node, .. } => format!("finish {node}"),
            EventKind::Custom {
                node,
                name,
                payload,
                ..
            } => format!("{node} {name} {payload}"),
            EventKind::StateUpdated { step, fields } => {
                format!("merged {step}: {}", fields.join(","))
            }
            EventKind::RunFinished { steps, .. } => format!("run_finished {steps}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn events_arrive_in_order_with_contiguous_sequence_numbers() {
    let mut b = GraphBuilder::new();
    b.add_node("a", |_, ctx: Context| async move {
        ctx.emit("progress", &serde_json::json!({"done": 1}));
        Ok(TraceUpdate::note("a").count(1))
    })
    .add_node("b", |_, _| async {
        Ok(TraceUpdate::default().last("b".into()))
    })
    .add_edge(START, "a")
    .add_edge("a", "b")
    .add_edge("b", END);
    let g = b.compile().unwrap();
    let run = g.run_with(
        Trace::default(),
        RunConfig::new().mode(Mode::Sequential).run_id("run-1"),
    );
    let events = run.events();
    run.await.unwrap();
    let events: Vec<Event> = events.map(Result::unwrap).collect().await;
    assert_eq!(
        kinds(&events),
        [
            "run_started",
            "step 1: a",
            "start a #1",
            "a progress {\"done\":1}",
            "finish a",
            "merged 1: log,count",
            "step 2: b",
            "start b #1",
            "finish b",
            "merged 2: last",
            "run_finished 2",
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert_eq!(&*e.run_id, "run-1");
        assert!(!e.to_string().is_empty());
    }
}

#[tokio::test]
async fn a_slow_subscriber_is_told_what_it_missed_and_never_slows_the_run() {
    let mut b = GraphBuilder::new();
    b.add_node("tick", |_, _| async { Ok(TraceUpdate::default().count(1)) })
        .add_edge(START, "tick")
        .add_conditional_edges("tick", ["tick", END], |s: &Trace| {
            if s.count < 50 { "tick" } else { END }
        });
    let g = b.compile().unwrap();
    let run = g.run_with(Trace::default(), RunConfig::new().event_capacity(8));
    let mut events = run.events();
    // Nobody reads while the run goes: it must finish anyway.
    let state = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run waited for a subscriber");
    assert_eq!(state.unwrap().count, 50);
    let first = events.next().await.unwrap();
    let Err(Missed(n)) = first else {
        panic!("expected a Missed notice, got {first:?}")
    };
    // 1 run start + 50 * 4 step events + 1 run end, less the 8 still buffered.
    assert_eq!(n, 202 - 8);
    let rest: Vec<_> = events.collect().await;
    assert_eq!(rest.len(), 8);
    assert!(matches!(
        rest.last().unwrap().as_ref().unwrap().kind,
        EventKind::RunFinished { steps: 50, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_runs_stream_events_while_they_run() {
    let mut b = GraphBuilder::new();
    b.add_node("slow", |_, ctx: Context| async move {
        for i in 0..3 {
            ctx.emit("token", &i);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(TraceUpdate::note("slow"))
    })
    .add_edge(START, "slow")
    .add_edge("slow", END);
    let run = b.compile().unwrap().run(Trace::default());
    let mut events = run.events();
    let handle = run.spawn();
    let mut tokens = Vec::new();
    while let Some(e) = events.next().await {
        if let EventKind::Custom { payload, .. } = e.unwrap().kind {
            tokens.push(payload);
        }
    }
    assert_eq!(tokens, [0, 1, 2]);
    let state = handle.await.unwrap();
    assert_eq!(state.log, ["slow"]);
}

#[tokio::test]
async fn events_serialize_as_tagged_json_and_back() {
    let mut b = GraphBuilder::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_edge(START, "a")
        .add_edge("a", END);
    let run = b.compile().unwrap().run(Trace::default());
    let events = run.events();
    run.await.unwrap();
    let events: Vec<Event> = events.map(Result::unwrap).collect().await;
    let json = serde_json::to_value(&events[1]).unwrap();
    assert_eq!(json["kind"]["type"], "step_started");
    assert_eq!(json["kind"]["tasks"][0]["node"], "a");
    for e in &events {
        let back: Event = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }
}

#[tokio::test]
async fn numbering_goes_on_unwatched_and_a_late_stream_of_an_ended_run_is_empty() {
    let mut b = GraphBuilder::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_node("b", |_, _| async { Ok(TraceUpdate::note("b")) })
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", END);
    let g = b.compile().unwrap();
    let handle = g.run(Trace::default()).spawn();
    let state = handle.await;
    assert_eq!(state.unwrap().log, ["a", "b"]);

    // A subscriber that joins mid-run sees numbers that count the events it missed.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut b = GraphBuilder::new();
    let g2 = gate.clone();
    b.add_node("first", |_, _| async { Ok(TraceUpdate::note("first")) })
        .add_node("wait", move |_, _| {
            let gate = g2.clone();
            async move {
                gate.notified().await;
                Ok(TraceUpdate::note("wait"))
            }
        })
        .add_edge(START, "first")
        .add_edge("first", "wait")
        .add_edge("wait", END);
    let handle = b.compile().unwrap().run(Trace::default()).spawn();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = handle.events();
    gate.notify_one();
    let late: Vec<Event> = late.map(Result::unwrap).collect().await;
    assert!(
        late[0].seq >= 6,
        "unwatched events were not counted: {}",
        late[0].seq
    );
    assert!(matches!(
        late.last().unwrap().kind,
        EventKind::RunFinished { .. }
    ));

    // Once the run has ended, a new stream is empty and ends at once.
    let handle_events = {
        let g = g.clone();
        let handle = g.run(Trace::default()).spawn();
        while !handle.is_finished() {
            tokio::task::yield_now().await;
        }
        handle.events()
    };
    let after: Vec<_> =
        tokio::time::timeout(Duration::from_secs(5), handle_events.collect::<Vec<_>>())
            .await
            .expect("the stream of an ended run never ended");
    assert!(after.is_empty());
}
