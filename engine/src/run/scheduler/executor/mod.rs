//! Running a step's tasks: attempts, retries, timeouts and cancellation.
//!
//! [`Scheduler::run_tasks`] runs the tasks of one step on one snapshot of the state. Where the
//! attempts run is a [`TaskRunner`]: [`Sequential`] runs one at a time in the run's own task,
//! without allocating; [`Parallel`] spawns every task at once. What happens as each attempt
//! ends is the same for both ([`StepRun`]): a failed attempt that its node's retry policy
//! retries starts again after its delay; a task that finishes while others still run has its
//! result kept at once as a pending write; a failure under `FailurePolicy::CancelSiblings`, a
//! cancelled run, or a step or run timeout stops the step and drops the attempts still running.
//! What must outlive a crash goes to an [`OutcomeSink`], so the executor does not know how it
//! is stored.

mod attempt;
mod parallel;
mod sequential;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::define::route::Command;
use crate::define::state::State;
use crate::error::{BoxError, Error, Result, TaskEnd};
use crate::ids::TaskId;
use crate::observe::event::EventKind;
use crate::persist::now_ms;
use crate::run::config::{FailurePolicy, Mode};
use crate::run::interrupt::Interrupt;
use crate::run::scheduler::{Prior, Scheduler, Task};

use parallel::Parallel;
use sequential::Sequential;

/// Why a task did not finish with a result.
pub(super) enum TaskFailure {
    /// It failed: the step fails (once its retries are spent).
    Failed(Failure),
    /// It stopped at interrupts (its own, or its subgraph's).
    Interrupted(Vec<Interrupt>),
    /// It was cancelled before it finished.
    Cancelled,
    /// Its budget refused it before a costly call ([`Context::charge_tool_calls`],
    /// [`Context::check_budget`]): the step ends as at an interrupt, and a resume runs the
    /// task again.
    ///
    /// [`Context::charge_tool_calls`]: crate::Context::charge_tool_calls
    /// [`Context::check_budget`]: crate::Context::check_budget
    OverBudget(Box<crate::run::budget::BudgetExceeded>),
    /// It failed and its next attempt is due at this time (Unix ms), later than the run
    /// waits inline (`RunConfig::max_inline_backoff`): the run stops until then. Its pending
    /// record (`Retrying`) is written.
    RetryLater(u64),
}

/// How a task failed.
pub(super) enum Failure {
    /// The node returned an error (or its attempt timed out).
    Error(BoxError),
    /// The node panicked, with this message.
    Panic(String),
    /// The tokio task running the attempt ended without a result.
    Lost(TaskEnd),
    /// Its go-to is invalid.
    Route(Error),
}

impl TaskFailure {
    /// The failure as an event shows it.
    pub(in crate::run::scheduler) fn describe(&self) -> String {
        match self {
            TaskFailure::Failed(Failure::Error(e)) => crate::error::chain(e.as_ref()),
            TaskFailure::Failed(Failure::Panic(m)) => format!("panicked: {m}"),
            TaskFailure::Failed(Failure::Lost(end)) => format!("its tokio task {end}"),
            TaskFailure::Failed(Failure::Route(e)) => e.to_string(),
            TaskFailure::Interrupted(i) => format!("interrupted at {} interrupt(s)", i.len()),
            TaskFailure::Cancelled => "cancelled".to_owned(),
            TaskFailure::OverBudget(b) => b.to_string(),
            TaskFailure::RetryLater(at) => format!("retrying at {at} ms since the epoch"),
        }
    }
}

/// What a task came to: the node's command, or why there is none.
pub(super) type TaskOutcome<S> = std::result::Result<Command<S>, TaskFailure>;

/// A finished attempt: the task's index in its step, the attempt, its outcome.
pub(super) type Finished<S> = (usize, u32, TaskOutcome<S>);

/// Why a step stopped before all its tasks finished.
pub(super) enum Stop {
    /// The run was cancelled through its handle.
    Cancelled,
    /// The run passed its `run_timeout`.
    RunTimeout(Duration),
    /// The step passed its `step_timeout`.
    StepTimeout(Duration),
    /// A task failed for good under `FailurePolicy::CancelSiblings`.
    Sibling,
}

