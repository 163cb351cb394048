//! The file format: what a graph file holds, as serde types. JSON is the canonical form
//! ([`GraphSpec::to_json`]); YAML is read the same way. The JSON Schema of these types is
//! published as `spec/graph.schema.json` ([`json_schema`]).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// A line and column in a file, both from 1 (0 when unknown: a value made in code).
///
/// # Examples
///
/// ```
/// use agentgraph_spec::Pos;
/// assert_eq!(Pos::new(3, 7).to_string(), "3:7");
/// assert!(Pos::UNKNOWN.is_unknown());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1 (in characters).
    pub column: u32,
}

impl Pos {
    /// No position.
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    /// A position.
    pub const fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }

    /// Whether the position is not known.
    pub const fn is_unknown(self) -> bool {
        self.line == 0
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value with the position it was read at. It serializes, and is described in the JSON
/// Schema, as the value alone.
///
/// # Examples
///
/// ```
/// use agentgraph_spec::{At, Pos};
/// let name = At::new("draft".to_owned());
/// assert_eq!(name.value, "draft");
/// assert_eq!(name.pos, Pos::UNKNOWN);
/// assert_eq!(serde_json::to_string(&name).unwrap(), "\"draft\"");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Where it was read.
    pub pos: Pos,
}

impl<T> At<T> {
    /// A value made in code (no position).
    pub fn new(value: T) -> Self {
        At {
            value,
            pos: Pos::UNKNOWN,
        }
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> From<T> for At<T> {
    fn from(value: T) -> Self {
        At::new(value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let loc = spanned.referenced;
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(At {
            value: spanned.value,
            pos: Pos::new(clamp(loc.line()), clamp(loc.column())),
        })
    }
}

impl<T: Serialize> Serialize for At<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for At<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A graph file.
///
/// # Examples
///
/// ```
/// use agentgraph_spec::GraphSpec;
/// let spec = GraphSpec::from_yaml_str(
///     "graph.yaml",
///     "version: 1\nstate:\n  - { name: n, type: integer, reducer: add }\nnodes:\n  - { name: one, kind: set, with: { n: 1 } }\nedges:\n  - { from: START, to: one }\n  - { from: one, to: END }\n",
/// )?;
/// assert_eq!(spec.nodes[0].name.value, "one");
/// assert_eq!(spec.nodes[0].name.pos.line, 5);
/// # Ok::<(), agentgraph_spec::SpecErrors>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "agentgraph graph file")]
pub struct GraphSpec {
    /// The format version: 1.
    pub version: At<u32>,
    /// The graph's name (stored on its runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<At<String>>,
    /// What the graph does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The state's fields, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<FieldSpec>,
    /// Model endpoints the nodes name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelSpec>,
    /// The nodes, in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeSpec>,
    /// The edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgeSpec>,
    /// Settings of every node that does not set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<DefaultsSpec>,
}

/// The type of a state field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Any JSON value.
    Any,
    /// A string.
    String,
    /// A number.
    Number,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// An array.
    List,
    /// An object.
    Object,
    /// Chat messages (an array merged by the messages reducer).
    Messages,
}

impl FieldType {
    /// The engine's type.
    pub fn json_type(self) -> agentgraph_engine::JsonType {
        use agentgraph_engine::JsonType as J;
        match self {
            FieldType::Any => J::Any,
            FieldType::String => J::String,
            FieldType::Number => J::Number,
            FieldType::Integer => J::Integer,
            FieldType::Boolean => J::Boolean,
            FieldType::List => J::List,
            FieldType::Object => J::Object,
            FieldType::Messages => J::Messages,
        }
    }
}

/// A field of the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The field's name.
    pub name: At<String>,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: At<FieldType>,
    /// Its reducer: `overwrite` (the default), `append`, `add`, `min`, `max`, `merge`,
    /// `union`, `messages`, or one registered from Rust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reducer: Option<At<String>>,
    /// The value it starts with (the type's empty value when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<At<Value>>,
}

/// A model endpoint (OpenAI-compatible). Secrets are named by environment variable, never
/// written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The name nodes refer to it by.
    pub name: At<String>,
    /// The provider's model id.
    pub model: At<String>,
    /// The base URL (`https://api.openai.com/v1` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<At<String>>,
    /// The environment variable holding the base URL: when it is set, it wins over
    /// `base_url`; when it is not, `base_url` is used (and without one, the file is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url_env: Option<At<String>>,
    /// The environment variable holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<At<String>>,
    /// The sampling temperature of its calls (nodes may set their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<At<f32>>,
    /// The most tokens an answer may have (nodes may set their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<At<u32>>,
    /// The time a call may take, in milliseconds (60000 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<At<u64>>,
    /// Retries of a failed call inside the node's attempt (2 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<At<u32>>,
    /// A key written in the file: always refused (name its environment variable with
    /// `api_key_env`). Its value is dropped as it is read, never kept or written.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub api_key: Option<At<Refused>>,
}

