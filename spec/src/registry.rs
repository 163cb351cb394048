//! [`NodeRegistry`]: the node kinds, routers and reducers a graph file may name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use agentgraph_engine::{
    BoxError, Context, DynSchema, DynState, IntoCommand, JsonReducer, Node, Route, async_node,
};
use serde_json::Value;

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
}

impl NodeParams<'_> {
    /// The parameter `key` of an object of parameters.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.with.get(key)
    }
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
///
/// The facade (`agentgraph::spec`, feature `spec`) adds the node library's kinds.
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
    kinds: BTreeMap<String, Arc<NodeKindFn>>,
    routers: BTreeMap<String, Arc<RouterFn>>,
    reducers: BTreeMap<String, JsonReducer>,
}

impl fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRegistry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .field("routers", &self.routers.keys().collect::<Vec<_>>())
            .field("reducers", &self.reducers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl NodeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        NodeRegistry::default()
    }

    /// A registry with this crate's built-in kinds (`set`, `interrupt`, `collect`).
    pub fn builtin() -> Self {
        NodeRegistry::new()
            .kind("set", crate::builtin::set)
            .kind("interrupt", crate::builtin::interrupt)
            .kind("collect", crate::builtin::collect)
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
        self.kinds.insert(name.into(), Arc::new(make));
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

    pub(crate) fn get_kind(&self, name: &str) -> Option<&Arc<NodeKindFn>> {
        self.kinds.get(name)
    }

    pub(crate) fn get_router(&self, name: &str) -> Option<&Arc<RouterFn>> {
        self.routers.get(name)
    }

    pub(crate) fn get_reducer(&self, name: &str) -> Option<&JsonReducer> {
        self.reducers.get(name)
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
