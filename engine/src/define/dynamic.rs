//! [`DynState`]: a state whose fields are known only when the program runs (declared in a
//! file, say), its values JSON, each field with a type and a reducer from its [`DynSchema`].
//!
//! It is a [`State`] like any derived one: checkpointed field by field (a field's stored
//! bytes are its JSON text; deltas for fields that are not overwritten), resumed, forked and
//! viewed the same way. Its merges are as deterministic as a derived state's: every reducer
//! is a pure function of the field's value and the written value, applied in the engine's
//! fixed order.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::de::Error as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::codec::CodecError;
use crate::define::reducer::ReducerKind;
use crate::define::route::{Command, IntoCommand};
use crate::define::state::{Field, State};

/// `name` as a `&'static str`, stored once per distinct name for the life of the process
/// (the field names of run-time schemas: a program that reloads a file does not grow with
/// each reload, only with names it has not seen).
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The JSON type of a [`DynState`] field: what values it holds.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::JsonType;
/// assert!(JsonType::Integer.admits(&serde_json::json!(3)));
/// assert!(!JsonType::Integer.admits(&serde_json::json!(3.5)));
/// assert!(JsonType::Number.admits(&serde_json::json!(3.5)));
/// assert_eq!(JsonType::List.default_value(), serde_json::json!([]));
/// assert_eq!(JsonType::Messages.name(), "messages");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JsonType {
    /// Any JSON value (`null` by default).
    Any,
    /// A string (`""`).
    String,
    /// A number (`0`).
    Number,
    /// A whole number that fits an `i64` (`0`).
    Integer,
    /// `true` or `false` (`false`).
    Boolean,
    /// An array (`[]`).
    List,
    /// An object (`{}`).
    Object,
    /// An array of chat messages (`[]`), as the node library's `Message` writes them.
    Messages,
}

impl JsonType {
    /// Every type, in declaration order.
    pub const ALL: [JsonType; 8] = [
        JsonType::Any,
        JsonType::String,
        JsonType::Number,
        JsonType::Integer,
        JsonType::Boolean,
        JsonType::List,
        JsonType::Object,
        JsonType::Messages,
    ];

