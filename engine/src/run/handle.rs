//! The runs of a [`CompiledGraph`](crate::CompiledGraph): [`Run`], [`RunHandle`] and how they end, [`RunOutcome`].

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context as TaskCx, Poll};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::define::state::State;
use crate::error::{Error, Result};
use crate::observe::event::{EventBus, EventStream};
use crate::plan::Plan;
use crate::run::context::RunShared;
use crate::run::interrupt::Interrupted;
use crate::run::retry_at::RetryAt;
use crate::run::scheduler::{Scheduler, Start};

/// One run of a graph, not yet started: subscribe to its [`events`](Run::events), then
/// `.await` it (in this task) or [`spawn`](Run::spawn) it (on the tokio runtime).
#[must_use = "a run does nothing until it is awaited or spawned"]
pub struct Run<S: State> {
    pub(crate) plan: Arc<Plan<S>>,
    pub(crate) start: Start<S>,
    pub(crate) shared: Arc<RunShared>,
    pub(crate) resuming: bool,
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
            by: self.shared.cancelled_by.clone(),
        }
    }

    /// Runs to the end, like `.await`, but returns a stop at interrupts as
    /// [`RunOutcome::Interrupted`] rather than as [`Error::Interrupted`] (and a stop for a
    /// scheduled retry as [`RunOutcome::RetryScheduled`]).
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
    ///     RunOutcome::Completed(_) | RunOutcome::RetryScheduled(_) => {
    ///         panic!("the run should stop after `one`")
    ///     }
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
            Start::Fresh(_) | Start::Invoke { .. } if !self.shared.config.subgraph_run => {
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
    /// [`RunOutcome::Interrupted`] rather than as [`Error::Interrupted`] (and a stop for a
    /// scheduled retry as [`RunOutcome::RetryScheduled`]).
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

    /// Cancels the run on behalf of `caller`, whom its audit trail's `cancelled` entry
    /// names: see [`CancelHandle::cancel_as`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
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
    /// let handle = b.compile()?.run(Count::default()).spawn();
    /// handle.cancel_as("bob");
    /// assert!(matches!(handle.await, Err(Error::Cancelled { .. })));
    /// # Ok(()) }
    /// ```
    pub fn cancel_as(&self, caller: impl Into<String>) {
        if let Some(shared) = self.shared.upgrade() {
            CancelHandle {
                token: shared.cancel.clone(),
                by: shared.cancelled_by.clone(),
            }
            .cancel_as(caller);
        }
    }
}

/// Cancels a run from outside. Cheap to clone.
///
/// The running tasks of the current step are cancelled (async nodes dropped, CPU-bound nodes
/// told through [`Context::is_cancelled`](crate::Context::is_cancelled)); the tasks that
/// finished keep their writes; the run ends with [`Error::Cancelled`] and status `Cancelled`,
/// and [`CompiledGraph::resume`](crate::CompiledGraph::resume) goes on from there, running only the unfinished tasks.
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
    /// Who cancelled, when [`cancel_as`](CancelHandle::cancel_as) named them.
    by: Arc<std::sync::OnceLock<Arc<str>>>,
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

    /// Cancels the run, like [`cancel`](CancelHandle::cancel), on behalf of `caller`: the
    /// `cancelled` entry of the run's audit trail names `caller` (and, in its details, the
    /// invocation's own caller as `invoked_by`). Without a name, the entry names the
    /// invocation's caller ([`RunConfig::caller`](crate::RunConfig::caller)). The first
    /// cancellation counts: a run already cancelled keeps who cancelled it first.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// # use agentgraph_engine::*;
    /// # use agentgraph_checkpoint::audit::AuditAction;
    /// # use futures_util::StreamExt;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("quick", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_node("slow", |_, _| async {
    ///         tokio::time::sleep(Duration::from_secs(3600)).await;
    ///         Ok(CountUpdate::new().n(1))
    ///     })
    ///     .add_edge(START, "quick")
    ///     .add_edge("quick", "slow")
    ///     .add_edge("slow", END);
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = RunConfig::new().store(store.clone()).run_id("r-1").caller("alice");
    /// let run = b.compile()?.run_with(Count::default(), config);
    /// let cancel = run.cancel_handle();
    /// let mut events = run.events();
    /// let run = tokio::spawn(run.into_future());
    /// // Once `slow` has started, the operator cancels.
    /// while let Some(Ok(event)) = events.next().await {
    ///     if matches!(&event.kind, EventKind::NodeStarted { node, .. } if &**node == "slow") {
    ///         cancel.cancel_as("bob");
    ///     }
    /// }
    /// assert!(matches!(run.await?, Err(Error::Cancelled { .. })));
    /// let trail = store.audit("r-1").await?;
    /// let last = &trail.last().unwrap().record;
    /// assert_eq!((last.action, last.caller.as_str()), (AuditAction::Cancelled, "bob"));
    /// assert_eq!(last.details["invoked_by"], "alice");
    /// # Ok(()) }
    /// ```
    pub fn cancel_as(&self, caller: impl Into<String>) {
        if !self.token.is_cancelled() {
            let _ = self.by.set(Arc::from(caller.into()));
        }
        self.token.cancel();
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
/// the interrupts it waits on, or the retry it waits for. [`Run::outcome`] and
/// [`RunHandle::outcome`] return it; a plain `.await` returns the same stops as
/// [`Error::Interrupted`] and [`Error::RetryScheduled`].
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
/// let config = || RunConfig::new().run_id("doc-1").store(store.clone());
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
    /// `Interrupted`. Resume it with [`CompiledGraph::resume_with`](crate::CompiledGraph::resume_with).
    Interrupted(Interrupted),
    /// The run stopped until a failed task's retry is due, rather than sleeping through a
    /// backoff longer than [`RunConfig::max_inline_backoff`](crate::RunConfig::max_inline_backoff):
    /// it is checkpointed, with status `RetryScheduled`. Continue it with
    /// [`CompiledGraph::resume`](crate::CompiledGraph::resume) when the retry is due: see
    /// [`RetryAt`] (whose example shows this outcome).
    RetryScheduled(RetryAt),
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
            RunOutcome::Interrupted(_) | RunOutcome::RetryScheduled(_) => None,
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
            RunOutcome::Interrupted(stop) => Some(stop),
            RunOutcome::Completed(_) | RunOutcome::RetryScheduled(_) => None,
        }
    }

    /// The retry a run stopped for waits on; `None` for a completed or interrupted one.
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::RunOutcome;
    /// assert!(RunOutcome::Completed(7).retry_scheduled().is_none());
    /// ```
    pub fn retry_scheduled(&self) -> Option<&RetryAt> {
        match self {
            RunOutcome::RetryScheduled(retry) => Some(retry),
            RunOutcome::Completed(_) | RunOutcome::Interrupted(_) => None,
        }
    }

    /// A run's result, with a stop at interrupts taken out of the errors.
    fn from_result(result: Result<S>) -> Result<RunOutcome<S>> {
        match result {
            Ok(state) => Ok(RunOutcome::Completed(state)),
            Err(Error::Interrupted(stop)) => Ok(RunOutcome::Interrupted(*stop)),
            Err(Error::RetryScheduled(retry)) => Ok(RunOutcome::RetryScheduled(*retry)),
            Err(e) => Err(e),
        }
    }
}
