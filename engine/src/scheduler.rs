//! The step loop: run a step's tasks on one snapshot, merge their updates in a fixed order at
//! the barrier, then route to the next step's tasks.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, OptionFuture};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::SeedableRng;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use std::collections::HashMap;

use agentgraph_checkpoint::RunStatus;

use crate::builder::Target;
use crate::config::{FailurePolicy, Mode, RunConfig};
use crate::context::{Context, RunShared};
use crate::error::NodeTimedOut;
use crate::error::{BoxError, Error, Result};
use crate::event::{EventKind, TaskInfo};
use crate::ids::{NodeId, TaskId, draw_seed, task_id, task_key};
use crate::interrupt::{
    Interrupt, InterruptKind, Interrupted, Interruption, Resume, SubgraphInterrupted,
};
use crate::persist::record::{
    GateRecord, JoinRecord, PendingOutcome, PendingWriteRecord, TaskRecord,
};
use crate::persist::{
    Loaded, Persister, Position, command_from, gate_interrupt, now_ms, pending_interrupts,
};
use crate::plan::{Plan, PlanEdge, slot};
use crate::route::{Command, Route};
use crate::state::State;

/// One task of a step.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) node: NodeId,
    /// The packet index for dynamic tasks.
    pub(crate) packet: Option<u32>,
    pub(crate) input: Option<Arc<[u8]>>,
    /// The run-independent key (seeds weighted draws).
    pub(crate) key: u64,
    pub(crate) id: TaskId,
}

/// Why a task did not finish with a result.
enum TaskFailure {
    /// The node returned an error (or its attempt timed out).
    Error(BoxError),
    Panic(String),
    Lost(String),
    /// Its go-to is invalid.
    Route(Error),
    /// It stopped at interrupts (its own, or its subgraph's).
    Interrupted(Vec<Interrupt>),
    /// It was cancelled before it finished.
    Cancelled,
}

impl TaskFailure {
    fn describe(&self) -> String {
        match self {
            TaskFailure::Error(e) => crate::error::chain(e.as_ref()),
            TaskFailure::Panic(m) => format!("panicked: {m}"),
            TaskFailure::Lost(m) => m.clone(),
            TaskFailure::Route(e) => e.to_string(),
            TaskFailure::Interrupted(i) => format!("interrupted at {} interrupt(s)", i.len()),
            TaskFailure::Cancelled => "cancelled".to_owned(),
        }
    }
}

type TaskOutcome<S> = std::result::Result<Command<S>, TaskFailure>;

/// A finished attempt: the task's index, the attempt, its outcome.
type Finished<S> = (usize, u32, TaskOutcome<S>);

/// The nodes scheduled for the next step: edge-triggered nodes (deduplicated) and packets.
struct Frontier {
    marked: FixedBitSet,
    plain: Vec<NodeId>,
    packets: Vec<(NodeId, Arc<[u8]>)>,
}

