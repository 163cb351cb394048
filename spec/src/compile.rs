//! From a [`GraphSpec`] to a [`CompiledGraph`] over a [`DynState`]: every check the builder
//! and `compile()` make, reported at the file's positions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{
    CompiledGraph, DynSchema, DynState, END, GraphBuilder, GraphError, JoinPolicy, JsonReducer,
    Packet, RetryPolicy, Route, START,
};
use agentgraph_layers::{CacheLayer, ConcurrencyLimitLayer, RateLimitLayer};
use serde_json::Value;

/// The graph's entry, as a file names it.
const FILE_START: &str = "START";
/// The graph's end, as a file names it.
const FILE_END: &str = "END";

/// The engine's name for a node a file names.
fn engine_name(name: &str) -> &str {
    match name {
        FILE_START => START,
        FILE_END => END,
        other => other,
    }
}

use crate::error::{SpecError, SpecErrors, Subject, did_you_mean};
use crate::expr::{ExprError, RouteExpr};
use crate::format::{EdgeSpec, GraphSpec, NodeSpec, Pos, RetrySpec};
use crate::load::{digest, read_text};
use crate::registry::{FileNode, Made, NodeParams, NodeRegistry};

/// The errors found so far.
struct Found(Vec<SpecError>);

impl Found {
    /// The errors, in the order of the file.
    fn sorted(mut self) -> SpecErrors {
        self.0.sort_by_key(|e| e.pos);
        SpecErrors(self.0)
    }

    fn push(&mut self, pos: Pos, subject: Subject, message: impl Into<String>) {
        self.0.push(SpecError::new(pos, subject, message));
    }

    fn suggest(
        &mut self,
        pos: Pos,
        subject: Subject,
        message: impl Into<String>,
        suggestion: Option<String>,
    ) {
        self.0
            .push(SpecError::new(pos, subject, message).suggest(suggestion));
    }
}

