//! [`CompiledGraph`] and its runs: [`Run`], [`RunHandle`] and how they end, [`RunOutcome`].

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context as TaskCx, Poll};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::RunConfig;
use crate::context::RunShared;
use crate::error::{Error, Result};
use crate::event::{EventBus, EventStream};
use crate::ids::Fingerprint;
use crate::interrupt::{Interrupted, Resume};
use crate::plan::Plan;
use crate::scheduler::{Scheduler, Start};
use crate::state::State;

/// An immutable, validated graph, ready to run any number of times, concurrently. Cheap to
/// clone. Made by [`GraphBuilder::compile`](crate::GraphBuilder::compile).
///
/// # Examples
///
/// ```
/// # use std::sync::{Arc, Weak};
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) })
///     .add_edge(START, "one")
///     .add_edge("one", END);
/// let graph = b.compile()?;
///
/// // Run with the defaults...
/// assert_eq!(graph.invoke(Count::default()).await?.n, 1);
///
/// // ...or choose the mode and seed, and watch the events.
/// let run = graph.run_with(Count::default(), RunConfig::new().mode(Mode::Sequential).seed(7));
/// let events = run.events();
/// let state = run.await?;
/// assert_eq!(state.n, 1);
/// # drop(events);
/// # Ok(()) }
/// ```
pub struct CompiledGraph<S: State> {
    plan: Arc<Plan<S>>,
}

impl<S: State> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        CompiledGraph {
            plan: self.plan.clone(),
        }
    }
}

impl<S: State> fmt::Debug for CompiledGraph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledGraph")
            .field("nodes", &self.plan.nodes.len())
            .field("joins", &self.plan.joins.len())
            .field("fingerprint", &self.plan.fingerprint)
            .finish()
    }
}

impl<S: State> CompiledGraph<S> {
    pub(crate) fn new(plan: Plan<S>) -> Self {
        CompiledGraph {
            plan: Arc::new(plan),
        }
    }

    /// Runs the graph on `input` with the default [`RunConfig`] and returns the final state.
    ///
    /// # Errors
    ///
    /// See [`Error`]: a node failing or panicking, a write conflict, the recursion limit, an
    /// undeclared route.
    pub async fn invoke(&self, input: S) -> Result<S> {
        self.run(input).await
    }

    /// A run of the graph on `input` with the default [`RunConfig`]. Await it, or
    /// [`spawn`](Run::spawn) it; subscribe to its events first.
    pub fn run(&self, input: S) -> Run<S> {
        self.run_with(input, RunConfig::default())
    }

    /// A run of the graph on `input` with `config`.
    pub fn run_with(&self, input: S, config: RunConfig) -> Run<S> {
        self.run_with_start(Start::Fresh(input), config)
    }

    /// The run `run_id` of `config`'s store, resumed from its last checkpoint: tasks of the
    /// interrupted step that had finished are not run again (their pending writes are
    /// applied); the others run. Resuming a completed run returns its final state.
    ///
    /// The run fails with [`Error::NoStore`] without a store,
    /// [`Error::RunNotFound`](crate::Error::RunNotFound) for an unknown id,
    /// [`Error::GraphChanged`] when this graph's fingerprint differs from the one that
    /// started the run (unless allowed), and [`Error::Store`] with
    /// `StoreError::RunBusy` when the run is running.
    pub fn resume(&self, run_id: impl Into<String>, config: RunConfig) -> Run<S> {
        self.resume_with(run_id, Resume::new(), config)
    }

