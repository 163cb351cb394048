//! The encoding of stored events: each event is enveloped as JSON (its payloads are JSON
//! values), in a shape of this module's own ([`StoredEvent`]), converted explicitly to and from
//! the public [`Event`]: renaming or reshaping a public event type does not change what stored
//! runs hold. The JSON is, field for field, the public `Event`'s serde shape of this version
//! (a test holds the two to the same bytes), so stored events read as the events the monitor
//! serves.

mod convert;
mod stored;

use agentgraph_checkpoint::WriteBatch;
use agentgraph_checkpoint::envelope::{self, RecordKind};

use super::format_encode_error;
use super::packing::Packing;
use crate::codec::CodecError;
use crate::error::{Error, Result};
use crate::observe::event::Event;
use stored::StoredEvent;

/// Adds `log` to `batch`.
pub(crate) fn put_events(
    batch: &mut WriteBatch,
    run: &str,
    log: &[Event],
    packing: &Packing,
) -> Result<()> {
    for event in log {
        let json = serde_json::to_string(&StoredEvent::from(event)).map_err(|e| Error::Encode {
            what: format!("event {}", event.seq),
            source: CodecError::new(e.to_string()),
        })?;
        let bytes = envelope::encode(RecordKind::Event, &json).map_err(format_encode_error)?;
        batch.put_event(run, event.seq, packing.pack(bytes));
    }
    Ok(())
}

