//! Running a step's tasks: attempts, retries, timeouts and cancellation.

use super::*;

impl<S: State> Executor<S> {
    /// Runs the tasks of one step on the same snapshot; returns their outcomes in task order,
    /// with the attempts each made, and why the step stopped early, if it did.
    ///
    /// Tasks restored from pending writes do not run. A failed attempt that its node's retry
    /// policy retries is persisted as such, then started again after its delay. Every task
    /// that finishes while others still run has its result persisted at once as a pending
    /// write; the last one's goes straight into the checkpoint. A cancelled run, a step or run
    /// timeout, or a failure under `CancelSiblings` drops the attempts still running (and
    /// tells CPU-bound ones through their cancellation token).
    pub(super) async fn run_tasks(
        &self,
        tasks: &[Task],
        state: &Arc<S>,
        step: u64,
        prior: &mut Prior<S>,
        mut persist: Option<&mut Persister<S>>,
    ) -> Result<(Vec<(TaskOutcome<S>, u32)>, Option<Stop>)> {
        // Per task: its outcome once final, and the attempts it made.
        let mut out: Vec<(Option<TaskOutcome<S>>, u32)> = (0..tasks.len())
            .map(|i| (None, prior.start(i).attempt - 1))
            .collect();
        for (slot, done) in out.iter_mut().zip(prior.done.iter_mut()) {
            if let Some((cmd, attempts)) = done.take() {
                *slot = (Some(Ok(cmd)), attempts);
            }
        }
        let prior = &*prior;
        let mut remaining = out.iter().filter(|o| o.0.is_none()).count();
        let parallel = self.config().mode == Mode::Parallel && remaining > 1;
        let token = &self.tasks_token;
        let attempt = |i: usize, attempt: u32, wait: Duration| {
            self.attempt_future(
                &tasks[i],
                state,
                step,
                attempt,
                wait,
                prior.start(i).answers.clone(),
                token,
            )
            .map(move |o| (i, attempt, o))
        };
        // Parallel mode spawns its attempts. Sequential mode (and a step of one task) runs one
        // attempt at a time, held in `single` without a box, so that a plain step allocates
        // nothing for it.
        let mut running: Option<FuturesUnordered<BoxFuture<'static, Finished<S>>>> = None;
        let mut single = std::pin::pin!(None);
        macro_rules! launch_attempt {
            ($i:expr, $attempt:expr, $wait:expr) => {{
                let (i, n): (usize, u32) = ($i, $attempt);
                let fut = attempt(i, n, $wait);
                if parallel {
                    let handle = Spawned(tokio::spawn(fut));
                    running
                        .get_or_insert_with(FuturesUnordered::new)
                        .push(Box::pin(async move {
                            handle
                                .await
                                .unwrap_or_else(|e| (i, n, Err(TaskFailure::Lost(e.to_string()))))
                        }));
                } else {
                    single.set(Some(fut));
                }
            }};
        }
        macro_rules! launch {
            ($i:expr) => {{
                let i: usize = $i;
                let s = prior.start(i);
                launch_attempt!(i, s.attempt, s.wait);
            }};
        }
        // The tasks not started yet, in order (sequential mode starts one at a time).
        let mut cursor = 0;
        let mut next_unstarted = |out: &[(Option<TaskOutcome<S>>, u32)]| {
            while cursor < out.len() {
                cursor += 1;
                if out[cursor - 1].0.is_none() {
                    return Some(cursor - 1);
                }
            }
            None
        };
        if parallel {
            while let Some(i) = next_unstarted(&out) {
                launch!(i);
            }
        } else if let Some(i) = next_unstarted(&out) {
            launch!(i);
        }

        let step_deadline = self
            .config()
            .step_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let step_sleep = sleep_until(step_deadline);
        let run_sleep = sleep_until(self.deadline);
        let cancelled = self.shared.cancel.cancelled();
        tokio::pin!(step_sleep, run_sleep, cancelled);
        // A store error does not abandon the running tasks: they finish, then it is reported.
        let mut store_error = None;
        let mut stop = None;
        while remaining > 0 {
            let (i, attempt, outcome) = tokio::select! {
                biased;
                Some(Some(done)) = OptionFuture::from(running.as_mut().map(StreamExt::next)),
                    if parallel => done,
                done = std::future::poll_fn(|cx| {
                    let Some(fut) = single.as_mut().as_pin_mut() else {
                        return std::task::Poll::Pending;
                    };
                    let done = std::task::ready!(fut.poll(cx));
                    single.set(None);
                    std::task::Poll::Ready(done)
                }), if !parallel => done,
                () = &mut cancelled => {
                    stop = Some(Stop::Cancelled);
                    break;
                }
                () = &mut run_sleep => {
                    stop = self.config().run_timeout.map(Stop::RunTimeout);
                    break;
                }
                () = &mut step_sleep => {
                    stop = self.config().step_timeout.map(Stop::StepTimeout);
                    break;
                }
            };
            out[i].1 = attempt;
            if let Some(delay) = self.retry_delay(&tasks[i], attempt, &outcome) {
                let task = &tasks[i];
                let name = &self.plan.nodes[task.node as usize].name;
                if let (Some(p), None, Err(TaskFailure::Error(e))) =
                    (persist.as_deref_mut(), &store_error, &outcome)
                {
                    let retry_at_ms = now_ms() + delay.as_millis() as u64;
                    let error = crate::error::chain(e.as_ref());
                    let answers = prior.start(i).answers.as_deref().unwrap_or_default();
                    let outcome = PendingOutcome::Retrying {
                        error,
                        retry_at_ms,
                        answers: answers.to_vec(),
                    };
                    if let Err(e) = p
                        .pending_outcome(step, i as u32, task.id, name, attempt, outcome)
                        .await
                    {
                        store_error = Some(e);
                    }
                }
                crate::metrics::retry(name);
                self.shared.events.emit(|| EventKind::RetryScheduled {
                    step,
                    node: name.clone(),
                    task: task.id,
                    attempt: attempt + 1,
                    delay,
                });
                launch_attempt!(i, attempt + 1, delay);
                continue;
            }
            remaining -= 1;
            let failed = matches!(
                &outcome,
                Err(f) if !matches!(f, TaskFailure::Interrupted(_) | TaskFailure::Cancelled)
            );
            if remaining > 0
                && store_error.is_none()
                && let (Some(p), Ok(cmd)) = (persist.as_deref_mut(), &outcome)
            {
                let task = &tasks[i];
                let name = &self.plan.nodes[task.node as usize].name;
                if let Err(e) = p
                    .pending_write(step, i as u32, task.id, name, attempt, cmd)
                    .await
                {
                    store_error = Some(e);
                }
            }
            out[i].0 = Some(outcome);
            if failed && self.config().on_failure == FailurePolicy::CancelSiblings && remaining > 0
            {
                stop = Some(Stop::Sibling);
                break;
            }
            if !parallel && let Some(next) = next_unstarted(&out) {
                launch!(next);
            }
        }
        if remaining > 0 {
            // Dropping the running attempts aborts them; CPU-bound ones learn it from the
            // token. The run ends with this step, so the token is not needed again.
            drop(running);
            single.set(None);
            token.cancel();
        }
        if let Some(e) = store_error {
            return Err(e);
        }
        let outcomes = out
            .into_iter()
            .enumerate()
            .map(|(i, (outcome, attempts))| match outcome {
                Some(o) => (o, attempts),
                None => {
                    let task = &tasks[i];
                    self.shared.events.emit(|| EventKind::NodeCancelled {
                        step,
                        node: self.plan.nodes[task.node as usize].name.clone(),
                        task: task.id,
                    });
                    (Err(TaskFailure::Cancelled), attempts)
                }
            })
            .collect();
        Ok((outcomes, stop))
    }

