//! Export: a graph compiled from a [`GraphSpec`] (read from a file, or built in Rust from
//! registered kinds with the methods below) written out as a file again.

use agentgraph_engine::{CompiledGraph, DynState};
use serde_json::Value;

use crate::error::{SpecError, SpecErrors, Subject, did_you_mean};
use crate::format::{
    At, EdgeSpec, FORMAT_VERSION, FieldSpec, FieldType, GraphSpec, NodeSpec, OneOrMany, Pos,
    WeightSpec,
};
use crate::registry::NodeRegistry;

impl GraphSpec {
    /// An empty graph of the current format version, to build in Rust from registered kinds
    /// (then [`compile`](GraphSpec::compile) it, and write it out with
    /// [`to_json`](GraphSpec::to_json)).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_spec::{FieldType, GraphSpec, NodeRegistry};
    /// use serde_json::json;
    /// let mut spec = GraphSpec::new();
    /// spec.field("n", FieldType::Integer, Some("add"))
    ///     .node("one", "set", json!({ "n": 1 }))
    ///     .node("two", "set", json!({ "n": 2 }))
    ///     .edge("START", ["one"])
    ///     .route("one", "if n > 0 { \"two\" } else { \"END\" }", ["two", "END"])
    ///     .edge("two", ["END"]);
    /// let graph = spec.compile(&NodeRegistry::builtin())?;
    /// let file = GraphSpec::from_graph(&graph, &NodeRegistry::builtin())?.to_json();
    /// assert_eq!(file, spec.to_json());
    /// assert!(file.contains("\"route\": \"if n > 0"));
    /// # Ok::<(), agentgraph_spec::SpecErrors>(())
    /// ```
    pub fn new() -> Self {
        GraphSpec {
            version: At::new(FORMAT_VERSION),
            ..GraphSpec::default()
        }
    }

    /// Adds a state field with its type and reducer (`None`: overwrite).
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    pub fn field(&mut self, name: &str, ty: FieldType, reducer: Option<&str>) -> &mut Self {
        self.state.push(FieldSpec {
            name: At::new(name.to_owned()),
            ty: At::new(ty),
            reducer: reducer.map(|r| At::new(r.to_owned())),
            default: None,
        });
        self
    }

    /// Adds a node of a registered kind with its parameters (`null` for none). Its other
    /// settings (retries, timeout, interrupts, layers) are the fields of the last of
    /// `nodes` (`spec.nodes.last_mut()`).
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    pub fn node(&mut self, name: &str, kind: &str, with: Value) -> &mut Self {
        self.nodes.push(NodeSpec {
            name: At::new(name.to_owned()),
            kind: At::new(kind.to_owned()),
            with: (!with.is_null()).then(|| At::new(with)),
            retry: None,
            timeout_ms: None,
            interrupt_before: false,
            interrupt_after: false,
            deferred: false,
            goto: Vec::new(),
            on_error: None,
            layers: Vec::new(),
        });
        self
    }