    /// The type's name, as a file writes it (and as the graph's fingerprint records it).
    pub const fn name(self) -> &'static str {
        match self {
            JsonType::Any => "any",
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::Boolean => "boolean",
            JsonType::List => "list",
            JsonType::Object => "object",
            JsonType::Messages => "messages",
        }
    }

    /// Whether `value` is of this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            JsonType::Any => true,
            JsonType::String => value.is_string(),
            JsonType::Number => value.is_number(),
            JsonType::Integer => value.is_i64(),
            JsonType::Boolean => value.is_boolean(),
            JsonType::List | JsonType::Messages => value.is_array(),
            JsonType::Object => value.is_object(),
        }
    }

    /// The value a field of this type starts with.
    pub fn default_value(self) -> Value {
        match self {
            JsonType::Any => Value::Null,
            JsonType::String => Value::String(String::new()),
            JsonType::Number | JsonType::Integer => Value::from(0),
            JsonType::Boolean => Value::Bool(false),
            JsonType::List | JsonType::Messages => Value::Array(Vec::new()),
            JsonType::Object => Value::Object(Map::new()),
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A merge function of JSON values, for [`JsonReducer::custom`].
pub type JsonMerge = dyn Fn(&mut Value, Value) + Send + Sync;

/// How updates of a [`DynState`] field are merged: the reducers of `#[derive(State)]`, on
/// JSON values, or a named function.
///
/// | reducer | field types | merge |
/// |---|---|---|
/// | `overwrite` | any | replaces the value; two writers in one step is an error |
/// | `append` | `list`, `string`, `messages` | extends |
/// | `add` | `integer`, `number` | adds (an `integer` sum that overflows `i64` becomes a float) |
/// | `min` / `max` | `integer`, `number`, `string` | keeps the smaller / larger |
/// | `merge` | `object` | inserts every entry, the update wins per key |
/// | `union` | `list` | appends the items not already present |
/// | custom | as its function accepts | calls the function |
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{JsonReducer, JsonType};
/// use serde_json::json;
/// let mut v = json!([1, 2]);
/// JsonReducer::Union.merge(&mut v, json!([2, 3]));
/// assert_eq!(v, json!([1, 2, 3]));
/// assert!(JsonReducer::Add.fits(JsonType::Integer));
/// assert!(!JsonReducer::Add.fits(JsonType::String));
/// let longest = JsonReducer::custom("longest", |acc, new| {
///     if new.as_str().map(str::len) > acc.as_str().map(str::len) {
///         *acc = new;
///     }
/// });
/// let mut s = json!("ab");
/// longest.merge(&mut s, json!("abc"));
/// assert_eq!(s, json!("abc"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum JsonReducer {
    /// The update replaces the value.
    Overwrite,
    /// Arrays are extended, strings appended to.
    Append,
    /// Numbers are added.
    Add,
    /// The smaller value is kept.
    Min,
    /// The larger value is kept.
    Max,
    /// The update's entries are inserted, later writers win per key.
    Merge,
    /// The update's items not already present are appended.
    Union,
    /// A function, by name (the name is recorded in the graph's fingerprint).
    Custom {
        /// The reducer's name.
        name: &'static str,
        /// The field types it accepts (any when empty).
        types: Vec<JsonType>,
        /// The merge.
        merge: Arc<JsonMerge>,
    },
}

impl JsonReducer {
    /// A reducer that calls `merge(&mut value, written)`, named `name` (in the graph's
    /// fingerprint and its description). `merge` must be deterministic and must not panic on
    /// a value of the field's type.
    pub fn custom(name: &str, merge: impl Fn(&mut Value, Value) + Send + Sync + 'static) -> Self {
        JsonReducer::Custom {
            name: intern(name),
            types: Vec::new(),
            merge: Arc::new(merge),
        }
    }

    /// The same custom reducer, accepted only on fields of `types` (no effect on a built-in
    /// reducer).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{JsonReducer, JsonType};
    /// let r = JsonReducer::custom("concat", |_, _| {}).for_types(&[JsonType::String]);
    /// assert!(r.fits(JsonType::String) && !r.fits(JsonType::List));
    /// ```
    #[must_use]
    pub fn for_types(mut self, only: &[JsonType]) -> Self {
        if let JsonReducer::Custom { types, .. } = &mut self {
            *types = only.to_vec();
        }
        self
    }

    /// The reducer's name (`overwrite`, `append`, ..., or a custom one's).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The reducer as the engine records it.
    pub fn kind(&self) -> ReducerKind {
        match self {
            JsonReducer::Overwrite => ReducerKind::Overwrite,
            JsonReducer::Append => ReducerKind::Append,
            JsonReducer::Add => ReducerKind::Add,
            JsonReducer::Min => ReducerKind::Min,
            JsonReducer::Max => ReducerKind::Max,
            JsonReducer::Merge => ReducerKind::Merge,
            JsonReducer::Union => ReducerKind::Union,
            JsonReducer::Custom { name, .. } => ReducerKind::Custom(name),
        }
    }

    /// A built-in reducer by name (`overwrite`, `append`, `add`, `min`, `max`, `merge`,
    /// `union`).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::JsonReducer;
    /// assert_eq!(JsonReducer::builtin("add").map(|r| r.name()), Some("add"));
    /// assert!(JsonReducer::builtin("sum").is_none());
    /// ```
    pub fn builtin(name: &str) -> Option<Self> {
        Some(match name {
            "overwrite" => JsonReducer::Overwrite,
            "append" => JsonReducer::Append,
            "add" => JsonReducer::Add,
            "min" => JsonReducer::Min,
            "max" => JsonReducer::Max,
            "merge" => JsonReducer::Merge,
            "union" => JsonReducer::Union,
            _ => return None,
        })
    }

    /// Whether the reducer merges values of `ty`.
    pub fn fits(&self, ty: JsonType) -> bool {
        use JsonType as T;
        match self {
            JsonReducer::Overwrite => true,
            JsonReducer::Append => matches!(ty, T::List | T::String | T::Messages),
            JsonReducer::Add => matches!(ty, T::Integer | T::Number),
            JsonReducer::Min | JsonReducer::Max => {
                matches!(ty, T::Integer | T::Number | T::String)
            }
            JsonReducer::Merge => ty == T::Object,
            JsonReducer::Union => matches!(ty, T::List),
            JsonReducer::Custom { types, .. } => types.is_empty() || types.contains(&ty),
        }
    }

    /// Merges `update` into `acc`. Total: values the reducer does not combine (which a
    /// schema's checks keep out) replace `acc`.
    pub fn merge(&self, acc: &mut Value, update: Value) {
        match self {
            JsonReducer::Overwrite => *acc = update,
            JsonReducer::Append => match (acc, update) {
                (Value::Array(acc), Value::Array(items)) => acc.extend(items),
                (Value::String(acc), Value::String(s)) => acc.push_str(&s),
                (acc, update) => *acc = update,
            },
            JsonReducer::Union => match (acc, update) {
                (Value::Array(acc), Value::Array(items)) => {
                    for item in items {
                        if !acc.contains(&item) {
                            acc.push(item);
                        }
                    }
                }
                (acc, update) => *acc = update,
            },
            JsonReducer::Add => match (&*acc, &update) {
                (Value::Number(a), Value::Number(b)) => *acc = add(a, b),
                _ => *acc = update,
            },
            JsonReducer::Min | JsonReducer::Max => {
                let min = matches!(self, JsonReducer::Min);
                let keep_new = match compare(acc, &update) {
                    Some(std::cmp::Ordering::Greater) => min,
                    Some(std::cmp::Ordering::Less) => !min,
                    Some(std::cmp::Ordering::Equal) => false,
                    None => true,
                };
                if keep_new {
                    *acc = update;
                }
            }
            JsonReducer::Merge => match (acc, update) {
                (Value::Object(acc), Value::Object(entries)) => acc.extend(entries),
                (acc, update) => *acc = update,
            },
            JsonReducer::Custom { merge, .. } => merge(acc, update),
        }
    }
}

/// The sum of two JSON numbers: an `i64` while it fits, a float otherwise (saturating at the
/// largest finite float).
fn add(a: &Number, b: &Number) -> Value {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64())
        && let Some(sum) = x.checked_add(y)
    {
        return Value::from(sum);
    }
    let sum = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
    let sum = sum.clamp(f64::MIN, f64::MAX);
    Number::from_f64(sum).map_or(Value::from(0), Value::Number)
}

