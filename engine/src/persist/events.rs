//! The encoding of stored events: each event is enveloped as JSON (its payloads are JSON
//! values), in a shape of this module's own ([`StoredEvent`]), converted explicitly to and from
//! the public [`Event`]: renaming or reshaping a public event type does not change what stored
//! runs hold. The JSON is, field for field, the public `Event`'s serde shape of this version
//! (a test holds the two to the same bytes), so stored events read as the events the monitor
//! serves.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::WriteBatch;
use agentgraph_checkpoint::envelope::{self, RecordKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::format_encode_error;
use super::record::StoredInterruptKind;
use crate::codec::CodecError;
use crate::config::Mode;
use crate::describe::{
    EdgeDescription, EdgeKind, FieldDescription, GraphDescription, NodeDescription,
};
use crate::error::{Error, Result};
use crate::event::{Event, EventKind, TaskInfo};
use crate::ids::{Fingerprint, TaskId};
use crate::interrupt::Interrupt;
use crate::view::{FieldView, ViewChange};

/// Adds `log` to `batch`.
pub(crate) fn put_events(batch: &mut WriteBatch, run: &str, log: &[Event]) -> Result<()> {
    for event in log {
        let json = serde_json::to_string(&StoredEvent::from(event)).map_err(|e| Error::Encode {
            what: format!("event {}", event.seq),
            source: CodecError::new(e.to_string()),
        })?;
        let bytes = envelope::encode(RecordKind::Event, &json).map_err(format_encode_error)?;
        batch.put_event(run, event.seq, bytes);
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

/// A stored event.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEvent {
    seq: u64,
    run_id: String,
    kind: StoredKind,
}

/// A 128-bit id, as a hex string of 32 digits.
#[derive(Debug, Clone, Copy)]
struct Hex(u128);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:032x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        u128::from_str_radix(&text, 16)
            .map(Hex)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid id `{text}`: {e}")))
    }
}

impl From<TaskId> for Hex {
    fn from(id: TaskId) -> Self {
        Hex(id.as_u128())
    }
}

impl From<Fingerprint> for Hex {
    fn from(id: Fingerprint) -> Self {
        Hex(id.as_u128())
    }
}

/// A duration, as `secs` and `nanos`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StoredDuration {
    secs: u64,
    nanos: u32,
}

