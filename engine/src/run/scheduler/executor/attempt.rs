//! One attempt of a task: its future (events, span, timeout, panic guard), the delay before
//! retrying it, and the error a failed task fails its run with.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Failure, TaskFailure, TaskOutcome};
use crate::define::state::State;
use crate::error::{BoxError, Error, NodeTimedOut, panic_message};
use crate::ids::{TaskId, draw_seed};
use crate::observe::event::EventKind;
use crate::run::context::Context;
use crate::run::interrupt::{Interrupt, InterruptKind, InterruptSignal, SubgraphInterrupted};
use crate::run::scheduler::routing::check_goto;
use crate::run::scheduler::{Scheduler, Task};

impl<S: State> Scheduler<S> {
    /// The delay before retrying a failed attempt, if its node's policy retries it.
    pub(super) fn retry_delay(
        &self,
        task: &Task,
        attempt: u32,
        outcome: &TaskOutcome<S>,
    ) -> Option<Duration> {
        let Err(TaskFailure::Failed(Failure::Error(e))) = outcome else {
            return None;
        };
        let policy = self.plan.nodes[task.node as usize].retry.as_ref()?;
        if attempt >= policy.max_attempts() || !policy.should_retry(e) {
            return None;
        }
        let seed = draw_seed(self.config().seed, task.key, attempt as usize);
        Some(policy.delay(attempt, seed))
    }

    /// The future running one attempt of a task, with its events and span.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attempt_future(
        &self,
        task: &Task,
        state: &Arc<S>,
        step: u64,
        attempt: u32,
        wait: Duration,
        answers: Option<Arc<[(String, String)]>>,
        step_token: &CancellationToken,
    ) -> impl Future<Output = TaskOutcome<S>> + Send + 'static {
        let node = &self.plan.nodes[task.node as usize];
        let name = node.name.clone();
        let func = node.func.clone();
        let timeout = node.timeout;
        // An attempt with a timeout has a token of its own, cancelled when it times out.
        let token = match timeout {
            Some(_) => step_token.child_token(),
            None => step_token.clone(),
        };
        let ctx = Context::new(
            self.shared.clone(),
            step,
            name.clone(),
            task.id,
            attempt,
            task.input.clone(),
            token.clone(),
            answers,
        );
        // Kept to take the memory writes of an attempt that finishes (a reference count, no
        // allocation).
        let memory = ctx.clone();
        let state = state.clone();
        let shared = self.shared.clone();
        let plan = self.plan.clone();
        let node_id = task.node;
        let task_id = task.id;
        // Numbers as i64 (OpenTelemetry has no unsigned integers); a failed attempt records
        // `otel.status_code` and `error`, which tracing-opentelemetry turns into the span's
        // status.
        let span = tracing::info_span!(
            "node",
            otel.name = %format_args!("node {name}"),
            node = %name,
            step = step as i64,
            task = %task_id,
            attempt = i64::from(attempt),
            otel.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            shared.events.emit(|| EventKind::NodeStarted {
                step,
                node: name.clone(),
                task: task_id,
                attempt,
            });
            let started = Instant::now();
            // The node's synchronous part runs inside the guard too.
            let call =
                AssertUnwindSafe(async move { func.node.call(state, ctx).await }).catch_unwind();
            let result = match timeout {
                None => call.await,
                Some(after) => match tokio::time::timeout(after, call).await {
                    Ok(result) => result,
                    Err(_) => {
                        token.cancel();
                        let e = NodeTimedOut {
                            node: name.to_string(),
                            after,
                        };
                        Ok(Err(Box::new(e) as BoxError))
                    }
                },
            };
            let outcome = match result {
                Ok(Ok(mut cmd)) => match cmd.goto.as_ref().map(|g| check_goto(&plan, node_id, g)) {
                    // A go-to is checked when the task ends, so that a bad one fails the task
                    // and is never stored as a pending write to fail every resume again.
                    Some(Err(e)) => Err(TaskFailure::Failed(Failure::Route(e))),
                    _ => {
                        cmd.memory = memory.take_memory();
                        Ok(cmd)
                    }
                },
                Ok(Err(e)) => match raised_interrupts(e, &name, step, task_id) {
                    Ok(raised) => Err(TaskFailure::Interrupted(raised)),
                    Err(e) => match refused_budget(&*e) {
                        Some(refused) => Err(TaskFailure::OverBudget(refused)),
                        None => Err(TaskFailure::Failed(Failure::Error(e))),
                    },
                },
                Err(panic) => Err(TaskFailure::Failed(Failure::Panic(panic_message(panic)))),
            };
            match &outcome {
                Ok(_) => {
                    let duration = started.elapsed();
                    crate::observe::metrics::node_finished(&name, duration);
                    shared.events.emit(|| EventKind::NodeFinished {
                        step,
                        node: name.clone(),
                        task: task_id,
                        duration,
                    });
                }
                Err(
                    TaskFailure::Interrupted(_)
                    | TaskFailure::Cancelled
                    | TaskFailure::OverBudget(_),
                ) => {}
                Err(f) => {
                    crate::observe::metrics::node_failed(&name);
                    let span = tracing::Span::current();
                    if !span.is_disabled() {
                        span.record("otel.status_code", "ERROR");
                        span.record("error", f.describe().as_str());
                    }
                    shared.events.emit(|| EventKind::NodeFailed {
                        step,
                        node: name.clone(),
                        task: task_id,
                        attempt,
                        error: f.describe(),
                    });
                }
            }
            outcome
        }
        .instrument(span)
    }

    /// The error a task that failed for good fails its run with.
    pub(in crate::run::scheduler) fn failure_error(
        &self,
        task: &Task,
        step: u64,
        attempts: u32,
        failure: Failure,
    ) -> Error {
        let node = self.plan.nodes[task.node as usize].name.to_string();
        match failure {
            Failure::Error(source) => Error::NodeFailed {
                node,
                step,
                task: task.id,
                attempts,
                source,
            },
            Failure::Panic(message) => Error::NodePanicked {
                node,
                step,
                task: task.id,
                message,
            },
            Failure::Lost(end) => Error::TaskLost {
                node,
                step,
                task: task.id,
                end,
            },
            Failure::Route(e) => e,
        }
    }
}