/// Numbers compared as numbers, strings as strings, anything else not at all.
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl fmt::Debug for JsonReducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a [`DynSchema`] or a [`DynState`] value was refused.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{DynSchema, DynStateError, JsonReducer, JsonType};
/// let err = DynSchema::builder()
///     .field("n", JsonType::String, JsonReducer::Add)
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, DynStateError::ReducerDoesNotFit { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DynStateError {
    /// The state has no field of that name.
    #[error("the state has no field `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownField {
        /// The name given.
        name: String,
        /// A field with a close name.
        suggestion: Option<String>,
    },
    /// A value is not of its field's type.
    #[error("field `{field}` is {expected}, not {found}")]
    WrongType {
        /// The field.
        field: String,
        /// Its type.
        expected: JsonType,
        /// What the value is (`string`, `number`, ...).
        found: &'static str,
    },
    /// Two fields of one name.
    #[error("field `{0}` is declared twice")]
    Duplicate(String),
    /// A field without a name.
    #[error("a field has no name")]
    EmptyName,
    /// The reducer does not merge values of the field's type.
    #[error("field `{field}`: the reducer `{reducer}` does not merge {ty} values")]
    ReducerDoesNotFit {
        /// The field.
        field: String,
        /// The reducer's name.
        reducer: &'static str,
        /// The field's type.
        ty: JsonType,
    },
    /// The state's or an update's JSON is not an object.
    #[error("a state's or an update's JSON is an object of fields, not {0}")]
    NotAnObject(&'static str),
    /// An update made without a schema (`DynUpdate::default()`) was given a field by name.
    #[error("the update has no schema to name fields with (make it with `DynState::update`)")]
    NoSchema,
}

/// What kind of JSON value `v` is, for messages.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The fields of a [`DynState`]: names, types, reducers and starting values. Made with
/// [`DynSchema::builder`]; shared as an `Arc` by the compiled graph, its states and updates.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{DynSchema, JsonReducer, JsonType};
/// let schema = DynSchema::builder()
///     .field("topic", JsonType::String, JsonReducer::Overwrite)
///     .field("notes", JsonType::List, JsonReducer::Append)
///     .build()?;
/// assert_eq!(schema.len(), 2);
/// assert_eq!(schema.index_of("notes"), Some(1));
/// assert_eq!(schema.ty(1), JsonType::List);
/// # Ok::<(), agentgraph_engine::DynStateError>(())
/// ```
pub struct DynSchema {
    fields: Vec<Field>,
    types: Vec<JsonType>,
    reducers: Vec<JsonReducer>,
    defaults: Vec<Value>,
    index: HashMap<&'static str, usize>,
}

impl fmt::Debug for DynSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.fields
                    .iter()
                    .map(|field| (field.name, (field.ty, field.reducer.name()))),
            )
            .finish()
    }
}