impl Frontier {
    fn new(nodes: usize) -> Self {
        Frontier {
            marked: FixedBitSet::with_capacity(nodes),
            plain: Vec::new(),
            packets: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.packets.is_empty()
    }

    /// Schedules a node; a node scheduled twice for one step runs once.
    fn schedule(&mut self, node: NodeId) {
        if !self.marked.put(node as usize) {
            self.plain.push(node);
        }
    }

    /// Whether a node of the frontier is in `set`.
    fn meets(&self, set: &FixedBitSet) -> bool {
        self.plain.iter().any(|n| set.contains(*n as usize))
            || self.packets.iter().any(|(n, _)| set.contains(*n as usize))
    }

    /// The frontier as stored in a checkpoint: nodes in plan order, then packets.
    fn records<S: State>(&mut self, plan: &Plan<S>) -> Vec<TaskRecord> {
        self.plain.sort_unstable();
        let plain = self.plain.iter().map(|n| TaskRecord {
            node: plan.nodes[*n as usize].name.to_string(),
            input: None,
        });
        let packets = self.packets.iter().map(|(n, input)| TaskRecord {
            node: plan.nodes[*n as usize].name.to_string(),
            input: Some(input.to_vec().into()),
        });
        plain.chain(packets).collect()
    }

    /// Turns the frontier into the step's tasks, in merge order: edge-triggered nodes in plan
    /// order, then packets in the order they were emitted.
    fn take_tasks<S: State>(
        &mut self,
        plan: &Plan<S>,
        run_id: &str,
        step: u64,
        tasks: &mut Vec<Task>,
    ) {
        tasks.clear();
        self.plain.sort_unstable();
        for node in self.plain.drain(..) {
            self.marked.set(node as usize, false);
            let key = task_key("", step, &plan.nodes[node as usize].name, 0);
            tasks.push(Task {
                node,
                packet: None,
                input: None,
                key,
                id: task_id(run_id, key),
            });
        }
        for (i, (node, input)) in self.packets.drain(..).enumerate() {
            let i = u32::try_from(i).expect("more than u32::MAX packets in one step");
            let key = task_key("", step, &plan.nodes[node as usize].name, i + 1);
            tasks.push(Task {
                node,
                packet: Some(i),
                input: Some(input),
                key,
                id: task_id(run_id, key),
            });
        }
    }
}

/// Join bookkeeping for one pass through a join.
#[derive(Debug, Clone)]
struct JoinPass {
    arrived: Vec<bool>,
    active: bool,
}

/// How a run begins.
pub(crate) enum Start<S: State> {
    /// A new run from this input.
    Fresh(S),
    /// The run of this id, from its store, with answers and an edit.
    Resume(Resume<S>),
}

/// How a task starts in its step: its attempt, a wait before it (a retry's delay left over
/// from before a crash), the answers to its interrupts, and whether it passed its
/// `interrupt_before` gate.
#[derive(Debug, Clone)]
struct TaskStart {
    attempt: u32,
    wait: Duration,
    answers: Option<Arc<[(String, String)]>>,
    released: bool,
}

impl TaskStart {
    /// A first attempt, at once.
    const FIRST: TaskStart = TaskStart {
        attempt: 1,
        wait: Duration::ZERO,
        answers: None,
        released: false,
    };
}

/// What a step starts from: per task, its restored result (from a pending write), and how it
/// starts otherwise. Both are empty (every task starts afresh) unless a resume restored
/// records for the step, so an ordinary step allocates nothing for them.
struct Prior<S: State> {
    done: Vec<Option<(Command<S>, u32)>>,
    starts: Vec<TaskStart>,
}

impl<S: State> Prior<S> {
    fn start(&self, i: usize) -> &TaskStart {
        self.starts.get(i).unwrap_or(&TaskStart::FIRST)
    }

    fn is_done(&self, i: usize) -> bool {
        self.done.get(i).is_some_and(Option::is_some)
    }
}

/// Why a step stopped before all its tasks finished.
enum Stop {
    Cancelled,
    RunTimeout(Duration),
    StepTimeout(Duration),
    /// A task failed for good under `FailurePolicy::CancelSiblings`.
    Sibling,
}

/// A spawned attempt, aborted when dropped (a cancelled step drops its running attempts).
struct Spawned<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Spawned<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Completes at `at`, or never.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The executor of one run.
pub(crate) struct Executor<S: State> {
    plan: Arc<Plan<S>>,
    shared: Arc<RunShared>,
    /// When the run must end (from `run_timeout`).
    deadline: Option<Instant>,
    /// The cancellation token of the run's attempts (attempts with a timeout get a child):
    /// cancelled when a step stops early, which ends the run.
    tasks_token: CancellationToken,
    frontier: Frontier,
    joins: Vec<JoinPass>,
}

impl<S: State> Drop for Executor<S> {
    /// A run dropped mid-step (its future dropped, or a subgraph's parent attempt cancelled)
    /// tells the CPU-bound attempts still running that their results will be discarded.
    fn drop(&mut self) {
        self.tasks_token.cancel();
    }
}

impl<S: State> Executor<S> {
    pub(crate) fn new(plan: Arc<Plan<S>>, shared: Arc<RunShared>) -> Self {
        let joins = plan
            .joins
            .iter()
            .map(|j| JoinPass {
                arrived: vec![false; j.preds.len()],
                active: false,
            })
            .collect();
        Executor {
            frontier: Frontier::new(plan.nodes.len()),
            plan,
            shared,
            deadline: None,
            tasks_token: CancellationToken::new(),
            joins,
        }
    }

    /// The run's settings.
    fn config(&self) -> &RunConfig {
        &self.shared.config
    }