    /// [`resume`](CompiledGraph::resume) with answers to the run's interrupts and an edit of
    /// its state (see [`Resume`]). Both are stored before anything runs, so a crash of the
    /// resumed run does not lose them.
    ///
    /// A run stopped at interrupts ([`Error::Interrupted`]) goes on past its
    /// `interrupt_before` and `interrupt_after` gates; a node that called
    /// [`Context::interrupt`](crate::Context::interrupt) runs again, and gets the answer given
    /// for the interrupt's id (without one, it interrupts again). The interrupts a run waits
    /// on are listed by [`History::interrupts`](crate::History::interrupts).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Doc { approved: bool }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Doc>::new();
    /// b.add_node("review", |_, ctx: Context| async move {
    ///     let ok: bool = ctx.interrupt("approve the document?")?;
    ///     Ok(DocUpdate::new().approved(ok))
    /// })
    /// .add_edge(START, "review")
    /// .add_edge("review", END);
    /// let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = || RunConfig::new().run_id("doc-1").shared_store(store.clone());
    ///
    /// let Err(Error::Interrupted(stop)) = graph.run_with(Doc::default(), config()).await else {
    ///     panic!("the run should wait for a review");
    /// };
    /// assert_eq!(stop.interrupts[0].payload, "approve the document?");
    ///
    /// let resume = Resume::new().answer(&stop.interrupts[0].id, true);
    /// assert!(graph.resume_with("doc-1", resume, config()).await?.approved);
    /// # Ok(()) }
    /// ```
    pub fn resume_with(
        &self,
        run_id: impl Into<String>,
        resume: Resume<S>,
        config: RunConfig,
    ) -> Run<S> {
        let config = config.run_id(run_id);
        let mut run = self.run_with_start(Start::Resume(resume), config);
        run.resuming = true;
        run
    }

    fn run_with_start(&self, start: Start<S>, config: RunConfig) -> Run<S> {
        let run_id: Arc<str> = match &config.run_id {
            Some(id) => Arc::from(id.as_str()),
            None => Arc::from(uuid::Uuid::now_v7().to_string()),
        };
        let mut events = EventBus::new(run_id.clone(), config.event_capacity);
        if config.store_events && config.store.is_some() {
            events.keep_journal();
        }
        let shared = Arc::new(RunShared {
            events,
            run_id,
            cancel: CancellationToken::new(),
            config,
        });
        Run {
            plan: self.plan.clone(),
            start,
            shared,
            resuming: false,
        }
    }

    /// The runs `store` holds for this graph: list, inspect, fork, prune, delete.
    pub fn history(
        &self,
        store: Arc<dyn agentgraph_checkpoint::CheckpointStore>,
    ) -> crate::history::History<S> {
        crate::history::History::new(self.clone(), store)
    }

    /// The graph's fingerprint: a stable hash of its nodes, edges and state reducers.
    pub fn fingerprint(&self) -> Fingerprint {
        self.plan.fingerprint
    }

    /// The graph's name, if it was given one ([`GraphBuilder::named`](crate::GraphBuilder::named)).
    pub fn name(&self) -> Option<&str> {
        self.plan.name.as_deref()
    }

    /// The node names, in plan order (the order in which they were added).
    pub fn node_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.plan.nodes.iter().map(|n| &*n.name)
    }

    /// The graph in Graphviz DOT: solid static edges, dashed conditional and weighted edges
    /// (with their weights), bold joins, dotted go-to edges; CPU-bound nodes drawn as 3-D boxes.
    pub fn to_dot(&self) -> String {
        self.plan.describe().to_dot()
    }

    /// The graph as plain data (nodes, edges, state fields), to serialize for monitors and
    /// the `agentgraph` command-line tool. See [`GraphDescription`](crate::GraphDescription).
    pub fn describe(&self) -> crate::describe::GraphDescription {
        self.plan.describe()
    }
}

/// One run of a graph, not yet started: subscribe to its [`events`](Run::events), then
/// `.await` it (in this task) or [`spawn`](Run::spawn) it (on the tokio runtime).
#[must_use = "a run does nothing until it is awaited or spawned"]
pub struct Run<S: State> {
    plan: Arc<Plan<S>>,
    start: Start<S>,
    shared: Arc<RunShared>,
    resuming: bool,
}