impl DynSchema {
    /// A schema to build, field by field.
    pub fn builder() -> DynSchemaBuilder {
        DynSchemaBuilder::default()
    }

    /// The fields, in declaration order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the state has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The index of the field `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The type of field `index`.
    ///
    /// # Panics
    ///
    /// When there is no such field.
    pub fn ty(&self, index: usize) -> JsonType {
        self.types[index]
    }

    /// The reducer of field `index`.
    ///
    /// # Panics
    ///
    /// When there is no such field.
    pub fn reducer(&self, index: usize) -> &JsonReducer {
        &self.reducers[index]
    }

    /// The value field `index` starts with.
    ///
    /// # Panics
    ///
    /// When there is no such field.
    pub fn default_value(&self, index: usize) -> &Value {
        &self.defaults[index]
    }

    /// The index of field `name`, or an error with the closest name.
    fn resolve(&self, name: &str) -> Result<usize, DynStateError> {
        self.index_of(name)
            .ok_or_else(|| DynStateError::UnknownField {
                name: name.to_owned(),
                suggestion: closest(name, self.fields.iter().map(|f| f.name)),
            })
    }

    /// `value` checked against field `index`'s type (and its custom reducer's types).
    fn check(&self, index: usize, value: &Value) -> Result<(), DynStateError> {
        let ty = self.types[index];
        if ty.admits(value) {
            Ok(())
        } else {
            Err(DynStateError::WrongType {
                field: self.fields[index].name.to_owned(),
                expected: ty,
                found: kind_of(value),
            })
        }
    }
}

/// The name among `names` closest to `name` (a misspelling), if any is close.
fn closest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, n)| *d <= (n.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.to_owned())
}

/// The Levenshtein distance of two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Builds a [`DynSchema`]; [`build`](DynSchemaBuilder::build) checks it.
#[derive(Debug, Default)]
pub struct DynSchemaBuilder {
    fields: Vec<(String, JsonType, JsonReducer, Option<Value>)>,
}

