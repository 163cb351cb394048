//! Errors: [`GraphError`] when a graph is built or compiled, [`Error`] when it runs.

use std::fmt;

use crate::ids::TaskId;

/// The error a node returns: any error type, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of running a graph.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An edge, named by its endpoints, as shown in errors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeName {
    /// The source node (or `START`).
    pub from: String,
    /// The target node (or `END`).
    pub to: String,
}

impl EdgeName {
    pub(crate) fn new(from: &str, to: &str) -> Self {
        EdgeName {
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }
}

impl fmt::Display for EdgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` -> `{}`", self.from, self.to)
    }
}

/// An error and its sources, joined by `: `.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// The error of a node attempt that took longer than its timeout
/// ([`GraphBuilder::timeout`](crate::GraphBuilder::timeout)). A [`RetryPolicy`](crate::RetryPolicy)
/// retries it unless its predicate refuses (`e.is::<NodeTimedOut>()`).
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
/// b.add_node("hang", |_, _| async {
///     std::future::pending::<()>().await;
///     Ok(CountUpdate::new())
/// })
/// .timeout("hang", Duration::from_millis(10))
/// .add_edge(START, "hang")
/// .add_edge("hang", END);
/// match b.compile()?.invoke(Count::default()).await {
///     Err(Error::NodeFailed { source, .. }) => assert!(source.is::<NodeTimedOut>()),
///     other => panic!("{:?}", other.map(|c| c.n)),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node `{node}` timed out after {after:?}")]
#[non_exhaustive]
pub struct NodeTimedOut {
    /// The node.
    pub node: String,
    /// The timeout.
    pub after: std::time::Duration,
}

/// Why a graph could not be built or compiled. Every variant names the node or edge at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Two nodes share a name.
    #[error("node `{0}` is added twice; node names must be unique")]
    DuplicateNode(String),
    /// A node uses a reserved name (`START`, `END`) or an empty one.
    #[error("`{0}` is reserved and cannot name a node; choose another name")]
    ReservedName(String),
    /// An edge names a node that has not been added.
    #[error(
        "edge {edge} names node `{missing}`, which does not exist; add the node before its edges"
    )]
    UnknownNode {
        /// The edge.
        edge: EdgeName,
        /// The missing node.
        missing: String,
    },
    /// A setting (retry, timeout, interrupt) names a node that has not been added.
    #[error("{setting} names node `{node}`, which does not exist; add the node first")]
    NoSuchNode {
        /// The setting.
        setting: &'static str,
        /// The node.
        node: String,
    },
    /// An error edge or a compensation names a handler that has not been added (or `START`
    /// or `END`).
    #[error(
        "{setting} of node `{node}` names `{handler}`, which is not a node; add the handler node first"
    )]
    NoSuchHandler {
        /// `on_error` or `compensate`.
        setting: &'static str,
        /// The node whose failure or work it handles.
        node: String,
        /// The handler named.
        handler: String,
    },
    /// An edge leads into `START` or out of `END`.
    #[error("edge {0} is not allowed: nothing may lead into START or out of END")]
    InvalidEndpoint(EdgeName),
    /// Nothing leaves `START`.
    #[error("the graph has no entry point; add an edge from START to the first node")]
    NoEntry,
    /// No path from `START` reaches the node.
    #[error("node `{0}` is unreachable from START; add an edge into it or remove it")]
    Unreachable(String),
    /// The node has no outgoing edge and is not wired to `END`.
    #[error("node `{0}` has no way out; add an edge from it (to END if the run finishes there)")]
    DeadEnd(String),
    /// A conditional, go-to or weighted edge declares no target.
    #[error("the {kind} edge from `{from}` declares no target; list at least one")]
    NoTargets {
        /// `conditional`, `go-to` or `weighted`.
        kind: &'static str,
        /// The source node.
        from: String,
    },
    /// A weighted edge has a non-finite or negative weight.
    #[error("weighted edge {edge} has weight {weight}; weights must be finite and not negative")]
    InvalidWeight {
        /// The edge.
        edge: EdgeName,
        /// The weight.
        weight: f64,
    },
    /// Every weight of a weighted edge is zero.
    #[error(
        "every weight of the weighted edge from `{0}` is zero; give at least one target a positive weight"
    )]
    ZeroWeights(String),
    /// A join names a predecessor that can never reach it in a pass.
    #[error(
        "join into `{target}` waits for `{predecessor}`, which can never reach it \
         (no path from START leads to `{predecessor}` without passing through `{target}`)"
    )]
    JoinUnreachable {
        /// The node the join fires.
        target: String,
        /// The predecessor that can never arrive.
        predecessor: String,
    },
    /// A join lists no predecessor.
    #[error("the join into `{0}` lists no predecessor")]
    EmptyJoin(String),
    /// A quorum join asks for none of its predecessors, or for more than it has.
    #[error(
        "the join [{predecessors}] -> `{target}` has a quorum of {quorum}; \
         a quorum is at least 1 and at most the number of predecessors"
    )]
    InvalidQuorum {
        /// The node the join fires.
        target: String,
        /// Its predecessors, comma-separated.
        predecessors: String,
        /// The quorum asked for.
        quorum: usize,
    },
    /// A join's timeout is 0 steps.
    #[error("the join [{predecessors}] -> `{target}` has a timeout of 0 steps; give it at least 1")]
    InvalidJoinTimeout {
        /// The node the join fires.
        target: String,
        /// Its predecessors, comma-separated.
        predecessors: String,
    },
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node failed for good: it returned an error that its retry policy does not retry, or
    /// every attempt failed. The message shows the error's whole cause chain.
    #[error(
        "node `{node}` failed at step {step} (task {task}) after {attempts} attempt(s): {}",
        chain(source.as_ref())
    )]
    NodeFailed {
        /// The node.
        node: String,
        /// The step.
        step: u64,
        /// The task.
        task: TaskId,
        /// How many attempts were made (across resumes).
        attempts: u32,
        /// The last attempt's error ([`NodeTimedOut`](crate::NodeTimedOut) for a timeout).
        #[source]
        source: BoxError,
    },
    /// A node panicked.
    #[error("node `{node}` panicked at step {step} (task {task}): {message}")]
    NodePanicked {
        /// The node.
        node: String,
        /// The step.
        step: u64,
        /// The task.
        task: TaskId,
        /// The panic message.
        message: String,
    },
    /// User code outside a node panicked: a router or a reducer.
    #[error("{what} panicked: {message}")]
    Panicked {
        /// Where.
        what: String,
        /// The panic message.
        message: String,
    },
    /// Two tasks of one step wrote the same overwrite field.
    #[error(
        "nodes `{first}` and `{second}` both wrote field `{field}` at step {step}; \
         declare a reducer for the field (for example #[reducer(append)]) or write it from one node. \
         Nothing of step {step} was applied"
    )]
    Conflict {
        /// The field.
        field: &'static str,
        /// The first writer, in task order.
        first: String,
        /// The second writer.
        second: String,
        /// The step.
        step: u64,
    },
    /// An invocation of the run (a fresh run or a resume) needed more steps than its
    /// [`RunConfig::recursion_limit`](crate::RunConfig::recursion_limit) allows. Its last step
    /// is checkpointed: resuming it goes on, for up to the limit again.
    #[error(
        "recursion limit of {limit} steps per invocation reached without finishing; \
         if the graph loops on purpose, raise it with `recursion_limit` (resuming the run goes on)"
    )]
    RecursionLimit {
        /// The limit.
        limit: u64,
    },
    /// The run reached its budget of steps across all its invocations
    /// ([`RunConfig::max_total_steps`](crate::RunConfig::max_total_steps)) without finishing.
    /// Its last step is checkpointed: resuming it with a higher budget goes on.
    #[error(
        "the run used its budget of {limit} steps in all without finishing; \
         resume it with a higher `max_total_steps` to go on"
    )]
    TotalStepsLimit {
        /// The budget.
        limit: u64,
    },
    /// A router or a node's go-to chose a target that its edge did not declare.
    #[error(
        "the {kind} edge from `{from}` chose `{target}`, which it does not declare (declared: {declared})"
    )]
    UndeclaredTarget {
        /// `conditional` or `go-to`.
        kind: &'static str,
        /// The source node.
        from: String,
        /// The target chosen.
        target: String,
        /// The declared targets, comma separated.
        declared: String,
    },
    /// A node chose its next nodes with a go-to, but declares no go-to edge.
    #[error(
        "node `{0}` returned a go-to, but the graph declares no go-to edges for it; add them with `add_goto_edges`"
    )]
    GotoNotDeclared(String),
    /// A packet's input could not be encoded.
    #[error("the packet for `{node}` sent from `{from}` could not be encoded: {message}")]
    PacketEncode {
        /// The source node.
        from: String,
        /// The packet's target node.
        node: String,
        /// The encoder's message.
        message: String,
    },
    /// The checkpoint store failed.
    #[error("checkpoint store: {0}")]
    Store(#[from] agentgraph_checkpoint::StoreError),
    /// No checkpoint of the run can be read: every one is damaged.
    #[error("run `{run}` has no readable checkpoint: {reason}")]
    Corrupt {
        /// The run.
        run: String,
        /// What is wrong with the newest checkpoint.
        reason: String,
    },
    /// A stored record is intact but cannot be read by this build: written by a newer
    /// format version or codec, or for a state type whose fields changed.
    #[error("run `{run}` cannot be resumed by this build: {reason}")]
    Incompatible {
        /// The run.
        run: String,
        /// What does not match.
        reason: String,
    },
    /// The state could not be encoded for a checkpoint or pending write.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Why.
        #[source]
        source: crate::codec::CodecError,
    },
    /// The run was started by a graph with another fingerprint.
    #[error(
        "run `{run}` was started by a different graph (fingerprint {stored}, this graph {current}); \
         resume it with the graph that started it, or allow the change with `RunConfig::allow_graph_change`"
    )]
    GraphChanged {
        /// The run.
        run: String,
        /// The fingerprint stored with the run.
        stored: crate::ids::Fingerprint,
        /// This graph's fingerprint.
        current: crate::ids::Fingerprint,
    },
    /// A stored task names a node this graph does not have.
    #[error("run `{run}` has a task for node `{node}`, which this graph does not have")]
    MissingNode {
        /// The run.
        run: String,
        /// The node.
        node: String,
    },
    /// The store has no such run.
    #[error("run `{0}` is not in the store")]
    RunNotFound(String),
    /// The run is in the store, but has no checkpoint at this step (it never reached it, or
    /// the checkpoint was pruned).
    #[error(
        "run `{run}` has no checkpoint at step {step}; its checkpoints are listed by `GraphHistory::checkpoints` (older ones may have been pruned)"
    )]
    CheckpointNotFound {
        /// The run.
        run: String,
        /// The step asked for.
        step: u64,
    },
    /// The state of a run was asked for as JSON, but the run stored no views of it.
    #[error(
        "run `{0}` stored no views of its state; run it with `RunConfig::monitored()` (store_events and state_views) to read its state without its program, or read it with `GraphHistory::state`"
    )]
    NoStateViews(String),
    /// A new run was given the id of a run already in the store.
    #[error("run `{0}` already exists in the store; resume it, or choose another run id")]
    RunExists(String),
    /// A thread was given its next input, but its last invocation did not end: it waits at
    /// interrupts (answer them with [`CompiledGraph::resume_with`](crate::CompiledGraph::resume_with)),
    /// failed, was cancelled or was stopped mid-step (resume it with
    /// [`CompiledGraph::resume`](crate::CompiledGraph::resume)). Nothing was written.
    #[error(
        "thread `{thread}` is {status}: its last invocation did not end; resume it (answering its interrupts, if it waits on any) before giving it a new input"
    )]
    ThreadNotReady {
        /// The thread (its run id).
        thread: String,
        /// Its run's status.
        status: agentgraph_checkpoint::RunStatus,
    },
    /// A new run (or fork) was given an id containing `/@`, which marks the runs of subgraphs
    /// (`{run}/@{node}/{task}`): only those may have it.
    #[error(
        "run id `{0}` contains `/@`, which is reserved for the runs of subgraphs; choose another run id"
    )]
    ReservedRunId(String),
    /// Resuming needs a store.
    #[error("resuming needs a checkpoint store: set one with `RunConfig::store`")]
    NoStore,
    /// The run stopped at interrupts and waits for answers: it is checkpointed, with status
    /// `Interrupted`. Resume it with [`CompiledGraph::resume_with`](crate::CompiledGraph::resume_with).
    #[error("{0}")]
    Interrupted(Box<crate::run::interrupt::Interrupted>),
    /// The run stopped until a failed task's retry is due, rather than sleeping through a
    /// backoff longer than [`RunConfig::max_inline_backoff`](crate::RunConfig::max_inline_backoff):
    /// it is checkpointed, with status `RetryScheduled`. Continue it with
    /// [`CompiledGraph::resume`](crate::CompiledGraph::resume) when the retry is due (see
    /// [`RetryAt`](crate::RetryAt)). [`Run::outcome`](crate::Run::outcome) returns it as
    /// [`RunOutcome::RetryScheduled`](crate::RunOutcome::RetryScheduled).
    #[error("{0}")]
    RetryScheduled(Box<crate::run::retry_at::RetryAt>),
    /// A resume answered an interrupt the run does not wait on.
    #[error("run `{run}` does not wait on interrupt `{id}` (it waits on: {pending})")]
    UnknownInterrupt {
        /// The run.
        run: String,
        /// The id given.
        id: String,
        /// The ids it waits on, comma separated.
        pending: String,
    },
    /// A resume's [`Resume::value`](crate::Resume::value) could answer more than one interrupt:
    /// the run waits on several that are not answered by id. Answer them by id
    /// ([`Resume::answer`](crate::Resume::answer)). Nothing was stored; the run waits as before.
    #[error(
        "run `{run}` waits on {} interrupts not answered by id, so `Resume::value` cannot tell which one it answers: {}; answer them by id with `Resume::answer`",
        waiting.len(),
        waiting.iter().map(|i| format!("`{}` (id {})", i.node, i.id)).collect::<Vec<_>>().join(", ")
    )]
    AmbiguousResumeValue {
        /// The run.
        run: String,
        /// The interrupts left unanswered, in the order the run lists them.
        waiting: Vec<crate::run::interrupt::Interrupt>,
    },
    /// A resume's [`Resume::value`](crate::Resume::value) has no interrupt to answer: the run
    /// waits on none, or the answers by id answer every one. Nothing was stored; the run is as
    /// before.
    #[error(
        "run `{run}` waits on no interrupt that `Resume::value` could answer (none is pending, or every one is answered by id)"
    )]
    NoInterruptToAnswer {
        /// The run.
        run: String,
    },
    /// A resume's answer could not be represented as JSON.
    #[error("the answer to interrupt `{id}` cannot be encoded: {message}")]
    AnswerEncode {
        /// The interrupt.
        id: String,
        /// The encoder's message.
        message: String,
    },
    /// The run was cancelled through its handle. Its finished work is checkpointed and it
    /// can be resumed.
    #[error("run cancelled at step {step}; resume it to go on")]
    Cancelled {
        /// The step that was running.
        step: u64,
    },
    /// A step took longer than [`RunConfig::step_timeout`](crate::RunConfig::step_timeout).
    #[error(
        "step {step} timed out after {after:?} with {unfinished} unfinished: their tasks were cancelled; \
         the finished ones kept their writes, and the run can be resumed"
    )]
    StepTimedOut {
        /// The step.
        step: u64,
        /// The timeout.
        after: std::time::Duration,
        /// The nodes whose tasks did not finish, comma separated.
        unfinished: String,
    },
    /// The run took longer than [`RunConfig::run_timeout`](crate::RunConfig::run_timeout).
    #[error(
        "the run timed out after {after:?} at step {step}; its finished work is checkpointed and it can be resumed"
    )]
    RunTimedOut {
        /// The step that was running.
        step: u64,
        /// The timeout.
        after: std::time::Duration,
    },
    /// The tokio task running an attempt of a node (in [`Mode::Parallel`](crate::Mode::Parallel))
    /// ended without a result: it panicked outside the node's own code (a node's panic is
    /// [`Error::NodePanicked`]), for example while formatting the error the node returned, or
    /// it was cancelled. Nothing of the step was applied; the step's finished tasks kept their
    /// writes.
    #[error(
        "the tokio task running node `{node}` at step {step} (task {task}) {end}; \
         nothing of step {step} was applied and its finished tasks kept their writes: \
         fix the cause and resume the run"
    )]
    TaskLost {
        /// The node.
        node: String,
        /// The step.
        step: u64,
        /// The task.
        task: TaskId,
        /// How the tokio task ended.
        end: TaskEnd,
    },
    /// The background checkpoint writer of [`Durability::Async`](crate::Durability::Async)
    /// ended without finishing its writes.
    #[error(
        "the background checkpoint writer {end}; what it had not written yet is lost: \
         resume the run from its newest checkpoint"
    )]
    WriterLost {
        /// How the writer's task ended.
        end: TaskEnd,
    },
    /// A write of the run to its store failed earlier, so nothing more is written for it
    /// (a later write could leave the store out of order). The store holds the run up to its
    /// last written checkpoint.
    #[error(
        "run `{run}`: an earlier checkpoint write failed, so nothing more is written for it; \
         fix the store and resume the run from its newest checkpoint"
    )]
    WritesStopped {
        /// The run.
        run: String,
    },
    /// The run failed for good and its compensations ran
    /// ([`GraphBuilder::compensate`](crate::GraphBuilder::compensate)): the run's status is
    /// `Failed`, and resuming it runs nothing. Holds the error that failed the run: as text
    /// always, as itself (`cause`, the error's source) when the failure and the compensations
    /// happened in this invocation.
    #[error(
        "{error} (the run was compensated: {})",
        if compensated.is_empty() { "nothing to undo".to_owned() } else { format!("undid {}", compensated.join(", ")) }
    )]
    Compensated {
        /// The error that failed the run, as text.
        error: String,
        /// The nodes whose work was undone, in the order their compensations ran.
        compensated: Vec<String>,
        /// The error that failed the run, when this invocation saw it.
        #[source]
        cause: Option<Box<Error>>,
    },
    /// A compensation failed for good (after its retry policy's attempts) while the run
    /// compensated a failure ([`GraphBuilder::compensate`](crate::GraphBuilder::compensate)).
    /// The compensations that ran keep their writes; those after this one wait. Resuming the
    /// run tries this compensation again, then goes on with the others.
    #[error(
        "the compensation `{compensation}` of node `{node}` failed ({source}) while the run compensated: {error}"
    )]
    CompensationFailed {
        /// The error that failed the run, as text.
        error: String,
        /// The node whose work it was to undo.
        node: String,
        /// The compensation node.
        compensation: String,
        /// Why the compensation failed.
        #[source]
        source: Box<Error>,
    },
    /// JSON given to a graph driven by name ([`DynGraph`](crate::DynGraph)) is not what the
    /// graph takes (or a final state cannot be written as JSON).
    #[error("{what} is not valid: {message}")]
    Json {
        /// What the JSON was for: "the run's input (the graph's state)", ...
        what: String,
        /// The decoder's message, with the line and column.
        message: String,
    },
    /// The tokio task running a spawned run ([`Run::spawn`](crate::Run::spawn)) ended without
    /// a result: it panicked outside the code that catches a node's panics, or its runtime
    /// shut down. With a store, the run's finished steps are checkpointed.
    #[error("the tokio task running run `{run}` {end}; resume the run to go on")]
    RunLost {
        /// The run.
        run: String,
        /// How the tokio task ended.
        end: TaskEnd,
    },
    /// The run used a limit of its budget, its thread's or its tenant's
    /// ([`RunConfig::budget`](crate::RunConfig::budget)): it stopped before a step, or in one
    /// whose task a budget refused (the step's finished tasks keep their writes),
    /// checkpointed with status `budget_exceeded` (a start refused for the tenant's runs in
    /// flight wrote nothing). Resume it with a higher budget to go on; see
    /// [`BudgetExceeded`](crate::BudgetExceeded).
    #[error("{0}")]
    BudgetExceeded(Box<crate::run::budget::BudgetExceeded>),
    /// The run's stored state is of another version of the state type than this build's, and
    /// cannot be brought to it (see [`Migrations`](crate::Migrations)): the run is left as
    /// stored.
    #[error("run `{run}` cannot be read by this build: {error}")]
    Migration {
        /// The run.
        run: String,
        /// What is missing or failed.
        #[source]
        error: crate::define::migrate::MigrationError,
    },
    /// A router could not choose where its conditional edge goes ([`Route::fail`](crate::Route::fail)):
    /// an expression of a graph file that failed on the run's state, say.
    #[error("the router of the conditional edge from `{from}` failed: {message}")]
    RouteFailed {
        /// The source node.
        from: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Whether the run is busy: another process or task runs it now (it holds the run's
    /// lease), as when two invocations of one thread race. Try again later.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{Error, StoreError};
    /// let busy = Error::Store(StoreError::RunBusy { run: "chat-1".into() });
    /// assert!(busy.is_busy());
    /// assert!(!Error::NoStore.is_busy());
    /// ```
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Store(agentgraph_checkpoint::StoreError::RunBusy { .. })
        )
    }
}