    /// Adds a static edge (several targets fan out). `START` and `END` name the graph's ends.
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    pub fn edge<'a>(&mut self, from: &str, to: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: Some(At::new(from.to_owned())),
            to: Some(At::new(names(to))),
            ..EdgeSpec::default()
        });
        self
    }

    /// Adds a conditional edge routed by a router registered from Rust.
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    pub fn router<'a>(
        &mut self,
        from: &str,
        router: &str,
        targets: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: Some(At::new(from.to_owned())),
            router: Some(At::new(router.to_owned())),
            targets: targets.into_iter().map(|t| At::new(t.to_owned())).collect(),
            ..EdgeSpec::default()
        });
        self
    }

    /// Adds a conditional edge routed by an expression over the state.
    pub fn route<'a>(
        &mut self,
        from: &str,
        expression: &str,
        targets: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: Some(At::new(from.to_owned())),
            route: Some(At::new(expression.to_owned())),
            targets: targets.into_iter().map(|t| At::new(t.to_owned())).collect(),
            ..EdgeSpec::default()
        });
        self
    }

    /// Adds a weighted edge: one target drawn by weight.
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    pub fn weighted<'a>(
        &mut self,
        from: &str,
        weights: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: Some(At::new(from.to_owned())),
            weights: weights
                .into_iter()
                .map(|(to, weight)| WeightSpec {
                    to: At::new(to.to_owned()),
                    weight: At::new(weight),
                })
                .collect(),
            ..EdgeSpec::default()
        });
        self
    }

    /// Adds a packet edge: one task of `to` per item of the list field `each`.
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    pub fn each(&mut self, from: &str, each: &str, to: &str) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: Some(At::new(from.to_owned())),
            each: Some(At::new(each.to_owned())),
            to: Some(At::new(OneOrMany::One(to.to_owned()))),
            ..EdgeSpec::default()
        });
        self
    }

    /// Adds a join of `preds` into `to`, fired by `quorum` of them (all: `None`) or after
    /// `timeout_steps`.
    ///
    /// # Examples
    ///
    /// See [`GraphSpec::new`]; every edge kind in `spec/tests/export.rs`.
    pub fn join<'a>(
        &mut self,
        preds: impl IntoIterator<Item = &'a str>,
        to: &str,
        quorum: Option<usize>,
        timeout_steps: Option<u32>,
    ) -> &mut Self {
        self.edges.push(EdgeSpec {
            join: preds.into_iter().map(|p| At::new(p.to_owned())).collect(),
            to: Some(At::new(OneOrMany::One(to.to_owned()))),
            quorum: quorum.map(At::new),
            timeout_steps: timeout_steps.map(At::new),
            ..EdgeSpec::default()
        });
        self
    }

    /// The file of a graph compiled from a [`GraphSpec`] (a file, or one built in Rust), as
    /// a value to write out ([`to_json`](GraphSpec::to_json)): the nodes by their registered
    /// kinds and parameters, the edges of every kind. Reading that file and exporting again
    /// gives the same JSON, byte for byte.
    ///
    /// # Errors
    ///
    /// When the graph was not compiled from a `GraphSpec` (a graph of Rust closures has no
    /// file form), or it names a kind, router or reducer that `registry` does not hold (the
    /// file could not be loaded with it).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_spec::{GraphSpec, NodeRegistry};
    /// let registry = NodeRegistry::builtin();
    /// let text = "version: 1\nstate:\n  - { name: n, type: integer, reducer: add }\nnodes:\n  - { name: one, kind: set, with: { n: 1 } }\nedges:\n  - { from: START, to: one }\n  - { from: one, to: END }\n";
    /// let graph = GraphSpec::from_yaml_str("g.yaml", text)?.compile(&registry)?;
    /// let json = GraphSpec::from_graph(&graph, &registry)?.to_json();
    /// let again = GraphSpec::from_yaml_str("g.json", &json)?.compile(&registry)?;
    /// assert_eq!(GraphSpec::from_graph(&again, &registry)?.to_json(), json);
    /// assert_eq!(again.fingerprint(), graph.fingerprint());
    /// # Ok::<(), agentgraph_spec::SpecErrors>(())
    /// ```
    pub fn from_graph(
        graph: &CompiledGraph<DynState>,
        registry: &NodeRegistry,
    ) -> Result<GraphSpec, SpecErrors> {
        let Some(spec) = graph.attachment::<GraphSpec>() else {
            return Err(SpecErrors::one(SpecError::new(
                Pos::UNKNOWN,
                Subject::File,
                "the graph was not compiled from a GraphSpec, so it has no file form: build it with `GraphSpec::new()` and the kinds of a `NodeRegistry`",
            )));
        };
        let mut errors = Vec::new();
        let missing = |what: &str, name: &str, known: Vec<&str>, subject: Subject| {
            SpecError::new(
                Pos::UNKNOWN,
                subject,
                format!("the registry has no {what} `{name}`"),
            )
            .suggest(did_you_mean(name, known))
        };
        for node in &spec.nodes {
            if registry.get_kind(&node.kind.value).is_none() {
                errors.push(missing(
                    "kind",
                    &node.kind.value,
                    registry.kinds().collect(),
                    Subject::Node(node.name.value.clone()),
                ));
            }
        }
        for (i, edge) in spec.edges.iter().enumerate() {
            if let Some(router) = &edge.router
                && registry.get_router(&router.value).is_none()
            {
                errors.push(missing(
                    "router",
                    &router.value,
                    registry.routers().collect(),
                    Subject::Edge(i),
                ));
            }
        }
        for field in &spec.state {
            if let Some(reducer) = &field.reducer
                && crate::compile::reducer_named(&reducer.value, registry).is_none()
            {
                errors.push(missing(
                    "reducer",
                    &reducer.value,
                    registry.reducers().collect(),
                    Subject::Field(field.name.value.clone()),
                ));
            }
        }
        if errors.is_empty() {
            Ok(spec.clone())
        } else {
            Err(SpecErrors(errors))
        }
    }
}

fn names<'a>(to: impl IntoIterator<Item = &'a str>) -> OneOrMany {
    let mut names: Vec<String> = to.into_iter().map(str::to_owned).collect();
    if names.len() == 1 {
        OneOrMany::One(names.pop().unwrap_or_default())
    } else {
        OneOrMany::Many(names)
    }
}