impl DynSchemaBuilder {
    /// Adds a field starting at its type's default value.
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, ty: JsonType, reducer: JsonReducer) -> Self {
        self.fields.push((name.into(), ty, reducer, None));
        self
    }

    /// Adds a field starting at `default`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynSchema, DynState, JsonReducer, JsonType};
    /// let schema = DynSchema::builder()
    ///     .field_with_default("tries", JsonType::Integer, JsonReducer::Add, 3.into())
    ///     .build()?;
    /// assert_eq!(DynState::new(&schema).get("tries"), Some(&3.into()));
    /// # Ok::<(), agentgraph_engine::DynStateError>(())
    /// ```
    #[must_use]
    pub fn field_with_default(
        mut self,
        name: impl Into<String>,
        ty: JsonType,
        reducer: JsonReducer,
        default: Value,
    ) -> Self {
        self.fields.push((name.into(), ty, reducer, Some(default)));
        self
    }

    /// The schema.
    ///
    /// # Errors
    ///
    /// [`DynStateError`] for a field without a name, one declared twice, a reducer that does
    /// not fit its type, or a default value not of the type.
    pub fn build(self) -> Result<Arc<DynSchema>, DynStateError> {
        let mut schema = DynSchema {
            fields: Vec::with_capacity(self.fields.len()),
            types: Vec::with_capacity(self.fields.len()),
            reducers: Vec::with_capacity(self.fields.len()),
            defaults: Vec::with_capacity(self.fields.len()),
            index: HashMap::with_capacity(self.fields.len()),
        };
        for (name, ty, reducer, default) in self.fields {
            if name.is_empty() {
                return Err(DynStateError::EmptyName);
            }
            if !reducer.fits(ty) {
                return Err(DynStateError::ReducerDoesNotFit {
                    field: name,
                    reducer: reducer.name(),
                    ty,
                });
            }
            let name = intern(&name);
            let i = schema.fields.len();
            if schema.index.insert(name, i).is_some() {
                return Err(DynStateError::Duplicate(name.to_owned()));
            }
            schema
                .fields
                .push(Field::new(name, reducer.kind()).with_type(ty.name()));
            schema.types.push(ty);
            schema.reducers.push(reducer);
            schema.defaults.push(Value::Null);
            let default = default.unwrap_or_else(|| ty.default_value());
            schema.check(i, &default)?;
            schema.defaults[i] = default;
        }
        Ok(Arc::new(schema))
    }
}

/// A state whose fields are known when the program runs: JSON values, one per field of its
/// [`DynSchema`]. Build graphs over it with
/// [`GraphBuilder::with_schema`](crate::GraphBuilder::with_schema).
///
/// Its JSON (`Serialize`) is an object of its fields. It does not deserialize on its own
/// (its fields' reducers live in the schema): make one with [`DynState::from_json`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::{DynSchema, DynState, GraphBuilder, JsonReducer, JsonType, START, END};
/// use serde_json::json;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let schema = DynSchema::builder()
///     .field("topic", JsonType::String, JsonReducer::Overwrite)
///     .field("notes", JsonType::List, JsonReducer::Append)
///     .build()?;
/// let mut b = GraphBuilder::<DynState>::with_schema(schema.clone());
/// for name in ["a", "b"] {
///     b.add_node(name, move |s: Arc<DynState>, _| async move {
///         let topic = s.get("topic").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
///         Ok(s.update().set("notes", json!([format!("{name} on {topic}")]))?)
///     });
/// }
/// b.add_edge(START, "a").add_edge(START, "b").add_edge("a", END).add_edge("b", END);
/// let graph = b.compile()?;
/// let input = DynState::from_json(&schema, json!({ "topic": "rust" }))?;
/// let out = graph.invoke(input).await?;
/// assert_eq!(out.to_json(), json!({ "topic": "rust", "notes": ["a on rust", "b on rust"] }));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DynState {
    schema: Arc<DynSchema>,
    values: Vec<Value>,
}