    /// The delay before retrying a failed attempt, if its node's policy retries it.
    pub(super) fn retry_delay(
        &self,
        task: &Task,
        attempt: u32,
        outcome: &TaskOutcome<S>,
    ) -> Option<Duration> {
        let Err(TaskFailure::Error(e)) = outcome else {
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
                Ok(Ok(cmd)) => match cmd.goto.as_ref().map(|g| check_goto(&plan, node_id, g)) {
                    // A go-to is checked when the task ends, so that a bad one fails the task
                    // and is never stored as a pending write to fail every resume again.
                    Some(Err(e)) => Err(TaskFailure::Route(e)),
                    _ => Ok(cmd),
                },
                Ok(Err(e)) => match raised_interrupts(e, &name, step, task_id) {
                    Ok(raised) => Err(TaskFailure::Interrupted(raised)),
                    Err(e) => Err(TaskFailure::Error(e)),
                },
                Err(panic) => Err(TaskFailure::Panic(panic_message(panic))),
            };
            match &outcome {
                Ok(_) => {
                    let duration = started.elapsed();
                    crate::metrics::node_finished(&name, duration);
                    shared.events.emit(|| EventKind::NodeFinished {
                        step,
                        node: name.clone(),
                        task: task_id,
                        duration,
                    });
                }
                Err(TaskFailure::Interrupted(_) | TaskFailure::Cancelled) => {}
                Err(f) => {
                    crate::metrics::node_failed(&name);
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

    pub(super) fn failure_error(
        &self,
        task: &Task,
        step: u64,
        attempts: u32,
        failure: TaskFailure,
    ) -> Error {
        let node = self.plan.nodes[task.node as usize].name.to_string();
        match failure {
            TaskFailure::Error(source) => Error::NodeFailed {
                node,
                step,
                task: task.id,
                attempts,
                source,
            },
            TaskFailure::Panic(message) => Error::NodePanicked {
                node,
                step,
                task: task.id,
                message,
            },
            TaskFailure::Lost(message) => {
                Error::Aborted(format!("task of node `{node}` at step {step}: {message}"))
            }
            TaskFailure::Route(e) => e,
            TaskFailure::Interrupted(_) | TaskFailure::Cancelled => Error::Aborted(format!(
                "task of node `{node}` at step {step} did not finish"
            )),
        }
    }
}

/// The interrupts a node's error signals: its own [`Interruption`], or those of its
/// subgraph (placed under this node); the error itself otherwise.
fn raised_interrupts(
    e: BoxError,
    node: &str,
    step: u64,
    task: TaskId,
) -> std::result::Result<Vec<Interrupt>, BoxError> {
    let e = match e.downcast::<Interruption>() {
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