/// What a step's tasks came to, in task order, with the attempts each made; and why the step
/// stopped early, if it did (the tasks it stopped are `Cancelled`).
pub(super) struct StepOutcomes<S: State> {
    pub(super) outcomes: Vec<(TaskOutcome<S>, u32)>,
    pub(super) stop: Option<Stop>,
}

/// Where a step's attempts run, and how many at once. `F` is an attempt's future.
pub(super) trait TaskRunner<S: State, F> {
    /// Whether another attempt may start now.
    fn has_room(&self) -> bool;

    /// Starts `future`, attempt `attempt` of the step's task `index`.
    fn start(&mut self, index: usize, attempt: u32, future: F);

    /// The next attempt to finish. Pending while none has, and for ever when none runs.
    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<Finished<S>>;

    /// Drops the attempts still running (aborts those spawned on the runtime).
    fn abort(&mut self);

    /// Ready once the attempts [`abort`](TaskRunner::abort) aborted are gone: an attempt
    /// spawned on the runtime holds the run (its store among the rest) until its task is
    /// dropped, which an abort alone leaves to the runtime's next turn.
    fn poll_aborted(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

/// A task of a step, as an [`OutcomeSink`] records it.
#[derive(Debug, Clone, Copy)]
pub(super) struct TaskAt<'a> {
    pub(super) step: u64,
    /// The task's index in its step.
    pub(super) index: u32,
    pub(super) task: TaskId,
    pub(super) node: &'a str,
}

/// Keeps what a step's tasks came to before the step ends, so that a crash does not lose it.
pub(super) trait OutcomeSink<S: State> {
    /// Keeps the result of a task that finished while others of its step still run.
    async fn finished(&mut self, at: TaskAt<'_>, attempts: u32, cmd: &Command<S>) -> Result<()>;

    /// Keeps that attempt `attempt` of a task failed with `error` and is retried at
    /// `retry_at_ms` (Unix ms), with the answers the task had to its interrupts.
    async fn retrying(
        &mut self,
        at: TaskAt<'_>,
        attempt: u32,
        error: &BoxError,
        retry_at_ms: u64,
        answers: &[(String, String)],
    ) -> Result<()>;
}

impl<S: State> Scheduler<S> {
    /// Runs the tasks of one step on the same snapshot; returns what each came to (in task
    /// order, with the attempts each made) and why the step stopped early, if it did.
    ///
    /// Tasks restored from pending writes do not run. A store error does not abandon the
    /// running tasks: they finish, then it is returned.
    pub(super) async fn run_tasks(
        &self,
        tasks: &[Task],
        state: &Arc<S>,
        step: u64,
        prior: &mut Prior<S>,
        sink: &mut impl OutcomeSink<S>,
    ) -> Result<StepOutcomes<S>> {
        let run = StepRun::new(self, tasks, step, prior);
        let prior = run.prior;
        let attempt = |i: usize, attempt: u32, wait: Duration| {
            let answers = prior.start(i).answers.clone();
            self.attempt_future(
                &tasks[i],
                state,
                step,
                attempt,
                wait,
                answers,
                &self.tasks_token,
            )
        };
        // A step of one task runs it in place, in parallel mode too.
        if self.config().mode == Mode::Parallel && run.remaining > 1 {
            run.drive(&mut Parallel::new(), attempt, sink).await
        } else {
            let running = std::pin::pin!(None);
            run.drive(&mut Sequential::new(running), attempt, sink)
                .await
        }
    }

    /// The longest retry delay the run sleeps through, when a longer one stops it (see
    /// `RunConfig::max_inline_backoff`): only for a run with a store (it can be continued),
    /// and not while it compensates.
    pub(super) fn inline_backoff_limit(&self) -> Option<Duration> {
        let limit = self.config().max_inline_backoff;
        (limit != Duration::MAX
            && self.config().store.is_some()
            && self.saga.compensating.is_none())
        .then_some(limit)
    }