impl fmt::Debug for DynState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.schema.fields.iter().map(|f| f.name).zip(&self.values))
            .finish()
    }
}

impl PartialEq for DynState {
    fn eq(&self, other: &Self) -> bool {
        self.schema.fields == other.schema.fields && self.values == other.values
    }
}

impl DynState {
    /// A state of `schema` with every field at its default value.
    pub fn new(schema: &Arc<DynSchema>) -> Self {
        DynState {
            schema: schema.clone(),
            values: schema.defaults.clone(),
        }
    }

    /// A state of `schema` from a JSON object: the fields it names take its values (checked
    /// against their types), the others their defaults.
    ///
    /// # Errors
    ///
    /// [`DynStateError`] for something else than an object, an unknown field, or a value not
    /// of its field's type.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynSchema, DynState, DynStateError, JsonReducer, JsonType};
    /// let schema = DynSchema::builder().field("topic", JsonType::String, JsonReducer::Overwrite).build()?;
    /// let err = DynState::from_json(&schema, serde_json::json!({ "topik": "x" })).unwrap_err();
    /// assert_eq!(err.to_string(), "the state has no field `topik` (did you mean `topic`?)");
    /// # Ok::<(), DynStateError>(())
    /// ```
    pub fn from_json(schema: &Arc<DynSchema>, value: Value) -> Result<Self, DynStateError> {
        let mut state = DynState::new(schema);
        let Value::Object(given) = value else {
            return Err(DynStateError::NotAnObject(kind_of(&value)));
        };
        for (name, value) in given {
            let i = schema.resolve(&name)?;
            schema.check(i, &value)?;
            state.values[i] = value;
        }
        Ok(state)
    }

    /// The state's schema.
    pub fn schema(&self) -> &Arc<DynSchema> {
        &self.schema
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.schema.index_of(name).map(|i| &self.values[i])
    }

    /// The values, in field order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The state as a JSON object of its fields.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.schema
                .fields
                .iter()
                .zip(&self.values)
                .map(|(f, v)| (f.name.to_owned(), v.clone()))
                .collect(),
        )
    }

    /// An empty update of this state's schema, to [`set`](DynUpdate::set) fields on.
    pub fn update(&self) -> DynUpdate {
        DynUpdate {
            schema: Some(self.schema.clone()),
            writes: Vec::new(),
        }
    }

    fn reduce(&mut self, index: usize, value: Value) {
        if let (Some(acc), Some(reducer)) =
            (self.values.get_mut(index), self.schema.reducers.get(index))
        {
            reducer.merge(acc, value);
        }
    }
}

impl Serialize for DynState {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (f, v) in self.schema.fields.iter().zip(&self.values) {
            map.serialize_entry(f.name, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for DynState {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom(
            "a DynState is read through its schema (DynState::from_json)",
        ))
    }
}

/// An update of a [`DynState`]: the values it writes, by field. Made with
/// [`DynState::update`] (or [`DynUpdate::of`]), fields set by name with
/// [`set`](DynUpdate::set). Setting a field twice keeps the second value.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{DynSchema, DynState, JsonReducer, JsonType};
/// use serde_json::json;
/// let schema = DynSchema::builder().field("n", JsonType::Integer, JsonReducer::Add).build()?;
/// let update = DynState::new(&schema).update().set("n", 2)?;
/// assert_eq!(update.written().collect::<Vec<_>>(), [(0, &json!(2))]);
/// assert!(DynState::new(&schema).update().set("n", "two").is_err());
/// # Ok::<(), agentgraph_engine::DynStateError>(())
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct DynUpdate {
    schema: Option<Arc<DynSchema>>,
    /// Sorted by field index, one entry per field.
    writes: Vec<(u32, Value)>,
}

impl PartialEq for DynSchema {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields && self.defaults == other.defaults
    }
}

