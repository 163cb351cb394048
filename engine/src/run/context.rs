//! [`Context`]: what a running node knows about its task, and how it talks to the run.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use agentgraph_checkpoint::items::ItemWrite;

use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::CancellationToken;

use crate::define::route::Packet;
use crate::error::BoxError;
use crate::ids::TaskId;
use crate::observe::event::{EventBus, EventKind};
use crate::run::interrupt::{Interrupt, InterruptKind, InterruptSignal};

/// What one run shares with its tasks.
#[derive(Debug)]
pub(crate) struct RunShared {
    pub(crate) run_id: Arc<str>,
    pub(crate) events: EventBus,
    /// Cancels the run (through its handle).
    pub(crate) cancel: CancellationToken,
    /// The run's settings (its subgraphs' runs inherit most of them).
    pub(crate) config: crate::run::config::RunConfig,
    /// The tokens, cost and tool calls its nodes reported (for budgets).
    pub(crate) usage: crate::run::budget::Counters,
    /// Who cancelled the run, when its cancel handle was given a name
    /// ([`CancelHandle::cancel_as`](crate::CancelHandle::cancel_as)): the first one named.
    pub(crate) cancelled_by: Arc<std::sync::OnceLock<Arc<str>>>,
}

impl RunShared {
    /// Adds what a node reported to the run's counters, its tenant's and its parent run's
    /// (a subgraph's child run reports to its parent).
    pub(crate) fn add_usage(&self, tokens: u64, cost_nanos: u64, tool_calls: u64) {
        self.usage.add(tokens, cost_nanos, tool_calls);
        if let Some(tenant) = &self.config.tenant_budget {
            tenant.add(tokens, cost_nanos, tool_calls);
        }
        if let Some(parent) = &self.config.usage_parent {
            parent.add_usage(tokens, cost_nanos, tool_calls);
        }
    }
}

/// A node's view of its task: run, step, node, task id (its idempotency key), packet input,
/// and a way to emit events of its own. Cheap to clone.
///
/// # Examples
///
/// ```no_run
/// # use agentgraph_engine::{BoxError, Context};
/// async fn fetch(ctx: &Context) -> Result<(), BoxError> {
///     ctx.emit("progress", &serde_json::json!({ "done": 1, "of": 3 }));
///     let key = ctx.idempotency_key(); // the same if the task runs again after a crash
///     let page: String = ctx.input()?; // the packet's input, for a dynamic task
///     # let _ = (key, page);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<TaskCx>,
}