    /// Runs the graph to the end: from `input`, or from the run's last checkpoint.
    pub(crate) async fn run(mut self, start: Start<S>) -> Result<S> {
        let started = Instant::now();
        // A timeout too long to be an instant (`Duration::MAX`) is no limit.
        self.deadline = self
            .shared
            .config
            .run_timeout
            .and_then(|t| started.checked_add(t));
        let mut step = 0;
        let mut persist = None;
        let result = self.run_steps(start, &mut step, &mut persist).await;
        let events = &self.shared.events;
        match result {
            Ok(state) => {
                events.emit(|| EventKind::RunFinished {
                    steps: step,
                    duration: started.elapsed(),
                });
                if let Some(p) = persist.as_mut() {
                    p.store_log(events.take_journal()).await?;
                }
                Ok(Arc::try_unwrap(state).unwrap_or_else(|shared| (*shared).clone()))
            }
            Err((e, drop_pending)) => {
                let (status, error) = match &e {
                    Error::Interrupted(_) => (RunStatus::Interrupted, None),
                    Error::Cancelled { .. } => (RunStatus::Cancelled, Some(e.to_string())),
                    _ => (RunStatus::Failed, Some(e.to_string())),
                };
                // The last event first, so that a run that stores its events stores it too.
                match &e {
                    Error::Interrupted(stop) => events.emit(|| EventKind::RunInterrupted {
                        step: stop.step,
                        interrupts: stop.interrupts.clone(),
                    }),
                    _ => events.emit(|| EventKind::RunFailed {
                        step,
                        error: e.to_string(),
                    }),
                }
                if let Some(p) = persist.as_mut() {
                    // The end is recorded; if even that fails, the run's own error says more.
                    let log = events.take_journal();
                    let _ = p
                        .finish(status, error, drop_pending.then_some(step), log)
                        .await;
                }
                Err(e)
            }
        }
    }