impl fmt::Debug for DynUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |i: u32| {
            self.schema
                .as_ref()
                .and_then(|s| s.fields.get(i as usize))
                .map_or_else(|| i.to_string(), |f| f.name.to_owned())
        };
        f.debug_map()
            .entries(self.writes.iter().map(|(i, v)| (name(*i), v)))
            .finish()
    }
}

impl DynUpdate {
    /// An empty update of `schema`.
    pub fn of(schema: &Arc<DynSchema>) -> Self {
        DynUpdate {
            schema: Some(schema.clone()),
            writes: Vec::new(),
        }
    }

    /// An update of `schema` from a JSON object of the fields it writes.
    ///
    /// # Errors
    ///
    /// As [`DynState::from_json`].
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynSchema, DynUpdate, JsonReducer, JsonType};
    /// let schema = DynSchema::builder().field("n", JsonType::Integer, JsonReducer::Add).build()?;
    /// let update = DynUpdate::from_json(&schema, serde_json::json!({ "n": 1 }))?;
    /// assert!(!update.is_empty());
    /// # Ok::<(), agentgraph_engine::DynStateError>(())
    /// ```
    pub fn from_json(schema: &Arc<DynSchema>, value: Value) -> Result<Self, DynStateError> {
        let Value::Object(given) = value else {
            return Err(DynStateError::NotAnObject(kind_of(&value)));
        };
        let mut update = DynUpdate::of(schema);
        for (name, value) in given {
            update = update.set(&name, value)?;
        }
        Ok(update)
    }

    /// The update, also writing `value` to the field `name`.
    ///
    /// # Errors
    ///
    /// [`DynStateError::UnknownField`] (with the closest name), [`DynStateError::WrongType`],
    /// [`DynStateError::NoSchema`] for an update made with `default()`.
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Result<Self, DynStateError> {
        let schema = self.schema.as_ref().ok_or(DynStateError::NoSchema)?;
        let value = value.into();
        let i = schema.resolve(name)?;
        schema.check(i, &value)?;
        let i = i as u32;
        match self.writes.binary_search_by_key(&i, |(f, _)| *f) {
            Ok(at) => self.writes[at].1 = value,
            Err(at) => self.writes.insert(at, (i, value)),
        }
        Ok(self)
    }

    /// Whether the update writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The values written, by field index, in field order.
    pub fn written(&self) -> impl Iterator<Item = (usize, &Value)> {
        self.writes.iter().map(|(i, v)| (*i as usize, v))
    }

    fn value(&self, index: usize) -> Option<&Value> {
        self.writes
            .binary_search_by_key(&(index as u32), |(f, _)| *f)
            .ok()
            .map(|at| &self.writes[at].1)
    }
}

/// Stored (not human-readable) forms write each value as its JSON text (the binary codec
/// cannot read a `Value` back); JSON writes the values themselves.
impl Serialize for DynUpdate {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let readable = serializer.is_human_readable();
        let mut seq = serializer.serialize_seq(Some(self.writes.len()))?;
        for (i, v) in &self.writes {
            if readable {
                seq.serialize_element(&(i, v))?;
            } else {
                let text = serde_json::to_string(v).map_err(serde::ser::Error::custom)?;
                seq.serialize_element(&(i, text))?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for DynUpdate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut writes: Vec<(u32, Value)> = if deserializer.is_human_readable() {
            Vec::deserialize(deserializer)?
        } else {
            Vec::<(u32, String)>::deserialize(deserializer)?
                .into_iter()
                .map(|(i, text)| serde_json::from_str(&text).map(|v| (i, v)))
                .collect::<Result<_, _>>()
                .map_err(D::Error::custom)?
        };
        writes.sort_by_key(|(i, _)| *i);
        writes.dedup_by_key(|(i, _)| *i);
        Ok(DynUpdate {
            schema: None,
            writes,
        })
    }
}

impl IntoCommand<DynState> for DynUpdate {
    fn into_command(self) -> Command<DynState> {
        Command::new(self)
    }
}

fn json_error(e: serde_json::Error) -> CodecError {
    CodecError::new(e.to_string())
}

impl State for DynState {
    type Update = DynUpdate;
    type Schema = Arc<DynSchema>;

