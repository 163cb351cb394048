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

use crate::builder::Target;
use crate::config::{Mode, RunConfig};
use crate::context::{Context, RunShared};
use crate::error::{BoxError, Error, Result};
use crate::event::{EventKind, TaskInfo};
use crate::ids::{NodeId, TaskId, draw_seed, task_id, task_key};
use crate::node::NodeFn;
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

/// The executor of one run.
pub(crate) struct Executor<S: State> {
    plan: Arc<Plan<S>>,
    shared: Arc<RunShared>,
    mode: Mode,
    limit: u64,
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
            joins,
        }
    }

    /// Runs the graph from `input` to the end.
    pub(crate) async fn run(mut self, input: S) -> Result<S> {
        let started = Instant::now();
        let events = &self.shared.events;
        events.emit(|| EventKind::RunStarted {
            mode: self.mode,
            seed: self.shared.seed,
            graph: self.plan.fingerprint,
        });
        let mut state = Arc::new(input);
        let mut step = 0;
        let result = self.steps(&mut state, &mut step).await;
        let events = &self.shared.events;
        match result {
            Ok(()) => {
                events.emit(|| EventKind::RunFinished {
                    steps: step,
                    duration: started.elapsed(),
                });
                Ok(Arc::try_unwrap(state).unwrap_or_else(|shared| (*shared).clone()))
            }
            Err(e) => {
                events.emit(|| EventKind::RunFailed {
                    step,
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }

    async fn steps(&mut self, state: &mut Arc<S>, step: &mut u64) -> Result<()> {
        let start_key = task_key("", 0, crate::route::START, 0);
        self.route(0, start_key, 0, None, state)?;
        self.resolve_joins();
        let mut tasks = Vec::new();
        let mut commands: Vec<Command<S>> = Vec::new();
        let mut gotos: Vec<Option<Route>> = Vec::new();
        while !self.frontier.is_empty() {
            if *step >= self.limit {
                return Err(Error::RecursionLimit { limit: self.limit });
            }
            *step += 1;
            let step = *step;
            self.frontier
                .take_tasks(&self.plan, &self.shared.run_id, step, &mut tasks);
            self.shared.events.emit(|| EventKind::StepStarted {
                step,
                tasks: tasks
                    .iter()
                    .map(|t| TaskInfo {
                        node: self.plan.nodes[t.node as usize].name.clone(),
                        task: t.id,
                        packet: t.packet,
                    })
                    .collect(),
            });
            let span = tracing::debug_span!("step", step, tasks = tasks.len());
            let outcomes = self.run_tasks(&tasks, state, step).instrument(span).await;

            // The barrier: every task has finished. The first failure, in task order, fails
            // the run; nothing of the step is applied.
            commands.clear();
            let mut failure = None;
            for (task, outcome) in tasks.iter().zip(outcomes) {
                match outcome {
                    Ok(cmd) => commands.push(cmd),
                    Err(f) if failure.is_none() => {
                        failure = Some(self.failure_error(task, step, f))
                    }
                    Err(_) => {}
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            self.check_conflicts(&tasks, &commands, step)?;
            self.merge(state, &mut commands, &mut gotos, step);
            for (task, goto) in tasks.iter().zip(gotos.drain(..)) {
                self.route(slot(Some(task.node)), task.key, step, goto, state)?;
            }
            self.resolve_joins();
        }
        Ok(())
    }

    /// Runs the tasks of one step on the same snapshot; returns their outcomes in task order.
    async fn run_tasks(&self, tasks: &[Task], state: &Arc<S>, step: u64) -> Vec<TaskOutcome<S>> {
        if self.mode == Mode::Sequential || tasks.len() == 1 {
            let mut out = Vec::with_capacity(tasks.len());
            for task in tasks {
                out.push(self.task_future(task, state, step).await);
            }
            return out;
        }
        let mut running: FuturesUnordered<BoxFuture<'static, (usize, TaskOutcome<S>)>> =
            FuturesUnordered::new();
        for (i, task) in tasks.iter().enumerate() {
            let fut = self.task_future(task, state, step);
            match self.plan.nodes[task.node as usize].func {
                NodeFn::Async(_) => {
                    let handle = tokio::spawn(fut);
                    running.push(Box::pin(async move {
                        let outcome = handle
                            .await
                            .unwrap_or_else(|e| Err(TaskFailure::Lost(e.to_string())));
                        (i, outcome)
                    }));
                }
                NodeFn::Cpu(_) => running.push(Box::pin(fut.map(move |o| (i, o)))),
            }
        }
        let mut out: Vec<Option<TaskOutcome<S>>> = (0..tasks.len()).map(|_| None).collect();
        while let Some((i, outcome)) = running.next().await {
            out[i] = Some(outcome);
        }
        out.into_iter()
            .map(|o| o.expect("every task reports once"))
            .collect()
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
        );
        let state = state.clone();
        let shared = self.shared.clone();
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
            let outcome = match func {
                NodeFn::Async(f) => match AssertUnwindSafe(f(state, ctx)).catch_unwind().await {
                    Ok(Ok(cmd)) => Ok(cmd),
                    Ok(Err(e)) => Err(TaskFailure::Error(e)),
                    Err(panic) => Err(TaskFailure::Panic(panic_message(panic))),
                },
                NodeFn::Cpu(f) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let span = tracing::Span::current();
                    rayon::spawn(move || {
                        let result = span.in_scope(|| {
                            std::panic::catch_unwind(AssertUnwindSafe(|| f(&state, &ctx)))
                        });
                        drop(state);
                        let _ = tx.send(result);
                    });
                    match rx.await {
                        Ok(Ok(Ok(cmd))) => Ok(cmd),
                        Ok(Ok(Err(e))) => Err(TaskFailure::Error(e)),
                        Ok(Err(panic)) => Err(TaskFailure::Panic(panic_message(panic))),
                        Err(_) => Err(TaskFailure::Lost("the rayon pool dropped the task".into())),
                    }
                }
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

    /// Applies the step's updates in task order.
    fn merge(
        &self,
        state: &mut Arc<S>,
        commands: &mut Vec<Command<S>>,
        gotos: &mut Vec<Option<Route>>,
        step: u64,
    ) {
        let mut written = self
            .shared
            .events
            .enabled()
            .then(|| vec![false; S::FIELDS.len()]);
        let st = Arc::make_mut(state);
        for cmd in commands.drain(..) {
            if let Some(written) = &mut written {
                S::for_each_written(&cmd.update, |f| written[f] = true);
            }
            st.apply(cmd.update);
            gotos.push(cmd.goto);
        }
        if let Some(written) = written {
            self.shared.events.emit(|| EventKind::StateUpdated {
                step,
                fields: S::FIELDS
                    .iter()
                    .zip(written)
                    .filter(|(_, w)| *w)
                    .map(|(f, _)| Cow::Borrowed(f.name))
                    .collect(),
            });
        }
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
            return self.follow(route, declared, "go-to", from);
        }
        for (e, edge) in plan.out(from).iter().enumerate() {
            match edge {
                PlanEdge::Static(Target::Node(n)) => self.frontier.schedule(*n),
                PlanEdge::Static(Target::End) => {}
                PlanEdge::Conditional { targets, router } => {
                    let route = router(state);
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
                PlanEdge::Join { join, pos } => {
                    let pass = &mut self.joins[*join as usize];
                    pass.arrived[*pos as usize] = true;
                    pass.active = true;
                }
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
        let find = |name: &str| declared.iter().find(|(n, _)| &**n == name).map(|(_, t)| *t);
        let undeclared = |target: &str| Error::UndeclaredTarget {
            kind,
            from: self.plan.source_name(from).to_string(),
            target: target.to_owned(),
            declared: declared
                .iter()
                .map(|(n, _)| &**n)
                .collect::<Vec<_>>()
                .join(", "),
        };
        for name in &route.targets {
            match find(name) {
                Some(Target::Node(n)) => self.frontier.schedule(n),
                Some(Target::End) => {}
                None => return Err(undeclared(name)),
            }
        }
        for packet in route.packets {
            let Some(Target::Node(n)) = find(&packet.node) else {
                return Err(undeclared(&packet.node));
            };
            match packet.input {
                Ok(input) => self.frontier.packets.push((n, input)),
                Err(message) => {
                    return Err(Error::PacketEncode {
                        from: self.plan.source_name(from).to_string(),
                        node: packet.node.into_owned(),
                        message: message.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Fires every join whose predecessors have all finished or can no longer arrive in this
    /// pass (none of the nodes that lead to them is scheduled), and at least one finished.
    fn resolve_joins(&mut self) {
        loop {
            let mut fired = false;
            for (j, spec) in self.plan.joins.iter().enumerate() {
                let pass = &mut self.joins[j];
                if !pass.active {
                    continue;
                }
                let waiting = spec
                    .reach
                    .iter()
                    .zip(&pass.arrived)
                    .any(|(reach, arrived)| !arrived && self.frontier.meets(reach));
                if !waiting {
                    pass.active = false;
                    pass.arrived.iter_mut().for_each(|a| *a = false);
                    self.frontier.schedule(spec.target);
                    fired = true;
                }
            }
            if !fired {
                return;
            }
        }
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