impl From<Duration> for StoredDuration {
    fn from(d: Duration) -> Self {
        StoredDuration {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

impl From<StoredDuration> for Duration {
    fn from(d: StoredDuration) -> Self {
        Duration::new(d.secs, d.nanos)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredMode {
    Sequential,
    Parallel,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTask {
    node: String,
    task: Hex,
    packet: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredInterrupt {
    id: String,
    kind: StoredInterruptKind,
    node: String,
    step: u64,
    task: Hex,
    payload: Value,
    path: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredGraph {
    fingerprint: Hex,
    nodes: Vec<StoredNode>,
    edges: Vec<StoredEdge>,
    fields: Vec<StoredField>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredNode {
    name: String,
    kind: String,
    interrupt_before: bool,
    interrupt_after: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredEdgeKind {
    Static,
    Conditional,
    Weighted,
    Join,
    Goto,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredEdge {
    from: String,
    to: String,
    kind: StoredEdgeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredField {
    name: String,
    reducer: String,
    ty: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFieldView {
    field: String,
    #[serde(flatten)]
    change: StoredViewChange,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
enum StoredViewChange {
    Set(Value),
    Extend(Value),
    Unavailable(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StoredKind {
    RunStarted {
        mode: StoredMode,
        seed: u64,
        graph: Hex,
    },
    RunResumed {
        step: u64,
        restored: usize,
        graph: Hex,
    },
    StepStarted {
        step: u64,
        tasks: Vec<StoredTask>,
    },
    NodeStarted {
        step: u64,
        node: String,
        task: Hex,
        attempt: u32,
    },
    NodeFinished {
        step: u64,
        node: String,
        task: Hex,
        duration: StoredDuration,
    },
    NodeFailed {
        step: u64,
        node: String,
        task: Hex,
        attempt: u32,
        error: String,
    },
    RetryScheduled {
        step: u64,
        node: String,
        task: Hex,
        attempt: u32,
        delay: StoredDuration,
    },
    NodeCancelled {
        step: u64,
        node: String,
        task: Hex,
    },
    Subgraph {
        step: u64,
        node: String,
        task: Hex,
        event: Box<StoredEvent>,
    },
    RunInterrupted {
        step: u64,
        interrupts: Vec<StoredInterrupt>,
    },
    Custom {
        step: u64,
        node: String,
        task: Hex,
        name: String,
        payload: Value,
    },
    WeightedChoice {
        step: u64,
        from: String,
        to: String,
        weight: f64,
    },
    StateUpdated {
        step: u64,
        fields: Vec<String>,
    },
    CheckpointSaved {
        step: u64,
        bytes: u64,
    },
    Graph {
        graph: StoredGraph,
    },
    StateView {
        step: u64,
        fields: Vec<StoredFieldView>,
    },
    RunFinished {
        steps: u64,
        duration: StoredDuration,
    },
    RunFailed {
        step: u64,
        error: String,
    },
}

impl From<&Event> for StoredEvent {
    fn from(e: &Event) -> Self {
        StoredEvent {
            seq: e.seq,
            run_id: e.run_id.to_string(),
            kind: StoredKind::from(&e.kind),
        }
    }
}

impl From<StoredEvent> for Event {
    fn from(e: StoredEvent) -> Self {
        Event {
            seq: e.seq,
            run_id: e.run_id.into(),
            kind: e.kind.into(),
        }
    }
}

impl From<&EventKind> for StoredKind {
    fn from(kind: &EventKind) -> Self {
        let s = |name: &str| name.to_owned();
        match kind {
            EventKind::RunStarted { mode, seed, graph } => StoredKind::RunStarted {
                mode: match mode {
                    Mode::Sequential => StoredMode::Sequential,
                    Mode::Parallel => StoredMode::Parallel,
                },
                seed: *seed,
                graph: (*graph).into(),
            },
            EventKind::RunResumed {
                step,
                restored,
                graph,
            } => StoredKind::RunResumed {
                step: *step,
                restored: *restored,
                graph: (*graph).into(),
            },
            EventKind::StepStarted { step, tasks } => StoredKind::StepStarted {
                step: *step,
                tasks: tasks
                    .iter()
                    .map(|t| StoredTask {
                        node: s(&t.node),
                        task: t.task.into(),
                        packet: t.packet,
                    })
                    .collect(),
            },
            EventKind::NodeStarted {
                step,
                node,
                task,
                attempt,
            } => StoredKind::NodeStarted {
                step: *step,
                node: s(node),
                task: (*task).into(),
                attempt: *attempt,
            },
            EventKind::NodeFinished {
                step,
                node,
                task,
                duration,
            } => StoredKind::NodeFinished {
                step: *step,
                node: s(node),
                task: (*task).into(),
                duration: (*duration).into(),
            },
            EventKind::NodeFailed {
                step,
                node,
                task,
                attempt,
                error,
            } => StoredKind::NodeFailed {
                step: *step,
                node: s(node),
                task: (*task).into(),
                attempt: *attempt,
                error: error.clone(),
            },
            EventKind::RetryScheduled {
                step,
                node,
                task,
                attempt,
                delay,
            } => StoredKind::RetryScheduled {
                step: *step,
                node: s(node),
                task: (*task).into(),
                attempt: *attempt,
                delay: (*delay).into(),
            },
            EventKind::NodeCancelled { step, node, task } => StoredKind::NodeCancelled {
                step: *step,
                node: s(node),
                task: (*task).into(),
            },
            EventKind::Subgraph {
                step,
                node,
                task,
                event,
            } => StoredKind::Subgraph {
                step: *step,
                node: s(node),
                task: (*task).into(),
                event: Box::new(StoredEvent::from(&**event)),
            },
            EventKind::RunInterrupted { step, interrupts } => StoredKind::RunInterrupted {
                step: *step,
                interrupts: interrupts
                    .iter()
                    .map(|i| StoredInterrupt {
                        id: i.id.clone(),
                        kind: i.kind.into(),
                        node: i.node.clone(),
                        step: i.step,
                        task: i.task.into(),
                        payload: i.payload.clone(),
                        path: i.path.clone(),
                    })
                    .collect(),
            },
            EventKind::Custom {
                step,
                node,
                task,
                name,
                payload,
            } => StoredKind::Custom {
                step: *step,
                node: s(node),
                task: (*task).into(),
                name: s(name),
                payload: payload.clone(),
            },
            EventKind::WeightedChoice {
                step,
                from,
                to,
                weight,
            } => StoredKind::WeightedChoice {
                step: *step,
                from: s(from),
                to: s(to),
                weight: *weight,
            },
            EventKind::StateUpdated { step, fields } => StoredKind::StateUpdated {
                step: *step,
                fields: fields.iter().map(|f| s(f)).collect(),
            },
            EventKind::CheckpointSaved { step, bytes } => StoredKind::CheckpointSaved {
                step: *step,
                bytes: *bytes,
            },
            EventKind::Graph { graph } => StoredKind::Graph {
                graph: StoredGraph {
                    fingerprint: graph.fingerprint.into(),
                    nodes: graph
                        .nodes
                        .iter()
                        .map(|n| StoredNode {
                            name: n.name.clone(),
                            kind: n.kind.clone(),
                            interrupt_before: n.interrupt_before,
                            interrupt_after: n.interrupt_after,
                        })
                        .collect(),
                    edges: graph
                        .edges
                        .iter()
                        .map(|e| StoredEdge {
                            from: e.from.clone(),
                            to: e.to.clone(),
                            kind: match e.kind {
                                EdgeKind::Static => StoredEdgeKind::Static,
                                EdgeKind::Conditional => StoredEdgeKind::Conditional,
                                EdgeKind::Weighted => StoredEdgeKind::Weighted,
                                EdgeKind::Join => StoredEdgeKind::Join,
                                EdgeKind::Goto => StoredEdgeKind::Goto,
                            },
                            weight: e.weight,
                        })
                        .collect(),
                    fields: graph
                        .fields
                        .iter()
                        .map(|f| StoredField {
                            name: f.name.clone(),
                            reducer: f.reducer.clone(),
                            ty: f.ty.clone(),
                        })
                        .collect(),
                },
            },
            EventKind::StateView { step, fields } => StoredKind::StateView {
                step: *step,
                fields: fields
                    .iter()
                    .map(|f| StoredFieldView {
                        field: s(&f.field),
                        change: match &f.change {
                            ViewChange::Set(v) => StoredViewChange::Set(v.clone()),
                            ViewChange::Extend(v) => StoredViewChange::Extend(v.clone()),
                            ViewChange::Unavailable(why) => {
                                StoredViewChange::Unavailable(why.clone())
                            }
                        },
                    })
                    .collect(),
            },
            EventKind::RunFinished { steps, duration } => StoredKind::RunFinished {
                steps: *steps,
                duration: (*duration).into(),
            },
            EventKind::RunFailed { step, error } => StoredKind::RunFailed {
                step: *step,
                error: error.clone(),
            },
        }
    }
}

impl From<StoredKind> for EventKind {
    fn from(kind: StoredKind) -> Self {
        let task = |h: Hex| TaskId::from_u128(h.0);
        let name = |s: String| -> Arc<str> { s.into() };
        match kind {
            StoredKind::RunStarted { mode, seed, graph } => EventKind::RunStarted {
                mode: match mode {
                    StoredMode::Sequential => Mode::Sequential,
                    StoredMode::Parallel => Mode::Parallel,
                },
                seed,
                graph: Fingerprint::from_u128(graph.0),
            },
            StoredKind::RunResumed {
                step,
                restored,
                graph,
            } => EventKind::RunResumed {
                step,
                restored,
                graph: Fingerprint::from_u128(graph.0),
            },
            StoredKind::StepStarted { step, tasks } => EventKind::StepStarted {
                step,
                tasks: tasks
                    .into_iter()
                    .map(|t| TaskInfo {
                        node: name(t.node),
                        task: task(t.task),
                        packet: t.packet,
                    })
                    .collect(),
            },
            StoredKind::NodeStarted {
                step,
                node,
                task: t,
                attempt,
            } => EventKind::NodeStarted {
                step,
                node: name(node),
                task: task(t),
                attempt,
            },
            StoredKind::NodeFinished {
                step,
                node,
                task: t,
                duration,
            } => EventKind::NodeFinished {
                step,
                node: name(node),
                task: task(t),
                duration: duration.into(),
            },
            StoredKind::NodeFailed {
                step,
                node,
                task: t,
                attempt,
                error,
            } => EventKind::NodeFailed {
                step,
                node: name(node),
                task: task(t),
                attempt,
                error,
            },
            StoredKind::RetryScheduled {
                step,
                node,
                task: t,
                attempt,
                delay,
            } => EventKind::RetryScheduled {
                step,
                node: name(node),
                task: task(t),
                attempt,
                delay: delay.into(),
            },
            StoredKind::NodeCancelled {
                step,
                node,
                task: t,
            } => EventKind::NodeCancelled {
                step,
                node: name(node),
                task: task(t),
            },
            StoredKind::Subgraph {
                step,
                node,
                task: t,
                event,
            } => EventKind::Subgraph {
                step,
                node: name(node),
                task: task(t),
                event: Box::new(Event::from(*event)),
            },
            StoredKind::RunInterrupted { step, interrupts } => EventKind::RunInterrupted {
                step,
                interrupts: interrupts
                    .into_iter()
                    .map(|i| Interrupt {
                        id: i.id,
                        kind: i.kind.into(),
                        node: i.node,
                        step: i.step,
                        task: task(i.task),
                        payload: i.payload,
                        path: i.path,
                    })
                    .collect(),
            },
            StoredKind::Custom {
                step,
                node,
                task: t,
                name: n,
                payload,
            } => EventKind::Custom {
                step,
                node: name(node),
                task: task(t),
                name: Cow::Owned(n),
                payload,
            },
            StoredKind::WeightedChoice {
                step,
                from,
                to,
                weight,
            } => EventKind::WeightedChoice {
                step,
                from: name(from),
                to: name(to),
                weight,
            },
            StoredKind::StateUpdated { step, fields } => EventKind::StateUpdated {
                step,
                fields: fields.into_iter().map(Cow::Owned).collect(),
            },
            StoredKind::CheckpointSaved { step, bytes } => {
                EventKind::CheckpointSaved { step, bytes }
            }
            StoredKind::Graph { graph } => EventKind::Graph {
                graph: Arc::new(GraphDescription {
                    fingerprint: Fingerprint::from_u128(graph.fingerprint.0),
                    nodes: graph
                        .nodes
                        .into_iter()
                        .map(|n| NodeDescription {
                            name: n.name,
                            kind: n.kind,
                            interrupt_before: n.interrupt_before,
                            interrupt_after: n.interrupt_after,
                        })
                        .collect(),
                    edges: graph
                        .edges
                        .into_iter()
                        .map(|e| EdgeDescription {
                            from: e.from,
                            to: e.to,
                            kind: match e.kind {
                                StoredEdgeKind::Static => EdgeKind::Static,
                                StoredEdgeKind::Conditional => EdgeKind::Conditional,
                                StoredEdgeKind::Weighted => EdgeKind::Weighted,
                                StoredEdgeKind::Join => EdgeKind::Join,
                                StoredEdgeKind::Goto => EdgeKind::Goto,
                            },
                            weight: e.weight,
                        })
                        .collect(),
                    fields: graph
                        .fields
                        .into_iter()
                        .map(|f| FieldDescription {
                            name: f.name,
                            reducer: f.reducer,
                            ty: f.ty,
                        })
                        .collect(),
                }),
            },
            StoredKind::StateView { step, fields } => EventKind::StateView {
                step,
                fields: fields
                    .into_iter()
                    .map(|f| {
                        FieldView::new(
                            f.field,
                            match f.change {
                                StoredViewChange::Set(v) => ViewChange::Set(v),
                                StoredViewChange::Extend(v) => ViewChange::Extend(v),
                                StoredViewChange::Unavailable(why) => ViewChange::Unavailable(why),
                            },
                        )
                    })
                    .collect(),
            },
            StoredKind::RunFinished { steps, duration } => EventKind::RunFinished {
                steps,
                duration: duration.into(),
            },
            StoredKind::RunFailed { step, error } => EventKind::RunFailed { step, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::InterruptKind;
    use agentgraph_checkpoint::Op;

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
                    }],
                    edges: [
                        (EdgeKind::Static, None),
                        (EdgeKind::Conditional, None),
                        (EdgeKind::Weighted, Some(2.5)),
                        (EdgeKind::Join, None),
                        (EdgeKind::Goto, None),
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
            put_events(&mut batch, "r", std::slice::from_ref(&event)).unwrap();
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
