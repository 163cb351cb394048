//! Error edges and compensations: a task's final failure caught by its error edge
//! (`GraphBuilder::on_error`), and the saga of a run that fails for good
//! (`GraphBuilder::compensate`).
//!
//! A caught failure is an ordinary outcome: a command without an update whose go-to is one
//! packet to the handler, marked `caught`, kept as a pending write like any result.
//!
//! The saga: each step records the nodes with a compensation whose tasks finished (each once,
//! in the order of their last completion), stored with the checkpoint. When the run fails for
//! good, the forward path is abandoned: a checkpoint records the failure and the compensations
//! to run (the finished nodes, last first), then each compensation runs as the one task of a
//! step of its own, checkpointed with the list of those still to run. A resume of such a run
//! goes on with that list; an empty one ends the run again with the same error.

use super::*;

use crate::define::route::Packet;
use crate::define::saga::{Compensation, NodeFailure};

/// The saga of a run with compensations, in the scheduler's terms.
#[derive(Debug, Default)]
pub(crate) struct Saga {
    /// The nodes with a compensation whose tasks finished, each once, in the order of their
    /// last completion.
    pub(crate) finished: Vec<NodeId>,
    /// Set once the run failed for good and its compensations began.
    pub(crate) compensating: Option<Compensating>,
    /// The step of the run's last checkpoint (what it would be without a store).
    pub(crate) saved: u64,
}

/// A run that compensates a failure.
#[derive(Debug)]
pub(crate) struct Compensating {
    /// The error that failed the run, as text.
    pub(crate) error: String,
    /// The nodes whose compensations ran, in order.
    pub(crate) done: Vec<NodeId>,
    /// The nodes whose compensations are still to run, in order.
    pub(crate) remaining: Vec<NodeId>,
}

impl<S: State> Scheduler<S> {
    /// Catches the final failure of a task whose node has an error edge: its outcome becomes
    /// a route to the handler carrying the failure. Other outcomes pass through; nothing is
    /// caught while the run compensates.
    pub(super) fn catch(
        &self,
        task: &Task,
        step: u64,
        attempts: u32,
        outcome: TaskOutcome<S>,
    ) -> TaskOutcome<S> {
        let node = &self.plan.nodes[task.node as usize];
        let (Some(handler), Err(failure @ TaskFailure::Failed(_))) = (node.on_error, &outcome)
        else {
            return outcome;
        };
        if self.saga.compensating.is_some() {
            return outcome;
        }
        let error = failure.describe();
        let handler = self.plan.nodes[handler as usize].name.clone();
        self.shared.events.emit(|| EventKind::ErrorRouted {
            step,
            node: node.name.clone(),
            task: task.id,
            handler: handler.clone(),
            error: error.clone(),
        });
        let failure = NodeFailure {
            node: node.name.to_string(),
            task: task.id,
            step,
            attempts,
            error,
        };
        let packet = Packet::new(handler.to_string(), &failure);
        Ok(Command {
            memory: Vec::new(),
            update: S::Update::default(),
            goto: Some(Route {
                targets: Vec::new(),
                packets: vec![packet],
                caught: true,
                failed: None,
            }),
        })
    }

    /// Schedules the handler of a caught failure of the node in slot `from`.
    pub(super) fn route_caught(&mut self, from: usize, route: Route) -> Result<()> {
        let node = &self.plan.nodes[from - 1];
        for packet in route.packets {
            // The handler of this graph; a run of an earlier graph names its own.
            let handler = node.on_error.or_else(|| {
                (self.plan.nodes.iter())
                    .position(|n| *n.name == *packet.node)
                    .map(|i| i as NodeId)
            });
            let (Some(handler), Ok(input)) = (handler, packet.input) else {
                return Err(Error::MissingNode {
                    run: self.shared.run_id.to_string(),
                    node: packet.node.to_string(),
                });
            };
            self.frontier.send(handler, input);
        }
        Ok(())
    }

