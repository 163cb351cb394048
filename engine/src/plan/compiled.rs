//! [`CompiledGraph`]: the validated plan, ready to run any number of times.

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::define::state::State;
use crate::error::Result;
use crate::ids::Fingerprint;
use crate::observe::event::EventBus;
use crate::plan::Plan;
use crate::run::config::RunConfig;
use crate::run::context::RunShared;
use crate::run::handle::Run;
use crate::run::interrupt::Resume;
use crate::run::scheduler::Start;

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
    /// See [`Error`](crate::Error): a node failing or panicking, a write conflict, the recursion limit, an
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
    /// The run fails with [`Error::NoStore`](crate::Error::NoStore) without a store,
    /// [`Error::RunNotFound`](crate::Error::RunNotFound) for an unknown id,
    /// [`Error::GraphChanged`](crate::Error::GraphChanged) when this graph's fingerprint differs from the one that
    /// started the run (unless allowed), and [`Error::Store`](crate::Error::Store) with
    /// `StoreError::RunBusy` when the run is running.
    pub fn resume(&self, run_id: impl Into<String>, config: RunConfig) -> Run<S> {
        self.resume_with(run_id, Resume::new(), config)
    }

    /// [`resume`](CompiledGraph::resume) with answers to the run's interrupts and an edit of
    /// its state (see [`Resume`]). Both are stored before anything runs, so a crash of the
    /// resumed run does not lose them.
    ///
    /// A run stopped at interrupts ([`Error::Interrupted`](crate::Error::Interrupted)) goes on past its
    /// `interrupt_before` and `interrupt_after` gates; a node that called
    /// [`Context::interrupt`](crate::Context::interrupt) runs again, and gets the answer given
    /// for the interrupt's id (without one, it interrupts again), or the
    /// [`Resume::value`] when it is the one interrupt left. The interrupts a run waits
    /// on are listed by [`GraphHistory::interrupts`](crate::GraphHistory::interrupts).
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

    /// The next invocation of the thread `thread` (a run id) of `config`'s store: `input` is
    /// applied to the state the thread's last invocation left, through the reducers (an
    /// input of one message to an `append` field adds that message), and the graph runs from
    /// `START` again. A thread that does not exist yet starts from `S::default()`. Every
    /// invocation is checkpointed on the thread: its history lists them in order
    /// ([`CheckpointInfo::invocation`](crate::CheckpointInfo::invocation)), and time travel
    /// and forks work across them.
    ///
    /// Each invocation starts with fresh join bookkeeping and its own
    /// [`recursion_limit`](RunConfig::recursion_limit); its first checkpoint holds the input
    /// applied (the event [`ThreadInvoked`](crate::EventKind::ThreadInvoked) says which).
    ///
    /// The run fails with [`Error::NoStore`](crate::Error::NoStore) without a store;
    /// [`Error::ThreadNotReady`](crate::Error::ThreadNotReady) when the thread's last
    /// invocation did not end (it waits at interrupts, failed or was cancelled: resume it);
    /// a busy error ([`Error::is_busy`](crate::Error::is_busy)) while another process or task
    /// runs the thread; [`Error::GraphChanged`](crate::Error::GraphChanged) when the thread
    /// was run by another graph (unless allowed). None of them writes anything.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// struct Chat {
    ///     #[reducer(append)]
    ///     messages: Vec<String>,
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Chat>::new();
    /// b.add_node("reply", |chat: Arc<Chat>, _| async move {
    ///     let heard = chat.messages.last().cloned().unwrap_or_default();
    ///     Ok(ChatUpdate::new().messages(vec![format!("you said {heard}")]))
    /// })
    /// .add_edge(START, "reply")
    /// .add_edge("reply", END);
    /// let graph = b.compile()?;
    /// let store = agentgraph_checkpoint::MemoryStore::new();
    /// let config = || RunConfig::new().store(store.clone());
    ///
    /// graph.invoke_thread("chat-1", ChatUpdate::new().messages(vec!["hi".into()]), config()).await?;
    /// let chat = graph
    ///     .invoke_thread("chat-1", ChatUpdate::new().messages(vec!["bye".into()]), config())
    ///     .await?;
    /// assert_eq!(chat.messages, ["hi", "you said hi", "bye", "you said bye"]);
    /// # Ok(()) }
    /// ```
    pub fn invoke_thread(
        &self,
        thread: impl Into<String>,
        input: S::Update,
        config: RunConfig,
    ) -> Run<S>
    where
        S: Default,
    {
        self.invoke_thread_from(thread, input, S::default(), config)
    }

    /// [`invoke_thread`](CompiledGraph::invoke_thread), with `initial` as the state of a
    /// thread that does not exist yet (for a state without a `Default`, such as
    /// [`DynState`](crate::DynState)).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynSchema, DynState, GraphBuilder, JsonReducer, JsonType, RunConfig, START, END};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let schema = DynSchema::builder().field("n", JsonType::Integer, JsonReducer::Add).build()?;
    /// let mut b = GraphBuilder::<DynState>::with_schema(schema.clone());
    /// b.add_node("inc", |s: std::sync::Arc<DynState>, _| async move { Ok(s.update().set("n", 1)?) })
    ///     .add_edge(START, "inc")
    ///     .add_edge("inc", END);
    /// let graph = b.compile()?;
    /// let store = agentgraph_checkpoint::MemoryStore::new();
    /// let config = || RunConfig::new().store(store.clone());
    /// let input = || DynState::new(&schema).update().set("n", 10).unwrap();
    /// graph.invoke_thread_from("t", input(), DynState::new(&schema), config()).await?;
    /// let state = graph.invoke_thread_from("t", input(), DynState::new(&schema), config()).await?;
    /// assert_eq!(state.get("n"), Some(&serde_json::json!(22)));
    /// # Ok(()) }
    /// ```
    pub fn invoke_thread_from(
        &self,
        thread: impl Into<String>,
        input: S::Update,
        initial: S,
        config: RunConfig,
    ) -> Run<S> {
        let config = config.run_id(thread);
        self.run_with_start(Start::Invoke { input, initial }, config)
    }

    fn run_with_start(&self, start: Start<S>, config: RunConfig) -> Run<S> {
        let config = config.sealed();
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
            usage: Default::default(),
            cancelled_by: Default::default(),
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
        store: impl agentgraph_checkpoint::IntoStore,
    ) -> crate::inspect::history::GraphHistory<S> {
        crate::inspect::history::GraphHistory::new(self.clone(), store.into_store())
    }

    /// The graph's fingerprint: a stable hash of its nodes, edges and state reducers.
    pub fn fingerprint(&self) -> Fingerprint {
        self.plan.fingerprint
    }

    /// What describes the graph's state: `()` for a derived state, the
    /// [`DynSchema`](crate::DynSchema) of a [`DynState`](crate::DynState).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynSchema, DynState, GraphBuilder, JsonReducer, JsonType, START, END};
    /// let schema = DynSchema::builder().field("n", JsonType::Integer, JsonReducer::Add).build()?;
    /// let mut b = GraphBuilder::<DynState>::with_schema(schema);
    /// b.add_node("noop", |s: std::sync::Arc<DynState>, _| async move { Ok(s.update()) })
    ///     .add_edge(START, "noop")
    ///     .add_edge("noop", END);
    /// let graph = b.compile()?;
    /// assert_eq!(graph.schema().index_of("n"), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schema(&self) -> &S::Schema {
        &self.plan.schema
    }

    /// How states stored by older versions of the state type are upgraded.
    pub(crate) fn migrations(&self) -> &crate::define::migrate::Migrations<S> {
        &self.plan.migrations
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
    pub fn describe(&self) -> crate::plan::describe::GraphDescription {
        self.plan.describe()
    }
}

impl<S: State> CompiledGraph<S> {
    /// The value attached to the graph when it was built
    /// ([`GraphBuilder::attach`](crate::GraphBuilder::attach)), if it is a `T`.
    ///
    /// # Examples
    ///
    /// See [`GraphBuilder::attach`](crate::GraphBuilder::attach).
    pub fn attachment<T: std::any::Any>(&self) -> Option<&T> {
        self.plan.attachment.as_deref()?.downcast_ref::<T>()
    }
}
