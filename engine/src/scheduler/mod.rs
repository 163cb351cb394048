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
use crate::view::Views;

mod resume;
mod routing;
mod tasks;

use routing::check_goto;

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
    /// The state's JSON views sent so far (with `RunConfig::state_views`).
    views: Option<Views>,
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
            views: shared.config.state_views.then(Views::default),
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
                crate::metrics::run_ended(RunStatus::Completed);
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
                if status == RunStatus::Failed {
                    let span = tracing::Span::current();
                    if !span.is_disabled() {
                        span.record("otel.status_code", "ERROR");
                        span.record("error", error.as_deref().unwrap_or_default());
                    }
                }
                crate::metrics::run_ended(status);
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
                crate::metrics::run_started(false);
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
                        plan.name.clone(),
                        self.config().lease_ttl,
                    )
                    .await
                    .map_err(keep)?;
                    let mut p = p;
                    p.store_events = self.shared.events.journals();
                    *persist = Some(p);
                }
                let state = Arc::new(input);
                self.describe(&state, 0);
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
                    plan.name.clone(),
                    self.config().lease_ttl,
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
                crate::metrics::run_started(true);
                self.shared.events.emit(|| EventKind::RunResumed {
                    step: loaded.record.step,
                    restored,
                    graph: plan.fingerprint,
                });
                self.describe(&loaded.state, loaded.record.step);
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
            crate::metrics::step();
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
            let span = tracing::debug_span!("step", step = step as i64, tasks = tasks.len() as i64);
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
        let began = crate::metrics::now();
        let saved = p.checkpoint(step, state, written, position, status).await?;
        if let Some(bytes) = saved {
            crate::metrics::checkpoint(bytes, began);
            self.shared
                .events
                .emit_stored(|| EventKind::CheckpointSaved { step, bytes });
        }
        Ok(())
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

    /// With `RunConfig::state_views`: the graph, and the whole state after `step`, as events.
    fn describe(&mut self, state: &S, step: u64) {
        if let Some(views) = &mut self.views {
            let graph = Arc::new(self.plan.describe());
            self.shared.events.emit(|| EventKind::Graph { graph });
            let view = views.changes(state, None, step);
            self.shared.events.emit(|| view);
        }
    }

    /// Applies the step's updates in task order; records which fields were written.
    fn merge(
        &mut self,
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
        if let Some(views) = &mut self.views {
            let view = views.changes(&**state, Some(written), step);
            self.shared.events.emit(|| view);
        }
        Ok(())
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
