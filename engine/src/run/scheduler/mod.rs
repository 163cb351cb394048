//! The step loop: run a step's tasks on one snapshot, merge their updates in a fixed order at
//! the barrier, then route to the next step's tasks.
//!
//! [`Scheduler::run`] is a run from start to end; `executor` runs one step's tasks (attempts,
//! retries, timeouts, cancellation) and hands what must be kept to `sink`; `resume` holds the
//! interrupt gates, what a stopped step stores and what a resumed run starts from; `routing`
//! picks the next step's tasks.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;
use rand::SeedableRng;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use agentgraph_checkpoint::RunStatus;

use crate::define::route::{Command, Route};
use crate::define::state::State;
use crate::error::{Error, Result, panic_message};
use crate::ids::{NodeId, TaskId, draw_seed, task_id, task_key};
use crate::observe::event::{EventKind, TaskInfo};
use crate::observe::view::Views;
use crate::persist::{
    Loaded, Persister, Position, RestoredTask, RunSettings, Standing, Unfinished, now_ms,
};
use crate::plan::Target;
use crate::plan::{Plan, PlanEdge, slot};
use crate::run::budget::{Book, BudgetExceeded, BudgetScope, first_reached};
use crate::run::config::RunConfig;
use crate::run::context::RunShared;
use crate::run::interrupt::{Interrupt, InterruptKind, Interrupted, Resume};

mod compensate;
mod executor;
mod resume;
mod routing;
mod sink;
mod thread;

pub(crate) use compensate::{Compensating, Saga};
use executor::{StepOutcomes, Stop, TaskFailure, TaskOutcome};
use sink::StoreSink;

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

/// The nodes scheduled for the next step: edge-triggered nodes (deduplicated) and packets;
/// and the deferred nodes and packets held until nothing else is left to run.
struct Frontier {
    marked: FixedBitSet,
    plain: Vec<NodeId>,
    packets: Vec<(NodeId, Arc<[u8]>)>,
    /// The plan's deferred nodes (empty when it has none).
    deferrable: FixedBitSet,
    /// Deferred nodes triggered and held (each once).
    held: Vec<NodeId>,
    /// Packets to deferred nodes, held, in the order they were emitted.
    held_packets: Vec<(NodeId, Arc<[u8]>)>,
}

impl Frontier {
    fn new(nodes: usize, deferrable: FixedBitSet) -> Self {
        Frontier {
            marked: FixedBitSet::with_capacity(nodes),
            plain: Vec::new(),
            packets: Vec::new(),
            deferrable,
            held: Vec::new(),
            held_packets: Vec::new(),
        }
    }

