//! Interrupts, failures and resumes: the gates, what a stopped step stores, and what a
//! resumed run starts from.

use super::*;
use crate::run::retry_at::{RetryAt, RetryTask};
use agentgraph_checkpoint::audit::AuditAction;

impl<S: State> Scheduler<S> {
    pub(super) fn interrupted(&self, step: u64, interrupts: Vec<Interrupt>) -> Error {
        Error::Interrupted(Box::new(Interrupted {
            run_id: self.shared.run_id.to_string(),
            step,
            interrupts,
        }))
    }

    /// Applies a resume's answers and state edit to the loaded run, durably.
    pub(super) async fn apply_resume(
        &self,
        resume: Resume<S>,
        loaded: &mut Loaded<S>,
        p: &mut Persister<S>,
    ) -> Result<()> {
        let Resume {
            mut answers,
            value,
            update,
        } = resume;
        let run = &self.shared.run_id;
        let mut answered = Vec::new();
        // The audit entries, recorded once the whole resume is known to apply.
        let mut audited = Vec::new();
        if !answers.is_empty() || value.is_some() {
            let waiting = loaded.waiting();
            let unknown = |id: String| Error::UnknownInterrupt {
                run: run.to_string(),
                id,
                pending: waiting
                    .iter()
                    .map(|(i, _)| i.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            if let Some(value) = value {
                // The value answers the one interrupt the answers by id leave, once they are
                // known to name interrupts the run waits on.
                let known = |id: &String| waiting.iter().any(|(i, _)| i.id == *id);
                if let Some((id, _)) = answers.iter().find(|(id, _)| !known(id)) {
                    return Err(unknown(id.clone()));
                }
                let mut left: Vec<Interrupt> = waiting
                    .iter()
                    .map(|(i, _)| i)
                    .filter(|i| !answers.iter().any(|(id, _)| *id == i.id))
                    .cloned()
                    .collect();
                match left.len() {
                    0 => {
                        return Err(Error::NoInterruptToAnswer {
                            run: run.to_string(),
                        });
                    }
                    1 => answers.push((left.swap_remove(0).id, value)),
                    _ => {
                        return Err(Error::AmbiguousResumeValue {
                            run: run.to_string(),
                            waiting: left,
                        });
                    }
                }
            }
            for (id, value) in answers {
                let value = value.map_err(|message| Error::AnswerEncode {
                    id: id.clone(),
                    message,
                })?;
                let Some((interrupt, at)) = waiting.iter().find(|(i, _)| i.id == id) else {
                    return Err(unknown(id));
                };
                audited.push((
                    AuditAction::InterruptAnswered,
                    crate::persist::answer_details(&id, &value),
                ));
                // A gate of this run needs no value; a node's interrupt (or its subgraph's)
                // gets it when the task runs again.
                let own_gate = interrupt.path.is_empty() && interrupt.kind != InterruptKind::Node;
                if let (false, Some(at)) = (own_gate, *at)
                    && loaded.answer(at, id, value)
                {
                    answered.push(at);
                }
            }
        }
        let mut edited = None;
        if let Some(update) = update {
            let mut written = vec![false; self.plan.fields().len()];
            S::for_each_written(&update, |f| written[f] = true);
            let state = &mut loaded.state;
            std::panic::catch_unwind(AssertUnwindSafe(|| state.apply(update))).map_err(
                |panic| Error::Panicked {
                    what: "a reducer, applying the resume's state edit".to_owned(),
                    message: panic_message(panic),
                },
            )?;
            let fields: Vec<&str> = written
                .iter()
                .zip(self.plan.fields())
                .filter(|(w, _)| **w)
                .map(|(_, f)| f.name)
                .collect();
            audited.push((
                AuditAction::StateEdited,
                serde_json::json!({ "fields": fields }),
            ));
            edited = Some(written);
        }
        for (action, details) in audited {
            p.audit(action, details);
        }
        if !answered.is_empty() || edited.is_some() {
            p.amend(loaded, &answered, edited.as_deref()).await?;
        }
        Ok(())
    }

    /// Stops the run before a step in which a node gated by `interrupt_before` would run,
    /// unless a resume released it.
    pub(super) async fn gate_before(
        &self,
        tasks: &[Task],
        prior: &Prior<S>,
        step: u64,
        mut persist: Option<&mut Persister<S>>,
    ) -> Result<()> {
        let gated = |i: usize| {
            self.plan.nodes[tasks[i].node as usize].interrupt_before
                && !prior.start(i).released
                && !prior.is_done(i)
        };
        if !(0..tasks.len()).any(gated) {
            return Ok(());
        }
        let mut interrupts = Vec::new();
        for (i, task) in tasks.iter().enumerate().filter(|(i, _)| gated(*i)) {
            let name = &self.plan.nodes[task.node as usize].name;
            let interrupt =
                Interrupt::at_gate(name.to_string(), task.id, InterruptKind::Before, step);
            if let Some(p) = persist.as_deref_mut() {
                let unfinished = Unfinished::Interrupted {
                    raised: std::slice::from_ref(&interrupt),
                    answers: &[],
                };
                p.unfinished(step, i as u32, task.id, name, 0, unfinished)
                    .await?;
            }
            interrupts.push(interrupt);
        }
        Err(self.interrupted(step, interrupts))
    }

    /// Ends a step some of whose tasks did not finish: persists what each task came to
    /// (results, failures, interrupts) and returns the error the run stops with.
    pub(super) async fn stop_step(
        &self,
        tasks: &[Task],
        outcomes: Vec<(TaskOutcome<S>, u32)>,
        prior: &Prior<S>,
        stop: Option<Stop>,
        step: u64,
        mut persist: Option<&mut Persister<S>>,
    ) -> Error {
        let mut failure = None;
        let mut refused = None;
        let mut interrupts = Vec::new();
        let mut unfinished = Vec::new();
        let mut retries = Vec::new();
        for (i, (task, (outcome, attempts))) in tasks.iter().zip(outcomes).enumerate() {
            let name = &self.plan.nodes[task.node as usize].name;
            let (index, id) = (i as u32, task.id);
            let saved = match outcome {
                Ok(cmd) => match persist.as_deref_mut() {
                    Some(p) => p.pending_write(step, index, id, name, attempts, &cmd).await,
                    None => Ok(()),
                },
                Err(TaskFailure::Cancelled) => {
                    unfinished.push(name.to_string());
                    Ok(())
                }
                // Its `Retrying` record is written (by the executor, or before a resume).
                Err(TaskFailure::RetryLater(due_at_ms)) => {
                    retries.push(RetryTask {
                        node: name.to_string(),
                        task: id,
                        attempt: attempts + 1,
                        due_at_ms,
                    });
                    Ok(())
                }
                Err(TaskFailure::Interrupted(raised)) => {
                    let saved = match persist.as_deref_mut() {
                        Some(p) => {
                            let unfinished = Unfinished::Interrupted {
                                raised: &raised,
                                answers: prior.start(i).answers.as_deref().unwrap_or_default(),
                            };
                            p.unfinished(step, index, id, name, attempts, unfinished)
                                .await
                        }
                        None => Ok(()),
                    };
                    interrupts.extend(raised);
                    saved
                }
                // Refused by a budget: it runs again on a resume, with its answers; the record
                // keeps what the run used by now, with what the step's finished tasks used.
                Err(TaskFailure::OverBudget(b)) => {
                    refused.get_or_insert(b);
                    match persist.as_deref_mut() {
                        Some(p) => {
                            let used = self.book.total(&self.shared.usage);
                            let unfinished = Unfinished::OverBudget {
                                answers: prior.start(i).answers.as_deref().unwrap_or_default(),
                                used: &used,
                            };
                            p.unfinished(step, index, id, name, attempts, unfinished)
                                .await
                        }
                        None => Ok(()),
                    }
                }
                Err(TaskFailure::Failed(f)) => {
                    let e = self.failure_error(task, step, attempts, f);
                    let unfinished = Unfinished::Failed {
                        error: e.to_string(),
                    };
                    failure.get_or_insert(e);
                    match persist.as_deref_mut() {
                        Some(p) => {
                            p.unfinished(step, index, id, name, attempts, unfinished)
                                .await
                        }
                        None => Ok(()),
                    }
                }
            };
            if let Err(e) = saved {
                return e;
            }
        }
        if let Some(e) = failure {
            return e;
        }
        // A task refused by a budget stops the run as the check before a step does, at this
        // step (which a resume with a higher budget finishes).
        if matches!(stop, Some(Stop::Sibling) | None)
            && let Some(b) = refused
        {
            return self.over_budget(b.scope, b.budget, b.limit, b.used, step);
        }
        match stop {
            Some(Stop::Cancelled) => Error::Cancelled { step },
            Some(Stop::RunTimeout(after)) => Error::RunTimedOut { step, after },
            Some(Stop::StepTimeout(after)) => Error::StepTimedOut {
                step,
                after,
                unfinished: unfinished.join(", "),
            },
            // A retry due later goes first: once it has run, the run stops at the
            // interrupts again (their records are kept) unless they were answered meanwhile.
            Some(Stop::Sibling) | None if !retries.is_empty() => {
                Error::RetryScheduled(Box::new(RetryAt {
                    run_id: self.shared.run_id.to_string(),
                    step,
                    due_at_ms: retries.iter().map(|t| t.due_at_ms).min().unwrap_or(0),
                    tasks: retries,
                }))
            }
            Some(Stop::Sibling) | None => self.interrupted(step, interrupts),
        }
    }

    /// Restores the frontier and joins of a loaded checkpoint; returns what the tasks of the
    /// next step that began came to.
    pub(super) fn restore(&mut self, loaded: &Loaded<S>) -> Result<Vec<RestoredTask<S>>> {
        let restored = loaded.restore(&self.plan, &self.shared.run_id)?;
        // The next step's tasks as they were scheduled: a deferred node among them was
        // released.
        for node in restored.nodes {
            self.frontier.put(node);
        }
        self.frontier.packets.extend(restored.packets);
        self.frontier.held.extend(restored.held);
        self.frontier.held_packets.extend(restored.held_packets);
        self.saga = restored.saga;
        self.saga.saved = loaded.step();
        if restored.joins.len() == self.joins.len() {
            for (pass, stored) in self.joins.iter_mut().zip(restored.joins) {
                if stored.arrived.len() == pass.arrived.len() {
                    *pass = stored;
                }
            }
        }
        Ok(restored.tasks)
    }

    /// Where each task of the step starts, from the records a resume restored (matched by
    /// task id, not index: a changed graph may order the step's tasks otherwise).
    pub(super) fn prior(&self, tasks: &[Task], pending: Vec<RestoredTask<S>>) -> Result<Prior<S>> {
        let mut prior = Prior {
            done: Vec::new(),
            starts: Vec::new(),
        };
        if pending.is_empty() {
            return Ok(prior);
        }
        prior.done = (0..tasks.len()).map(|_| None).collect();
        prior.starts = vec![TaskStart::FIRST; tasks.len()];
        for restored in pending {
            let Some(i) = tasks.iter().position(|t| t.id == restored.task) else {
                continue;
            };
            let start = &mut prior.starts[i];
            // A task with a record has passed its `interrupt_before` gate: the gate stopped it
            // (a `Before` record), or it ran (any other record).
            start.released = true;
            match restored.standing {
                Standing::Done(finished) => {
                    let cmd = finished.command(&self.shared.run_id)?;
                    prior.done[i] = Some((cmd, restored.attempts));
                }
                Standing::Retrying {
                    retry_at_ms,
                    answers,
                } => {
                    start.attempt = restored.attempts + 1;
                    start.wait = Duration::from_millis(retry_at_ms.saturating_sub(now_ms()));
                    start.due_ms = retry_at_ms;
                    if !answers.is_empty() {
                        start.answers = Some(Arc::from(answers));
                    }
                }
                // Resumed after the cause was fixed: a fresh set of attempts.
                Standing::Failed => {}
                Standing::Interrupted { answers } => {
                    start.answers = Some(Arc::from(answers));
                }
            }
        }
        Ok(prior)
    }
}