/// Opens a stored event.
pub(crate) fn decode_event(run: &str, seq: u64, bytes: &[u8]) -> Result<Event> {
    let corrupt = |reason: String| Error::Corrupt {
        run: run.to_owned(),
        reason: format!("event {seq}: {reason}"),
    };
    let json: String =
        envelope::decode(RecordKind::Event, bytes).map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_str::<StoredEvent>(&json)
        .map(Event::from)
        .map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::Duration;

    use agentgraph_checkpoint::Op;

    use super::*;
    use crate::ids::{Fingerprint, TaskId};
    use crate::observe::event::{EventKind, TaskInfo};
    use crate::observe::view::{FieldView, ViewChange};
    use crate::plan::describe::{
        EdgeDescription, EdgeKind, FieldDescription, GraphDescription, NodeDescription,
    };
    use crate::run::config::Mode;
    use crate::run::interrupt::{Interrupt, InterruptKind};

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            run_id: Arc::from("r/@sub/1"),
            kind,
        }
    }

    /// One event of every kind, with every nested type.
    fn every_kind() -> Vec<Event> {
        let task = TaskId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let graph = Fingerprint::from_u128(u128::MAX - 5);
        let node: Arc<str> = Arc::from("work");
        let kinds = vec![
            EventKind::RunStarted {
                mode: Mode::Sequential,
                seed: 7,
                graph,
            },
            EventKind::RunStarted {
                mode: Mode::Parallel,
                seed: u64::MAX,
                graph,
            },
            EventKind::RunResumed {
                step: 3,
                restored: 2,
                graph,
            },
            EventKind::ThreadInvoked {
                invocation: 3,
                step: 9,
                fields: vec![Cow::Borrowed("messages")],
                graph,
            },
            EventKind::StepStarted {
                step: 1,
                tasks: vec![
                    TaskInfo {
                        node: node.clone(),
                        task,
                        packet: None,
                    },
                    TaskInfo {
                        node: node.clone(),
                        task,
                        packet: Some(4),
                    },
                ],
            },
            EventKind::NodeStarted {
                step: 1,
                node: node.clone(),
                task,
                attempt: 1,
            },
            EventKind::NodeFinished {
                step: 1,
                node: node.clone(),
                task,
                duration: Duration::new(3, 141_592_653),
            },
            EventKind::NodeFailed {
                step: 1,
                node: node.clone(),
                task,
                attempt: 2,
                error: "it \"failed\"\n".to_owned(),
            },
            EventKind::RetryScheduled {
                step: 1,
                node: node.clone(),
                task,
                attempt: 3,
                delay: Duration::from_millis(250),
            },
            EventKind::NodeCancelled {
                step: 2,
                node: node.clone(),
                task,
            },
            EventKind::RunInterrupted {
                step: 2,
                interrupts: [
                    InterruptKind::Before,
                    InterruptKind::After,
                    InterruptKind::Node,
                ]
                .into_iter()
                .map(|kind| Interrupt {
                    id: Interrupt::id_for(task, kind, 1),
                    kind,
                    node: "review".to_owned(),
                    step: 2,
                    task,
                    payload: serde_json::json!({ "ask": ["a", 1, null] }),
                    path: vec!["sub".to_owned()],
                })
                .collect(),
            },
            EventKind::Custom {
                step: 2,
                node: node.clone(),
                task,
                name: Cow::Borrowed("progress"),
                payload: serde_json::json!(0.5),
            },
            EventKind::Token {
                step: 2,
                node: node.clone(),
                task,
                attempt: 2,
                index: 7,
                count: 3,
                text: "Hel\u{e9}lo \"".to_owned(),
            },
            EventKind::WeightedChoice {
                step: 2,
                from: Arc::from("__start__"),
                to: node.clone(),
                weight: 0.25,
            },
            EventKind::StateUpdated {
                step: 2,
                fields: vec![Cow::Borrowed("log"), Cow::Owned("count".to_owned())],
            },
            EventKind::CheckpointSaved {
                step: 2,
                bytes: 1234,
            },
            EventKind::Graph {
                graph: Arc::new(GraphDescription {
                    fingerprint: graph,
                    nodes: vec![NodeDescription {
                        name: "work".to_owned(),
                        kind: "async".to_owned(),
                        interrupt_before: true,
                        interrupt_after: false,
                        deferred: false,
                    }],
                    edges: [
                        (EdgeKind::Static, None),
                        (EdgeKind::Conditional, None),
                        (EdgeKind::Weighted, Some(2.5)),
                        (EdgeKind::Join, None),
                        (EdgeKind::Goto, None),
                        (EdgeKind::Error, None),
                        (EdgeKind::Compensate, None),
                    ]
                    .into_iter()
                    .map(|(kind, weight)| EdgeDescription {
                        from: "a".to_owned(),
                        to: "b".to_owned(),
                        kind,
                        weight,
                    })
                    .collect(),
                    fields: vec![FieldDescription {
                        name: "log".to_owned(),
                        reducer: "append".to_owned(),
                        ty: "Vec<String>".to_owned(),
                    }],
                    joins: Vec::new(),
                }),
            },
            EventKind::StateView {
                step: 2,
                fields: vec![
                    FieldView::new("log", ViewChange::Set(serde_json::json!(["x"]))),
                    FieldView::new("log", ViewChange::Extend(serde_json::json!(["y"]))),
                    FieldView::new("blob", ViewChange::Unavailable("not JSON".to_owned())),
                ],
            },
            EventKind::RunFinished {
                steps: 3,
                duration: Duration::from_micros(1500),
            },
            EventKind::RunFailed {
                step: 3,
                error: "boom".to_owned(),
            },
            EventKind::ErrorRouted {
                step: 2,
                node: node.clone(),
                task,
                handler: Arc::from("fallback"),
                error: "timeout".to_owned(),
            },
            EventKind::CompensationStarted {
                step: 3,
                error: "boom".to_owned(),
                nodes: vec![Arc::from("b"), node.clone()],
            },
            EventKind::BudgetExceeded {
                step: 4,
                scope: crate::BudgetScope::Thread,
                budget: crate::BudgetKind::Cost,
                limit: 1_000,
                used: 1_200,
            },
        ];
        let mut events: Vec<Event> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| event(i as u64, kind))
            .collect();
        let inner = events[4].clone();
        events.push(event(
            99,
            EventKind::Subgraph {
                step: 2,
                node: Arc::from("sub"),
                task,
                event: Box::new(inner),
            },
        ));
        events
    }

    /// A stored event is the public event's JSON, byte for byte, and reads back as it.
    #[test]
    fn stored_events_are_the_public_json_and_read_back() {
        for event in every_kind() {
            let public = serde_json::to_string(&event).unwrap();
            let stored = serde_json::to_string(&StoredEvent::from(&event)).unwrap();
            assert_eq!(stored, public);
            let mut batch = WriteBatch::new();
            put_events(
                &mut batch,
                "r",
                std::slice::from_ref(&event),
                &Packing::default(),
            )
            .unwrap();
            let [Op::PutEvent { bytes, .. }] = &batch.into_ops()[..] else {
                panic!("one event is one write");
            };
            assert_eq!(
                *bytes,
                envelope::encode(RecordKind::Event, &public).unwrap()
            );
            assert_eq!(decode_event("r", event.seq, bytes).unwrap(), event);
        }
    }
}