impl<S: State> fmt::Debug for Run<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("run_id", &self.shared.run_id)
            .field("config", &self.shared.config)
            .field("resuming", &self.resuming)
            .finish_non_exhaustive()
    }
}

impl<S: State> Run<S> {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// Subscribes to the run's events, from its first one.
    pub fn events(&self) -> EventStream {
        self.shared.events.subscribe()
    }

    /// A handle that cancels the run from elsewhere (another task, a signal handler), for a
    /// run that is awaited rather than spawned.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            token: self.shared.cancel.clone(),
        }
    }

    /// Runs to the end, like `.await`, but returns a stop at interrupts as
    /// [`RunOutcome::Interrupted`] rather than as [`Error::Interrupted`].
    ///
    /// # Errors
    ///
    /// Every other error of the run: see [`Error`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_node("two", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_edge(START, "one")
    ///     .add_edge("one", "two")
    ///     .add_edge("two", END)
    ///     .interrupt_after(["one"]);
    /// let graph = b.compile()?;
    /// match graph.run(Count::default()).outcome().await? {
    ///     RunOutcome::Interrupted(stop) => assert_eq!(stop.interrupts[0].node, "one"),
    ///     RunOutcome::Completed(_) => panic!("the run should stop after `one`"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn outcome(self) -> Result<RunOutcome<S>> {
        RunOutcome::from_result(self.await)
    }

    /// Starts the run as a tokio task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> RunHandle<S> {
        let run_id = self.shared.run_id.clone();
        let shared = Arc::downgrade(&self.shared);
        RunHandle {
            join: tokio::spawn(self.into_future()),
            run_id,
            shared,
        }
    }
}

impl<S: State> IntoFuture for Run<S> {
    type Output = Result<S>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<S>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let span = tracing::info_span!(
            "run",
            run_id = %self.shared.run_id,
            mode = ?self.shared.config.mode,
            otel.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        // A new run may not take an id reserved for subgraph runs.
        let refused = match &self.start {
            Start::Fresh(_) if !self.shared.config.subgraph_run => {
                crate::persist::runs::check_new_run_id(&self.shared.run_id).err()
            }
            _ => None,
        };
        let scheduler = Scheduler::new(self.plan, self.shared);
        let run = scheduler.run(self.start);
        Box::pin(
            async move {
                match refused {
                    Some(e) => Err(e),
                    None => run.await,
                }
            }
            .instrument(span),
        )
    }
}

/// A spawned run. Await it for the final state; subscribe to its events meanwhile.
pub struct RunHandle<S: State> {
    join: tokio::task::JoinHandle<Result<S>>,
    run_id: Arc<str>,
    /// Weak, so that the run's event streams end when the run ends.
    shared: Weak<RunShared>,
}

impl<S: State> fmt::Debug for RunHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl<S: State> RunHandle<S> {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Subscribes to the run's events from now on (subscribe on the [`Run`] before spawning
    /// it to see every event). The stream of a run that has ended is empty.
    pub fn events(&self) -> EventStream {
        match self.shared.upgrade() {
            Some(shared) => shared.events.subscribe(),
            None => EventBus::ended(),
        }
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the run to end, like `.await`, but returns a stop at interrupts as
    /// [`RunOutcome::Interrupted`] rather than as [`Error::Interrupted`].
    ///
    /// # Errors
    ///
    /// Every other error of the run: see [`Error`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_edge(START, "one")
    ///     .add_edge("one", END);
    /// let handle = b.compile()?.run(Count::default()).spawn();
    /// assert_eq!(handle.outcome().await?.completed().map(|c| c.n), Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn outcome(self) -> Result<RunOutcome<S>> {
        RunOutcome::from_result(self.await)
    }

    /// Cancels the run: see [`CancelHandle::cancel`].
    pub fn cancel(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.cancel.cancel();
        }
    }
}