impl GraphSpec {
    /// Reads, checks and compiles the graph file at `path` with the kinds of `registry`; the
    /// file's digest is part of the graph's fingerprint, so a run started from another
    /// version of the file does not resume on this one (unless allowed).
    ///
    /// # Errors
    ///
    /// [`SpecErrors`]: every problem found, each with the file, line and column, and the
    /// node or edge it concerns.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::DynState;
    /// use agentgraph_spec::{GraphSpec, NodeRegistry};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("agentgraph-spec-path-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("hello.yaml");
    /// std::fs::write(&path, "version: 1
    /// state:
    ///   - { name: greeting, type: string }
    /// nodes:
    ///   - { name: hello, kind: set, with: { greeting: hello } }
    /// edges:
    ///   - { from: START, to: hello }
    ///   - { from: hello, to: END }
    /// ")?;
    /// let graph = GraphSpec::from_path(&path, &NodeRegistry::builtin())?;
    /// let out = graph.invoke(DynState::new(graph.schema())).await?;
    /// assert_eq!(out.get("greeting"), Some(&serde_json::json!("hello")));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn from_path(
        path: impl AsRef<Path>,
        registry: &NodeRegistry,
    ) -> Result<CompiledGraph<DynState>, SpecErrors> {
        GraphSpec::from_path_in(path.as_ref(), registry, &[])
    }

    /// [`from_path`](GraphSpec::from_path) for a file included by `includes` (the outermost
    /// first): including one of them again is a cycle.
    pub(crate) fn from_path_in(
        path: &Path,
        registry: &NodeRegistry,
        includes: &[PathBuf],
    ) -> Result<CompiledGraph<DynState>, SpecErrors> {
        let text = read_text(path)?;
        let spec = GraphSpec::from_yaml_str(path, &text)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut chain = includes.to_vec();
        chain.push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()));
        spec.compile_chain(registry, dir, Some(&digest(&text)), &chain)
            .map_err(|e| e.in_file(path))
    }

    /// Checks and compiles the graph (paths in parameters relative to the current folder; no
    /// file digest in the fingerprint).
    ///
    /// # Errors
    ///
    /// As [`from_path`](GraphSpec::from_path).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_spec::{GraphSpec, NodeRegistry};
    /// let spec = GraphSpec::from_yaml_str("g.yaml", "version: 1
    /// nodes:
    ///   - { name: a, kind: sett }
    /// edges:
    ///   - { from: START, to: a }
    ///   - { from: a, to: ENDD }
    /// ")?;
    /// let errors = spec.compile(&NodeRegistry::builtin()).unwrap_err();
    /// let lines: Vec<String> = errors.errors().iter().map(|e| e.to_string()).collect();
    /// assert_eq!(lines, [
    ///     "3:22: node `a`: unknown kind `sett` (did you mean `set`?)",
    ///     "6:20: edge 2: unknown node `ENDD` (did you mean `END`?)",
    /// ]);
    /// # Ok::<(), agentgraph_spec::SpecErrors>(())
    /// ```
    pub fn compile(&self, registry: &NodeRegistry) -> Result<CompiledGraph<DynState>, SpecErrors> {
        self.compile_in(registry, Path::new("."), None)
    }

    /// Checks and compiles the graph; `dir` is where relative paths in parameters start, and
    /// `source` (the file's digest, say) joins the fingerprint.
    ///
    /// # Errors
    ///
    /// As [`from_path`](GraphSpec::from_path).
    pub fn compile_in(
        &self,
        registry: &NodeRegistry,
        dir: &Path,
        source: Option<&str>,
    ) -> Result<CompiledGraph<DynState>, SpecErrors> {
        self.compile_chain(registry, dir, source, &[])
    }

    fn compile_chain(
        &self,
        registry: &NodeRegistry,
        dir: &Path,
        source: Option<&str>,
        includes: &[PathBuf],
    ) -> Result<CompiledGraph<DynState>, SpecErrors> {
        let mut found = Found(Vec::new());
        self.check_models(&mut found);
        let schema = self.schema(registry, &mut found);
        let nodes = self.nodes(registry, schema.as_ref(), dir, includes, &mut found);
        let node_pos: HashMap<&str, Pos> = self
            .nodes
            .iter()
            .map(|n| (n.name.value.as_str(), n.name.pos))
            .collect();
        self.check_edges(registry, schema.as_ref(), &node_pos, &mut found);
        let Some(schema) = schema else {
            return Err(found.sorted());
        };
        if !found.0.is_empty() {
            return Err(found.sorted());
        }
        let mut b = GraphBuilder::<DynState>::with_schema(schema.clone());
        if let Some(name) = &self.name {
            b.named(name.value.clone());
        }
        if let Some(source) = source {
            b.source_digest(source);
        }
        // The graph keeps its file, to be written out again (`GraphSpec::from_graph`).
        b.attach(self.clone());
        self.build(&mut b, nodes, registry, &schema, &node_pos, &mut found);
        if !found.0.is_empty() {
            return Err(found.sorted());
        }
        b.compile().map_err(|e| {
            let (pos, subject) = locate(&e, &node_pos);
            SpecErrors::one(SpecError::new(pos, subject, e.to_string()))
        })
    }

    /// The models: names declared once, secrets by environment variable only.
    fn check_models(&self, found: &mut Found) {
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for model in &self.models {
            let subject = || Subject::Model(model.name.value.clone());
            if let Some(first) = seen.insert(&model.name.value, model.name.pos) {
                found.push(
                    model.name.pos,
                    subject(),
                    format!("declared twice (first at {first})"),
                );
            }
            if let Some(key) = &model.api_key {
                // The value was dropped as it was read: it is never repeated.
                found.push(
                    key.pos,
                    subject(),
                    "a secret is never written in the file: name the environment variable \
                     that holds it with `api_key_env`",
                );
            }
            for var in [&model.api_key_env, &model.base_url_env]
                .into_iter()
                .flatten()
            {
                if !is_env_name(&var.value) {
                    // Not repeated either: it may be the secret itself.
                    found.push(
                        var.pos,
                        subject(),
                        "this names an environment variable (letters, digits and `_`, not \
                         starting with a digit), not its value",
                    );
                }
            }
        }
    }

    /// The state's schema, or `None` with the errors found.
    fn schema(&self, registry: &NodeRegistry, found: &mut Found) -> Option<Arc<DynSchema>> {
        let before = found.0.len();
        let mut builder = DynSchema::builder();
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for field in &self.state {
            let subject = || Subject::Field(field.name.value.clone());
            if let Some(first) = seen.insert(&field.name.value, field.name.pos) {
                found.push(
                    field.name.pos,
                    subject(),
                    format!("declared twice (first at {first})"),
                );
                continue;
            }
            let ty = field.ty.value.json_type();
            let reducer = match &field.reducer {
                None => JsonReducer::Overwrite,
                Some(name) => match reducer_named(&name.value, registry) {
                    Some(r) => r,
                    None => {
                        let builtin = [
                            "overwrite",
                            "append",
                            "add",
                            "min",
                            "max",
                            "merge",
                            "union",
                            "messages",
                        ];
                        let known = builtin.into_iter().chain(registry.reducers());
                        found.suggest(
                            name.pos,
                            subject(),
                            format!("unknown reducer `{}`", name.value),
                            did_you_mean(&name.value, known),
                        );
                        continue;
                    }
                },
            };
            if !reducer.fits(ty) {
                let pos = field.reducer.as_ref().map_or(field.ty.pos, |r| r.pos);
                found.push(
                    pos,
                    subject(),
                    format!(
                        "the reducer `{}` does not merge {ty} values",
                        reducer.name()
                    ),
                );
                continue;
            }
            if let Some(default) = &field.default
                && !ty.admits(&default.value)
            {
                found.push(default.pos, subject(), format!("the default is not {ty}"));
                continue;
            }
            builder = match &field.default {
                Some(d) => {
                    builder.field_with_default(&field.name.value, ty, reducer, d.value.clone())
                }
                None => builder.field(&field.name.value, ty, reducer),
            };
        }
        if found.0.len() > before {
            return None;
        }
        match builder.build() {
            Ok(schema) => Some(schema),
            Err(e) => {
                found.push(Pos::UNKNOWN, Subject::File, e.to_string());
                None
            }
        }
    }

    /// Every node made by its kind, by index (`None` where it failed).
    fn nodes(
        &self,
        registry: &NodeRegistry,
        schema: Option<&Arc<DynSchema>>,
        dir: &Path,
        includes: &[PathBuf],
        found: &mut Found,
    ) -> Vec<Option<Made>> {
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        let null = Value::Null;
        self.nodes
            .iter()
            .map(|node| {
                let name = &node.name.value;
                let subject = || Subject::Node(name.clone());
                if [FILE_START, FILE_END, START, END].contains(&name.as_str()) || name.is_empty() {
                    found.push(node.name.pos, subject(), "this name is reserved");
                    return None;
                }
                if let Some(first) = seen.insert(name, node.name.pos) {
                    found.push(
                        node.name.pos,
                        subject(),
                        format!("declared twice (first at {first})"),
                    );
                    return None;
                }
                check_node_settings(node, found);
                let Some(kind) = registry.get_kind(&node.kind.value) else {
                    found.suggest(
                        node.kind.pos,
                        subject(),
                        format!("unknown kind `{}`", node.kind.value),
                        did_you_mean(&node.kind.value, registry.kinds()),
                    );
                    return None;
                };
                let schema = schema?;
                let with = node.with.as_ref().map_or(&null, |w| &w.value);
                let params = NodeParams {
                    node: name,
                    with,
                    schema,
                    models: &self.models,
                    dir,
                    registry,
                    includes,
                };
                match kind.make(&params) {
                    Ok(Made::Node(made)) => Some(Made::Node(layered(made, node))),
                    Ok(Made::Graph(_)) if !node.layers.is_empty() => {
                        found.push(
                            node.name.pos,
                            subject(),
                            format!(
                                "kind `{}` runs a subgraph: it takes no `layers`",
                                node.kind.value
                            ),
                        );
                        None
                    }
                    Ok(made) => Some(made),
                    Err(message) => {
                        let pos = node.with.as_ref().map_or(node.kind.pos, |w| w.pos);
                        found.push(pos, subject(), message);
                        None
                    }
                }
            })
            .collect()
    }

    /// Every edge's names and form.
    fn check_edges(
        &self,
        registry: &NodeRegistry,
        schema: Option<&Arc<DynSchema>>,
        nodes: &HashMap<&str, Pos>,
        found: &mut Found,
    ) {
        let names = || {
            nodes
                .keys()
                .copied()
                .chain([FILE_START, FILE_END])
                .collect::<Vec<_>>()
        };
        let check = |found: &mut Found, i: usize, name: &str, pos: Pos| {
            if name != FILE_START && name != FILE_END && !nodes.contains_key(name) {
                found.suggest(
                    pos,
                    Subject::Edge(i),
                    format!("unknown node `{name}`"),
                    did_you_mean(name, names()),
                );
            }
        };
        for node in &self.nodes {
            for target in node.goto.iter().chain(&node.on_error) {
                if target.value != FILE_END && !nodes.contains_key(target.value.as_str()) {
                    found.suggest(
                        target.pos,
                        Subject::Node(node.name.value.clone()),
                        format!("unknown node `{}`", target.value),
                        did_you_mean(&target.value, names()),
                    );
                }
            }
        }
        for (i, edge) in self.edges.iter().enumerate() {
            let subject = Subject::Edge(i);
            let form = edge_form(edge);
            let Ok(form) = form else {
                found.push(edge_pos(edge), subject, form.unwrap_err());
                continue;
            };
            if let Some(from) = &edge.from {
                check(found, i, &from.value, from.pos);
            }
            for name in &edge.join {
                check(found, i, &name.value, name.pos);
            }
            if let Some(to) = &edge.to {
                for name in to.value.names() {
                    check(found, i, name, to.pos);
                }
            }
            for t in &edge.targets {
                check(found, i, &t.value, t.pos);
            }
            for w in &edge.weights {
                check(found, i, &w.to.value, w.to.pos);
                if !w.weight.value.is_finite() || w.weight.value < 0.0 {
                    found.push(
                        w.weight.pos,
                        Subject::Edge(i),
                        format!("weight {} must be finite and not negative", w.weight.value),
                    );
                }
            }
            match form {
                Form::Router => {
                    let router = edge.router.as_ref().expect("a router edge");
                    if registry.get_router(&router.value).is_none() {
                        found.suggest(
                            router.pos,
                            Subject::Edge(i),
                            format!("unknown router `{}`", router.value),
                            did_you_mean(&router.value, registry.routers()),
                        );
                    }
                }
                Form::Expr => {
                    if let Some(schema) = schema {
                        self.check_route(i, edge, schema, found);
                    }
                }
                Form::Each => {
                    let each = edge.each.as_ref().expect("an each edge");
                    if let Some(schema) = schema {
                        match schema.index_of(&each.value) {
                            None => found.suggest(
                                each.pos,
                                Subject::Edge(i),
                                format!("the state has no field `{}`", each.value),
                                did_you_mean(&each.value, schema.fields().iter().map(|f| f.name)),
                            ),
                            Some(f) => {
                                use agentgraph_engine::JsonType as J;
                                let ty = schema.ty(f);
                                if !matches!(ty, J::List | J::Messages | J::Any) {
                                    found.push(
                                        each.pos,
                                        Subject::Edge(i),
                                        format!("field `{}` is {ty}, not a list", each.value),
                                    );
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Adds the nodes, settings and edges to `b`, mapping any error to its position.
    fn build(
        &self,
        b: &mut GraphBuilder<DynState>,
        nodes: Vec<Option<Made>>,
        registry: &NodeRegistry,
        schema: &Arc<DynSchema>,
        node_pos: &HashMap<&str, Pos>,
        found: &mut Found,
    ) {
        let fail = |found: &mut Found, e: GraphError, pos: Pos, subject: Subject| {
            let (at, s) = locate(&e, node_pos);
            if at.is_unknown() {
                found.push(pos, subject, e.to_string());
            } else {
                found.push(at, s, e.to_string());
            }
        };
        if let Some(defaults) = &self.defaults {
            if let Some(retry) = &defaults.retry {
                b.default_retry(retry_policy(retry));
            }
            if let Some(ms) = &defaults.timeout_ms {
                b.default_timeout(Duration::from_millis(ms.value));
            }
        }
        for (spec, node) in self.nodes.iter().zip(nodes) {
            let node = node.expect("nodes were checked");
            let subject = || Subject::Node(spec.name.value.clone());
            let added = match node {
                Made::Node(node) => b.try_add_node_with(spec.name.value.clone(), node).map(drop),
                Made::Graph(graph) => graph.add_to(b, spec.name.value.clone()),
            };
            if let Err(e) = added {
                fail(found, e, spec.name.pos, subject());
            }
        }
        for spec in &self.nodes {
            let name = spec.name.value.as_str();
            if let Some(retry) = &spec.retry {
                b.retry(name, retry_policy(retry));
            }
            if let Some(ms) = &spec.timeout_ms {
                b.timeout(name, Duration::from_millis(ms.value));
            }
            if spec.interrupt_before {
                b.interrupt_before([name]);
            }
            if spec.interrupt_after {
                b.interrupt_after([name]);
            }
            if spec.deferred {
                b.defer(name);
            }
            if !spec.goto.is_empty() {
                let targets: Vec<&str> = spec.goto.iter().map(|t| engine_name(&t.value)).collect();
                if let Err(e) = b.try_add_goto_edges(name, targets) {
                    fail(found, e, spec.goto[0].pos, Subject::Node(name.to_owned()));
                }
            }
            if let Some(handler) = &spec.on_error {
                b.on_error(name, engine_name(&handler.value));
            }
        }
        for (i, edge) in self.edges.iter().enumerate() {
            let pos = edge_pos(edge);
            let from = edge
                .from
                .as_ref()
                .map(|f| engine_name(&f.value))
                .unwrap_or_default();
            let to: Vec<&str> = edge
                .to
                .as_ref()
                .map(|t| t.value.names().into_iter().map(engine_name).collect())
                .unwrap_or_default();
            let targets: Vec<&str> = edge.targets.iter().map(|t| engine_name(&t.value)).collect();
            let result = match edge_form(edge).expect("edges were checked") {
                Form::Static => b.try_add_edges(from, to).map(drop),
                Form::Router => {
                    let router = registry
                        .get_router(&edge.router.as_ref().expect("a router").value)
                        .expect("routers were checked")
                        .clone();
                    b.try_add_conditional_edges(from, targets, move |s: &DynState| router(s))
                        .map(drop)
                }
                Form::Expr => {
                    let route = self
                        .route_expr(i, edge, schema)
                        .expect("expressions were checked");
                    b.try_add_conditional_edges(from, targets, move |s: &DynState| route.route(s))
                        .map(drop)
                }
                Form::Weighted => b
                    .try_add_weighted_edges(
                        from,
                        edge.weights
                            .iter()
                            .map(|w| (engine_name(&w.to.value), w.weight.value)),
                    )
                    .map(drop),
                Form::Each => {
                    let field = schema
                        .index_of(&edge.each.as_ref().expect("an each edge").value)
                        .expect("fields were checked");
                    let target: String = to.first().copied().unwrap_or_default().to_owned();
                    let node = target.clone();
                    b.try_add_conditional_edges(from, [target.as_str()], move |s: &DynState| {
                        let items = s.values()[field].as_array().cloned().unwrap_or_default();
                        Route::packets(
                            items
                                .iter()
                                .map(|item| Packet::new(node.clone(), &item.to_string())),
                        )
                    })
                    .map(drop)
                }
                Form::Join => {
                    let preds: Vec<&str> = edge.join.iter().map(|j| j.value.as_str()).collect();
                    let mut policy = match &edge.quorum {
                        Some(q) => JoinPolicy::quorum(q.value),
                        None => JoinPolicy::all(),
                    };
                    if let Some(t) = &edge.timeout_steps {
                        policy = policy.timeout_steps(t.value);
                    }
                    b.try_add_join_with(preds, to.first().copied().unwrap_or_default(), policy)
                        .map(drop)
                }
            };
            if let Err(e) = result {
                fail(found, e, pos, Subject::Edge(i));
            }
        }
    }
}

/// Whether `name` can name an environment variable (portably).
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl GraphSpec {
    /// The compiled `route` expression of edge `i`.
    fn route_expr(
        &self,
        i: usize,
        edge: &EdgeSpec,
        schema: &DynSchema,
    ) -> Result<RouteExpr, ExprError> {
        let route = edge.route.as_ref().expect("a route edge");
        let targets = edge.targets.iter().map(|t| t.value.clone()).collect();
        let at = if route.pos.is_unknown() {
            String::new()
        } else {
            format!(" (line {}, column {})", route.pos.line, route.pos.column)
        };
        RouteExpr::compile(&route.value, schema, targets, format!("edge {}{at}", i + 1))
    }

    /// Checks edge `i`'s expression: its length, nesting, syntax and variables, then its
    /// limits on the state the graph starts from (a slow or huge expression is refused
    /// before any run).
    fn check_route(&self, i: usize, edge: &EdgeSpec, schema: &Arc<DynSchema>, found: &mut Found) {
        let route = edge.route.as_ref().expect("a route edge");
        match self.route_expr(i, edge, schema) {
            Err(e) => {
                let message = match e.at {
                    Some((line, column)) => {
                        format!("{} (at {line}:{column} of the expression)", e.message)
                    }
                    None => e.message,
                };
                found.push(route.pos, Subject::Edge(i), message);
            }
            Ok(expr) => {
                if let Err(message) = expr.check_limits(&DynState::new(schema)) {
                    found.push(
                        route.pos,
                        Subject::Edge(i),
                        format!("{message}, on the state the graph starts from"),
                    );
                }
            }
        }
    }
}

/// The reducer a field names.
pub(crate) fn reducer_named(name: &str, registry: &NodeRegistry) -> Option<JsonReducer> {
    if let Some(r) = JsonReducer::builtin(name) {
        return Some(r);
    }
    if let Some(r) = registry.get_reducer(name) {
        return Some(r.clone());
    }
    (name == "messages").then(crate::messages::reducer)
}

/// A node's own settings that can be wrong on their own.
fn check_node_settings(node: &NodeSpec, found: &mut Found) {
    let subject = || Subject::Node(node.name.value.clone());
    if let Some(retry) = &node.retry
        && retry.max_attempts.value == 0
    {
        found.push(
            retry.max_attempts.pos,
            subject(),
            "`max_attempts` counts every attempt: at least 1",
        );
    }
    for layer in &node.layers {
        let set = [
            layer.concurrency.as_ref().map(|c| (c.pos, c.value == 0)),
            layer
                .rate_per_second
                .as_ref()
                .map(|r| (r.pos, r.value == 0)),
            layer.cache_seconds.as_ref().map(|c| (c.pos, c.value == 0)),
        ];
        let given: Vec<(Pos, bool)> = set.into_iter().flatten().collect();
        match given.as_slice() {
            [(pos, true)] => found.push(*pos, subject(), "a layer's limit must be at least 1"),
            [_] => {}
            _ => found.push(
                node.name.pos,
                subject(),
                "each layer is one of `concurrency`, `rate_per_second`, `cache_seconds`",
            ),
        }
    }
}

/// `node` in its layers, outermost first.
fn layered(node: FileNode, spec: &NodeSpec) -> FileNode {
    use agentgraph_engine::Layer;
    let mut node = node;
    for layer in spec.layers.iter().rev() {
        if let Some(c) = &layer.concurrency {
            node = Arc::new(ConcurrencyLimitLayer::new(c.value).layer(node));
        } else if let Some(r) = &layer.rate_per_second {
            node = Arc::new(RateLimitLayer::per_second(r.value).layer(node));
        } else if let Some(c) = &layer.cache_seconds {
            node = Arc::new(CacheLayer::new(10_000, Duration::from_secs(c.value)).layer(node));
        }
    }
    node
}

fn retry_policy(spec: &RetrySpec) -> RetryPolicy {
    let mut policy = RetryPolicy::new(spec.max_attempts.value);
    if spec.initial_ms.is_some() || spec.max_delay_ms.is_some() {
        policy = policy.backoff(
            Duration::from_millis(spec.initial_ms.unwrap_or(500)),
            Duration::from_millis(spec.max_delay_ms.unwrap_or(30_000)),
        );
    }
    if let Some(jitter) = spec.jitter {
        policy = policy.jitter(jitter);
    }
    policy
}

/// What an edge is, from its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Static,
    Router,
    Expr,
    Weighted,
    Each,
    Join,
}

fn edge_form(e: &EdgeSpec) -> Result<Form, String> {
    let has = |b: bool| usize::from(b);
    let kinds = has(e.router.is_some())
        + has(e.route.is_some())
        + has(!e.weights.is_empty())
        + has(e.each.is_some())
        + has(!e.join.is_empty());
    if kinds > 1 {
        return Err("an edge is one of: `to`, `router`, `route`, `weights`, `each`, `join`".into());
    }
    if !e.join.is_empty() {
        if e.from.is_some() {
            return Err("a join has no `from`: its sources are `join`".into());
        }
        return match &e.to {
            Some(to) if to.value.names().len() == 1 => Ok(Form::Join),
            _ => Err("a join leads `to` one node".into()),
        };
    }
    if e.from.is_none() {
        return Err("the edge has no `from`".into());
    }
    if e.quorum.is_some() || e.timeout_steps.is_some() {
        return Err("`quorum` and `timeout_steps` belong to a join".into());
    }
    if e.router.is_some() {
        if e.targets.is_empty() {
            return Err("a router edge lists its `targets`".into());
        }
        if e.to.is_some() {
            return Err("a router edge lists `targets`, not `to`".into());
        }
        return Ok(Form::Router);
    }
    if e.route.is_some() {
        if e.targets.is_empty() {
            return Err("a `route` edge lists its `targets`".into());
        }
        if e.to.is_some() {
            return Err("a `route` edge lists `targets`, not `to`".into());
        }
        return Ok(Form::Expr);
    }
    if !e.targets.is_empty() {
        return Err("`targets` belong to a router edge (add `router` or `route`)".into());
    }
    if !e.weights.is_empty() {
        return if e.to.is_some() {
            Err("a weighted edge lists `weights`, not `to`".into())
        } else {
            Ok(Form::Weighted)
        };
    }
    match &e.to {
        None => Err("the edge has no `to`".into()),
        Some(to) if e.each.is_some() && to.value.names().len() != 1 => {
            Err("an `each` edge leads `to` one node".into())
        }
        Some(_) if e.each.is_some() => Ok(Form::Each),
        Some(_) => Ok(Form::Static),
    }
}

/// Where an edge is (its first key with a position).
fn edge_pos(e: &EdgeSpec) -> Pos {
    e.from
        .as_ref()
        .map(|f| f.pos)
        .or_else(|| e.join.first().map(|j| j.pos))
        .or_else(|| e.to.as_ref().map(|t| t.pos))
        .unwrap_or(Pos::UNKNOWN)
}

/// The position and subject of a builder error: the node it names.
fn locate(e: &GraphError, nodes: &HashMap<&str, Pos>) -> (Pos, Subject) {
    let node = match e {
        GraphError::DuplicateNode(n)
        | GraphError::ReservedName(n)
        | GraphError::Unreachable(n)
        | GraphError::DeadEnd(n)
        | GraphError::EmptyJoin(n) => Some(n.as_str()),
        _ => None,
    };
    match node.and_then(|n| nodes.get(n).map(|p| (n, *p))) {
        Some((n, pos)) => (pos, Subject::Node(n.to_owned())),
        None => (Pos::UNKNOWN, Subject::File),
    }
}
