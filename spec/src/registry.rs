//! [`NodeRegistry`]: the node kinds, routers and reducers a graph file may name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, DynSchema, DynState, DynUpdate, GraphBuilder, GraphError,
    IntoCommand, JsonReducer, Node, Route, State, async_node,
};
use serde_json::Value;

use crate::error::did_you_mean;
use crate::format::ModelSpec;

/// A node of a file-declared graph.
pub type FileNode = Arc<dyn Node<DynState>>;

/// What a node kind is given to make a node: the node's name, its `with` parameters, the
/// state's schema, the file's models, and the file's folder (for paths in parameters).
#[derive(Debug)]
#[non_exhaustive]
pub struct NodeParams<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Its `with` parameters (`null` when it has none).
    pub with: &'a Value,
    /// The state's schema.
    pub schema: &'a Arc<DynSchema>,
    /// The models the file declares.
    pub models: &'a [ModelSpec],
    /// The folder of the file (relative paths in parameters start there).
    pub dir: &'a Path,
    /// The registry (a subgraph kind compiles another file with it).
    pub registry: &'a NodeRegistry,
    /// The files being compiled, the outermost first, this node's file last (empty for a
    /// graph compiled from text): a `subgraph` that includes one of them is a cycle.
    pub includes: &'a [PathBuf],
}

impl NodeParams<'_> {
    /// The parameter `key` of an object of parameters.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.with.get(key)
    }

    /// The model the file declares as `name`, or an error naming the closest declared one.
    ///
    /// # Errors
    ///
    /// `unknown model `name`` (with a suggestion) when the file declares no such model.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_spec::{GraphSpec, NodeRegistry};
    /// let registry = NodeRegistry::new().kind("uses_model", |p| {
    ///     let model = p.model("small")?;
    ///     assert_eq!(model.model.value, "gpt-4o-mini");
    ///     Err("checked".to_owned())
    /// });
    /// let spec = GraphSpec::from_yaml_str("g.yaml", "version: 1
    /// models:
    ///   - { name: small, model: gpt-4o-mini }
    /// nodes:
    ///   - { name: a, kind: uses_model }
    /// ")?;
    /// let errors = spec.compile(&registry).unwrap_err();
    /// assert_eq!(errors.errors()[0].message, "checked");
    /// # Ok::<(), agentgraph_spec::SpecErrors>(())
    /// ```
    pub fn model(&self, name: &str) -> Result<&ModelSpec, String> {
        if let Some(m) = self.models.iter().find(|m| m.name.value == name) {
            return Ok(m);
        }
        let hint = did_you_mean(name, self.models.iter().map(|m| m.name.value.as_str()))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        if self.models.is_empty() {
            return Err(format!(
                "unknown model `{name}`: the file declares no `models`"
            ));
        }
        Err(format!("unknown model `{name}`{hint}"))
    }
}

/// What a kind registered with [`NodeRegistry::graph_kind`] makes: a compiled graph run as
/// the node (a subgraph), with how its state is made from the file's state and how its final
/// state updates the file's state. The child run is checkpointed under the parent's, its
/// interrupts stop the parent, and its fingerprint is part of the parent's.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::{DynSchema, DynState, GraphBuilder, JsonReducer, JsonType, START, END};
/// use agentgraph_spec::{FileSubgraph, GraphSpec, NodeRegistry};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = NodeRegistry::builtin().graph_kind("twice", |p| {
///     let schema = p.schema.clone();
///     let mut child = GraphBuilder::<DynState>::with_schema(schema.clone());
///     child.add_node("double", |s: Arc<DynState>, _| async move {
///         let n = s.get("n").and_then(|n| n.as_i64()).unwrap_or(0);
///         Ok(s.update().set("n", n * 2)?)
///     });
///     child.add_edge(START, "double").add_edge("double", END);
///     let child = child.compile().map_err(|e| e.to_string())?;
///     Ok(FileSubgraph::new(child, |s: &DynState| s.clone(), |done: DynState| {
///         DynState::update(&done).set("n", done.get("n").cloned().unwrap_or_default()).unwrap()
///     }))
/// });
/// let spec = GraphSpec::from_yaml_str("g.yaml", "version: 1
/// state: [ { name: n, type: integer, default: 21 } ]
/// nodes: [ { name: t, kind: twice } ]
/// edges: [ { from: START, to: t }, { from: t, to: END } ]
/// ")?;
/// let graph = spec.compile(&registry)?;
/// let out = graph.invoke(DynState::new(graph.schema())).await?;
/// assert_eq!(out.get("n"), Some(&serde_json::json!(42)));
/// # Ok(()) }
/// ```
pub struct FileSubgraph {
    add: Box<AddFn>,
}

