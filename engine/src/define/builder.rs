//! [`GraphBuilder`]: collects nodes and edges, checking each addition as it is made.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::define::join::JoinPolicy;
use crate::define::node::{Node, NodeFn, NodeKind, async_node, cpu_node};
use crate::define::retry::RetryPolicy;
use crate::define::route::{END, IntoCommand, Route, START};
use crate::define::state::State;
use crate::define::subgraph::SubgraphNode;
use crate::error::{BoxError, EdgeName, GraphError};
use crate::ids::NodeId;
use crate::plan::Plan;
use crate::plan::compiled::CompiledGraph;
use crate::plan::{Declared, RouterFn, Target};
use crate::run::context::Context;

pub(crate) struct NodeDef<S: State> {
    pub(crate) name: Arc<str>,
    pub(crate) func: NodeFn<S>,
    pub(crate) settings: NodeSettings,
}

/// A node's retry policy, timeout and interrupts.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeSettings {
    pub(crate) retry: Option<Arc<RetryPolicy>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) interrupt_before: bool,
    pub(crate) interrupt_after: bool,
    /// The node waits, once triggered, until no other task is left (`GraphBuilder::defer`).
    pub(crate) deferred: bool,
    /// The node its final failure routes to (`GraphBuilder::on_error`).
    pub(crate) on_error: Option<NodeId>,
    /// The node that undoes its work when the run fails (`GraphBuilder::compensate`).
    pub(crate) compensation: Option<NodeId>,
}

/// An edge as declared. `from` is `None` for `START`.
pub(crate) enum EdgeDef<S: State> {
    Static {
        from: Option<NodeId>,
        to: Target,
    },
    Conditional {
        from: Option<NodeId>,
        targets: Declared,
        router: RouterFn<S>,
    },
    Weighted {
        from: Option<NodeId>,
        targets: Vec<(Target, f64)>,
    },
}

pub(crate) struct JoinDef {
    pub(crate) preds: Vec<NodeId>,
    pub(crate) target: NodeId,
    pub(crate) policy: JoinPolicy,
}

/// Builds a graph of nodes over the state `S`, then [`compile`](GraphBuilder::compile)s it
/// into an immutable, validated [`CompiledGraph`].
///
/// Every `add_*` method checks its addition at once (duplicate or reserved node name, unknown
/// endpoint, invalid weight). The `try_add_*` twins return that error immediately; the
/// `add_*` methods keep the first one and `compile` returns it, so a graph can be written as
/// one chain of calls. Nodes must be added before the edges that name them.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::{BoxError, Context, GraphBuilder, START, END};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
///
/// async fn bump(_: Arc<Count>, _: Context) -> Result<CountUpdate, BoxError> {
///     Ok(CountUpdate::new().n(1))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut graph = GraphBuilder::<Count>::new();
/// graph
///     .add_node("a", bump)
///     .add_node("b", bump)
///     .add_edge(START, "a")
///     .add_edge("a", "b")
///     .add_edge("b", END);
/// let graph = graph.compile()?;
/// assert_eq!(graph.invoke(Count::default()).await?.n, 2);
/// # Ok(()) }
/// ```
pub struct GraphBuilder<S: State> {
    pub(crate) nodes: Vec<NodeDef<S>>,
    pub(crate) index: HashMap<Arc<str>, NodeId>,
    pub(crate) edges: Vec<EdgeDef<S>>,
    pub(crate) joins: Vec<JoinDef>,
    pub(crate) gotos: Vec<(NodeId, Declared)>,
    pub(crate) default_retry: Option<Arc<RetryPolicy>>,
    pub(crate) default_timeout: Option<Duration>,
    /// The graph's name, stored on the records of its runs.
    pub(crate) name: Option<Arc<str>>,
    /// What describes the state's fields (`()` for a derived state).
    pub(crate) schema: S::Schema,
    /// What else the fingerprint covers (the digest of a graph's file, say).
    pub(crate) source: Option<Arc<str>>,
    first_error: Option<GraphError>,
    /// How states stored by older versions of the state type are upgraded.
    pub(crate) migrations: crate::define::migrate::Migrations<S>,
    /// A value the compiled graph carries for its maker (`attach`).
    pub(crate) attachment: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl<S: State> Default for GraphBuilder<S>
where
    S::Schema: Default,
{
    fn default() -> Self {
        GraphBuilder::with_schema(S::Schema::default())
    }
}

impl<S: State> GraphBuilder<S> {
    /// An empty graph over a state whose fields are described by `schema` (a state known
    /// only when the program runs, such as [`DynState`](crate::DynState); a derived state's
    /// schema is `()`, and [`new`](GraphBuilder::new) is shorter).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynSchema, DynState, GraphBuilder, JsonReducer, JsonType, START, END};
    /// let schema = DynSchema::builder().field("n", JsonType::Integer, JsonReducer::Add).build()?;
    /// let mut b = GraphBuilder::<DynState>::with_schema(schema.clone());
    /// b.add_node("inc", |s: std::sync::Arc<DynState>, _| async move {
    ///     Ok(s.update().set("n", 1)?)
    /// })
    /// .add_edge(START, "inc")
    /// .add_edge("inc", END);
    /// let graph = b.compile()?;
    /// assert_eq!(graph.describe().fields[0].name, "n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_schema(schema: S::Schema) -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            index: HashMap::new(),
            edges: Vec::new(),
            joins: Vec::new(),
            gotos: Vec::new(),
            default_retry: None,
            default_timeout: None,
            name: None,
            schema,
            source: None,
            first_error: None,
            migrations: crate::define::migrate::Migrations::new(),
            attachment: None,
        }
    }
}