/// The interrupts a node's error signals: its own [`InterruptSignal`], or those of its
/// subgraph (placed under this node); the error itself otherwise.
fn raised_interrupts(
    e: BoxError,
    node: &str,
    step: u64,
    task: TaskId,
) -> std::result::Result<Vec<Interrupt>, BoxError> {
    let e = match e.downcast::<InterruptSignal>() {
        Ok(signal) => {
            return Ok(vec![Interrupt {
                id: Interrupt::id_for(task, InterruptKind::Node, signal.index),
                kind: InterruptKind::Node,
                node: node.to_owned(),
                step,
                task,
                payload: signal.payload,
                path: Vec::new(),
            }]);
        }
        Err(e) => e,
    };
    match e.downcast::<SubgraphInterrupted>() {
        Ok(child) => Ok(child
            .0
            .into_iter()
            .map(|mut i| {
                i.path.insert(0, node.to_owned());
                i
            })
            .collect()),
        Err(e) => Err(e),
    }
}

/// The budget refusal a node's error carries: a [`BudgetExceeded`] from
/// [`Context::charge_tool_calls`] or [`Context::check_budget`], or a subgraph's child run
/// stopped by its parent's budget, found in the error or among its sources.
fn refused_budget(
    e: &(dyn std::error::Error + 'static),
) -> Option<Box<crate::run::budget::BudgetExceeded>> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(refused) = e.downcast_ref::<crate::run::budget::BudgetExceeded>() {
            return Some(Box::new(refused.clone()));
        }
        if let Some(Error::BudgetExceeded(refused)) = e.downcast_ref::<Error>() {
            return Some(refused.clone());
        }
        at = e.source();
    }
    None
}
