//! Explicit conversions between the public event types and their stored shapes.

use std::borrow::Cow;
use std::sync::Arc;

use super::stored::{
    Hex, StoredEdge, StoredEdgeKind, StoredEvent, StoredField, StoredFieldView, StoredGraph,
    StoredInterrupt, StoredJoin, StoredKind, StoredMode, StoredNode, StoredTask, StoredViewChange,
};
use crate::ids::{Fingerprint, TaskId};
use crate::observe::event::{Event, EventKind, TaskInfo};
use crate::observe::view::{FieldView, ViewChange};
use crate::plan::describe::{
    EdgeDescription, EdgeKind, FieldDescription, GraphDescription, JoinDescription, NodeDescription,
};
use crate::run::budget::{BudgetKind, BudgetScope};
use crate::run::config::Mode;
use crate::run::interrupt::Interrupt;

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
            EventKind::ThreadInvoked {
                invocation,
                step,
                fields,
                graph,
            } => StoredKind::ThreadInvoked {
                invocation: *invocation,
                step: *step,
                fields: fields.iter().map(|f| s(f)).collect(),
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
            EventKind::Token {
                step,
                node,
                task,
                attempt,
                index,
                count,
                text,
            } => StoredKind::Token {
                step: *step,
                node: s(node),
                task: (*task).into(),
                attempt: *attempt,
                index: *index,
                count: *count,
                text: text.clone(),
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
                            deferred: n.deferred,
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
                                EdgeKind::Error => StoredEdgeKind::Error,
                                EdgeKind::Compensate => StoredEdgeKind::Compensate,
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
                    joins: graph
                        .joins
                        .iter()
                        .map(|j| StoredJoin {
                            target: j.target.clone(),
                            predecessors: j.predecessors.clone(),
                            quorum: j.quorum,
                            timeout_steps: j.timeout_steps,
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
            EventKind::ErrorRouted {
                step,
                node,
                task,
                handler,
                error,
            } => StoredKind::ErrorRouted {
                step: *step,
                node: s(node),
                task: (*task).into(),
                handler: s(handler),
                error: error.clone(),
            },
            EventKind::CompensationStarted { step, error, nodes } => {
                StoredKind::CompensationStarted {
                    step: *step,
                    error: error.clone(),
                    nodes: nodes.iter().map(|n| s(n)).collect(),
                }
            }
            EventKind::BudgetExceeded {
                step,
                scope,
                budget,
                limit,
                used,
            } => StoredKind::BudgetExceeded {
                step: *step,
                scope: scope.as_str().to_owned(),
                budget: budget.as_str().to_owned(),
                limit: *limit,
                used: *used,
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
            StoredKind::ThreadInvoked {
                invocation,
                step,
                fields,
                graph,
            } => EventKind::ThreadInvoked {
                invocation,
                step,
                fields: fields.into_iter().map(Cow::Owned).collect(),
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
            StoredKind::Token {
                step,
                node,
                task: t,
                attempt,
                index,
                count,
                text,
            } => EventKind::Token {
                step,
                node: name(node),
                task: task(t),
                attempt,
                index,
                count,
                text,
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
                            deferred: n.deferred,
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
                                StoredEdgeKind::Error => EdgeKind::Error,
                                StoredEdgeKind::Compensate => EdgeKind::Compensate,
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
                    joins: graph
                        .joins
                        .into_iter()
                        .map(|j| JoinDescription {
                            target: j.target,
                            predecessors: j.predecessors,
                            quorum: j.quorum,
                            timeout_steps: j.timeout_steps,
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
            StoredKind::ErrorRouted {
                step,
                node,
                task,
                handler,
                error,
            } => EventKind::ErrorRouted {
                step,
                node: node.into(),
                task: TaskId::from_u128(task.0),
                handler: handler.into(),
                error,
            },
            StoredKind::CompensationStarted { step, error, nodes } => {
                EventKind::CompensationStarted {
                    step,
                    error,
                    nodes: nodes.into_iter().map(Arc::from).collect(),
                }
            }
            StoredKind::BudgetExceeded {
                step,
                scope,
                budget,
                limit,
                used,
            } => EventKind::BudgetExceeded {
                step,
                // Written from these enums' own names; a name this build does not know reads
                // as the widest scope and the first budget.
                scope: scope.parse().unwrap_or(BudgetScope::Tenant),
                budget: budget.parse().unwrap_or(BudgetKind::Steps),
                limit,
                used,
            },
        }
    }
}