impl<S: State> fmt::Debug for GraphBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &*n.name).collect::<Vec<_>>(),
            )
            .field("edges", &self.edges.len())
            .field("joins", &self.joins.len())
            .field("name", &self.name)
            .field("first_error", &self.first_error)
            .finish()
    }
}

impl<S: State> GraphBuilder<S>
where
    S::Schema: Default,
{
    /// An empty graph.
    pub fn new() -> Self {
        GraphBuilder::default()
    }
}

impl<S: State> GraphBuilder<S> {
    /// Makes `source` part of the graph's [fingerprint](CompiledGraph::fingerprint): the
    /// digest of the file a graph was declared in, say, so that a run started from one
    /// version of the file does not resume on another (unless allowed). A graph without one
    /// keeps the fingerprint it had.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_engine::{BoxError, Context, GraphBuilder, START, END};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// async fn bump(_: Arc<Count>, _: Context) -> Result<CountUpdate, BoxError> {
    ///     Ok(CountUpdate::new().n(1))
    /// }
    /// let build = |source: Option<&str>| {
    ///     let mut g = GraphBuilder::<Count>::new();
    ///     g.add_node("a", bump).add_edge(START, "a").add_edge("a", END);
    ///     if let Some(s) = source {
    ///         g.source_digest(s);
    ///     }
    ///     g.compile().unwrap().fingerprint()
    /// };
    /// assert_ne!(build(None), build(Some("sha256:1")));
    /// assert_ne!(build(Some("sha256:1")), build(Some("sha256:2")));
    /// ```
    pub fn source_digest(&mut self, source: impl Into<String>) -> &mut Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// Names the graph. The name is stored on the record of every run of the compiled graph
    /// (`RunRecord::graph`), so that a tool, or a worker that holds graphs by name, knows
    /// which graph a stored run belongs to. It is not part of the
    /// [fingerprint](CompiledGraph::fingerprint): renaming a graph does not stop its runs
    /// from resuming.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_engine::{BoxError, Context, GraphBuilder, START, END};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// async fn bump(_: Arc<Count>, _: Context) -> Result<CountUpdate, BoxError> {
    ///     Ok(CountUpdate::new().n(1))
    /// }
    /// let mut graph = GraphBuilder::<Count>::new();
    /// graph.named("counter").add_node("a", bump).add_edge(START, "a").add_edge("a", END);
    /// let graph = graph.compile().unwrap();
    /// assert_eq!(graph.name(), Some("counter"));
    /// ```
    pub fn named(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// Adds an async node: `async fn(Arc<S>, Context) -> Result<impl IntoCommand<S>, BoxError>`.
    ///
    /// The node reads the snapshot of the state taken at the end of the previous step and
    /// returns an update (or a [`Command`](crate::Command) with a go-to).
    pub fn add_node<F, Fut, O>(&mut self, name: impl Into<String>, node: F) -> &mut Self
    where
        F: Fn(Arc<S>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
        O: IntoCommand<S> + 'static,
    {
        let r = self.try_add_node(name, node).map(drop);
        self.keep(r)
    }

    /// [`add_node`](GraphBuilder::add_node), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::DuplicateNode`] or [`GraphError::ReservedName`].
    pub fn try_add_node<F, Fut, O>(
        &mut self,
        name: impl Into<String>,
        node: F,
    ) -> Result<&mut Self, GraphError>
    where
        F: Fn(Arc<S>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
        O: IntoCommand<S> + 'static,
    {
        self.insert_node(name.into(), NodeFn::new(async_node(node), NodeKind::Async))
    }

    /// Adds a CPU-bound node: a closure that runs on the rayon pool, so that it never blocks
    /// the async runtime, and in parallel with the other tasks of its step.
    pub fn add_cpu_node<F, O>(&mut self, name: impl Into<String>, node: F) -> &mut Self
    where
        F: Fn(&S, &Context) -> Result<O, BoxError> + Send + Sync + 'static,
        O: IntoCommand<S> + 'static,
    {
        let r = self.try_add_cpu_node(name, node).map(drop);
        self.keep(r)
    }

    /// [`add_cpu_node`](GraphBuilder::add_cpu_node), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::DuplicateNode`] or [`GraphError::ReservedName`].
    pub fn try_add_cpu_node<F, O>(
        &mut self,
        name: impl Into<String>,
        node: F,
    ) -> Result<&mut Self, GraphError>
    where
        F: Fn(&S, &Context) -> Result<O, BoxError> + Send + Sync + 'static,
        O: IntoCommand<S> + 'static,
    {
        self.insert_node(name.into(), NodeFn::new(cpu_node(node), NodeKind::Cpu))
    }

    /// Adds a node given as a [`Node`] value: a node wrapped in layers by
    /// [`NodeBuilder`](crate::NodeBuilder), or a type of your own.
    pub fn add_node_with(&mut self, name: impl Into<String>, node: impl Node<S>) -> &mut Self {
        let r = self.try_add_node_with(name, node).map(drop);
        self.keep(r)
    }

    /// [`add_node_with`](GraphBuilder::add_node_with), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::DuplicateNode`] or [`GraphError::ReservedName`].
    pub fn try_add_node_with(
        &mut self,
        name: impl Into<String>,
        node: impl Node<S>,
    ) -> Result<&mut Self, GraphError> {
        self.insert_node(name.into(), NodeFn::new(node, NodeKind::Custom))
    }

    /// Adds a subgraph: `graph` runs as this node, on a state of its own. `input` makes the
    /// child's state from the parent's snapshot; `output` turns the child's final state into an
    /// update of the parent's.
    ///
    /// With a checkpoint store, the child run is stored under the parent's, as
    /// `{parent run}/@{node}/{task id}` (`/@` is reserved for these runs: a run id that contains
    /// it is refused with [`Error::ReservedRunId`](crate::Error::ReservedRunId)), with the
    /// parent's durability: a parent resumed after a crash resumes the child where it stopped
    /// (a finished child does not run again).
    /// Interrupts inside the child stop the parent; their [`Interrupt::path`](crate::Interrupt)
    /// names this node, and answers given to the parent's resume reach them. The child's
    /// events reach the parent's subscribers as
    /// [`EventKind::Subgraph`](crate::EventKind::Subgraph). The parent's fingerprint includes
    /// the child's.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// struct Research { question: String, #[reducer(append)] notes: Vec<String> }
    ///
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// struct Search { query: String, hits: Vec<String> }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = GraphBuilder::<Search>::new();
    /// child
    ///     .add_node("search", |s: Arc<Search>, _| async move {
    ///         Ok(SearchUpdate::new().hits(vec![format!("a page about {}", s.query)]))
    ///     })
    ///     .add_edge(START, "search")
    ///     .add_edge("search", END);
    ///
    /// let mut parent = GraphBuilder::<Research>::new();
    /// parent
    ///     .add_subgraph(
    ///         "search",
    ///         child.compile()?,
    ///         |r: &Research| Search { query: r.question.clone(), ..Search::default() },
    ///         |s: Search| ResearchUpdate::new().notes(s.hits),
    ///     )
    ///     .add_edge(START, "search")
    ///     .add_edge("search", END);
    /// let input = Research { question: "rust".into(), ..Research::default() };
    /// let done = parent.compile()?.invoke(input).await?;
    /// assert_eq!(done.notes, ["a page about rust"]);
    /// # Ok(()) }
    /// ```
    pub fn add_subgraph<C: State>(
        &mut self,
        name: impl Into<String>,
        graph: CompiledGraph<C>,
        input: impl Fn(&S) -> C + Send + Sync + 'static,
        output: impl Fn(C) -> S::Update + Send + Sync + 'static,
    ) -> &mut Self {
        let r = self.try_add_subgraph(name, graph, input, output).map(drop);
        self.keep(r)
    }

    /// [`add_subgraph`](GraphBuilder::add_subgraph), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::DuplicateNode`] or [`GraphError::ReservedName`].
    pub fn try_add_subgraph<C: State>(
        &mut self,
        name: impl Into<String>,
        graph: CompiledGraph<C>,
        input: impl Fn(&S) -> C + Send + Sync + 'static,
        output: impl Fn(C) -> S::Update + Send + Sync + 'static,
    ) -> Result<&mut Self, GraphError> {
        let kind = NodeKind::Subgraph(graph.fingerprint().as_u128());
        let node = SubgraphNode {
            graph,
            input: Arc::new(input),
            output: Arc::new(output),
        };
        self.insert_node(name.into(), NodeFn::new(node, kind))
    }

    /// Adds a static edge `from -> to`. `from` may be [`START`]; `to` may be [`END`].
    pub fn add_edge(&mut self, from: &str, to: &str) -> &mut Self {
        let r = self.try_add_edge(from, to).map(drop);
        self.keep(r)
    }

    /// [`add_edge`](GraphBuilder::add_edge), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::UnknownNode`] or [`GraphError::InvalidEndpoint`].
    pub fn try_add_edge(&mut self, from: &str, to: &str) -> Result<&mut Self, GraphError> {
        let src = self.source(from, to)?;
        let dst = self.target(from, to)?;
        self.edges.push(EdgeDef::Static { from: src, to: dst });
        Ok(self)
    }

    /// Fans out: static edges from `from` to each of `targets`, which then run in the same step.
    pub fn add_edges<'a>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        let r = self.try_add_edges(from, targets).map(drop);
        self.keep(r)
    }

    /// [`add_edges`](GraphBuilder::add_edges), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::UnknownNode`] or [`GraphError::InvalidEndpoint`]; no edge is added then.
    pub fn try_add_edges<'a>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = &'a str>,
    ) -> Result<&mut Self, GraphError> {
        let src = self.source(from, "")?;
        let mut resolved = Vec::new();
        for to in targets {
            resolved.push(self.target(from, to)?);
        }
        self.edges.extend(
            resolved
                .into_iter()
                .map(|to| EdgeDef::Static { from: src, to }),
        );
        Ok(self)
    }

    /// Adds a conditional edge: after `from`'s step, `router` reads the merged state and
    /// returns one or more of the declared `targets` (or [`END`]), or packets for them.
    ///
    /// A route to a target that is not declared fails the run with
    /// [`Error::UndeclaredTarget`](crate::Error::UndeclaredTarget).
    pub fn add_conditional_edges<'a, R, T>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = &'a str>,
        router: R,
    ) -> &mut Self
    where
        R: Fn(&S) -> T + Send + Sync + 'static,
        T: Into<Route>,
    {
        let r = self
            .try_add_conditional_edges(from, targets, router)
            .map(drop);
        self.keep(r)
    }