    /// Records the tasks of a step that finished (a caught failure did not), for the nodes
    /// with a compensation. Nothing for a graph without compensations.
    #[inline]
    pub(super) fn note_finished<'c>(
        &mut self,
        tasks: &[Task],
        commands: impl IntoIterator<Item = Option<&'c Command<S>>>,
    ) {
        if !self.plan.has_compensations {
            return;
        }
        for (task, cmd) in tasks.iter().zip(commands) {
            let Some(cmd) = cmd else { continue };
            let caught = cmd.goto.as_ref().is_some_and(|r| r.caught);
            if caught || self.plan.nodes[task.node as usize].compensation.is_none() {
                continue;
            }
            self.saga.finished.retain(|n| *n != task.node);
            self.saga.finished.push(task.node);
        }
    }

    /// Whether a run that stopped with `error` compensates: any final failure of the run but
    /// an interrupt, a cancellation unless asked (`RunConfig::compensate_on_cancel`), a
    /// panicking reducer (the state is half-merged) and a failure of the store or of the
    /// run's records.
    fn compensates(&self, error: &Error) -> bool {
        match error {
            Error::Cancelled { .. } => self.config().compensate_on_cancel,
            Error::Panicked { what, .. } => !what.starts_with("a reducer"),
            Error::NodeFailed { .. }
            | Error::NodePanicked { .. }
            | Error::TaskLost { .. }
            | Error::Conflict { .. }
            | Error::RecursionLimit { .. }
            | Error::TotalStepsLimit { .. }
            | Error::UndeclaredTarget { .. }
            | Error::GotoNotDeclared(_)
            | Error::PacketEncode { .. }
            | Error::StepTimedOut { .. }
            | Error::RunTimedOut { .. }
            | Error::RouteFailed { .. } => true,
            _ => false,
        }
    }

    /// After the step loop: the final state, or the run's compensations if it failed for good
    /// and something it finished has one.
    pub(super) async fn settle(
        &mut self,
        looped: std::result::Result<(), Stopped>,
        state: Arc<S>,
        step: &mut u64,
        persist: &mut Option<Persister<S>>,
    ) -> std::result::Result<Arc<S>, Stopped> {
        let stopped = match looped {
            Ok(()) => return Ok(state),
            Err(stopped) => stopped,
        };
        if !self.plan.has_compensations || !self.compensates(&stopped.error) {
            return Err(stopped);
        }
        let remaining: Vec<NodeId> = self.saga.finished.iter().rev().copied().collect();
        if remaining.is_empty() {
            return Err(stopped);
        }
        let error = stopped.error.to_string();
        let plan = self.plan.clone();
        // The forward path is abandoned.
        self.frontier.plain.clear();
        self.frontier.marked.clear();
        self.frontier.packets.clear();
        self.frontier.held.clear();
        self.frontier.held_packets.clear();
        self.joins.iter_mut().for_each(JoinPass::reset);
        // The compensations run whatever stopped the run: a fresh token for their attempts, and
        // no run deadline (see `stop_signal`).
        self.tasks_token = CancellationToken::new();
        self.deadline = None;
        let begin = self.saga.saved + 1;
        *step = begin;
        self.shared.events.emit(|| EventKind::CompensationStarted {
            step: begin,
            error: error.clone(),
            nodes: remaining
                .iter()
                .map(|n| plan.nodes[*n as usize].name.clone())
                .collect(),
        });
        self.saga.compensating = Some(Compensating {
            error,
            done: Vec::new(),
            remaining,
        });
        // The failure and the compensations to run are recorded before any runs; the whole
        // state is stored, whatever the failed step left merged.
        let all = vec![true; self.plan.fields().len()];
        self.save(persist, begin, &state, &all, &[]).await?;
        self.compensate(state, Vec::new(), Some(stopped.error), step, persist)
            .await
    }

    /// Runs the compensations still to run, each as the one task of a step of its own; then
    /// the run ends with [`Error::Compensated`]. `cause` is the error that failed the run, when
    /// this invocation saw it; `restored` what a resume restored of the next step.
    pub(super) async fn compensate(
        &mut self,
        mut state: Arc<S>,
        mut restored: Vec<RestoredTask<S>>,
        cause: Option<Error>,
        step: &mut u64,
        persist: &mut Option<Persister<S>>,
    ) -> std::result::Result<Arc<S>, Stopped> {
        let plan = self.plan.clone();
        self.deadline = None;
        let mut tasks = Vec::with_capacity(1);
        let mut commands = Vec::with_capacity(1);
        let mut gotos = Vec::with_capacity(1);
        let mut written = vec![false; self.plan.fields().len()];
        loop {
            let Some(c) = &self.saga.compensating else {
                unreachable!("a run compensates once its saga says so");
            };
            let Some(&node) = c.remaining.first() else {
                break;
            };
            let error = c.error.clone();
            let Some(compensation) = plan.nodes[node as usize].compensation else {
                // Only with a changed graph: nothing to run for this node.
                self.compensated(node);
                continue;
            };
            *step += 1;
            let step = *step;
            let name = &plan.nodes[compensation as usize].name;
            let input = Compensation {
                node: plan.nodes[node as usize].name.to_string(),
                error: error.clone(),
            };
            let mut bytes = Vec::new();
            crate::codec::encode_into(&input, &mut bytes).map_err(|source| Error::Encode {
                what: format!("the input of compensation `{name}`"),
                source,
            })?;
            let key = task_key("", step, name, 1);
            tasks.clear();
            tasks.push(Task {
                node: compensation,
                packet: Some(0),
                input: Some(Arc::from(bytes)),
                key,
                id: task_id(&self.shared.run_id, key),
            });
            crate::observe::metrics::step();
            self.shared.events.emit(|| EventKind::StepStarted {
                step,
                tasks: vec![TaskInfo {
                    node: name.clone(),
                    task: tasks[0].id,
                    packet: Some(0),
                }],
            });
            let mut prior = self.prior(&tasks, std::mem::take(&mut restored))?;
            let span = tracing::debug_span!("step", step = step as i64, tasks = 1i64);
            let mut sink = StoreSink(persist.as_mut());
            let StepOutcomes { outcomes, stop } = self
                .run_tasks(&tasks, &state, step, &mut prior, &mut sink)
                .instrument(span)
                .await?;
            if stop.is_some() || outcomes.iter().any(|(o, _)| o.is_err()) {
                let e = self
                    .stop_step(&tasks, outcomes, &prior, stop, step, persist.as_mut())
                    .await;
                return Err(match e {
                    // Stopped, not failed: a resume goes on with the compensation.
                    Error::Interrupted(_) | Error::BudgetExceeded(_) => e,
                    e => Error::CompensationFailed {
                        error,
                        node: plan.nodes[node as usize].name.to_string(),
                        compensation: name.to_string(),
                        source: Box::new(e),
                    },
                }
                .into());
            }
            commands.clear();
            // A compensation's routes are not followed.
            commands.extend(
                outcomes
                    .into_iter()
                    .filter_map(|(o, _)| o.ok())
                    .map(|c| Command {
                        update: c.update,
                        goto: None,
                        memory: c.memory,
                    }),
            );
            self.merge(
                &mut state,
                &mut commands,
                &mut gotos,
                &mut written,
                persist.as_mut(),
                step,
            )?;
            gotos.clear();
            self.compensated(node);
            self.save(persist, step, &state, &written, &[]).await?;
        }
        let Some(c) = &self.saga.compensating else {
            unreachable!("a run compensates once its saga says so");
        };
        Err(Error::Compensated {
            error: c.error.clone(),
            compensated: (c.done.iter())
                .map(|n| plan.nodes[*n as usize].name.to_string())
                .collect(),
            cause: cause.map(Box::new),
        }
        .into())
    }

    /// The compensation of `node`, the first still to run, has run.
    fn compensated(&mut self, node: NodeId) {
        if let Some(c) = &mut self.saga.compensating {
            c.remaining.remove(0);
            c.done.push(node);
        }
    }
}
