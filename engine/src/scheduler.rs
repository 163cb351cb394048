//! The step loop: run a step's tasks on one snapshot, merge their updates in a fixed order at
//! the barrier, then route to the next step's tasks.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use fixedbitset::FixedBitSet;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::SeedableRng;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use tracing::Instrument;

use std::collections::HashMap;

use agentgraph_checkpoint::{CheckpointStore, RunStatus};

use crate::builder::Target;
use crate::config::{Durability, Mode, RunConfig};
use crate::context::{Context, RunShared};
use crate::error::{BoxError, Error, Result};
use crate::event::{EventKind, TaskInfo};
use crate::ids::{NodeId, TaskId, draw_seed, task_id, task_key};
use crate::persist::record::{JoinRecord, TaskRecord};
use crate::persist::{Loaded, Persister, Position, command_from};
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

/// Why a task failed.
enum TaskFailure {
    Error(BoxError),
    Panic(String),
    Lost(String),
    /// Its go-to is invalid.
    Route(Error),
}

type TaskOutcome<S> = std::result::Result<Command<S>, TaskFailure>;

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
pub(crate) enum Start<S> {
    /// A new run from this input.
    Fresh(S),
    /// The run of this id, from its store.
    Resume,
}

/// The executor of one run.
pub(crate) struct Executor<S: State> {
    plan: Arc<Plan<S>>,
    shared: Arc<RunShared>,
    mode: Mode,
    limit: u64,
    store: Option<Arc<dyn CheckpointStore>>,
    durability: Durability,
    allow_graph_change: bool,
    frontier: Frontier,
    joins: Vec<JoinPass>,
}