    /// [`add_conditional_edges`](GraphBuilder::add_conditional_edges), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::UnknownNode`], [`GraphError::InvalidEndpoint`] or
    /// [`GraphError::NoTargets`].
    pub fn try_add_conditional_edges<'a, R, T>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = &'a str>,
        router: R,
    ) -> Result<&mut Self, GraphError>
    where
        R: Fn(&S) -> T + Send + Sync + 'static,
        T: Into<Route>,
    {
        let src = self.source(from, "")?;
        let targets = self.declared_targets(from, "conditional", targets)?;
        self.edges.push(EdgeDef::Conditional {
            from: src,
            targets,
            router: Arc::new(move |s| router(s).into()),
        });
        Ok(self)
    }

    /// Adds a weighted edge: after `from`'s step, one target is chosen with probability
    /// proportional to its weight, by a generator seeded from the run's seed and the task, so
    /// the same seed makes the same choice on every run and replay.
    pub fn add_weighted_edges<'a>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> &mut Self {
        let r = self.try_add_weighted_edges(from, targets).map(drop);
        self.keep(r)
    }

    /// [`add_weighted_edges`](GraphBuilder::add_weighted_edges), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::UnknownNode`], [`GraphError::InvalidEndpoint`], [`GraphError::NoTargets`],
    /// [`GraphError::InvalidWeight`] or [`GraphError::ZeroWeights`].
    pub fn try_add_weighted_edges<'a>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Result<&mut Self, GraphError> {
        let src = self.source(from, "")?;
        let mut resolved = Vec::new();
        for (to, weight) in targets {
            let target = self.target(from, to)?;
            if !weight.is_finite() || weight < 0.0 {
                return Err(GraphError::InvalidWeight {
                    edge: EdgeName::new(from, to),
                    weight,
                });
            }
            resolved.push((target, weight));
        }
        if resolved.is_empty() {
            return Err(GraphError::NoTargets {
                kind: "weighted",
                from: from.to_owned(),
            });
        }
        if resolved.iter().all(|(_, w)| *w == 0.0) {
            return Err(GraphError::ZeroWeights(from.to_owned()));
        }
        self.edges.push(EdgeDef::Weighted {
            from: src,
            targets: resolved,
        });
        Ok(self)
    }

    /// Adds a join: `target` runs once every one of `predecessors` has either finished or been
    /// decided as skipped in this pass (it can no longer be reached before the join fires), and
    /// at least one finished. [`add_join_with`](GraphBuilder::add_join_with) fires on a quorum
    /// or a timeout.
    pub fn add_join<'a>(
        &mut self,
        predecessors: impl IntoIterator<Item = &'a str>,
        target: &str,
    ) -> &mut Self {
        self.add_join_with(predecessors, target, JoinPolicy::all())
    }

    /// [`add_join`](GraphBuilder::add_join), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::UnknownNode`], [`GraphError::InvalidEndpoint`] or [`GraphError::EmptyJoin`].
    pub fn try_add_join<'a>(
        &mut self,
        predecessors: impl IntoIterator<Item = &'a str>,
        target: &str,
    ) -> Result<&mut Self, GraphError> {
        self.try_add_join_with(predecessors, target, JoinPolicy::all())
    }

    /// Adds a join that fires by `policy`: after all of `predecessors` (as
    /// [`add_join`](GraphBuilder::add_join)), after a quorum of them, or at the latest some
    /// steps after the first one arrived. See [`JoinPolicy`] for what becomes of the
    /// predecessors that arrive after it fired (they are ignored, not cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Log { #[reducer(append)] log: Vec<String> }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Log>::new();
    /// for name in ["quick", "slow", "report", "slower", "slowest"] {
    ///     b.add_node(name, move |_, _| async move { Ok(LogUpdate::new().log(vec![name.to_owned()])) });
    /// }
    /// b.add_edges(START, ["quick", "slow"])
    ///     .add_edge("slow", "slower")
    ///     .add_edge("slower", "slowest")
    ///     .add_edge("quick", END)
    ///     .add_edge("slowest", END)
    ///     // `report` waits at most one step after `quick` for `slowest`, which needs two more.
    ///     .add_join_with(["quick", "slowest"], "report", JoinPolicy::all().timeout_steps(1))
    ///     .add_edge("report", END);
    /// let done = b.compile()?.invoke(Log::default()).await?;
    /// assert_eq!(done.log, ["quick", "slow", "slower", "report", "slowest"]);
    ///
    /// // A quorum of 0, or of more than the predecessors, names the join.
    /// let mut b = GraphBuilder::<Log>::new();
    /// b.add_node("x", |_, _| async { Ok(LogUpdate::new()) });
    /// let e = b.try_add_join_with(["x"], "x", JoinPolicy::quorum(2)).map(drop).unwrap_err();
    /// assert!(matches!(e, GraphError::InvalidQuorum { quorum: 2, .. }));
    /// # Ok(()) }
    /// ```
    pub fn add_join_with<'a>(
        &mut self,
        predecessors: impl IntoIterator<Item = &'a str>,
        target: &str,
        policy: JoinPolicy,
    ) -> &mut Self {
        let r = self
            .try_add_join_with(predecessors, target, policy)
            .map(drop);
        self.keep(r)
    }

    /// [`add_join_with`](GraphBuilder::add_join_with), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::UnknownNode`], [`GraphError::InvalidEndpoint`], [`GraphError::EmptyJoin`],
    /// [`GraphError::InvalidQuorum`] or [`GraphError::InvalidJoinTimeout`].
    pub fn try_add_join_with<'a>(
        &mut self,
        predecessors: impl IntoIterator<Item = &'a str>,
        target: &str,
        policy: JoinPolicy,
    ) -> Result<&mut Self, GraphError> {
        let mut preds = Vec::new();
        for p in predecessors {
            let id = match self.source(p, target)? {
                Some(id) => id,
                None => return Err(GraphError::InvalidEndpoint(EdgeName::new(p, target))),
            };
            if !preds.contains(&id) {
                preds.push(id);
            }
        }
        let target_id = match self
            .target("", target)
            .map_err(|e| self.rename_join_error(e, &preds, target))?
        {
            Target::Node(id) => id,
            Target::End => {
                let from = preds
                    .first()
                    .map_or(START, |p| &*self.nodes[*p as usize].name);
                return Err(GraphError::InvalidEndpoint(EdgeName::new(from, END)));
            }
        };
        if preds.is_empty() {
            return Err(GraphError::EmptyJoin(target.to_owned()));
        }
        let names = || {
            preds
                .iter()
                .map(|p| &*self.nodes[*p as usize].name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(k) = policy.quorum
            && (k == 0 || k > preds.len())
        {
            return Err(GraphError::InvalidQuorum {
                target: target.to_owned(),
                predecessors: names(),
                quorum: k,
            });
        }
        if policy.timeout_steps == Some(0) {
            return Err(GraphError::InvalidJoinTimeout {
                target: target.to_owned(),
                predecessors: names(),
            });
        }
        self.joins.push(JoinDef {
            preds,
            target: target_id,
            policy,
        });
        Ok(self)
    }

    /// Declares where node `from` may go when it returns a go-to
    /// ([`Command::goto`](crate::Command::goto)): a go-to to any other node fails the run.
    /// Declaring them lets `compile` check reachability and joins.
    pub fn add_goto_edges<'a>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        let r = self.try_add_goto_edges(from, targets).map(drop);
        self.keep(r)
    }

    /// [`add_goto_edges`](GraphBuilder::add_goto_edges), failing at once.
    ///
    /// # Errors
    ///
    /// [`GraphError::UnknownNode`], [`GraphError::InvalidEndpoint`] or [`GraphError::NoTargets`].
    pub fn try_add_goto_edges<'a>(
        &mut self,
        from: &str,
        targets: impl IntoIterator<Item = &'a str>,
    ) -> Result<&mut Self, GraphError> {
        let Some(src) = self.source(from, "")? else {
            return Err(GraphError::InvalidEndpoint(EdgeName::new(START, "go-to")));
        };
        let targets = self.declared_targets(from, "go-to", targets)?;
        match self.gotos.iter_mut().find(|(id, _)| *id == src) {
            Some((_, existing)) => {
                for t in targets {
                    if !existing.iter().any(|(n, _)| *n == t.0) {
                        existing.push(t);
                    }
                }
            }
            None => self.gotos.push((src, targets)),
        }
        Ok(self)
    }

    /// Retries the node's failed attempts by `policy` (overrides
    /// [`default_retry`](GraphBuilder::default_retry)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { #[reducer(add)] n: u64 }
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("fetch", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .retry("fetch", RetryPolicy::new(4).backoff(Duration::from_millis(200), Duration::from_secs(5)))
    ///     .timeout("fetch", Duration::from_secs(30))
    ///     .add_edge(START, "fetch")
    ///     .add_edge("fetch", END);
    /// b.compile()?;
    /// # Ok::<(), GraphError>(())
    /// ```
    pub fn retry(&mut self, node: &str, policy: RetryPolicy) -> &mut Self {
        let policy = Arc::new(policy);
        let r = self.settings(node, "retry", |s| s.retry = Some(policy));
        self.keep(r)
    }

    /// The retry policy of every node without one of its own (by default, none: one attempt).
    pub fn default_retry(&mut self, policy: RetryPolicy) -> &mut Self {
        self.default_retry = Some(Arc::new(policy));
        self
    }

    /// Limits each attempt of the node to `timeout` (overrides
    /// [`default_timeout`](GraphBuilder::default_timeout)). A timed-out async node is
    /// dropped; a CPU-bound node is told through [`Context::is_cancelled`] and its late result
    /// is discarded. The attempt fails with [`NodeTimedOut`](crate::NodeTimedOut), which the
    /// node's [`RetryPolicy`] may retry.
    pub fn timeout(&mut self, node: &str, timeout: Duration) -> &mut Self {
        let r = self.settings(node, "timeout", |s| s.timeout = Some(timeout));
        self.keep(r)
    }

    /// The attempt timeout of every node without one of its own (by default, none).
    pub fn default_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Stops the run before any step in which one of `nodes` would run: the run is
    /// checkpointed and fails with [`Error::Interrupted`](crate::Error::Interrupted) (an
    /// [`InterruptKind::Before`](crate::InterruptKind::Before) per such task); resuming runs
    /// the step.
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
    /// b.add_node("pay", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .interrupt_before(["pay"])
    ///     .add_edge(START, "pay")
    ///     .add_edge("pay", END);
    /// let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = || RunConfig::new().store(store.clone()).run_id("order-1");
    /// let Err(Error::Interrupted(stop)) = graph.run_with(Count::default(), config()).await else {
    ///     panic!("the run stops before paying");
    /// };
    /// assert_eq!(stop.interrupts[0].kind, InterruptKind::Before);
    /// assert_eq!(graph.resume("order-1", config()).await?.n, 1); // approved: it pays
    /// # Ok(()) }
    /// ```
    pub fn interrupt_before<'a>(&mut self, nodes: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for node in nodes {
            let r = self.settings(node, "interrupt_before", |s| s.interrupt_before = true);
            self.keep(r);
        }
        self
    }

    /// Stops the run after any step in which one of `nodes` ran, once that step is
    /// checkpointed (unless the run has finished): it fails with
    /// [`Error::Interrupted`](crate::Error::Interrupted) (an
    /// [`InterruptKind::After`](crate::InterruptKind::After) per such task); resuming goes on.
    pub fn interrupt_after<'a>(&mut self, nodes: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for node in nodes {
            let r = self.settings(node, "interrupt_after", |s| s.interrupt_after = true);
            self.keep(r);
        }
        self
    }

    /// Defers `node`: once triggered, it waits until no other task of the run is left to run,
    /// then runs once, however often it was triggered meanwhile (packets sent to it wait too,
    /// and run each once): the end of a map-reduce whose branches have different lengths.
    /// A join waiting on a branch that leads through a deferred node waits for it. The
    /// deferral is checkpointed with the run.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Log { #[reducer(append)] log: Vec<String> }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Log>::new();
    /// for name in ["a", "b", "b2", "c", "d"] {
    ///     b.add_node(name, move |_, _| async move { Ok(LogUpdate::new().log(vec![name.to_owned()])) });
    /// }
    /// b.add_edge(START, "a")
    ///     .add_edges("a", ["b", "c"])
    ///     .add_edge("b", "b2")
    ///     .add_edge("b2", "d")
    ///     .add_edge("c", "d")
    ///     .add_edge("d", END)
    ///     .defer("d");
    /// let done = b.compile()?.invoke(Log::default()).await?;
    /// assert_eq!(done.log, ["a", "b", "c", "b2", "d"]); // `d` once, after the longer branch
    ///
    /// let mut unknown = GraphBuilder::<Log>::new();
    /// unknown.defer("nowhere");
    /// assert!(matches!(
    ///     unknown.compile(),
    ///     Err(GraphError::NoSuchNode { setting: "defer", .. })
    /// ));
    /// # Ok(()) }
    /// ```
    pub fn defer(&mut self, node: &str) -> &mut Self {
        let r = self.settings(node, "defer", |s| s.deferred = true);
        self.keep(r)
    }

    /// Catches the final failure of `node`: when its task fails for good (after its retry
    /// policy's attempts; not when it is interrupted or cancelled), the run does not fail. The
    /// task's outcome is a route to `handler` instead, which runs in the next step with the
    /// failure as its input (a [`NodeFailure`](crate::NodeFailure), read with
    /// [`Context::input`]): a try/catch for graphs. The failed task writes nothing and does
    /// not arrive at the joins it leads to; like any task's result, the route is kept as a
    /// pending write and checkpointed, so a resume takes the same path. Each catch emits
    /// [`EventKind::ErrorRouted`](crate::EventKind::ErrorRouted). A later call for the same
    /// node replaces its handler.
    ///
    /// The handler is an ordinary node (it needs its own way out); it may be reached by the
    /// error edge alone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Log { #[reducer(append)] log: Vec<String> }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Log>::new();
    /// b.add_node("fetch", |_, _| async { Err::<LogUpdate, BoxError>("timeout".into()) })
    ///     .add_node("fallback", |_, ctx: Context| async move {
    ///         let failure: NodeFailure = ctx.input()?;
    ///         Ok(LogUpdate::new().log(vec![format!("{} x{}", failure.error, failure.attempts)]))
    ///     })
    ///     .retry("fetch", RetryPolicy::new(2).backoff(std::time::Duration::ZERO, std::time::Duration::ZERO))
    ///     .on_error("fetch", "fallback")
    ///     .add_edge(START, "fetch")
    ///     .add_edge("fetch", END)
    ///     .add_edge("fallback", END);
    /// let done = b.compile()?.invoke(Log::default()).await?;
    /// assert_eq!(done.log, ["timeout x2"]);
    ///
    /// let mut bad = GraphBuilder::<Log>::new();
    /// bad.add_node("fetch", |_, _| async { Ok(LogUpdate::new()) }).on_error("fetch", "nowhere");
    /// assert!(matches!(bad.compile(), Err(GraphError::NoSuchHandler { setting: "on_error", .. })));
    /// # Ok(()) }
    /// ```
    pub fn on_error(&mut self, node: &str, handler: &str) -> &mut Self {
        let r = self
            .handler("on_error", node, handler)
            .and_then(|h| self.settings(node, "on_error", |s| s.on_error = Some(h)));
        self.keep(r)
    }

    /// Registers `compensation` as the node that undoes `node`'s work (the saga pattern).
    /// When the run later fails for good (any final error but an interrupt; a cancellation
    /// too with [`RunConfig::compensate_on_cancel`](crate::RunConfig::compensate_on_cancel)),
    /// the compensations of the nodes whose tasks finished in the run run in the reverse
    /// order of their completion (within a step, in reverse task order), each once (a node
    /// that finished several times is compensated once, in the place of its last
    /// completion), each as the one task of a step of its own, checkpointed like any step:
    /// a resume, after a crash or a stop, goes on with those still to run and never runs a
    /// finished one again. A compensation is given a [`Compensation`](crate::Compensation)
    /// as its input (read with [`Context::input`]), reads the state, and its update is merged
    /// (its routes are ignored). Then the run ends with
    /// [`Error::Compensated`](crate::Error::Compensated), which holds the original error.
    ///
    /// A compensation that fails for good (after its retry policy's attempts) ends the run
    /// with [`Error::CompensationFailed`](crate::Error::CompensationFailed), naming both
    /// errors; the compensations after it wait: resuming the run tries it again, then goes on.
    /// A compensation that is interrupted stops the run the same way, until it is resumed.
    ///
    /// A compensation node needs no edges: it may be reached by its compensation edge alone.
    /// A later call for the same node replaces its compensation.
    ///
    /// # Examples
    ///
    /// See [`Compensation`](crate::Compensation); an unknown compensation names both nodes:
    ///
    /// ```
    /// use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Log { #[reducer(append)] log: Vec<String> }
    /// let mut b = GraphBuilder::<Log>::new();
    /// b.add_node("book", |_, _| async { Ok(LogUpdate::new()) })
    ///     .add_edge(START, "book")
    ///     .add_edge("book", END)
    ///     .compensate("book", "unbook");
    /// let Err(GraphError::NoSuchHandler { node, handler, .. }) = b.compile() else { panic!() };
    /// assert_eq!((node.as_str(), handler.as_str()), ("book", "unbook"));
    /// ```
    pub fn compensate(&mut self, node: &str, compensation: &str) -> &mut Self {
        let r = self
            .handler("compensate", node, compensation)
            .and_then(|h| self.settings(node, "compensate", |s| s.compensation = Some(h)));
        self.keep(r)
    }

    /// Resolves the handler of an error edge or a compensation.
    fn handler(
        &self,
        setting: &'static str,
        node: &str,
        handler: &str,
    ) -> Result<NodeId, GraphError> {
        match self.index.get(handler) {
            Some(&id) => Ok(id),
            None => Err(GraphError::NoSuchHandler {
                setting,
                node: node.to_owned(),
                handler: handler.to_owned(),
            }),
        }
    }

    fn settings(
        &mut self,
        node: &str,
        setting: &'static str,
        set: impl FnOnce(&mut NodeSettings),
    ) -> Result<(), GraphError> {
        match self.index.get(node) {
            Some(&id) => {
                set(&mut self.nodes[id as usize].settings);
                Ok(())
            }
            None => Err(GraphError::NoSuchNode {
                setting,
                node: node.to_owned(),
            }),
        }
    }

    /// Registers how states stored by older versions of the state type ([`State::VERSION`])
    /// are upgraded when a run of the graph is resumed or read: see [`Migrations`]. A resume
    /// of a run stored by an older version upgrades its state and the saved updates of its
    /// finished tasks once, and stores them as the current version before anything runs.
    ///
    /// The graph's [fingerprint](CompiledGraph::fingerprint) check still holds: a run
    /// resumes if its graph, with the state type of the stored version, is the same graph.
    ///
    /// [`Migrations`]: crate::Migrations
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{GraphBuilder, Migrations, START, END};
    /// # use agentgraph_engine as agentgraph;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph)]
    /// struct CountV1 { #[reducer(add)] n: u32 }
    /// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph, version = 2)]
    /// struct Count { #[reducer(add)] n: u64 }
    ///
    /// let mut b = GraphBuilder::<Count>::new();
    /// b.add_node("one", |_, _| async { Ok(CountUpdate::new().n(1)) })
    ///     .add_edge(START, "one")
    ///     .add_edge("one", END)
    ///     .migrations(Migrations::new().step(
    ///         |old: CountV1| Count { n: old.n.into() },
    ///         |old: CountV1Update| CountUpdate { n: old.n.map(Into::into) },
    ///     ));
    /// let graph = b.compile()?;
    /// # Ok::<(), agentgraph_engine::GraphError>(())
    /// ```
    pub fn migrations(&mut self, migrations: crate::define::migrate::Migrations<S>) -> &mut Self {
        self.migrations = migrations;
        self
    }

    /// Validates the graph and compiles it into an immutable plan.
    ///
    /// # Errors
    ///
    /// The first error an `add_*` call met, or: [`GraphError::NoEntry`] (nothing leaves
    /// `START`), [`GraphError::Unreachable`], [`GraphError::DeadEnd`],
    /// [`GraphError::JoinUnreachable`].
    pub fn compile(self) -> Result<CompiledGraph<S>, GraphError> {
        if let Some(e) = self.first_error {
            return Err(e);
        }
        Plan::compile(self).map(CompiledGraph::new)
    }

    fn keep(&mut self, result: Result<(), GraphError>) -> &mut Self {
        if let Err(e) = result {
            self.first_error.get_or_insert(e);
        }
        self
    }

    fn insert_node(&mut self, name: String, func: NodeFn<S>) -> Result<&mut Self, GraphError> {
        if name.is_empty() || name == START || name == END {
            return Err(GraphError::ReservedName(name));
        }
        if self.index.contains_key(name.as_str()) {
            return Err(GraphError::DuplicateNode(name));
        }
        let name: Arc<str> = name.into();
        let id = NodeId::try_from(self.nodes.len()).expect("more than u32::MAX nodes");
        self.index.insert(name.clone(), id);
        self.nodes.push(NodeDef {
            name,
            func,
            settings: NodeSettings::default(),
        });
        Ok(self)
    }

    /// Resolves an edge's source: `None` for `START`.
    fn source(&self, from: &str, to: &str) -> Result<Option<NodeId>, GraphError> {
        if from == START {
            return Ok(None);
        }
        if from == END {
            return Err(GraphError::InvalidEndpoint(EdgeName::new(from, to)));
        }
        match self.index.get(from) {
            Some(id) => Ok(Some(*id)),
            None => Err(GraphError::UnknownNode {
                edge: EdgeName::new(from, to),
                missing: from.to_owned(),
            }),
        }
    }

    fn target(&self, from: &str, to: &str) -> Result<Target, GraphError> {
        if to == END {
            return Ok(Target::End);
        }
        if to == START {
            return Err(GraphError::InvalidEndpoint(EdgeName::new(from, to)));
        }
        match self.index.get(to) {
            Some(id) => Ok(Target::Node(*id)),
            None => Err(GraphError::UnknownNode {
                edge: EdgeName::new(from, to),
                missing: to.to_owned(),
            }),
        }
    }

    fn declared_targets<'a>(
        &self,
        from: &str,
        kind: &'static str,
        targets: impl IntoIterator<Item = &'a str>,
    ) -> Result<Declared, GraphError> {
        let mut out: Declared = Vec::new();
        for to in targets {
            let t = self.target(from, to)?;
            if !out.iter().any(|(n, _)| &**n == to) {
                out.push((Arc::from(to), t));
            }
        }
        if out.is_empty() {
            return Err(GraphError::NoTargets {
                kind,
                from: from.to_owned(),
            });
        }
        Ok(out)
    }

    fn rename_join_error(&self, e: GraphError, preds: &[NodeId], target: &str) -> GraphError {
        match e {
            GraphError::UnknownNode { missing, .. } => {
                let from = preds
                    .first()
                    .map_or(START, |p| &*self.nodes[*p as usize].name);
                GraphError::UnknownNode {
                    edge: EdgeName::new(from, target),
                    missing,
                }
            }
            other => other,
        }
    }
}

impl<S: State> GraphBuilder<S> {
    /// Attaches a value the compiled graph carries for whoever made it, read back with
    /// [`CompiledGraph::attachment`](crate::CompiledGraph::attachment): the file a graph was
    /// compiled from, say, so that it can be written out again. It is not part of the
    /// fingerprint and the engine never reads it. Attaching again replaces the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynSchema, DynState, GraphBuilder, START, END};
    /// let mut b = GraphBuilder::<DynState>::with_schema(DynSchema::builder().build()?);
    /// b.add_node("noop", |s: std::sync::Arc<DynState>, _| async move { Ok(s.update()) })
    ///     .add_edge(START, "noop")
    ///     .add_edge("noop", END)
    ///     .attach(String::from("made by hand"));
    /// let graph = b.compile()?;
    /// assert_eq!(graph.attachment::<String>().map(String::as_str), Some("made by hand"));
    /// assert!(graph.attachment::<u32>().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach<T: std::any::Any + Send + Sync>(&mut self, value: T) -> &mut Self {
        self.attachment = Some(Arc::new(value));
        self
    }
}
