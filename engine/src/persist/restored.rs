//! [`Restored`]: what a loaded checkpoint gives back to the scheduler, in its own terms (node
//! ids, join passes, task results), converted from the stored records here.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use super::load::Loaded;
use super::pending::{caught_command, command_from};
use super::record::{MemoryRecord, PendingOutcome, PendingWriteRecord, RouteRecord, TaskRecord};
use crate::define::route::Command;
use crate::define::state::State;
use crate::error::{Error, Result};
use crate::ids::{NodeId, TaskId};
use crate::plan::Plan;
use crate::run::scheduler::{Compensating, JoinPass, Saga};

/// Where a loaded run resumes: the next step's tasks, the joins' bookkeeping, and what the
/// tasks of the next step that began before the run stopped came to.
pub(crate) struct Restored<S: State> {
    /// Edge-triggered nodes of the next step, as stored (in plan order).
    pub(crate) nodes: Vec<NodeId>,
    /// Packets of the next step, in the order they were emitted.
    pub(crate) packets: Vec<(NodeId, Arc<[u8]>)>,
    /// Deferred nodes held until nothing else is left, as stored (in plan order).
    pub(crate) held: Vec<NodeId>,
    /// Packets to deferred nodes held, in the order they were emitted.
    pub(crate) held_packets: Vec<(NodeId, Arc<[u8]>)>,
    /// Every join's current pass, in plan order.
    pub(crate) joins: Vec<JoinPass>,
    /// The pending writes of the next step, in the order they are stored.
    pub(crate) tasks: Vec<RestoredTask<S>>,
    /// What to compensate, and the compensations still to run (nodes this graph does not
    /// have are left out).
    pub(crate) saga: Saga,
}

/// A task of the next step that began before the run stopped.
pub(crate) struct RestoredTask<S: State> {
    pub(crate) task: TaskId,
    /// The attempts made so far.
    pub(crate) attempts: u32,
    pub(crate) standing: Standing<S>,
}

/// Where a restored task stands.
pub(crate) enum Standing<S: State> {
    /// It finished, with this result.
    Done(Finished<S>),
    /// An attempt failed and the next one is due at `retry_at_ms` (Unix ms), with the answers
    /// the task was given.
    Retrying {
        retry_at_ms: u64,
        answers: Vec<(String, String)>,
    },
    /// It failed for good.
    Failed,
    /// It waits at interrupts, with the answers given so far.
    Interrupted { answers: Vec<(String, String)> },
}

/// The stored result of a finished task, decoded when a resumed step uses it.
pub(crate) struct Finished<S: State> {
    node: String,
    update: Vec<u8>,
    goto: Option<RouteRecord>,
    /// A caught failure: its handler and encoded failure (then `update` is empty).
    caught: Option<(String, Vec<u8>)>,
    /// The task's memory writes.
    memory: Vec<MemoryRecord>,
    _update: PhantomData<fn() -> S::Update>,
}

impl<S: State> Finished<S> {
    /// The task's command; [`Error::Corrupt`] if its update does not decode.
    pub(crate) fn command(&self, run: &str) -> Result<Command<S>> {
        let mut cmd = match &self.caught {
            Some((handler, failure)) => caught_command(handler, failure),
            None => command_from(run, &self.node, &self.update, self.goto.as_ref())?,
        };
        for m in &self.memory {
            cmd.memory.push(m.to_write().ok_or_else(|| Error::Corrupt {
                run: run.to_owned(),
                reason: format!("a memory write of `{}` does not decode", self.node),
            })?);
        }
        Ok(cmd)
    }
}

impl<S: State> Standing<S> {
    /// Whether the task finished.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Standing::Done(_))
    }
}

impl<S: State> Loaded<S> {
    /// What the run resumes from, with node names resolved in `plan`; fails if a node of the
    /// next step is not in it. Joins whose shape changed keep `plan`'s (fresh) passes.
    pub(crate) fn restore(&self, plan: &Plan<S>, run: &str) -> Result<Restored<S>> {
        let by_name: HashMap<&str, NodeId> = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (&*n.name, i as NodeId))
            .collect();
        let tasks = |records: &[TaskRecord]| {
            let mut nodes = Vec::new();
            let mut packets = Vec::new();
            for t in records {
                let Some(&id) = by_name.get(t.node.as_str()) else {
                    return Err(Error::MissingNode {
                        run: run.to_owned(),
                        node: t.node.clone(),
                    });
                };
                match &t.input {
                    None => nodes.push(id),
                    Some(input) => packets.push((id, Arc::from(input.as_slice()))),
                }
            }
            Ok((nodes, packets))
        };
        let (nodes, packets) = tasks(&self.record.next)?;
        let (held, held_packets) = tasks(&self.record.deferred)?;
        // A first-layout record (or one whose passes all stood still) has no passes: a pass
        // is then taken as not fired, begun at this checkpoint's step.
        let step = self.record.step;
        let joins = self
            .record
            .joins
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let pass = self.record.passes.get(i);
                JoinPass {
                    arrived: j.arrived.clone(),
                    active: j.active,
                    fired: pass.is_some_and(|p| p.fired),
                    began: pass.map_or(if j.active { step } else { 0 }, |p| p.began),
                }
            })
            .collect();
        let tasks = self
            .pending
            .iter()
            .map(|(_, record)| RestoredTask {
                task: TaskId::from_u128(record.task),
                attempts: record.attempts,
                standing: standing(record),
            })
            .collect();
        let known = |names: &[String]| -> Vec<NodeId> {
            names
                .iter()
                .filter_map(|n| by_name.get(n.as_str()).copied())
                .collect()
        };
        let saga = match &self.record.saga {
            None => Saga::default(),
            Some(s) => Saga {
                finished: known(&s.finished),
                compensating: s.compensating.as_ref().map(|c| Compensating {
                    error: c.error.clone(),
                    done: known(&c.done),
                    remaining: known(&c.remaining),
                }),
                saved: step,
            },
        };
        Ok(Restored {
            nodes,
            packets,
            held,
            held_packets,
            joins,
            tasks,
            saga,
        })
    }
}

fn standing<S: State>(record: &PendingWriteRecord) -> Standing<S> {
    match &record.outcome {
        PendingOutcome::Done { update, goto } => Standing::Done(Finished {
            node: record.node.clone(),
            update: update.clone(),
            goto: goto.clone(),
            caught: None,
            memory: Vec::new(),
            _update: PhantomData,
        }),
        PendingOutcome::DoneWithMemory {
            update,
            goto,
            memory,
        } => Standing::Done(Finished {
            node: record.node.clone(),
            update: update.clone(),
            goto: goto.clone(),
            caught: None,
            memory: memory.clone(),
            _update: PhantomData,
        }),
        PendingOutcome::Caught { handler, failure } => Standing::Done(Finished {
            node: record.node.clone(),
            update: Vec::new(),
            goto: None,
            caught: Some((handler.clone(), failure.clone())),
            memory: Vec::new(),
            _update: PhantomData,
        }),
        PendingOutcome::Retrying {
            retry_at_ms,
            answers,
            ..
        } => Standing::Retrying {
            retry_at_ms: *retry_at_ms,
            answers: answers.clone(),
        },
        PendingOutcome::Failed { .. } => Standing::Failed,
        // Refused by a budget: it runs again, with its answers (it passed its gate).
        PendingOutcome::Interrupted { answers, .. }
        | PendingOutcome::OverBudget { answers, .. } => Standing::Interrupted {
            answers: answers.clone(),
        },
    }
}