    #[inline]
    fn fields(schema: &Arc<DynSchema>) -> &[Field] {
        &schema.fields
    }

    fn for_each_written(update: &DynUpdate, mut f: impl FnMut(usize)) {
        for (i, _) in &update.writes {
            f(*i as usize);
        }
    }

    fn apply(&mut self, update: DynUpdate) {
        for (i, value) in update.writes {
            self.reduce(i as usize, value);
        }
    }

    fn encode_field(&self, index: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let value = self
            .values
            .get(index)
            .ok_or_else(|| CodecError::no_field(index, self.values.len()))?;
        serde_json::to_writer(out, value).map_err(json_error)
    }

    fn field_json(&self, _: &Arc<DynSchema>, index: usize) -> Result<Value, CodecError> {
        self.values
            .get(index)
            .cloned()
            .ok_or_else(|| CodecError::no_field(index, self.values.len()))
    }

    fn encode_written(
        update: &DynUpdate,
        index: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match update.value(index) {
            Some(value) => serde_json::to_writer(out, value).map_err(json_error),
            None => Ok(()),
        }
    }

    fn decode_fields(schema: &Arc<DynSchema>, fields: &[&[u8]]) -> Result<Self, CodecError> {
        if fields.len() != schema.len() {
            return Err(CodecError::new(format!(
                "expected {} fields, found {}",
                schema.len(),
                fields.len()
            )));
        }
        let mut values = Vec::with_capacity(fields.len());
        for (i, bytes) in fields.iter().enumerate() {
            let name = schema.fields[i].name;
            let value: Value =
                serde_json::from_slice(bytes).map_err(|e| json_error(e).in_field(name))?;
            schema
                .check(i, &value)
                .map_err(|e| CodecError::new(e.to_string()))?;
            values.push(value);
        }
        Ok(DynState {
            schema: schema.clone(),
            values,
        })
    }

    fn merge_encoded(&mut self, index: usize, bytes: &[u8]) -> Result<(), CodecError> {
        if index >= self.values.len() {
            return Err(CodecError::no_field(index, self.values.len()));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| json_error(e).in_field(self.schema.fields[index].name))?;
        self.reduce(index, value);
        Ok(())
    }

    fn from_json(schema: &Arc<DynSchema>, value: Value) -> Result<Self, CodecError> {
        DynState::from_json(schema, value).map_err(|e| CodecError::new(e.to_string()))
    }

    fn update_from_json(schema: &Arc<DynSchema>, value: Value) -> Result<DynUpdate, CodecError> {
        DynUpdate::from_json(schema, value).map_err(|e| CodecError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_interned_once() {
        assert!(std::ptr::eq(
            intern("alpha"),
            intern(&String::from("alpha"))
        ));
    }

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["topic", "notes", "count"];
        assert_eq!(
            closest("topik", names.into_iter()).as_deref(),
            Some("topic")
        );
        assert_eq!(closest("zzzzzz", names.into_iter()), None);
    }

    #[test]
    fn reducers_merge_json() {
        let mut n = json!(i64::MAX);
        JsonReducer::Add.merge(&mut n, json!(1));
        assert!(n.is_f64());
        let mut m = json!({"a": 1, "b": 2});
        JsonReducer::Merge.merge(&mut m, json!({"b": 3}));
        assert_eq!(m, json!({"a": 1, "b": 3}));
        let mut s = json!("b");
        JsonReducer::Min.merge(&mut s, json!("a"));
        assert_eq!(s, json!("a"));
        JsonReducer::Max.merge(&mut s, json!("c"));
        assert_eq!(s, json!("c"));
    }
}