/// A value the format refuses (a secret written in the file): only its position is kept.
///
/// # Examples
///
/// ```
/// use agentgraph_spec::GraphSpec;
/// let spec = GraphSpec::from_yaml_str("g.yaml", "version: 1\nmodels:\n  - { name: m, model: x, api_key: sk-secret }\n")?;
/// let refused = spec.models[0].api_key.as_ref().unwrap();
/// assert_eq!(refused.pos.line, 3);
/// assert!(!format!("{spec:?}").contains("sk-secret"));
/// # Ok::<(), agentgraph_spec::SpecErrors>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused;

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(Refused)
    }
}

/// A node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's name.
    pub name: At<String>,
    /// Its kind: a built-in one (`set`, `interrupt`, `collect`, `subgraph`; with the node
    /// library: `model`, `agent`, `tool`, `http`, `mcp`, `pattern`) or one registered from
    /// Rust.
    pub kind: At<String>,
    /// The kind's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<At<Value>>,
    /// Retries of a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// The time an attempt may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<At<u64>>,
    /// Stop before the node runs, for a human to resume.
    #[serde(default, skip_serializing_if = "is_false")]
    pub interrupt_before: bool,
    /// Stop after the node ran.
    #[serde(default, skip_serializing_if = "is_false")]
    pub interrupt_after: bool,
    /// Once triggered, wait until no other task is left.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deferred: bool,
    /// The nodes the node may go to itself (a go-to), besides its edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goto: Vec<At<String>>,
    /// The node its final failure routes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<At<String>>,
    /// Middleware around the node, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A retry policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all (1: no retry).
    pub max_attempts: At<u32>,
    /// The first delay, in milliseconds (500 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_ms: Option<u64>,
    /// The longest delay, in milliseconds (30000 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    /// Whether delays are jittered (yes when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

/// A node's middleware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// At most this many calls at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<At<usize>>,
    /// At most this many calls per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<At<u32>>,
    /// Cache results for this many seconds, by the state the node reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_seconds: Option<At<u64>>,
}

/// Settings of every node that does not set its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    /// The default retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// The default timeout of an attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<At<u64>>,
}

/// An edge. Which kind it is follows from the keys it has:
///
/// | keys | edge |
/// |---|---|
/// | `from`, `to` (one name or a list) | static (a list fans out) |
/// | `from`, `router`, `targets` | conditional, routed by a router registered from Rust |
/// | `from`, `route`, `targets` | conditional, routed by an expression over the state |
/// | `from`, `weights` | weighted: one target drawn by weight (seeded) |
/// | `from`, `each`, `to` | packets: one task of `to` per item of a list field |
/// | `join`, `to` (and `quorum`, `timeout_steps`) | a join of the `join` nodes into `to` |
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The source node, or `START`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<At<String>>,
    /// The target (or targets) of a static, packet or join edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<At<OneOrMany>>,
    /// A router registered from Rust choosing among `targets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<At<String>>,
    /// The targets a conditional edge may choose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<At<String>>,
    /// The targets of a weighted edge with their weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<WeightSpec>,
    /// A list field of the state: one packet (a task of `to`) per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<At<String>>,
    /// The predecessors of a join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<At<String>>,
    /// How many predecessors fire the join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<At<usize>>,
    /// The steps after which the join fires with what arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_steps: Option<At<u32>>,
    /// An expression over the state choosing among `targets`: it reads the state's fields as
    /// variables (and `state`, every field as a map) and returns a target's name, or a list
    /// of them to fan out. Sandboxed: no statements or loops, no I/O, bounded in length,
    /// nesting, operations and sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<At<String>>,
}

/// One name or a list of names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One name.
    One(String),
    /// Several names.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_spec::OneOrMany;
    /// assert_eq!(OneOrMany::One("a".into()).names(), ["a"]);
    /// assert_eq!(OneOrMany::Many(vec!["a".into(), "b".into()]).names(), ["a", "b"]);
    /// ```
    pub fn names(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

/// A target of a weighted edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightSpec {
    /// The target.
    pub to: At<String>,
    /// Its weight (finite, not negative).
    pub weight: At<f64>,
}

/// The JSON Schema of the file format, as published in `spec/graph.schema.json`. A node's
/// `with` is described for each built-in kind (`if` its `kind` is that kind, `then` its
/// parameters; a pattern's by its `pattern`), so an editor flags a parameter the kind does not
/// take; a kind registered from Rust takes any `with`.
///
/// # Examples
///
/// ```
/// let schema = agentgraph_spec::json_schema();
/// assert_eq!(schema["title"], "agentgraph graph file");
/// assert!(schema["properties"]["nodes"].is_object());
/// let model = &schema["$defs"]["ModelParams"];
/// assert_eq!(model["additionalProperties"], false);
/// assert!(model["properties"]["temperature"].is_object());
/// ```
pub fn json_schema() -> Value {
    crate::kind_schema::graph_schema()
}