    /// The step loop. Errors carry whether the failed step's pending writes must go (they
    /// would fail the same way again).
    async fn run_steps(
        &mut self,
        start: Start<S>,
        step: &mut u64,
        persist: &mut Option<Persister<S>>,
    ) -> std::result::Result<Arc<S>, (Error, bool)> {
        let plan = self.plan.clone();
        let keep = |e: Error| (e, false);
        let (mut state, mut restored) = match start {
            Start::Fresh(input) => {
                self.shared.events.emit(|| EventKind::RunStarted {
                    mode: self.config().mode,
                    seed: self.config().seed,
                    graph: plan.fingerprint,
                });
                if let Some(store) = &self.config().store {
                    let p = Persister::create(
                        store.clone(),
                        self.shared.run_id.clone(),
                        self.config().durability,
                        plan.fingerprint,
                    )
                    .await
                    .map_err(keep)?;
                    let mut p = p;
                    p.store_events = self.shared.events.journals();
                    *persist = Some(p);
                }
                let state = Arc::new(input);
                let start_key = task_key("", 0, crate::route::START, 0);
                self.route(0, start_key, 0, None, &state).map_err(keep)?;
                self.resolve_joins();
                let all = vec![true; S::FIELDS.len()];
                self.save(persist, 0, &state, &all, Vec::new())
                    .await
                    .map_err(keep)?;
                (state, Vec::new())
            }
            Start::Resume(resume) => {
                let Some(store) = self.config().store.clone() else {
                    return Err(keep(Error::NoStore));
                };
                let (p, mut loaded) = Persister::open(
                    store.clone(),
                    self.shared.run_id.clone(),
                    self.config().durability,
                    plan.fingerprint,
                    self.config().allow_graph_change,
                )
                .await
                .map_err(keep)?;
                let p = persist.insert(p);
                p.store_events = self.shared.events.journals();
                if let Err(e) = self.apply_resume(resume, &mut loaded, p).await {
                    // A rejected resume (an unknown interrupt id, an answer that does not
                    // encode) leaves the run as it was: waiting where it waited.
                    let (status, error) = (loaded.run.status, loaded.run.error.clone());
                    let _ = p
                        .finish(status, error, None, self.shared.events.take_journal())
                        .await;
                    *persist = None;
                    return Err(keep(e));
                }
                *step = loaded.record.step;
                let pending = self.restore(&loaded).map_err(keep)?;
                if self.frontier.is_empty() {
                    // A completed run: nothing to do but say so again.
                    p.finish(RunStatus::Completed, None, None, Vec::new())
                        .await
                        .map_err(keep)?;
                }
                let restored = pending
                    .iter()
                    .filter(|(_, r)| matches!(r.outcome, PendingOutcome::Done { .. }))
                    .count();
                // After the checkpoint's events, and after any stored since (how the run
                // ended), so that stored numbers are never used twice.
                let stored = store
                    .last_event(&self.shared.run_id)
                    .await
                    .map_err(|e| keep(e.into()))?;
                let next = stored.map_or(0, |s| s + 1).max(loaded.record.events);
                self.shared.events.set_next_seq(next);
                self.shared.events.emit(|| EventKind::RunResumed {
                    step: loaded.record.step,
                    restored,
                    graph: plan.fingerprint,
                });
                (Arc::new(loaded.state), pending)
            }
        };

        let mut tasks = Vec::new();
        let mut commands: Vec<Command<S>> = Vec::new();
        let mut gotos: Vec<Option<Route>> = Vec::new();
        let mut written = vec![false; S::FIELDS.len()];
        while !self.frontier.is_empty() {
            if *step >= self.config().recursion_limit {
                return Err(keep(Error::RecursionLimit {
                    limit: self.config().recursion_limit,
                }));
            }
            if self.shared.cancel.is_cancelled() {
                return Err(keep(Error::Cancelled { step: *step + 1 }));
            }
            if let (Some(at), Some(after)) = (self.deadline, self.config().run_timeout)
                && Instant::now() >= at
            {
                return Err(keep(Error::RunTimedOut {
                    step: *step + 1,
                    after,
                }));
            }
            *step += 1;
            let step = *step;
            self.frontier
                .take_tasks(&plan, &self.shared.run_id, step, &mut tasks);
            self.shared.events.emit(|| EventKind::StepStarted {
                step,
                tasks: tasks
                    .iter()
                    .map(|t| TaskInfo {
                        node: plan.nodes[t.node as usize].name.clone(),
                        task: t.id,
                        packet: t.packet,
                    })
                    .collect(),
            });
            let mut prior = self
                .prior(&tasks, std::mem::take(&mut restored))
                .map_err(keep)?;
            self.gate_before(&tasks, &prior, step, persist.as_mut())
                .await
                .map_err(keep)?;
            let span = tracing::debug_span!("step", step, tasks = tasks.len());
            let (outcomes, stop) = self
                .run_tasks(&tasks, &state, step, &mut prior, persist.as_mut())
                .instrument(span)
                .await
                .map_err(keep)?;

            // The barrier: every task has finished. The first failure, in task order, fails
            // the run; nothing of the step is applied, and the finished tasks keep their writes.
            commands.clear();
            if stop.is_some() || outcomes.iter().any(|(o, _)| o.is_err()) {
                let e = self
                    .stop_step(&tasks, outcomes, &prior, stop, step, persist.as_mut())
                    .await;
                return Err(keep(e));
            }
            commands.extend(outcomes.into_iter().filter_map(|(o, _)| o.ok()));
            if let Err(e) = self.check_conflicts(&tasks, &commands, step) {
                return Err((e, true));
            }
            self.merge(
                &mut state,
                &mut commands,
                &mut gotos,
                &mut written,
                persist.as_mut(),
                step,
            )
            .map_err(keep)?;
            for (task, goto) in tasks.iter().zip(gotos.drain(..)) {
                self.route(slot(Some(task.node)), task.key, step, goto, &state)
                    .map_err(keep)?;
            }
            self.resolve_joins();
            let gates: Vec<GateRecord> = if self.frontier.is_empty() {
                Vec::new()
            } else {
                tasks
                    .iter()
                    .filter(|t| plan.nodes[t.node as usize].interrupt_after)
                    .map(|t| GateRecord {
                        node: plan.nodes[t.node as usize].name.to_string(),
                        task: t.id.as_u128(),
                    })
                    .collect()
            };
            let interrupts: Vec<Interrupt> = gates
                .iter()
                .map(|g| gate_interrupt(g, InterruptKind::After, step))
                .collect();
            self.save(persist, step, &state, &written, gates)
                .await
                .map_err(keep)?;
            if !interrupts.is_empty() {
                return Err(keep(self.interrupted(step, interrupts)));
            }
        }
        Ok(state)
    }

    fn interrupted(&self, step: u64, interrupts: Vec<Interrupt>) -> Error {
        Error::Interrupted(Box::new(Interrupted {
            run_id: self.shared.run_id.to_string(),
            step,
            interrupts,
        }))
    }