    /// Completes when the step must stop early: the run is cancelled, or passes its deadline,
    /// or the step passes `step_deadline`.
    async fn stop_signal(&self, step_deadline: Option<Instant>) -> Option<Stop> {
        // The compensations of a run run whatever stopped it (`compensate`).
        let compensating = self.saga.compensating.is_some();
        tokio::select! {
            biased;
            () = self.shared.cancel.cancelled(), if !compensating => Some(Stop::Cancelled),
            () = sleep_until(self.deadline) => self.config().run_timeout.map(Stop::RunTimeout),
            () = sleep_until(step_deadline) => self.config().step_timeout.map(Stop::StepTimeout),
        }
    }
}

/// One step's tasks as they run.
struct StepRun<'a, S: State> {
    scheduler: &'a Scheduler<S>,
    tasks: &'a [Task],
    step: u64,
    prior: &'a Prior<S>,
    /// Per task: its outcome once final, and the attempts it made.
    out: Vec<(Option<TaskOutcome<S>>, u32)>,
    /// How many tasks have no final outcome yet.
    remaining: usize,
    /// Tasks start in order: the first one not considered yet.
    next: usize,
    /// The first store error: nothing more is kept, and it is returned once the attempts end.
    store_error: Option<Error>,
}

impl<'a, S: State> StepRun<'a, S> {
    /// The step's tasks before any runs: those restored from pending writes are done.
    fn new(
        scheduler: &'a Scheduler<S>,
        tasks: &'a [Task],
        step: u64,
        prior: &'a mut Prior<S>,
    ) -> Self {
        let limit = scheduler.inline_backoff_limit();
        let mut out: Vec<(Option<TaskOutcome<S>>, u32)> = (0..tasks.len())
            .map(|i| {
                let start = prior.start(i);
                // A retry still further away than the run waits inline (a run continued
                // before its retry is due) stops the run again, without running.
                let later = limit.filter(|l| start.wait > *l).map(|_| start.due_ms);
                (
                    later.map(|at| Err(TaskFailure::RetryLater(at))),
                    start.attempt - 1,
                )
            })
            .collect();
        for (slot, done) in out.iter_mut().zip(prior.done.iter_mut()) {
            if let Some((cmd, attempts)) = done.take() {
                *slot = (Some(Ok(cmd)), attempts);
            }
        }
        let remaining = out.iter().filter(|o| o.0.is_none()).count();
        StepRun {
            scheduler,
            tasks,
            step,
            prior,
            out,
            remaining,
            next: 0,
            store_error: None,
        }
    }

    /// Runs the step's attempts on `runner` until every task has a final outcome or the step
    /// stops early; `attempt(task, attempt, wait)` makes an attempt's future.
    async fn drive<F>(
        mut self,
        runner: &mut impl TaskRunner<S, F>,
        attempt: impl Fn(usize, u32, Duration) -> F,
        sink: &mut impl OutcomeSink<S>,
    ) -> Result<StepOutcomes<S>> {
        self.start_ready(runner, &attempt);
        let scheduler = self.scheduler;
        let step_deadline =
            (scheduler.config().step_timeout).and_then(|t| Instant::now().checked_add(t));
        let mut stop_signal = std::pin::pin!(scheduler.stop_signal(step_deadline));
        let mut stop = None;
        while self.remaining > 0 {
            // Finished attempts first: a task that finished is never reported as stopped.
            let finished = tokio::select! {
                biased;
                finished = std::future::poll_fn(|cx| runner.poll_finished(cx)) => finished,
                reason = &mut stop_signal => {
                    stop = reason;
                    break;
                }
            };
            if let Some(reason) = self.on_finished(runner, &attempt, sink, finished).await {
                stop = Some(reason);
                break;
            }
        }
        if self.remaining > 0 {
            // The running attempts are aborted and waited for; CPU-bound ones learn it from
            // the token (their closures run on until they look at it). The run ends with this
            // step, so the token is not needed again.
            scheduler.tasks_token.cancel();
            runner.abort();
            std::future::poll_fn(|cx| runner.poll_aborted(cx)).await;
        }
        if let Some(e) = self.store_error.take() {
            return Err(e);
        }
        Ok(self.into_outcomes(stop))
    }

    /// Starts the tasks not started yet, in order, while the runner has room.
    fn start_ready<F>(
        &mut self,
        runner: &mut impl TaskRunner<S, F>,
        attempt: &impl Fn(usize, u32, Duration) -> F,
    ) {
        while runner.has_room() {
            let Some(i) = self.next_unstarted() else {
                return;
            };
            let start = self.prior.start(i);
            runner.start(i, start.attempt, attempt(i, start.attempt, start.wait));
        }
    }

    /// The next task without an outcome that was not started yet.
    fn next_unstarted(&mut self) -> Option<usize> {
        while self.next < self.out.len() {
            self.next += 1;
            if self.out[self.next - 1].0.is_none() {
                return Some(self.next - 1);
            }
        }
        None
    }