struct TaskCx {
    run: Arc<RunShared>,
    step: u64,
    node: Arc<str>,
    task: TaskId,
    attempt: u32,
    input: Option<Arc<[u8]>>,
    cancel: CancellationToken,
    /// Answers to this task's interrupts (and its subgraph's), by interrupt id (JSON).
    answers: Option<Arc<[(String, String)]>>,
    /// The index of the next `interrupt` call.
    next_interrupt: AtomicU32,
    /// The memory writes of this attempt, buffered until it finishes (empty: no allocation).
    memory: Mutex<Vec<ItemWrite>>,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        run: Arc<RunShared>,
        step: u64,
        node: Arc<str>,
        task: TaskId,
        attempt: u32,
        input: Option<Arc<[u8]>>,
        cancel: CancellationToken,
        answers: Option<Arc<[(String, String)]>>,
    ) -> Self {
        Context {
            inner: Arc::new(TaskCx {
                run,
                step,
                node,
                task,
                attempt,
                input,
                cancel,
                answers,
                next_interrupt: AtomicU32::new(0),
                memory: Mutex::new(Vec::new()),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<RunShared> {
        &self.inner.run
    }

    /// The answers given to this task's interrupts (and its subgraph's), by interrupt id.
    pub(crate) fn answers(&self) -> &[(String, String)] {
        self.inner.answers.as_deref().unwrap_or_default()
    }

    /// Runs `f` on this attempt's buffered memory writes.
    pub(crate) fn with_memory<R>(&self, f: impl FnOnce(&mut Vec<ItemWrite>) -> R) -> R {
        f(&mut self
            .inner
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes this attempt's buffered memory writes (when it finished).
    pub(crate) fn take_memory(&self) -> Vec<ItemWrite> {
        self.with_memory(std::mem::take)
    }

    /// Long-term memory, shared across runs and threads of the run's store: see [`Memory`](crate::Memory).
    /// Its writes are committed with this task's step, exactly once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::*;
    /// use agentgraph_checkpoint::items::Namespace;
    /// async fn note(ctx: &Context) -> Result<(), BoxError> {
    ///     ctx.memory().put(Namespace::new(["notes"]), ctx.idempotency_key(), "seen")?;
    ///     Ok(())
    /// }
    /// ```
    pub fn memory(&self) -> crate::run::memory::Memory {
        crate::run::memory::Memory::new(self.clone())
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.inner.run.run_id
    }

    /// The step this task runs in, from 1.
    pub fn step(&self) -> u64 {
        self.inner.step
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The task's deterministic id.
    pub fn task_id(&self) -> TaskId {
        self.inner.task
    }

    /// A key that stays the same when this task runs again (a retry, or a resume after a
    /// crash): pass it to external services to make side effects idempotent.
    pub fn idempotency_key(&self) -> String {
        self.inner.task.to_string()
    }

    /// The attempt, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The run's seed, for nodes that draw random numbers deterministically.
    pub fn seed(&self) -> u64 {
        self.inner.run.config.seed
    }

    /// Whether the task was made from a [`Packet`] and so has an input.
    pub fn has_input(&self) -> bool {
        self.inner.input.is_some()
    }

    /// The encoded input of the [`Packet`] this task was made from, or `None` when the task
    /// was triggered by an edge. For middleware that keys on the input without knowing its
    /// type (a cache); a node reads its input with [`input`](Context::input).
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Sizes { #[reducer(append)] sizes: Vec<usize> }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Sizes>::new();
    /// b.add_node("measure", |_, ctx: Context| async move {
    ///     let size = ctx.input_bytes().map_or(0, <[u8]>::len);
    ///     Ok(SizesUpdate::new().sizes(vec![size]))
    /// })
    /// .add_conditional_edges(START, ["measure"], |_: &Sizes| Packet::new("measure", "abc"))
    /// .add_edge("measure", END);
    /// let done = b.compile()?.invoke(Sizes::default()).await?;
    /// assert!(done.sizes[0] > 0);
    /// # Ok(()) }
    /// ```
    pub fn input_bytes(&self) -> Option<&[u8]> {
        self.inner.input.as_deref()
    }

    /// Decodes the input of the [`Packet`] this task was made from.
    ///
    /// # Errors
    ///
    /// [`InputError::Missing`] when the task was not made from a packet, and
    /// [`InputError::Decode`] when the input is not a `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, InputError> {
        let bytes = self
            .inner
            .input
            .as_deref()
            .ok_or_else(|| InputError::Missing {
                node: self.node().to_owned(),
            })?;
        Packet::decode(bytes).map_err(|e| InputError::Decode {
            node: self.node().to_owned(),
            expected: std::any::type_name::<T>(),
            message: e.to_string(),
        })
    }

    /// Whether this attempt has been cancelled: it timed out, its step or run timed out, its
    /// run was cancelled, or a sibling failed under
    /// [`FailurePolicy::CancelSiblings`](crate::FailurePolicy::CancelSiblings). Its result
    /// will be discarded. A long CPU-bound node should check it now and then and return early;
    /// an async node is simply dropped.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when this attempt is cancelled (see [`is_cancelled`](Context::is_cancelled)):
    /// for nodes that hand work to threads of their own or must clean up.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// Asks a person (or any outside party) for a value: the run stops at this interrupt with
    /// `payload` (as JSON), and when it is resumed with an answer for the interrupt's id, the
    /// node runs again and this call returns the answer.
    ///
    /// Return the error with `?`: it is an [`InterruptSignal`] the engine recognises. A node may
    /// call `interrupt` several times; the calls are told apart by their order, so keep it
    /// deterministic. Work done before the call is done again when the node runs again:
    /// interrupt first, or make that work idempotent.
    ///
    /// # Errors
    ///
    /// An [`InterruptSignal`] when there is no answer yet; an error when the answer does not
    /// decode as an `R` or `payload` cannot be represented as JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Draft { text: String, approved: bool }
    /// async fn review(state: Arc<Draft>, ctx: Context) -> Result<DraftUpdate, BoxError> {
    ///     let approved: bool = ctx.interrupt(&serde_json::json!({ "approve?": state.text }))?;
    ///     Ok(DraftUpdate::new().approved(approved))
    /// }
    /// ```
    pub fn interrupt<T, R>(&self, payload: &T) -> Result<R, BoxError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let index = self.inner.next_interrupt.fetch_add(1, Ordering::Relaxed);
        let id = Interrupt::id_for(self.inner.task, InterruptKind::Node, index);
        if let Some((_, answer)) = self.answers().iter().find(|(i, _)| *i == id) {
            return serde_json::from_str(answer).map_err(|e| {
                format!(
                    "the answer to interrupt #{index} of node `{}` is not a `{}`: {e}",
                    self.node(),
                    std::any::type_name::<R>()
                )
                .into()
            });
        }
        let payload = serde_json::to_value(payload)?;
        Err(Box::new(InterruptSignal { index, payload }))
    }

    /// Publishes an event of the node's own (progress, tokens, ...) to the run's subscribers.
    ///
    /// A payload that cannot be represented as JSON is published as a string describing the
    /// error. Costs nothing when no one subscribes.
    pub fn emit<T: Serialize + ?Sized>(&self, name: impl Into<Cow<'static, str>>, payload: &T) {
        let cx = &self.inner;
        cx.run.events.emit(|| EventKind::Custom {
            step: cx.step,
            node: cx.node.clone(),
            task: cx.task,
            name: name.into(),
            payload: serde_json::to_value(payload).unwrap_or_else(|e| {
                serde_json::Value::String(format!("unserializable payload: {e}"))
            }),
        });
    }

    /// Publishes a piece of text the node streams (a model's answer, token by token) as an
    /// [`EventKind::Token`] of the run: `index` is the piece's place in the text of this
    /// attempt, from 0 (a retried task streams again from 0; the event carries the attempt).
    ///
    /// Subscribers get each piece as it comes; a run that stores its events stores them
    /// coalesced (see [`EventKind::Token`]). Costs nothing when no one subscribes and the run
    /// stores no events.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # use futures_util::StreamExt;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Answer { text: String }
    /// async fn speak(_: Arc<Answer>, ctx: Context) -> Result<AnswerUpdate, BoxError> {
    ///     let mut text = String::new();
    ///     for (i, piece) in ["Hel", "lo"].into_iter().enumerate() {
    ///         ctx.emit_token(i as u64, piece);
    ///         text.push_str(piece);
    ///     }
    ///     Ok(AnswerUpdate::new().text(text))
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Answer>::new();
    /// b.add_node("speak", speak).add_edge(START, "speak").add_edge("speak", END);
    /// let run = b.compile()?.run(Answer::default());
    /// let events = run.events();
    /// run.await?;
    /// let pieces: Vec<String> = events
    ///     .filter_map(|e| async move {
    ///         match e.ok()?.kind {
    ///             EventKind::Token { text, .. } => Some(text),
    ///             _ => None,
    ///         }
    ///     })
    ///     .collect()
    ///     .await;
    /// assert_eq!(pieces, ["Hel", "lo"]);
    /// # Ok(()) }
    /// ```
    pub fn emit_token(&self, index: u64, text: &str) {
        let cx = &self.inner;
        cx.run.events.emit(|| EventKind::Token {
            step: cx.step,
            node: cx.node.clone(),
            task: cx.task,
            attempt: self.attempt(),
            index,
            count: 1,
            text: text.to_owned(),
        });
    }

    /// Reports a model call's tokens to the run: `input` prompt and `output` completion tokens
    /// of `model`, priced by the run's [`PriceTable`](crate::PriceTable)
    /// ([`RunConfig::prices`](crate::RunConfig::prices)). They count against the run's, its
    /// thread's and its tenant's budgets ([`RunConfig::budget`](crate::RunConfig::budget)),
    /// are stored with the run's checkpoints, and, in a subgraph, count for the parent run
    /// too. The node library's model nodes and agent report every call that returns a usage.
    /// A few atomic additions: cheap enough for every call.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("ask", |_, ctx: Context| async move {
    ///     ctx.record_model_usage("gpt-4o-mini", 900, 100);
    ///     Ok(CountUpdate::new().n(1))
    /// })
    /// .add_edge(START, "ask")
    /// .add_conditional_edges("ask", ["ask", END], |c: &Count| if c.n < 3 { "ask" } else { END });
    /// let config = RunConfig::new().budget(Budget::new().max_tokens(1_500));
    /// let Err(Error::BudgetExceeded(stop)) = b.compile()?.run_with(Count::default(), config).await else {
    ///     panic!("over budget");
    /// };
    /// assert_eq!((stop.used, stop.step), (2_000, 3));
    /// # Ok(()) }
    /// ```
    pub fn record_model_usage(&self, model: &str, input: u64, output: u64) {
        let run = &self.inner.run;
        let cost = run
            .config
            .prices
            .as_ref()
            .map_or(0, |p| p.cost_nanos(model, input, output));
        run.add_usage(input.saturating_add(output), cost, 0);
    }

    /// Reports `calls` tool calls to the run: they count against its, its thread's and its
    /// tenant's budgets of tool calls (see
    /// [`record_model_usage`](Context::record_model_usage)). The node library's agent reports
    /// each tool it runs.
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::*;
    /// async fn search(ctx: &Context) -> Result<(), BoxError> {
    ///     ctx.record_tool_calls(1);
    ///     Ok(())
    /// }
    /// ```
    pub fn record_tool_calls(&self, calls: u64) {
        self.inner.run.add_usage(0, 0, calls);
    }

    /// Takes `calls` tool calls from the run's budget before they are made: from the run's,
    /// its thread's and its tenant's budgets of tool calls at once (in a subgraph, its parent
    /// run's too), or from none of them when one would go past its limit. Call it instead of
    /// [`record_tool_calls`](Context::record_tool_calls), before running the tools; the node
    /// library's agent charges each tool call so.
    ///
    /// Return the error from the node as it is (the `?` operator does; wrapped as the
    /// `source` of another error, it is found too): the task is refused. Its step ends as at
    /// an interrupt: the step's other tasks finish and keep their writes, the refused task's
    /// update is not applied, and the run stops with
    /// [`Error::BudgetExceeded`](crate::Error::BudgetExceeded) (status `budget_exceeded`, a
    /// `BudgetExceeded` event) at this step. Resumed with a higher budget, the run runs the
    /// refused tasks again, not the finished ones.
    ///
    /// Without a limit on tool calls this is [`record_tool_calls`](Context::record_tool_calls):
    /// a few atomic additions; with one, an atomic compare-and-swap per scope.
    ///
    /// # Errors
    ///
    /// [`BudgetExceeded`](crate::BudgetExceeded) when the calls would take the run, its thread
    /// or its tenant past its limit on tool calls: its `used` is what was used before them
    /// (nothing is taken).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Calls { #[reducer(add)] made: u64 }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Calls>::new();
    /// b.add_node("search", |_, ctx: Context| async move {
    ///     ctx.charge_tool_calls(3)?; // before the three calls
    ///     Ok(CallsUpdate::new().made(3))
    /// })
    /// .add_edge(START, "search")
    /// .add_edge("search", END);
    /// let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = |calls| RunConfig::new().store(store.clone()).run_id("s")
    ///     .budget(Budget::new().max_tool_calls(calls));
    /// let Err(Error::BudgetExceeded(stop)) = graph.run_with(Calls::default(), config(2)).await else {
    ///     panic!("3 calls do not fit in 2");
    /// };
    /// assert_eq!((stop.budget, stop.limit, stop.used, stop.step), (BudgetKind::ToolCalls, 2, 0, 1));
    /// let done = graph.resume("s", config(3)).await?;
    /// assert_eq!(done.made, 3);
    /// # Ok(()) }
    /// ```
    pub fn charge_tool_calls(&self, calls: u64) -> Result<(), crate::BudgetExceeded> {
        let run = &self.inner.run;
        run.charge_tool_calls(calls)
            .map_err(|refused| refused.exceeded(&run.run_id, self.inner.step))
    }

    /// Checks, before a call whose use is only known after it (a model call: its tokens and
    /// their cost), that the run, its thread and its tenant (in a subgraph, its parent run)
    /// have not used their limit on `kind` already. Of the kinds, tokens, cost and tool calls
    /// are checked here; steps, wall time and runs in flight are the scheduler's, checked
    /// before each step, and always pass. The node library's model nodes and agent check
    /// tokens and cost before each model call.
    ///
    /// A call that passes may still take the run past its limit (by what it uses); the next
    /// check, or the check before the next step, stops it. Return the error as
    /// [`charge_tool_calls`](Context::charge_tool_calls) says: the task is refused and runs
    /// again on a resume with a higher budget. A few atomic loads; nothing without a limit.
    ///
    /// # Errors
    ///
    /// [`BudgetExceeded`](crate::BudgetExceeded) naming the first limit reached (the run's,
    /// then the thread's, then the tenant's).
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_engine::*;
    /// async fn ask(ctx: &Context) -> Result<(), BoxError> {
    ///     ctx.check_budget(BudgetKind::Tokens)?;
    ///     ctx.check_budget(BudgetKind::Cost)?;
    ///     // ... call the model, then:
    ///     ctx.record_model_usage("gpt-4o-mini", 1_200, 300);
    ///     Ok(())
    /// }
    /// ```
    pub fn check_budget(&self, kind: crate::BudgetKind) -> Result<(), crate::BudgetExceeded> {
        let run = &self.inner.run;
        match run.reached(kind) {
            Some(refused) => Err(refused.exceeded(&run.run_id, self.inner.step)),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("run_id", &self.run_id())
            .field("step", &self.step())
            .field("node", &self.node())
            .field("task", &self.task_id())
            .field("attempt", &self.attempt())
            .finish()
    }
}

/// Why [`Context::input`] found no input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The task was triggered by an edge, not made from a packet.
    #[error("node `{node}` has no packet input: it was triggered by an edge, not sent a Packet")]
    Missing {
        /// The node.
        node: String,
    },
    /// The packet's input is not of the type asked for.
    #[error("the packet input of node `{node}` is not a `{expected}`: {message}")]
    Decode {
        /// The node.
        node: String,
        /// The type asked for.
        expected: &'static str,
        /// The decoder's message.
        message: String,
    },
}