    /// Applies a resume's answers and state edit to the loaded run, durably.
    async fn apply_resume(
        &self,
        resume: Resume<S>,
        loaded: &mut Loaded<S>,
        p: &mut Persister<S>,
    ) -> Result<()> {
        let Resume { answers, update } = resume;
        let run = &self.shared.run_id;
        let mut answered = Vec::new();
        if !answers.is_empty() {
            let waiting = pending_interrupts(&loaded.record, &loaded.pending, true);
            for (id, value) in answers {
                let value = value.map_err(|message| Error::AnswerEncode {
                    id: id.clone(),
                    message,
                })?;
                let Some((interrupt, at)) = waiting.iter().find(|(i, _)| i.id == id) else {
                    return Err(Error::UnknownInterrupt {
                        run: run.to_string(),
                        id,
                        pending: waiting
                            .iter()
                            .map(|(i, _)| i.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                };
                // A gate of this run needs no value; a node's interrupt (or its subgraph's)
                // gets it when the task runs again.
                let own_gate = interrupt.path.is_empty() && interrupt.kind != InterruptKind::Node;
                if let (false, Some(at)) = (own_gate, *at)
                    && let PendingOutcome::Interrupted { answers, .. } =
                        &mut loaded.pending[at].1.outcome
                {
                    answers.retain(|(i, _)| *i != id);
                    answers.push((id, value));
                    answered.push(at);
                }
            }
        }
        let mut edited = None;
        if let Some(update) = update {
            let mut written = vec![false; S::FIELDS.len()];
            S::for_each_written(&update, |f| written[f] = true);
            let state = &mut loaded.state;
            std::panic::catch_unwind(AssertUnwindSafe(|| state.apply(update))).map_err(
                |panic| Error::Panicked {
                    what: "a reducer, applying the resume's state edit".to_owned(),
                    message: panic_message(panic),
                },
            )?;
            edited = Some(written);
        }
        if !answered.is_empty() || edited.is_some() {
            p.amend(loaded, &answered, edited.as_deref()).await?;
        }
        Ok(())
    }

    /// Stops the run before a step in which a node gated by `interrupt_before` would run,
    /// unless a resume released it.
    async fn gate_before(
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
            let gate = GateRecord {
                node: name.to_string(),
                task: task.id.as_u128(),
            };
            let interrupt = gate_interrupt(&gate, InterruptKind::Before, step);
            if let Some(p) = persist.as_deref_mut() {
                let outcome = PendingOutcome::Interrupted {
                    raised: vec![interrupt.to_record()],
                    answers: Vec::new(),
                };
                p.pending_outcome(step, i as u32, task.id, name, 0, outcome)
                    .await?;
            }
            interrupts.push(interrupt);
        }
        Err(self.interrupted(step, interrupts))
    }

    /// Ends a step some of whose tasks did not finish: persists what each task came to
    /// (results, failures, interrupts) and returns the error the run stops with.
    async fn stop_step(
        &self,
        tasks: &[Task],
        outcomes: Vec<(TaskOutcome<S>, u32)>,
        prior: &Prior<S>,
        stop: Option<Stop>,
        step: u64,
        mut persist: Option<&mut Persister<S>>,
    ) -> Error {
        let mut failure = None;
        let mut interrupts = Vec::new();
        let mut unfinished = Vec::new();
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
                Err(TaskFailure::Interrupted(raised)) => {
                    let outcome = PendingOutcome::Interrupted {
                        raised: raised.iter().map(Interrupt::to_record).collect(),
                        answers: prior
                            .start(i)
                            .answers
                            .as_deref()
                            .unwrap_or_default()
                            .to_vec(),
                    };
                    interrupts.extend(raised);
                    match persist.as_deref_mut() {
                        Some(p) => {
                            p.pending_outcome(step, index, id, name, attempts, outcome)
                                .await
                        }
                        None => Ok(()),
                    }
                }
                Err(f) => {
                    let e = self.failure_error(task, step, attempts, f);
                    let outcome = PendingOutcome::Failed {
                        error: e.to_string(),
                    };
                    failure.get_or_insert(e);
                    match persist.as_deref_mut() {
                        Some(p) => {
                            p.pending_outcome(step, index, id, name, attempts, outcome)
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
        match stop {
            Some(Stop::Cancelled) => Error::Cancelled { step },
            Some(Stop::RunTimeout(after)) => Error::RunTimedOut { step, after },
            Some(Stop::StepTimeout(after)) => Error::StepTimedOut {
                step,
                after,
                unfinished: unfinished.join(", "),
            },
            Some(Stop::Sibling) | None => self.interrupted(step, interrupts),
        }
    }

    /// Writes the checkpoint of `step`, if the run has a store.
    async fn save(
        &mut self,
        persist: &mut Option<Persister<S>>,
        step: u64,
        state: &S,
        written: &[bool],
        interrupts: Vec<GateRecord>,
    ) -> Result<()> {
        let Some(p) = persist.as_mut() else {
            return Ok(());
        };
        let status = if self.frontier.is_empty() {
            Some(RunStatus::Completed)
        } else if !interrupts.is_empty() {
            Some(RunStatus::Interrupted)
        } else {
            None
        };
        let next = self.frontier.records(&self.plan);
        let joins = self
            .joins
            .iter()
            .map(|j| JoinRecord {
                arrived: j.arrived.clone(),
                active: j.active,
            })
            .collect();
        let position = Position {
            next,
            joins,
            events: self.shared.events.next_seq(),
            interrupts,
            log: self.shared.events.take_journal(),
        };
        let saved = p.checkpoint(step, state, written, position, status).await?;
        if let Some(bytes) = saved {
            self.shared
                .events
                .emit_stored(|| EventKind::CheckpointSaved { step, bytes });
        }
        Ok(())
    }

    /// Restores the frontier and joins of a loaded checkpoint; returns its pending writes.
    fn restore(&mut self, loaded: &Loaded<S>) -> Result<Vec<(u32, PendingWriteRecord)>> {
        let by_name: HashMap<&str, NodeId> = self
            .plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (&*n.name, i as NodeId))
            .collect();
        let run = &self.shared.run_id;
        for t in &loaded.record.next {
            let Some(&id) = by_name.get(t.node.as_str()) else {
                return Err(Error::MissingNode {
                    run: run.to_string(),
                    node: t.node.clone(),
                });
            };
            match &t.input {
                None => self.frontier.schedule(id),
                Some(input) => self
                    .frontier
                    .packets
                    .push((id, Arc::from(input.as_slice()))),
            }
        }
        if loaded.record.joins.len() == self.joins.len() {
            for (pass, rec) in self.joins.iter_mut().zip(&loaded.record.joins) {
                if rec.arrived.len() == pass.arrived.len() {
                    pass.arrived.clone_from(&rec.arrived);
                    pass.active = rec.active;
                }
            }
        }
        Ok(loaded.pending.clone())
    }

    /// Where each task of the step starts, from the records a resume restored (matched by
    /// task id, not index: a changed graph may order the step's tasks otherwise).
    fn prior(&self, tasks: &[Task], pending: Vec<(u32, PendingWriteRecord)>) -> Result<Prior<S>> {
        let mut prior = Prior {
            done: Vec::new(),
            starts: Vec::new(),
        };
        if pending.is_empty() {
            return Ok(prior);
        }
        prior.done = (0..tasks.len()).map(|_| None).collect();
        prior.starts = vec![TaskStart::FIRST; tasks.len()];
        for (_, record) in pending {
            let Some(i) = tasks.iter().position(|t| t.id.as_u128() == record.task) else {
                continue;
            };
            let start = &mut prior.starts[i];
            // A task with a record has passed its `interrupt_before` gate: the gate stopped it
            // (a `Before` record), or it ran (any other record).
            start.released = true;
            match &record.outcome {
                PendingOutcome::Done { update, goto } => {
                    let cmd = command_from(&self.shared.run_id, &record, update, goto.as_ref())?;
                    prior.done[i] = Some((cmd, record.attempts));
                }
                PendingOutcome::Retrying {
                    retry_at_ms,
                    answers,
                    ..
                } => {
                    start.attempt = record.attempts + 1;
                    start.wait = Duration::from_millis(retry_at_ms.saturating_sub(now_ms()));
                    if !answers.is_empty() {
                        start.answers = Some(Arc::from(answers.as_slice()));
                    }
                }
                // Resumed after the cause was fixed: a fresh set of attempts.
                PendingOutcome::Failed { .. } => {}
                PendingOutcome::Interrupted { answers, .. } => {
                    start.answers = Some(Arc::from(answers.as_slice()));
                }
            }
        }
        Ok(prior)
    }

    /// Runs the tasks of one step on the same snapshot; returns their outcomes in task order,
    /// with the attempts each made, and why the step stopped early, if it did.
    ///
    /// Tasks restored from pending writes do not run. A failed attempt that its node's retry
    /// policy retries is persisted as such, then started again after its delay. Every task
    /// that finishes while others still run has its result persisted at once as a pending
    /// write; the last one's goes straight into the checkpoint. A cancelled run, a step or run
    /// timeout, or a failure under `CancelSiblings` drops the attempts still running (and
    /// tells CPU-bound ones through their cancellation token).
    async fn run_tasks(
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
    fn retry_delay(&self, task: &Task, attempt: u32, outcome: &TaskOutcome<S>) -> Option<Duration> {
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
    fn attempt_future(
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
        let span = tracing::info_span!("node", node = %name, step, task = %task_id, attempt);
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
                Ok(_) => shared.events.emit(|| EventKind::NodeFinished {
                    step,
                    node: name.clone(),
                    task: task_id,
                    duration: started.elapsed(),
                }),
                Err(TaskFailure::Interrupted(_) | TaskFailure::Cancelled) => {}
                Err(f) => shared.events.emit(|| EventKind::NodeFailed {
                    step,
                    node: name.clone(),
                    task: task_id,
                    attempt,
                    error: f.describe(),
                }),
            }
            outcome
        }
        .instrument(span)
    }

    fn failure_error(&self, task: &Task, step: u64, attempts: u32, failure: TaskFailure) -> Error {
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

    /// Two tasks writing one overwrite field is an error naming the field and both nodes.
    fn check_conflicts(&self, tasks: &[Task], commands: &[Command<S>], step: u64) -> Result<()> {
        if tasks.len() < 2 || !self.plan.has_exclusive {
            return Ok(());
        }
        let mut owner: Vec<Option<usize>> = vec![None; S::FIELDS.len()];
        let mut conflict = None;
        for (i, cmd) in commands.iter().enumerate() {
            S::for_each_written(&cmd.update, |f| {
                if !S::FIELDS[f].reducer.is_exclusive() || conflict.is_some() {
                    return;
                }
                match owner[f] {
                    Some(first) => conflict = Some((f, first, i)),
                    None => owner[f] = Some(i),
                }
            });
            if let Some((f, first, second)) = conflict {
                let name = |t: usize| self.plan.nodes[tasks[t].node as usize].name.to_string();
                return Err(Error::Conflict {
                    field: S::FIELDS[f].name,
                    first: name(first),
                    second: name(second),
                    step,
                });
            }
        }
        Ok(())
    }

    /// Applies the step's updates in task order; records which fields were written.
    fn merge(
        &self,
        state: &mut Arc<S>,
        commands: &mut Vec<Command<S>>,
        gotos: &mut Vec<Option<Route>>,
        written: &mut [bool],
        mut persist: Option<&mut Persister<S>>,
        step: u64,
    ) -> Result<()> {
        written.iter_mut().for_each(|w| *w = false);
        let st = Arc::make_mut(state);
        for cmd in commands.drain(..) {
            S::for_each_written(&cmd.update, |f| written[f] = true);
            if let Some(p) = persist.as_deref_mut() {
                p.capture(&cmd.update)?;
            }
            // A panicking reducer (a user function) fails the run; its store still holds the
            // previous checkpoint, so nothing half-merged is ever saved.
            let update = cmd.update;
            std::panic::catch_unwind(AssertUnwindSafe(|| st.apply(update))).map_err(|panic| {
                Error::Panicked {
                    what: format!("a reducer, merging step {step}"),
                    message: panic_message(panic),
                }
            })?;
            gotos.push(cmd.goto);
        }
        self.shared.events.emit(|| EventKind::StateUpdated {
            step,
            fields: S::FIELDS
                .iter()
                .zip(written.iter())
                .filter(|(_, w)| **w)
                .map(|(f, _)| Cow::Borrowed(f.name))
                .collect(),
        });
        Ok(())
    }

    /// Schedules what follows a finished task (or `START`): its go-to if it returned one,
    /// else each of its edges.
    fn route(
        &mut self,
        from: usize,
        key: u64,
        step: u64,
        goto: Option<Route>,
        state: &S,
    ) -> Result<()> {
        let plan = self.plan.clone();
        if let Some(route) = goto {
            let node = &plan.nodes[from - 1];
            let Some(declared) = &node.goto else {
                return Err(Error::GotoNotDeclared(node.name.to_string()));
            };
            self.follow(route, declared, "go-to", from)?;
            // A go-to replaces the node's routing edges, not its arrival at joins: it finished.
            for edge in plan.out(from) {
                if let PlanEdge::Join { join, pos } = edge {
                    self.arrive(*join, *pos);
                }
            }
            return Ok(());
        }
        for (e, edge) in plan.out(from).iter().enumerate() {
            match edge {
                PlanEdge::Static(Target::Node(n)) => self.frontier.schedule(*n),
                PlanEdge::Static(Target::End) => {}
                PlanEdge::Conditional { targets, router } => {
                    let route = std::panic::catch_unwind(AssertUnwindSafe(|| router(state)))
                        .map_err(|panic| Error::Panicked {
                            what: format!(
                                "the router of the conditional edge from `{}`",
                                plan.source_name(from)
                            ),
                            message: panic_message(panic),
                        })?;
                    self.follow(route, targets, "conditional", from)?;
                }
                PlanEdge::Weighted { targets, dist } => {
                    let mut rng = ChaCha8Rng::seed_from_u64(draw_seed(self.config().seed, key, e));
                    let (target, weight) = targets[dist.sample(&mut rng)];
                    self.shared.events.emit(|| EventKind::WeightedChoice {
                        step,
                        from: plan.source_name(from),
                        to: plan.target_name(target),
                        weight,
                    });
                    if let Target::Node(n) = target {
                        self.frontier.schedule(n);
                    }
                }
                PlanEdge::Join { join, pos } => self.arrive(*join, *pos),
            }
        }
        Ok(())
    }

    /// Schedules a route's targets and packets, each of which must be declared.
    fn follow(
        &mut self,
        route: Route,
        declared: &[(Arc<str>, Target)],
        kind: &'static str,
        from: usize,
    ) -> Result<()> {
        check_route(&route, declared, kind, || {
            self.plan.source_name(from).to_string()
        })?;
        for name in &route.targets {
            if let Some(Target::Node(n)) = find_target(declared, name) {
                self.frontier.schedule(n);
            }
        }
        for packet in route.packets {
            if let (Some(Target::Node(n)), Ok(input)) =
                (find_target(declared, &packet.node), packet.input)
            {
                self.frontier.packets.push((n, input));
            }
        }
        Ok(())
    }

    fn arrive(&mut self, join: u32, pos: u32) {
        let pass = &mut self.joins[join as usize];
        pass.arrived[pos as usize] = true;
        pass.active = true;
    }

    /// Fires every join whose predecessors have all finished or can no longer arrive in this
    /// pass, and at least one finished. A predecessor can still arrive while a node that leads
    /// to it is scheduled, or while another join that has begun its pass (and so will fire)
    /// targets such a node: nested joins fire inner first, whatever order they were declared.
    fn resolve_joins(&mut self) {
        let plan = self.plan.clone();
        let joins = &plan.joins;
        loop {
            let mut fired = false;
            for (j, spec) in joins.iter().enumerate() {
                if !self.joins[j].active {
                    continue;
                }
                let pending =
                    |reach: &FixedBitSet| {
                        self.frontier.meets(reach)
                            || joins.iter().zip(&self.joins).enumerate().any(
                                |(k, (other, pass))| {
                                    k != j && pass.active && reach.contains(other.target as usize)
                                },
                            )
                    };
                let waiting = spec
                    .reach
                    .iter()
                    .zip(&self.joins[j].arrived)
                    .any(|(reach, arrived)| !arrived && pending(reach));
                if !waiting {
                    self.fire(j);
                    fired = true;
                }
            }
            if fired {
                continue;
            }
            // Joins that wait only on one another would wait forever: release the first.
            match self.joins.iter().position(|p| p.active) {
                Some(j) if self.frontier.is_empty() => self.fire(j),
                _ => return,
            }
        }
    }

    fn fire(&mut self, j: usize) {
        let pass = &mut self.joins[j];
        pass.active = false;
        pass.arrived.iter_mut().for_each(|a| *a = false);
        self.frontier.schedule(self.plan.joins[j].target);
    }
}

/// Checks a node's go-to against its declared go-to edges.
fn check_goto<S: State>(plan: &Plan<S>, node: NodeId, route: &Route) -> Result<()> {
    let spec = &plan.nodes[node as usize];
    let Some(declared) = &spec.goto else {
        return Err(Error::GotoNotDeclared(spec.name.to_string()));
    };
    check_route(route, declared, "go-to", || spec.name.to_string())
}

fn find_target(declared: &[(Arc<str>, Target)], name: &str) -> Option<Target> {
    declared.iter().find(|(n, _)| &**n == name).map(|(_, t)| *t)
}

/// Checks that every target and packet of `route` is declared and every packet encoded.
fn check_route(
    route: &Route,
    declared: &[(Arc<str>, Target)],
    kind: &'static str,
    from: impl Fn() -> String,
) -> Result<()> {
    let undeclared = |target: &str| Error::UndeclaredTarget {
        kind,
        from: from(),
        target: target.to_owned(),
        declared: declared
            .iter()
            .map(|(n, _)| &**n)
            .collect::<Vec<_>>()
            .join(", "),
    };
    for name in &route.targets {
        if find_target(declared, name).is_none() {
            return Err(undeclared(name));
        }
    }
    for packet in &route.packets {
        if !matches!(find_target(declared, &packet.node), Some(Target::Node(_))) {
            return Err(undeclared(&packet.node));
        }
        if let Err(message) = &packet.input {
            return Err(Error::PacketEncode {
                from: from(),
                node: packet.node.to_string(),
                message: message.to_string(),
            });
        }
    }
    Ok(())
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

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}