    /// Handles an attempt that ended: retries it, or makes its outcome final (keeping a
    /// result while other tasks still run) and starts the next task. Returns why the step
    /// must stop, if it must.
    async fn on_finished<F>(
        &mut self,
        runner: &mut impl TaskRunner<S, F>,
        attempt_future: &impl Fn(usize, u32, Duration) -> F,
        sink: &mut impl OutcomeSink<S>,
        (i, attempt, outcome): Finished<S>,
    ) -> Option<Stop> {
        self.out[i].1 = attempt;
        if let Some(delay) = self
            .scheduler
            .retry_delay(&self.tasks[i], attempt, &outcome)
        {
            let due_ms =
                now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            self.retry(i, attempt, &outcome, delay, due_ms, sink).await;
            if self
                .scheduler
                .inline_backoff_limit()
                .is_some_and(|l| delay > l)
            {
                // Too long to sleep through: the task waits in the store, and the run stops
                // once the step's other tasks have finished.
                self.remaining -= 1;
                self.out[i].0 = Some(Err(TaskFailure::RetryLater(due_ms)));
                self.start_ready(runner, attempt_future);
            } else {
                runner.start(i, attempt + 1, attempt_future(i, attempt + 1, delay));
            }
            return None;
        }
        self.remaining -= 1;
        let outcome = self
            .scheduler
            .catch(&self.tasks[i], self.step, attempt, outcome);
        let failed = matches!(outcome, Err(TaskFailure::Failed(_)));
        if self.remaining > 0
            && self.store_error.is_none()
            && let Ok(cmd) = &outcome
        {
            let at = self.task_at(i);
            if let Err(e) = sink.finished(at, attempt, cmd).await {
                self.store_error = Some(e);
            }
        }
        self.out[i].0 = Some(outcome);
        let policy = self.scheduler.config().on_failure;
        if failed && policy == FailurePolicy::CancelSiblings && self.remaining > 0 {
            return Some(Stop::Sibling);
        }
        self.start_ready(runner, attempt_future);
        None
    }

    /// Records that a failed attempt is retried after `delay`, at `due_ms`: in the sink, the
    /// metrics and the events.
    async fn retry(
        &mut self,
        i: usize,
        attempt: u32,
        outcome: &TaskOutcome<S>,
        delay: Duration,
        due_ms: u64,
        sink: &mut impl OutcomeSink<S>,
    ) {
        let at = self.task_at(i);
        if self.store_error.is_none()
            && let Err(TaskFailure::Failed(Failure::Error(error))) = outcome
        {
            let answers = self.prior.start(i).answers.as_deref().unwrap_or_default();
            if let Err(e) = sink.retrying(at, attempt, error, due_ms, answers).await {
                self.store_error = Some(e);
            }
        }
        let name = &self.scheduler.plan.nodes[self.tasks[i].node as usize].name;
        crate::observe::metrics::retry(name);
        self.scheduler
            .shared
            .events
            .emit(|| EventKind::RetryScheduled {
                step: self.step,
                node: name.clone(),
                task: at.task,
                attempt: attempt + 1,
                delay,
            });
    }

    fn task_at(&self, i: usize) -> TaskAt<'a> {
        let task = &self.tasks[i];
        TaskAt {
            step: self.step,
            index: i as u32,
            task: task.id,
            node: &self.scheduler.plan.nodes[task.node as usize].name,
        }
    }

    /// The tasks' outcomes, in task order; a task still without one was cancelled.
    fn into_outcomes(self, stop: Option<Stop>) -> StepOutcomes<S> {
        let StepRun {
            scheduler,
            tasks,
            step,
            out,
            ..
        } = self;
        let outcomes = out
            .into_iter()
            .enumerate()
            .map(|(i, (outcome, attempts))| match outcome {
                Some(o) => (o, attempts),
                None => {
                    let task = &tasks[i];
                    scheduler.shared.events.emit(|| EventKind::NodeCancelled {
                        step,
                        node: scheduler.plan.nodes[task.node as usize].name.clone(),
                        task: task.id,
                    });
                    (Err(TaskFailure::Cancelled), attempts)
                }
            })
            .collect();
        StepOutcomes { outcomes, stop }
    }
}

/// Completes at `at`, or never.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