/// Cancels a run from outside. Cheap to clone.
///
/// The running tasks of the current step are cancelled (async nodes dropped, CPU-bound nodes
/// told through [`Context::is_cancelled`](crate::Context::is_cancelled)); the tasks that
/// finished keep their writes; the run ends with [`Error::Cancelled`] and status `Cancelled`,
/// and [`CompiledGraph::resume`] goes on from there, running only the unfinished tasks.
///
/// # Examples
///
/// ```
/// # use std::{sync::Arc, time::Duration};
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node("slow", |_, _| async {
///     tokio::time::sleep(Duration::from_secs(3600)).await;
///     Ok(CountUpdate::new().n(1))
/// })
/// .add_edge(START, "slow")
/// .add_edge("slow", END);
/// let run = b.compile()?.run(Count::default());
/// let cancel = run.cancel_handle();
/// tokio::spawn(async move { cancel.cancel() });
/// assert!(matches!(run.await, Err(Error::Cancelled { step: 1 })));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CancelHandle {
    token: CancellationToken,
}

impl CancelHandle {
    /// Cancels the run. Idempotent; does nothing once the run has ended.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

impl<S: State> Future for RunHandle<S> {
    type Output = Result<S>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(Pin::new(&mut self.join).poll(cx));
        Poll::Ready(result.unwrap_or_else(|e| {
            Err(Error::RunLost {
                run: self.run_id.to_string(),
                end: e.into(),
            })
        }))
    }
}

/// How a run ended when stopping at interrupts is one of its expected ends: its final state,
/// or the interrupts it waits on. [`Run::outcome`] and [`RunHandle::outcome`] return it; a
/// plain `.await` returns the same stop as [`Error::Interrupted`].
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Doc { approved: bool }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Doc>::new();
/// b.add_node("review", |_, ctx: Context| async move {
///     let ok: bool = ctx.interrupt("approve the document?")?;
///     Ok(DocUpdate::new().approved(ok))
/// })
/// .add_edge(START, "review")
/// .add_edge("review", END);
/// let graph = b.compile()?;
/// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let config = || RunConfig::new().run_id("doc-1").shared_store(store.clone());
///
/// let mut outcome = graph.run_with(Doc::default(), config()).outcome().await?;
/// while let RunOutcome::Interrupted(stop) = outcome {
///     let resume = Resume::new().answer(&stop.interrupts[0].id, true);
///     outcome = graph.resume_with("doc-1", resume, config()).outcome().await?;
/// }
/// assert!(outcome.completed().is_some_and(|doc| doc.approved));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum RunOutcome<S> {
    /// The run finished: its final state.
    Completed(S),
    /// The run stopped at interrupts and waits for answers: it is checkpointed, with status
    /// `Interrupted`. Resume it with [`CompiledGraph::resume_with`].
    Interrupted(Interrupted),
}

impl<S> RunOutcome<S> {
    /// The final state of a completed run; `None` for an interrupted one.
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::RunOutcome;
    /// assert_eq!(RunOutcome::Completed(7).completed(), Some(7));
    /// ```
    pub fn completed(self) -> Option<S> {
        match self {
            RunOutcome::Completed(state) => Some(state),
            RunOutcome::Interrupted(_) => None,
        }
    }

    /// The interrupts an interrupted run waits on; `None` for a completed one.
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::RunOutcome;
    /// assert!(RunOutcome::Completed(7).interrupted().is_none());
    /// ```
    pub fn interrupted(&self) -> Option<&Interrupted> {
        match self {
            RunOutcome::Completed(_) => None,
            RunOutcome::Interrupted(stop) => Some(stop),
        }
    }

    /// A run's result, with a stop at interrupts taken out of the errors.
    fn from_result(result: Result<S>) -> Result<RunOutcome<S>> {
        match result {
            Ok(state) => Ok(RunOutcome::Completed(state)),
            Err(Error::Interrupted(stop)) => Ok(RunOutcome::Interrupted(*stop)),
            Err(e) => Err(e),
        }
    }
}