type AddFn =
    dyn FnOnce(&mut GraphBuilder<DynState>, String) -> Result<(), GraphError> + Send + Sync;

impl fmt::Debug for FileSubgraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSubgraph").finish_non_exhaustive()
    }
}

impl FileSubgraph {
    /// `graph` run as the node: `input` makes its state from the file's state, `output` turns
    /// its final state into an update of the file's state.
    ///
    /// # Examples
    ///
    /// See [`FileSubgraph`].
    pub fn new<C: State>(
        graph: CompiledGraph<C>,
        input: impl Fn(&DynState) -> C + Send + Sync + 'static,
        output: impl Fn(C) -> DynUpdate + Send + Sync + 'static,
    ) -> Self {
        FileSubgraph {
            add: Box::new(move |b, name| b.try_add_subgraph(name, graph, input, output).map(drop)),
        }
    }

    /// Adds the subgraph to `b` as the node `name`.
    pub(crate) fn add_to(
        self,
        b: &mut GraphBuilder<DynState>,
        name: String,
    ) -> Result<(), GraphError> {
        (self.add)(b, name)
    }
}

/// Makes a subgraph from a node's parameters (see [`NodeRegistry::graph_kind`]).
pub type GraphKindFn = dyn Fn(&NodeParams<'_>) -> Result<FileSubgraph, String> + Send + Sync;

/// What a kind makes.
pub(crate) enum Made {
    Node(FileNode),
    Graph(FileSubgraph),
}

/// Makes a node from its parameters, or says what is wrong with them.
pub type NodeKindFn = dyn Fn(&NodeParams<'_>) -> Result<FileNode, String> + Send + Sync;

/// Chooses where a conditional edge goes, from the state.
pub type RouterFn = dyn Fn(&DynState) -> Route + Send + Sync;

/// The node kinds, routers and reducers graph files may name: built-in ones and those a
/// program registers from Rust. Cheap to clone.
///
/// [`NodeRegistry::builtin`] holds this crate's kinds:
///
/// | kind | parameters | what it does |
/// |---|---|---|
/// | `set` | an object of fields and values | writes the values (checked against the schema) |
/// | `interrupt` | `question` (any JSON), `field` | stops for an answer, writes it to `field` |
/// | `collect` | `field` | appends the task's packet input (an item of an `each` edge) to a list field |
/// | `subgraph` | `path`, `inputs`, `outputs` | runs another graph file (its path relative to this one) as the node |
///
/// With this crate's features, the node library's kinds join them (the facade's features of
/// the same names turn these on):
///
/// | kind | feature | what it does |
/// |---|---|---|
/// | `tool` | `tools` | calls a tool registered with `NodeRegistry::tool` (feature `tools`), or an HTTP tool declared in place, under its options (timeout, retries, approval) |
/// | `model` | `openai` | one call of a model the file declares, over a messages field |
/// | `agent` | `agent` | the tool-calling agent over a messages field, run as a subgraph |
/// | `pattern` | `patterns` | a multi-agent pattern: supervisor, group chat, swarm, ensemble, fallback, pipeline or planning |
/// | `http` | `http` | the HTTP request node |
/// | `mcp` | `mcp` | a tool of an MCP server started by command (stdio) or reached at a URL |
///
/// The README's "Graphs in files" section lists their parameters.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::{DynState, Route};
/// use agentgraph_spec::NodeRegistry;
/// let registry = NodeRegistry::builtin()
///     .function("shout", |s: Arc<DynState>, _| async move {
///         let topic = s.get("topic").and_then(|t| t.as_str()).unwrap_or_default().to_uppercase();
///         Ok(s.update().set("topic", topic)?)
///     })
///     .router("done?", |s: &DynState| {
///         if s.get("topic").is_some_and(|t| t != "") { Route::end() } else { Route::to(["shout"]) }
///     });
/// assert!(registry.kinds().any(|k| k == "shout"));
/// assert!(registry.routers().any(|r| r == "done?"));
/// ```
#[derive(Clone, Default)]
pub struct NodeRegistry {
    kinds: BTreeMap<String, Kind>,
    routers: BTreeMap<String, Arc<RouterFn>>,
    reducers: BTreeMap<String, JsonReducer>,
    #[cfg(feature = "tools")]
    tools: BTreeMap<String, Arc<dyn agentgraph_nodes::tool::Tool>>,
}

/// A registered kind: it makes a node or a subgraph.
#[derive(Clone)]
pub(crate) enum Kind {
    Node(Arc<NodeKindFn>),
    Graph(Arc<GraphKindFn>),
}

impl Kind {
    pub(crate) fn make(&self, p: &NodeParams<'_>) -> Result<Made, String> {
        match self {
            Kind::Node(make) => make(p).map(Made::Node),
            Kind::Graph(make) => make(p).map(Made::Graph),
        }
    }
}

impl fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRegistry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .field("routers", &self.routers.keys().collect::<Vec<_>>())
            .field("reducers", &self.reducers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl NodeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        NodeRegistry::default()
    }

    /// A registry with this crate's built-in kinds: `set`, `interrupt`, `collect` and
    /// `subgraph` always; `tool` (feature `tools`), `model` (`openai`), `agent` (`agent`),
    /// `pattern` (`patterns`), `http` (`http`) and `mcp` (`mcp`) with their features.
    pub fn builtin() -> Self {
        let registry = NodeRegistry::new()
            .kind("set", crate::builtin::set)
            .kind("interrupt", crate::builtin::interrupt)
            .kind("collect", crate::builtin::collect)
            .graph_kind("subgraph", crate::library::subgraph);
        crate::library::register(registry)
    }

    /// Registers the kind `name`: `make` builds a node from a node's parameters (or says what
    /// is wrong with them, reported at the node's `with`). A kind registered again replaces
    /// the earlier one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_engine::{async_node, DynState};
    /// use agentgraph_spec::{FileNode, NodeRegistry};
    /// let registry = NodeRegistry::new().kind("count_to", |p| {
    ///     let n = p.param("n").and_then(|n| n.as_i64()).ok_or("`n` (an integer) is required")?;
    ///     let node: FileNode = Arc::new(async_node(move |s: Arc<DynState>, _| async move {
    ///         Ok(s.update().set("count", n)?)
    ///     }));
    ///     Ok(node)
    /// });
    /// assert!(registry.kinds().any(|k| k == "count_to"));
    /// ```
    #[must_use]
    pub fn kind(
        mut self,
        name: impl Into<String>,
        make: impl Fn(&NodeParams<'_>) -> Result<FileNode, String> + Send + Sync + 'static,
    ) -> Self {
        self.kinds.insert(name.into(), Kind::Node(Arc::new(make)));
        self
    }

    /// Registers the kind `name` whose nodes are subgraphs: `make` builds a
    /// [`FileSubgraph`] from a node's parameters. Such a node takes retries and timeouts but
    /// no `layers`. A kind registered again replaces the earlier one.
    ///
    /// # Examples
    ///
    /// See [`FileSubgraph`].
    #[must_use]
    pub fn graph_kind(
        mut self,
        name: impl Into<String>,
        make: impl Fn(&NodeParams<'_>) -> Result<FileSubgraph, String> + Send + Sync + 'static,
    ) -> Self {
        self.kinds.insert(name.into(), Kind::Graph(Arc::new(make)));
        self
    }

    /// Registers a function from Rust as the kind `name` (it takes no parameters).
    #[must_use]
    pub fn function<F, Fut, O>(self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Arc<DynState>, Context) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
        O: IntoCommand<DynState> + 'static,
    {
        self.kind(name, move |_| {
            let node: FileNode = Arc::new(async_node(f.clone()));
            Ok(node)
        })
    }

    /// Registers a router from Rust, named by edges' `router`.
    #[must_use]
    pub fn router<R, T>(mut self, name: impl Into<String>, router: R) -> Self
    where
        R: Fn(&DynState) -> T + Send + Sync + 'static,
        T: Into<Route>,
    {
        self.routers
            .insert(name.into(), Arc::new(move |s| router(s).into()));
        self
    }

    /// Registers a reducer, named by state fields' `reducer`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::JsonReducer;
    /// use agentgraph_spec::NodeRegistry;
    /// let r = NodeRegistry::new().reducer("keep_first", JsonReducer::custom("keep_first", |_, _| {}));
    /// assert!(r.reducers().any(|n| n == "keep_first"));
    /// ```
    #[must_use]
    pub fn reducer(mut self, name: impl Into<String>, reducer: JsonReducer) -> Self {
        self.reducers.insert(name.into(), reducer);
        self
    }

    /// The kinds' names, in order.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// The routers' names, in order.
    pub fn routers(&self) -> impl Iterator<Item = &str> {
        self.routers.keys().map(String::as_str)
    }

    /// The registered reducers' names, in order.
    pub fn reducers(&self) -> impl Iterator<Item = &str> {
        self.reducers.keys().map(String::as_str)
    }

    pub(crate) fn get_kind(&self, name: &str) -> Option<&Kind> {
        self.kinds.get(name)
    }

    pub(crate) fn get_router(&self, name: &str) -> Option<&Arc<RouterFn>> {
        self.routers.get(name)
    }

    pub(crate) fn get_reducer(&self, name: &str) -> Option<&JsonReducer> {
        self.reducers.get(name)
    }

    /// Registers a tool from Rust, named by files (by its [`name`](agentgraph_nodes::tool::Tool::name)):
    /// a `tool` node calls it, an `agent` offers it. A tool registered again replaces the
    /// earlier one.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::tool_fn;
    /// use agentgraph_spec::NodeRegistry;
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Add { a: i64, b: i64 }
    /// let registry = NodeRegistry::builtin()
    ///     .tool(tool_fn("add", "Adds two integers.", |x: Add| async move { Ok::<_, std::io::Error>(x.a + x.b) }));
    /// assert!(registry.tools().any(|t| t == "add"));
    /// ```
    #[cfg(feature = "tools")]
    #[must_use]
    pub fn tool(mut self, tool: impl agentgraph_nodes::tool::Tool + 'static) -> Self {
        let tool: Arc<dyn agentgraph_nodes::tool::Tool> = Arc::new(tool);
        self.tools.insert(tool.name().to_owned(), tool);
        self
    }

    /// The registered tools' names, in order.
    ///
    /// # Examples
    ///
    /// See [`tool`](NodeRegistry::tool).
    #[cfg(feature = "tools")]
    pub fn tools(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// The registered tool `name`, or an error naming the closest one.
    #[cfg(feature = "tools")]
    pub(crate) fn get_tool(
        &self,
        name: &str,
    ) -> Result<&Arc<dyn agentgraph_nodes::tool::Tool>, String> {
        self.tools.get(name).ok_or_else(|| {
            let hint = did_you_mean(name, self.tools())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!("unknown tool `{name}`{hint}")
        })
    }
}

/// The packet input of a task made by an `each` edge: the list item, as JSON.
///
/// # Errors
///
/// When the task was not made from a packet, or its input is not what an `each` edge sends.
pub fn packet_item(ctx: &Context) -> Result<Value, BoxError> {
    let text: String = ctx.input()?;
    Ok(serde_json::from_str(&text)?)
}