    /// Whether no task is scheduled for the next step. Once a step is routed, deferred tasks
    /// are held only while others are scheduled: then this means the run is done.
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.packets.is_empty()
    }

    /// Schedules a node; a node scheduled twice for one step runs once. A deferred node is
    /// held instead (once, however often it is triggered).
    fn schedule(&mut self, node: NodeId) {
        if self.deferrable.contains(node as usize) {
            if !self.held.contains(&node) {
                self.held.push(node);
            }
        } else {
            self.put(node);
        }
    }

    /// Schedules a node for the next step, deferred or not.
    fn put(&mut self, node: NodeId) {
        if !self.marked.put(node as usize) {
            self.plain.push(node);
        }
    }

    /// Schedules a packet; one to a deferred node is held.
    fn send(&mut self, node: NodeId, input: Arc<[u8]>) {
        if self.deferrable.contains(node as usize) {
            self.held_packets.push((node, input));
        } else {
            self.packets.push((node, input));
        }
    }

    /// Whether a deferred node or packet is held.
    fn holds(&self) -> bool {
        !self.held.is_empty() || !self.held_packets.is_empty()
    }

    /// Whether a held deferred node or packet is in `set`.
    fn holds_in(&self, set: &FixedBitSet) -> bool {
        self.held.iter().any(|n| set.contains(*n as usize))
            || self
                .held_packets
                .iter()
                .any(|(n, _)| set.contains(*n as usize))
    }

    /// Schedules the held deferred nodes and packets for the next step.
    fn release(&mut self) {
        for node in std::mem::take(&mut self.held) {
            self.put(node);
        }
        self.packets.append(&mut self.held_packets);
    }

    /// Whether a node of the frontier, scheduled or held, is in `set`.
    fn meets(&self, set: &FixedBitSet) -> bool {
        self.plain.iter().any(|n| set.contains(*n as usize))
            || self.packets.iter().any(|(n, _)| set.contains(*n as usize))
            || self.holds_in(set)
    }

    /// Puts the edge-triggered nodes (scheduled and held) in plan order, as a checkpoint
    /// stores them.
    fn sort(&mut self) {
        self.plain.sort_unstable();
        self.held.sort_unstable();
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
pub(crate) struct JoinPass {
    /// Per predecessor: whether it arrived in this pass.
    pub(crate) arrived: Vec<bool>,
    pub(crate) active: bool,
    /// Whether the join fired early in this pass (a quorum or a timeout): the predecessors
    /// still to come are ignored until the pass ends.
    pub(crate) fired: bool,
    /// The step in which the pass's first predecessor finished.
    pub(crate) began: u64,
}

impl JoinPass {
    fn new(preds: usize) -> Self {
        JoinPass {
            arrived: vec![false; preds],
            active: false,
            fired: false,
            began: 0,
        }
    }

    /// Ends the pass.
    fn reset(&mut self) {
        self.arrived.iter_mut().for_each(|a| *a = false);
        self.active = false;
        self.fired = false;
        self.began = 0;
    }
}

/// How a run begins.
pub(crate) enum Start<S: State> {
    /// A new run from this input.
    Fresh(S),
    /// The run of this id, from its store, with answers and an edit.
    Resume(Resume<S>),
    /// The next invocation of the thread of this id: `input` applied to the state its last
    /// invocation left, or to `initial` for a new thread.
    Invoke { input: S::Update, initial: S },
}

/// How a task starts in its step: its attempt, a wait before it (a retry's delay left over
/// from before a crash), the answers to its interrupts, and whether it passed its
/// `interrupt_before` gate.
#[derive(Debug, Clone)]
struct TaskStart {
    attempt: u32,
    wait: Duration,
    /// When a retry's attempt is due (Unix ms; 0 for a first attempt).
    due_ms: u64,
    answers: Option<Arc<[(String, String)]>>,
    released: bool,
}

impl TaskStart {
    /// A first attempt, at once.
    const FIRST: TaskStart = TaskStart {
        attempt: 1,
        wait: Duration::ZERO,
        due_ms: 0,
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

/// Why the step loop ended without finishing the run, and what becomes of the pending writes
/// of the step it stopped at.
struct Stopped {
    error: Error,
    pending: PendingWrites,
}

/// What becomes of the pending writes of the step a run stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingWrites {
    /// They stay, so that a resume does not run the step's finished tasks again: every stop
    /// but a conflict.
    Keep,
    /// They are deleted: applied together again, they would fail the same way (two tasks of
    /// the step wrote one overwrite field).
    Discard,
}

impl PendingWrites {
    /// The step whose pending writes the run's end deletes, if any.
    fn discarded_at(self, step: u64) -> Option<u64> {
        (self == PendingWrites::Discard).then_some(step)
    }
}

impl From<Error> for Stopped {
    fn from(error: Error) -> Self {
        Stopped {
            error,
            pending: PendingWrites::Keep,
        }
    }
}

/// The scheduler of one run: its step loop, from the first step to the last checkpoint.
pub(crate) struct Scheduler<S: State> {
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
    /// The run's invocation (its thread's turn, from 1), stored with its checkpoints.
    invocation: u32,
    /// What to compensate should the run fail, and the compensations still to run.
    saga: Saga,
    /// The memory writes of the current step of a run without a checkpoint store, committed
    /// to its memory store (`RunConfig::memory`) when the step ends.
    memory: Vec<agentgraph_checkpoint::items::ItemWrite>,
    /// What the run used, for its budgets and its checkpoints.
    book: Book,
}

impl<S: State> Drop for Scheduler<S> {
    /// A run dropped mid-step (its future dropped, or a subgraph's parent attempt cancelled)
    /// tells the CPU-bound attempts still running that their results will be discarded.
    fn drop(&mut self) {
        self.tasks_token.cancel();
    }
}

impl<S: State> Scheduler<S> {
    pub(crate) fn new(plan: Arc<Plan<S>>, shared: Arc<RunShared>) -> Self {
        let joins = plan
            .joins
            .iter()
            .map(|j| JoinPass::new(j.preds.len()))
            .collect();
        Scheduler {
            frontier: Frontier::new(plan.nodes.len(), plan.deferred.clone()),
            views: shared.config.state_views.then(Views::default),
            plan,
            shared,
            deadline: None,
            tasks_token: CancellationToken::new(),
            memory: Vec::new(),
            joins,
            invocation: 1,
            saga: Saga::default(),
            book: Book::new(),
        }
    }

    /// The run's settings.
    fn config(&self) -> &RunConfig {
        &self.shared.config
    }

    /// How the run is written, for its persister.
    fn settings(&self) -> RunSettings {
        RunSettings {
            run_id: self.shared.run_id.clone(),
            durability: self.config().durability,
            fingerprint: self.plan.fingerprint,
            allow_graph_change: self.config().allow_graph_change,
            graph: self.plan.name.clone(),
            lease_ttl: self.config().lease_ttl,
            session: self.config().session(),
            packing: self.config().packing,
            caller: (!self.config().subgraph_run).then(|| {
                self.config()
                    .caller
                    .clone()
                    .unwrap_or_else(|| Arc::from(agentgraph_checkpoint::audit::UNKNOWN_CALLER))
            }),
        }
    }

    /// Runs the graph to the end: from `input`, or from the run's last checkpoint. Returns
    /// only once nothing the run started holds its store (see `Persister::release`), so its
    /// caller may reopen an embedded store at once.
    pub(crate) async fn run(mut self, start: Start<S>) -> Result<S> {
        let mut persist = None;
        let result = self.run_to_end(start, &mut persist).await;
        if let Some(p) = persist.take() {
            p.release().await;
        }
        result
    }

    /// [`run`](Scheduler::run), with the run's persister left in `persist` for its release.
    async fn run_to_end(
        &mut self,
        start: Start<S>,
        persist: &mut Option<Persister<S>>,
    ) -> Result<S> {
        let started = Instant::now();
        // A timeout too long to be an instant (`Duration::MAX`) is no limit.
        self.deadline = self
            .shared
            .config
            .run_timeout
            .and_then(|t| started.checked_add(t));
        let mut step = 0;
        // A tenant's run takes a place among its runs in flight, or is refused before it
        // writes anything.
        let _in_flight = match &self.shared.config.tenant_budget {
            Some(tenant) => match tenant.enter() {
                Ok(place) => Some(place),
                Err((limit, used)) => {
                    return Err(self.over_budget(
                        BudgetScope::Tenant,
                        crate::run::budget::BudgetKind::RunsInFlight,
                        limit,
                        used,
                        0,
                    ));
                }
            },
            None => None,
        };
        let result = self.run_steps(start, &mut step, persist).await;
        if let Some(tenant) = &self.shared.config.tenant_budget {
            let wall = self.book.total(&self.shared.usage).wall_ms;
            tenant.add_wall(wall.saturating_sub(self.book.wall_reported));
            // The run's last step, to the tenant's ledger (when it has one).
            tenant.push().await;
        }
        let events = &self.shared.events;
        match result {
            Ok(state) => {
                crate::observe::metrics::run_ended(RunStatus::Completed);
                events.emit(|| EventKind::RunFinished {
                    steps: step,
                    duration: started.elapsed(),
                });
                if let Some(p) = persist.as_mut() {
                    p.store_log(events.take_journal()).await?;
                }
                Ok(Arc::try_unwrap(state).unwrap_or_else(|shared| (*shared).clone()))
            }
            Err(Stopped { error: e, pending }) => {
                let (status, error) = match &e {
                    Error::Interrupted(_) => (RunStatus::Interrupted, None),
                    Error::RetryScheduled(_) => (RunStatus::RetryScheduled, None),
                    Error::BudgetExceeded(_) => (RunStatus::BudgetExceeded, Some(e.to_string())),
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
                crate::observe::metrics::run_ended(status);
                // The last event first, so that a run that stores its events stores it too.
                match &e {
                    Error::Interrupted(stop) => events.emit(|| EventKind::RunInterrupted {
                        step: stop.step,
                        interrupts: stop.interrupts.clone(),
                    }),
                    // Each task's `RetryScheduled` event said it: the run did not fail.
                    Error::RetryScheduled(_) => {}
                    // Its `BudgetExceeded` event said it: the run stopped, it did not fail.
                    Error::BudgetExceeded(_) => {}
                    _ => events.emit(|| EventKind::RunFailed {
                        step,
                        error: e.to_string(),
                    }),
                }
                if let Some(p) = persist.as_mut() {
                    // The end is recorded; if even that fails, the run's own error says more.
                    let log = events.take_journal();
                    let _ = p
                        .finish(
                            status,
                            error,
                            pending.discarded_at(step),
                            log,
                            self.shared.cancelled_by.get().map(|by| &**by),
                        )
                        .await;
                }
                Err(e)
            }
        }
    }

    /// The step loop: the final state, or why the run stopped and what becomes of its
    /// stopped step's pending writes.
    async fn run_steps(
        &mut self,
        start: Start<S>,
        step: &mut u64,
        persist: &mut Option<Persister<S>>,
    ) -> std::result::Result<Arc<S>, Stopped> {
        let plan = self.plan.clone();
        let (mut state, restored) = match start {
            Start::Fresh(input) => {
                crate::observe::metrics::run_started(false);
                self.shared.events.emit(|| EventKind::RunStarted {
                    mode: self.config().mode,
                    seed: self.config().seed,
                    graph: plan.fingerprint,
                });
                if let Some(store) = &self.config().store {
                    let mut p =
                        Persister::create(store.clone(), self.settings(), &self.plan.schema)
                            .await?;
                    p.store_events = self.shared.events.journals();
                    *persist = Some(p);
                }
                let state = Arc::new(input);
                let all = vec![true; self.plan.fields().len()];
                self.begin_at(0, &state, &all, persist).await?;
                (state, Vec::new())
            }
            Start::Resume(resume) => {
                let Some(store) = self.config().store.clone() else {
                    return Err(Error::NoStore.into());
                };
                let (p, mut loaded) =
                    Persister::open(store.clone(), self.settings(), &self.plan).await?;
                let p = persist.insert(p);
                p.store_events = self.shared.events.journals();
                if let Err(e) = self.apply_resume(resume, &mut loaded, p).await {
                    // A rejected resume (an unknown interrupt id, an answer that does not
                    // encode) leaves the run as it was: waiting where it waited.
                    let (status, error) = (loaded.run.status, loaded.run.error.clone());
                    let _ = p
                        .finish(
                            status,
                            error,
                            None,
                            self.shared.events.take_journal(),
                            self.shared.cancelled_by.get().map(|by| &**by),
                        )
                        .await;
                    *persist = None;
                    return Err(e.into());
                }
                *step = loaded.step();
                self.invocation = loaded.invocation();
                let (total, base) = loaded.usage();
                self.book.restore(&self.shared.usage, &total, base);
                let pending = self.restore(&loaded)?;
                if self.frontier.is_empty() && self.saga.compensating.is_none() {
                    // A completed run: nothing to do but say so again.
                    p.finish(RunStatus::Completed, None, None, Vec::new(), None)
                        .await?;
                }
                let restored = pending.iter().filter(|t| t.standing.is_done()).count();
                self.number_events_after(&store, loaded.next_event())
                    .await?;
                crate::observe::metrics::run_started(true);
                self.shared.events.emit(|| EventKind::RunResumed {
                    step: loaded.step(),
                    restored,
                    graph: plan.fingerprint,
                });
                self.describe(&loaded.state, loaded.step());
                (Arc::new(loaded.state), pending)
            }
            Start::Invoke { input, initial } => {
                let state = self.invoke(input, initial, step, persist).await?;
                (state, Vec::new())
            }
        };
        if self.saga.compensating.is_some() {
            return self.compensate(state, restored, None, step, persist).await;
        }
        let looped = self.step_loop(&mut state, restored, step, persist).await;
        self.settle(looped, state, step, persist).await
    }

    /// The steps of the run until none is left to run, or why the run stopped and what
    /// becomes of its stopped step's pending writes.
    async fn step_loop(
        &mut self,
        state: &mut Arc<S>,
        mut restored: Vec<RestoredTask<S>>,
        step: &mut u64,
        persist: &mut Option<Persister<S>>,
    ) -> std::result::Result<(), Stopped> {
        let plan = self.plan.clone();
        let mut tasks = Vec::new();
        let mut commands: Vec<Command<S>> = Vec::new();
        let mut gotos: Vec<Option<Route>> = Vec::new();
        let mut written = vec![false; self.plan.fields().len()];
        // The steps of this invocation: the recursion limit bounds them, whatever the run's
        // step number (which goes on across invocations, and bounds the total budget).
        let mut taken: u64 = 0;
        while !self.frontier.is_empty() {
            if let Some(limit) = self.config().max_total_steps
                && *step >= limit
            {
                return Err(Error::TotalStepsLimit { limit }.into());
            }
            if self.config().has_budgets() {
                self.check_budgets(*step).await?;
            }
            if taken >= self.config().recursion_limit {
                return Err(Error::RecursionLimit {
                    limit: self.config().recursion_limit,
                }
                .into());
            }
            if self.shared.cancel.is_cancelled() {
                return Err(Error::Cancelled { step: *step + 1 }.into());
            }
            if let (Some(at), Some(after)) = (self.deadline, self.config().run_timeout)
                && Instant::now() >= at
            {
                return Err(Error::RunTimedOut {
                    step: *step + 1,
                    after,
                }
                .into());
            }
            *step += 1;
            taken += 1;
            self.book.steps += 1;
            if let Some(tenant) = &self.shared.config.tenant_budget {
                tenant.add_step();
            }
            let step = *step;
            self.frontier
                .take_tasks(&plan, &self.shared.run_id, step, &mut tasks);
            crate::observe::metrics::step();
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
            let mut prior = self.prior(&tasks, std::mem::take(&mut restored))?;
            self.gate_before(&tasks, &prior, step, persist.as_mut())
                .await?;
            let span = tracing::debug_span!("step", step = step as i64, tasks = tasks.len() as i64);
            let mut sink = StoreSink(persist.as_mut());
            let StepOutcomes { outcomes, stop } = self
                .run_tasks(&tasks, state, step, &mut prior, &mut sink)
                .instrument(span)
                .await?;

            // The barrier: every task has finished. The first failure, in task order, fails
            // the run; nothing of the step is applied, and the finished tasks keep their writes.
            commands.clear();
            if stop.is_some() || outcomes.iter().any(|(o, _)| o.is_err()) {
                self.note_finished(&tasks, outcomes.iter().map(|(o, _)| o.as_ref().ok()));
                let e = self
                    .stop_step(&tasks, outcomes, &prior, stop, step, persist.as_mut())
                    .await;
                return Err(e.into());
            }
            commands.extend(outcomes.into_iter().filter_map(|(o, _)| o.ok()));
            self.note_finished(&tasks, commands.iter().map(Some));
            if let Err(error) = self.check_conflicts(&tasks, &commands, step) {
                return Err(Stopped {
                    error,
                    pending: PendingWrites::Discard,
                });
            }
            self.merge(
                state,
                &mut commands,
                &mut gotos,
                &mut written,
                persist.as_mut(),
                step,
            )?;
            for (task, goto) in tasks.iter().zip(gotos.drain(..)) {
                self.route(slot(Some(task.node)), task.key, step, goto, state)?;
            }
            self.resolve_joins(step);
            let interrupts: Vec<Interrupt> = if self.frontier.is_empty() {
                Vec::new()
            } else {
                tasks
                    .iter()
                    .filter(|t| plan.nodes[t.node as usize].interrupt_after)
                    .map(|t| {
                        let node = plan.nodes[t.node as usize].name.to_string();
                        Interrupt::at_gate(node, t.id, InterruptKind::After, step)
                    })
                    .collect()
            };
            self.save(persist, step, state, &written, &interrupts)
                .await?;
            if !interrupts.is_empty() {
                return Err(self.interrupted(step, interrupts).into());
            }
        }
        Ok(())
    }

    /// Stops the run before the step after `step` if it used a limit of its budget, its
    /// thread's or its tenant's (in that order; the first limit reached is the one named).
    ///
    /// A tenant budget shared through a ledger ([`TenantBudget::shared`](crate::TenantBudget::shared))
    /// pushes what the tenant's runs in this process used to it first, and the check reads the
    /// totals it returns: one call of the ledger per step, for those runs only.
    async fn check_budgets(&mut self, step: u64) -> Result<()> {
        let shared = self.shared.clone();
        let total = self.book.total(&shared.usage);
        let tenant = match shared.config.tenant_budget.as_ref() {
            Some(t) => {
                t.add_wall(total.wall_ms.saturating_sub(self.book.wall_reported));
                self.book.wall_reported = total.wall_ms;
                t.push().await;
                Some((t.limits(), t.usage()))
            }
            None => None,
        };
        let reached = first_reached([
            (
                BudgetScope::Run,
                shared.config.budget.as_ref(),
                total.since(&self.book.base),
            ),
            (
                BudgetScope::Thread,
                shared.config.thread_budget.as_ref(),
                total,
            ),
            (
                BudgetScope::Tenant,
                tenant.map(|(limits, _)| limits),
                tenant.map(|(_, used)| used).unwrap_or_default(),
            ),
        ]);
        match reached {
            Some((scope, kind, limit, used)) => {
                Err(self.over_budget(scope, kind, limit, used, step + 1))
            }
            None => Ok(()),
        }
    }

    /// The error (and the event) of a run over a budget, before `step`.
    fn over_budget(
        &self,
        scope: BudgetScope,
        budget: crate::run::budget::BudgetKind,
        limit: u64,
        used: u64,
        step: u64,
    ) -> Error {
        self.shared.events.emit(|| EventKind::BudgetExceeded {
            step,
            scope,
            budget,
            limit,
            used,
        });
        Error::BudgetExceeded(Box::new(BudgetExceeded {
            run_id: self.shared.run_id.to_string(),
            scope,
            budget,
            limit,
            used,
            step,
        }))
    }

    /// Begins an invocation from `state` at `step` (0 for a new run; a thread's next input
    /// otherwise): describes it, routes from `START`, and checkpoints the `written` fields.
    async fn begin_at(
        &mut self,
        step: u64,
        state: &Arc<S>,
        written: &[bool],
        persist: &mut Option<Persister<S>>,
    ) -> Result<()> {
        self.describe(state, step);
        let start_key = task_key("", step, crate::define::route::START, 0);
        self.route(0, start_key, step, None, state)?;
        self.resolve_joins(step);
        self.save(persist, step, state, written, &[]).await
    }

    /// Numbers the run's next events after its checkpoint's (`checkpointed`) and after any
    /// stored since (how the run ended), so that stored numbers are never used twice.
    async fn number_events_after(
        &self,
        store: &Arc<dyn agentgraph_checkpoint::CheckpointStore>,
        checkpointed: u64,
    ) -> Result<()> {
        let stored = store.last_event(&self.shared.run_id).await?;
        let next = stored.map_or(0, |s| s + 1).max(checkpointed);
        self.shared.events.set_next_seq(next);
        Ok(())
    }

    /// Writes the checkpoint of `step`, if the run has a store.
    async fn save(
        &mut self,
        persist: &mut Option<Persister<S>>,
        step: u64,
        state: &S,
        written: &[bool],
        interrupts: &[Interrupt],
    ) -> Result<()> {
        self.saga.saved = step;
        let Some(p) = persist.as_mut() else {
            return self.commit_memory().await;
        };
        let status = if self.saga.compensating.is_some() {
            // A compensating run ends when its compensations have run (`compensate`).
            None
        } else if self.frontier.is_empty() {
            Some(RunStatus::Completed)
        } else if !interrupts.is_empty() {
            Some(RunStatus::Interrupted)
        } else {
            None
        };
        self.frontier.sort();
        let position = Position {
            plan: &self.plan,
            nodes: &self.frontier.plain,
            packets: &self.frontier.packets,
            held: &self.frontier.held,
            held_packets: &self.frontier.held_packets,
            joins: &self.joins,
            events: self.shared.events.next_seq(),
            interrupts,
            log: self.shared.events.take_journal(),
            invocation: self.invocation,
            saga: &self.saga,
            usage: (self.book.total(&self.shared.usage), self.book.base),
        };
        let began = crate::observe::metrics::now();
        let saved = p.checkpoint(step, state, written, position, status).await?;
        if let Some(bytes) = saved {
            crate::observe::metrics::checkpoint(bytes, began);
            self.shared
                .events
                .emit_stored(|| EventKind::CheckpointSaved { step, bytes });
        }
        Ok(())
    }

    /// Commits the step's memory writes of a run without a checkpoint store to its memory
    /// store.
    async fn commit_memory(&mut self) -> Result<()> {
        if self.memory.is_empty() {
            return Ok(());
        }
        let Some(store) = self.shared.config.memory.clone() else {
            self.memory.clear();
            return Ok(());
        };
        let mut batch = agentgraph_checkpoint::WriteBatch::new();
        batch.extend(self.memory.drain(..).map(agentgraph_checkpoint::Op::from));
        store.commit(batch).await?;
        Ok(())
    }

    /// Two tasks writing one overwrite field is an error naming the field and both nodes.
    fn check_conflicts(&self, tasks: &[Task], commands: &[Command<S>], step: u64) -> Result<()> {
        if tasks.len() < 2 || !self.plan.has_exclusive {
            return Ok(());
        }
        let mut owner: Vec<Option<usize>> = vec![None; self.plan.fields().len()];
        let mut conflict = None;
        for (i, cmd) in commands.iter().enumerate() {
            S::for_each_written(&cmd.update, |f| {
                if !self.plan.fields()[f].reducer.is_exclusive() || conflict.is_some() {
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
                    field: self.plan.fields()[f].name,
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
            let view = views.changes(state, &self.plan.schema, None, step);
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
                p.remember(cmd.memory);
            } else if !cmd.memory.is_empty() {
                self.memory.extend(cmd.memory);
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
            fields: self
                .plan
                .fields()
                .iter()
                .zip(written.iter())
                .filter(|(_, w)| **w)
                .map(|(f, _)| Cow::Borrowed(f.name))
                .collect(),
        });
        if let Some(views) = &mut self.views {
            let view = views.changes(&**state, &self.plan.schema, Some(written), step);
            self.shared.events.emit(|| view);
        }
        Ok(())
    }
}
