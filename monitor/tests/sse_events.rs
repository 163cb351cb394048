//! The event stream: replay, live follow, reconnect with `Last-Event-ID` without gaps or
//! duplicates, the end of a finished run, and the events of a crashed run.

mod common;

use std::future::IntoFuture;
use std::time::Duration;

use agentgraph_engine::{Durability, Event, EventKind, RunConfig, RunStatus, StoreInspector};
use common::{Doc, Gate, SseReader, demo, monitor, store, url};

/// Reads events until one matches `stop`, checking each frame against its data.
async fn read_until(reader: &mut SseReader, out: &mut Vec<Event>, stop: impl Fn(&Event) -> bool) {
    while let Some(sse) = reader.next().await {
        assert_ne!(sse.event.as_deref(), Some("end"), "the stream ended early");
        let event: Event = serde_json::from_str(&sse.data).expect("data is an Event");
        assert_eq!(
            sse.id,
            Some(event.seq.to_string()),
            "id is the sequence number"
        );
        let tag = serde_json::to_value(&event).unwrap()["kind"]["type"].clone();
        assert_eq!(
            sse.event.as_deref(),
            tag.as_str(),
            "event is the kind's tag"
        );
        let done = stop(&event);
        out.push(event);
        if done {
            return;
        }
    }
    panic!("the stream ended before the awaited event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_every_event_once_in_order() {
    let store = store();
    let server = monitor(store.clone()).await;
    let gate = Gate::closed();
    let graph = demo(&gate);
    let input = Doc {
        target: 3,
        ..Doc::default()
    };
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("reconnect")
        .monitored()
        .durability(Durability::Sync);
    let run = tokio::spawn(async move { graph.run_with(input, config).await });
    let client = reqwest::Client::new();
    let events_url = url(server.local_addr(), "/api/runs/reconnect/events");

    // Wait for the run to exist (its first checkpoint), then follow it.
    let inspector = StoreInspector::new(store.clone());
    while inspector.run("reconnect").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut first = SseReader::new(client.get(&events_url).send().await.unwrap());
    let mut seen = Vec::new();
    // Step 1 (plan) runs once the gate lets it; its checkpoint's events then arrive live.
    gate.release(1);
    read_until(&mut first, &mut seen, |e| {
        matches!(e.kind, EventKind::CheckpointSaved { step: 1, .. })
    })
    .await;
    drop(first);

    // While no one listens, the run goes on to its end.
    gate.release(100);
    let done = run.await.unwrap().expect("the run finishes");
    assert_eq!(done.rounds, 3);

    let last = seen.last().unwrap().seq;
    let mut second = SseReader::new(
        client
            .get(&events_url)
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .unwrap(),
    );
    let mut rest = Vec::new();
    read_until(&mut second, &mut rest, |e| {
        matches!(e.kind, EventKind::RunFinished { .. })
    })
    .await;
    // Then the stream ends, saying why.
    let end = second.next().await.expect("an end event");
    assert_eq!(end.event.as_deref(), Some("end"));
    assert_eq!(end.data, r#"{"status":"completed"}"#);
    assert!(
        second.next().await.is_none(),
        "the stream is closed after `end`"
    );

    // The union is the run's whole stored log: from 0, no gap, no duplicate, in order.
    let union: Vec<Event> = seen.into_iter().chain(rest).collect();
    for (i, event) in union.iter().enumerate() {
        assert_eq!(event.seq, i as u64, "gap or duplicate at {i}");
    }
    let stored = inspector.events("reconnect", None, 100_000).await.unwrap();
    assert_eq!(union, stored);
    assert!(matches!(union[0].kind, EventKind::RunStarted { .. }));
    assert!(matches!(
        union.last().unwrap().kind,
        EventKind::RunFinished { .. }
    ));

    // `?after=` starts there too; a number past the end of a finished run just ends.
    let mut tail = SseReader::new(
        client
            .get(format!("{events_url}?after={}", last + 2))
            .send()
            .await
            .unwrap(),
    );
    let next = tail.next().await.unwrap();
    assert_eq!(next.id, Some((last + 3).to_string()));
    let mut beyond = SseReader::new(
        client
            .get(format!("{events_url}?after={}", u64::MAX))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(beyond.next().await.unwrap().event.as_deref(), Some("end"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_a_crashed_run_are_readable_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn agentgraph_engine::CheckpointStore> =
        std::sync::Arc::new(agentgraph_checkpoint::SledStore::open(dir.path()).unwrap());
    let gate = Gate::closed();
    let graph = demo(&gate);
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("crashed")
        .monitored()
        // Each checkpoint is written before the next step starts, so the test knows what the
        // store holds when it drops the run (`Async` may hold steps back while a node runs).
        .durability(Durability::Sync);
    let input = Doc {
        target: 5,
        ..Doc::default()
    };
    let inspector = StoreInspector::new(store.clone());
    {
        // Steps 1 (plan) and 2 (search, write) run; review waits on the gate forever, and the
        // run's future is dropped there: a crash, as far as the store can tell.
        gate.release(3);
        let run = tokio::spawn(std::future::IntoFuture::into_future(
            graph.run_with(input, config),
        ));
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let at = inspector
                    .run("crashed")
                    .await
                    .unwrap()
                    .and_then(|r| r.last_step);
                if at == Some(2) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        reached.expect("the run reaches step 2");
    }
    let record = inspector.run("crashed").await.unwrap().unwrap();
    assert_eq!(
        record.status,
        RunStatus::Running,
        "a crashed run reads as running"
    );

    let server = monitor(store.clone()).await;
    let client = reqwest::Client::new();
    let mut reader = SseReader::new(
        client
            .get(url(server.local_addr(), "/api/runs/crashed/events"))
            .send()
            .await
            .unwrap(),
    );
    let mut got = Vec::new();
    read_until(&mut reader, &mut got, |e| {
        matches!(e.kind, EventKind::CheckpointSaved { step: 2, .. })
    })
    .await;
    let stored = inspector.events("crashed", None, 10_000).await.unwrap();
    assert_eq!(
        got, stored,
        "every stored event, through the last checkpoint"
    );
    // Parallel tasks finish in any order: their events come in that order.
    let mut finished: Vec<&str> = got
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeFinished { node, .. } => Some(&**node),
            _ => None,
        })
        .collect();
    finished[1..].sort_unstable();
    assert_eq!(finished, ["plan", "search", "write"]);

    // The state and the run's record read too.
    let state: serde_json::Value = client
        .get(url(server.local_addr(), "/api/runs/crashed/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["notes"],
        serde_json::json!(["planned", "searched", "wrote"])
    );
    let detail: serde_json::Value = client
        .get(url(server.local_addr(), "/api/runs/crashed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "running");
    assert_eq!(detail["next"], serde_json::json!(["review"]));
    drop(reader);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let store = store();
    let gate = Gate::closed();
    let graph = demo(&gate);
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("waiting")
        .monitored();
    let run = tokio::spawn(async move { graph.run_with(Doc::default(), config).await });
    let inspector = StoreInspector::new(store.clone());
    while inspector.run("waiting").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = monitor(store).await;
    let mut reader = SseReader::new(
        reqwest::get(url(server.local_addr(), "/api/runs/waiting/events"))
            .await
            .unwrap(),
    );
    let first = reader.next().await.unwrap();
    assert_eq!(first.event.as_deref(), Some("run_started"));
    let stopping = tokio::spawn(server.shutdown());
    // Whatever was stored is sent, then `end` with `shutdown`.
    loop {
        let sse = reader
            .next()
            .await
            .expect("an end event before the stream closes");
        if sse.event.as_deref() == Some("end") {
            assert_eq!(sse.data, r#"{"status":"shutdown"}"#);
            break;
        }
    }
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown does not wait for open streams")
        .unwrap()
        .unwrap();
    run.abort();
}

/// A run whose failure is caught by an error edge, then whose next failure is compensated:
/// its stream carries `error_routed`, `compensation_started` and the compensation's step, with
/// the kinds' tags as event names (which the page listens to), and ends `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_error_edges_and_compensations_stream() {
    use agentgraph_engine::{BoxError, END, GraphBuilder, START};
    use common::DocUpdate;

    let store = store();
    let server = monitor(store.clone()).await;
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("book", |_, _| async {
        Ok(DocUpdate::new().notes(vec!["book".into()]))
    })
    .add_node("flaky", |_, _| async {
        Err::<DocUpdate, BoxError>("flaky".into())
    })
    .add_node("fallback", |_, _| async {
        Ok(DocUpdate::new().notes(vec!["fallback".into()]))
    })
    .add_node("pay", |_, _| async {
        Err::<DocUpdate, BoxError>("declined".into())
    })
    .add_node("unbook", |_, _| async {
        Ok(DocUpdate::new().notes(vec!["unbook".into()]))
    })
    .add_edge(START, "book")
    .add_edge("book", "flaky")
    .add_edge("flaky", END)
    .add_edge("fallback", "pay")
    .add_edge("pay", END)
    .on_error("flaky", "fallback")
    .compensate("book", "unbook");
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("saga")
        .monitored()
        .durability(Durability::Sync);
    let e = b
        .compile()
        .unwrap()
        .run_with(Doc::default(), config)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("undid book"), "{e}");

    let client = reqwest::Client::new();
    let mut reader = SseReader::new(
        client
            .get(url(server.local_addr(), "/api/runs/saga/events"))
            .send()
            .await
            .unwrap(),
    );
    let mut seen = Vec::new();
    read_until(&mut reader, &mut seen, |e| {
        matches!(e.kind, EventKind::RunFailed { .. })
    })
    .await;
    let end = reader.next().await.expect("an end event");
    assert_eq!(end.data, r#"{"status":"failed"}"#);
    assert!(seen.iter().any(|e| matches!(
        &e.kind,
        EventKind::ErrorRouted { node, handler, .. } if &**node == "flaky" && &**handler == "fallback"
    )));
    assert!(seen.iter().any(|e| matches!(
        &e.kind,
        EventKind::CompensationStarted { step: 4, nodes, .. } if nodes.len() == 1 && &*nodes[0] == "book"
    )));
    assert!(seen.iter().any(|e| matches!(
        &e.kind,
        EventKind::StepStarted { step: 5, tasks } if &*tasks[0].node == "unbook"
    )));
    let script = reqwest::get(url(server.local_addr(), "/app.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in ["'error_routed'", "'compensation_started'"] {
        assert!(script.contains(kind), "the page listens to {kind}");
    }
    server.shutdown().await.unwrap();
}

/// 99 words, the last ones with a line break and quotes.
const STORY: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen \"the\nend\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tokens_are_token_events_of_the_stream() {
    let store = store();
    let server = monitor(store.clone()).await;
    let gate = Gate::open();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("streamed")
        .monitored();
    common::streaming(STORY, &gate)
        .run_with(Doc::default(), config)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let events_url = url(server.local_addr(), "/api/runs/streamed/events");
    let mut reader = SseReader::new(client.get(&events_url).send().await.unwrap());
    let mut seen = Vec::new();
    read_until(&mut reader, &mut seen, |e| {
        matches!(e.kind, EventKind::RunFinished { .. })
    })
    .await;
    // Stored coalesced: 64 and 35 tokens, in order, the text whole.
    let tokens: Vec<(u64, u32, &str)> = seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Token {
                node,
                index,
                count,
                text,
                ..
            } => {
                assert_eq!(&**node, "writer");
                Some((*index, *count, text.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(STORY.split(' ').count(), 99);
    let shape: Vec<(u64, u32)> = tokens.iter().map(|t| (t.0, t.1)).collect();
    assert_eq!(shape, [(0, 64), (64, 35)]);
    let text: String = tokens.iter().map(|t| t.2).collect();
    assert_eq!(text, STORY);
    let end = reader.next().await.unwrap();
    assert_eq!(end.event.as_deref(), Some("end"));

    // Resuming after the first token event misses nothing and repeats nothing.
    let first = seen
        .iter()
        .find(|e| matches!(e.kind, EventKind::Token { .. }))
        .unwrap();
    let mut again = SseReader::new(
        client
            .get(&events_url)
            .header("Last-Event-ID", first.seq.to_string())
            .send()
            .await
            .unwrap(),
    );
    let mut rest = Vec::new();
    read_until(&mut again, &mut rest, |e| {
        matches!(e.kind, EventKind::RunFinished { .. })
    })
    .await;
    let after: Vec<&Event> = seen.iter().filter(|e| e.seq > first.seq).collect();
    assert_eq!(rest.iter().collect::<Vec<_>>(), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tokens_arrive_while_the_node_runs_then_stored_ones_follow() {
    const WORDS: &[&str] = &["Once", " upon", " a", " time"];
    let store = store();
    let live = agentgraph_monitor::LiveTokens::new();
    let server = common::monitor_live(store.clone(), live.clone()).await;
    let gate = Gate::closed();
    let graph = common::slow_writer(WORDS, &gate);
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("live")
        .monitored()
        .durability(Durability::Sync);
    let run = graph.run_with(Doc::default(), config);
    live.watch(run.events());
    let run = tokio::spawn(run.into_future());
    let inspector = StoreInspector::new(store.clone());
    while inspector.run("live").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = reqwest::Client::new();
    let events_url = url(server.local_addr(), "/api/runs/live/events");
    let mut reader = SseReader::new(client.get(&events_url).send().await.unwrap());
    // The stored events of the input's checkpoint; then each word, live, while `writer` waits
    // for the next: no id, nothing of its step stored yet.
    gate.release(1);
    let mut texts = Vec::new();
    let mut stored = Vec::new();
    while texts.len() < WORDS.len() {
        let sse = reader.next().await.unwrap();
        if sse.event.as_deref() == Some("live_token") {
            assert_eq!(sse.id, None, "a live token has no id");
            let event: Event = serde_json::from_str(&sse.data).unwrap();
            let EventKind::Token { index, text, .. } = event.kind else {
                panic!("{event:?}")
            };
            assert_eq!(index as usize, texts.len());
            texts.push(text);
            assert!(
                !stored
                    .iter()
                    .any(|e: &Event| matches!(e.kind, EventKind::NodeStarted { .. })),
                "live tokens come before the step's events are stored"
            );
            gate.release(1);
        } else {
            assert_ne!(sse.event.as_deref(), Some("end"), "{sse:?}");
            stored.push(serde_json::from_str::<Event>(&sse.data).unwrap());
        }
    }
    assert_eq!(texts, WORDS);
    run.await.unwrap().unwrap();
    // Then the stored events, the tokens coalesced, with ids, to the run's end.
    read_until(&mut reader, &mut stored, |e| {
        matches!(e.kind, EventKind::RunFinished { .. })
    })
    .await;
    let tokens: Vec<(u64, u32, String)> = stored
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Token {
                index, count, text, ..
            } => Some((*index, *count, text.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(tokens, [(0, 4, "Once upon a time".to_owned())]);
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}