impl<S: State> Executor<S> {
    pub(crate) fn new(plan: Arc<Plan<S>>, shared: Arc<RunShared>, config: &RunConfig) -> Self {
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
            mode: config.mode,
            limit: config.recursion_limit,
            store: config.store.clone(),
            durability: config.durability,
            allow_graph_change: config.allow_graph_change,
            joins,
        }
    }

    /// Runs the graph to the end: from `input`, or from the run's last checkpoint.
    pub(crate) async fn run(mut self, start: Start<S>) -> Result<S> {
        let started = Instant::now();
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
                Ok(Arc::try_unwrap(state).unwrap_or_else(|shared| (*shared).clone()))
            }
            Err((e, drop_pending)) => {
                if let Some(p) = persist.as_mut() {
                    // The failure is recorded; if even that fails, the run's own error says more.
                    let _ = p
                        .finish(
                            RunStatus::Failed,
                            Some(e.to_string()),
                            drop_pending.then_some(step),
                        )
                        .await;
                }
                events.emit(|| EventKind::RunFailed {
                    step,
                    error: e.to_string(),
                });
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
                    mode: self.mode,
                    seed: self.shared.seed,
                    graph: plan.fingerprint,
                });
                if let Some(store) = &self.store {
                    let p = Persister::create(
                        store.clone(),
                        self.shared.run_id.clone(),
                        self.durability,
                        plan.fingerprint,
                    )
                    .await
                    .map_err(keep)?;
                    *persist = Some(p);
                }
                let state = Arc::new(input);
                let start_key = task_key("", 0, crate::route::START, 0);
                self.route(0, start_key, 0, None, &state).map_err(keep)?;
                self.resolve_joins();
                let all = vec![true; S::FIELDS.len()];
                self.save(persist, 0, &state, &all).await.map_err(keep)?;
                (state, Vec::new())
            }
            Start::Resume => {
                let Some(store) = &self.store else {
                    return Err(keep(Error::NoStore));
                };
                let (p, loaded) = Persister::open(
                    store.clone(),
                    self.shared.run_id.clone(),
                    self.durability,
                    plan.fingerprint,
                    self.allow_graph_change,
                )
                .await
                .map_err(keep)?;
                *persist = Some(p);
                *step = loaded.record.step;
                let pending = self.restore(&loaded).map_err(keep)?;
                if self.frontier.is_empty() {
                    // A completed run: nothing to do but say so again.
                    if let Some(p) = persist.as_mut() {
                        p.finish(RunStatus::Completed, None, None)
                            .await
                            .map_err(keep)?;
                    }
                }
                let restored = pending.len();
                self.shared.events.set_next_seq(loaded.record.events);
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
            if *step >= self.limit {
                return Err(keep(Error::RecursionLimit { limit: self.limit }));
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
            let done = self
                .restored_commands(&tasks, std::mem::take(&mut restored))
                .map_err(keep)?;
            let span = tracing::debug_span!("step", step, tasks = tasks.len());
            let outcomes = self
                .run_tasks(&tasks, &state, step, done, persist.as_mut())
                .instrument(span)
                .await
                .map_err(keep)?;

            // The barrier: every task has finished. The first failure, in task order, fails
            // the run; nothing of the step is applied, and the finished tasks keep their writes.
            commands.clear();
            if outcomes.iter().any(Result::is_err) {
                let mut failure = None;
                for (i, (task, outcome)) in tasks.iter().zip(outcomes).enumerate() {
                    match outcome {
                        Ok(cmd) => {
                            if let Some(p) = persist.as_mut() {
                                let name = &plan.nodes[task.node as usize].name;
                                p.pending_write(step, i as u32, task.id, name, &cmd)
                                    .await
                                    .map_err(keep)?;
                            }
                        }
                        Err(f) => {
                            failure.get_or_insert_with(|| self.failure_error(task, step, f));
                        }
                    }
                }
                return Err(keep(failure.expect("a task failed")));
            }
            commands.extend(outcomes.into_iter().flatten());
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
            self.save(persist, step, &state, &written)
                .await
                .map_err(keep)?;
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
    ) -> Result<()> {
        let Some(p) = persist.as_mut() else {
            return Ok(());
        };
        let status = self.frontier.is_empty().then_some(RunStatus::Completed);
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
        };
        let saved = p.checkpoint(step, state, written, position, status).await?;
        if let Some(bytes) = saved {
            self.shared
                .events
                .emit(|| EventKind::CheckpointSaved { step, bytes });
        }
        Ok(())
    }

    /// Restores the frontier and joins of a loaded checkpoint; returns its pending writes.
    fn restore(
        &mut self,
        loaded: &Loaded<S>,
    ) -> Result<Vec<(u32, crate::persist::record::PendingWriteRecord)>> {
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

    /// The commands of tasks restored from pending writes, by task index.
    fn restored_commands(
        &self,
        tasks: &[Task],
        pending: Vec<(u32, crate::persist::record::PendingWriteRecord)>,
    ) -> Result<Vec<Option<Command<S>>>> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        // Matched by task id, not index: a changed graph may order the step's tasks otherwise.
        let mut done: Vec<Option<Command<S>>> = (0..tasks.len()).map(|_| None).collect();
        for (_, record) in pending {
            if let Some(i) = tasks.iter().position(|t| t.id.as_u128() == record.task) {
                done[i] = Some(command_from(&self.shared.run_id, &record)?);
            }
        }
        Ok(done)
    }

    /// Runs the tasks of one step on the same snapshot; returns their outcomes in task order.
    /// Tasks restored from pending writes (`done`) do not run. Every task that finishes while
    /// others still run has its result persisted at once as a pending write; the last one's
    /// goes straight into the checkpoint.
    async fn run_tasks(
        &self,
        tasks: &[Task],
        state: &Arc<S>,
        step: u64,
        mut done: Vec<Option<Command<S>>>,
        mut persist: Option<&mut Persister<S>>,
    ) -> Result<Vec<TaskOutcome<S>>> {
        let mut out: Vec<Option<TaskOutcome<S>>> = (0..tasks.len())
            .map(|i| done.get_mut(i).and_then(Option::take).map(Ok))
            .collect();
        let mut to_run = out.iter().filter(|o| o.is_none()).count();
        if self.mode == Mode::Sequential || to_run <= 1 {
            for i in 0..tasks.len() {
                if out[i].is_some() {
                    continue;
                }
                let outcome = self.task_future(&tasks[i], state, step).await;
                to_run -= 1;
                if to_run > 0 {
                    self.persist_finished(&mut persist, tasks, i, step, &outcome)
                        .await?;
                }
                out[i] = Some(outcome);
            }
        } else {
            let mut running: FuturesUnordered<BoxFuture<'static, (usize, TaskOutcome<S>)>> =
                FuturesUnordered::new();
            for (i, task) in tasks.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                let fut = self.task_future(task, state, step);
                let handle = tokio::spawn(fut);
                running.push(Box::pin(async move {
                    let outcome = handle
                        .await
                        .unwrap_or_else(|e| Err(TaskFailure::Lost(e.to_string())));
                    (i, outcome)
                }));
            }
            // A store error does not abandon the running tasks: they finish, then it is reported.
            let mut store_error = None;
            while let Some((i, outcome)) = running.next().await {
                if !running.is_empty()
                    && store_error.is_none()
                    && let Err(e) = self
                        .persist_finished(&mut persist, tasks, i, step, &outcome)
                        .await
                {
                    store_error = Some(e);
                }
                out[i] = Some(outcome);
            }
            if let Some(e) = store_error {
                return Err(e);
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every task reports once"))
            .collect())
    }

    /// Persists a finished task's result as a pending write.
    async fn persist_finished(
        &self,
        persist: &mut Option<&mut Persister<S>>,
        tasks: &[Task],
        i: usize,
        step: u64,
        outcome: &TaskOutcome<S>,
    ) -> Result<()> {
        if let (Some(p), Ok(cmd)) = (persist.as_deref_mut(), outcome) {
            let task = &tasks[i];
            p.pending_write(
                step,
                i as u32,
                task.id,
                &self.plan.nodes[task.node as usize].name,
                cmd,
            )
            .await?;
        }
        Ok(())
    }

    /// The future running one task, with its events and span.
    fn task_future(
        &self,
        task: &Task,
        state: &Arc<S>,
        step: u64,
    ) -> impl Future<Output = TaskOutcome<S>> + Send + 'static {
        let node = &self.plan.nodes[task.node as usize];
        let name = node.name.clone();
        let func = node.func.clone();
        let ctx = Context::new(
            self.shared.clone(),
            step,
            name.clone(),
            task.id,
            1,
            task.input.clone(),
            tokio_util::sync::CancellationToken::new(),
        );
        let state = state.clone();
        let shared = self.shared.clone();
        let plan = self.plan.clone();
        let node_id = task.node;
        let task_id = task.id;
        let span = tracing::info_span!("node", node = %name, step, task = %task_id);
        async move {
            shared.events.emit(|| EventKind::NodeStarted {
                step,
                node: name.clone(),
                task: task_id,
                attempt: 1,
            });
            let started = Instant::now();
            // The node's synchronous part runs inside the guard too.
            let outcome = match AssertUnwindSafe(async move { func.node.call(state, ctx).await })
                .catch_unwind()
                .await
            {
                Ok(Ok(cmd)) => Ok(cmd),
                Ok(Err(e)) => Err(TaskFailure::Error(e)),
                Err(panic) => Err(TaskFailure::Panic(panic_message(panic))),
            };
            // A go-to is checked when the task ends, so that a bad one fails the task and is
            // never stored as a pending write to fail every resume again.
            let outcome = match outcome {
                Ok(cmd) => match cmd.goto.as_ref().map(|g| check_goto(&plan, node_id, g)) {
                    Some(Err(e)) => Err(TaskFailure::Route(e)),
                    _ => Ok(cmd),
                },
                failed => failed,
            };
            match &outcome {
                Ok(_) => shared.events.emit(|| EventKind::NodeFinished {
                    step,
                    node: name.clone(),
                    task: task_id,
                    duration: started.elapsed(),
                }),
                Err(f) => shared.events.emit(|| EventKind::NodeFailed {
                    step,
                    node: name.clone(),
                    task: task_id,
                    error: match f {
                        TaskFailure::Error(e) => e.to_string(),
                        TaskFailure::Panic(m) => format!("panicked: {m}"),
                        TaskFailure::Lost(m) => m.clone(),
                        TaskFailure::Route(e) => e.to_string(),
                    },
                }),
            }
            outcome
        }
        .instrument(span)
    }

    fn failure_error(&self, task: &Task, step: u64, failure: TaskFailure) -> Error {
        let node = self.plan.nodes[task.node as usize].name.to_string();
        match failure {
            TaskFailure::Error(source) => Error::NodeFailed {
                node,
                step,
                task: task.id,
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
                    let mut rng = ChaCha8Rng::seed_from_u64(draw_seed(self.shared.seed, key, e));
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

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}