/// How a tokio task ended without finishing its work: see [`Error::TaskLost`],
/// [`Error::WriterLost`] and [`Error::RunLost`].
///
/// # Examples
///
/// A spawned run whose runtime shuts down before it ends:
///
/// ```
/// # use std::time::Duration;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node("slow", |_, _| async {
///     tokio::time::sleep(Duration::from_secs(3600)).await;
///     Ok(CountUpdate::new().n(1))
/// })
/// .add_edge(START, "slow")
/// .add_edge("slow", END);
/// let graph = b.compile()?;
///
/// let runtime = tokio::runtime::Runtime::new()?;
/// let handle = {
///     let _inside = runtime.enter();
///     graph.run(Count::default()).spawn()
/// };
/// drop(runtime);
///
/// let result = tokio::runtime::Builder::new_current_thread().build()?.block_on(handle);
/// assert!(matches!(result, Err(Error::RunLost { end: TaskEnd::Cancelled, .. })));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskEnd {
    /// It panicked, with this message.
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// It was cancelled: aborted, or its runtime shut down.
    Cancelled,
}

impl fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskEnd::Panicked { message } => write!(f, "panicked: {message}"),
            TaskEnd::Cancelled => f.write_str("was cancelled (aborted, or its runtime shut down)"),
        }
    }
}

impl From<tokio::task::JoinError> for TaskEnd {
    fn from(e: tokio::task::JoinError) -> Self {
        match e.try_into_panic() {
            Ok(payload) => TaskEnd::Panicked {
                message: panic_message(payload),
            },
            Err(_) => TaskEnd::Cancelled,
        }
    }
}

/// The message of a panic's payload.
pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}
