//! The [`State`] trait: a user struct, its update type and the merge of updates.

use serde::{Serialize, de::DeserializeOwned};

use crate::codec::CodecError;
use crate::define::reducer::ReducerKind;

/// The state a graph carries from step to step.
///
/// Implement it with `#[derive(State)]` (from the facade crate `agentgraph`), which generates the
/// [`Update`](State::Update) type (every field optional), its setters, and the merge, with a
/// reducer per field:
///
/// | attribute | field type | merge of one update into the state |
/// |---|---|---|
/// | none, or `#[reducer(overwrite)]` | any | replaces the value; two writers in one step is an error |
/// | `#[reducer(append)]` | `Vec`, `VecDeque`, `String`, any `Extend + IntoIterator` | extends |
/// | `#[reducer(add)]` | numbers, any `AddAssign` | adds |
/// | `#[reducer(min)]` / `#[reducer(max)]` | any `PartialOrd` | keeps the smaller / larger |
/// | `#[reducer(merge)]` | `HashMap`, `BTreeMap` | inserts every entry, later writers win per key |
/// | `#[reducer(union)]` | `HashSet`, `BTreeSet` | set union |
/// | `#[reducer(with = path::to::function)]` | any | calls `function(&mut field, value)` |
///
/// The updates of one step are merged in a fixed order (task order in the plan, then dynamic
/// task index), never in completion order, so a run is deterministic.
///
/// The fields are described by a [`Schema`](State::Schema): `()` for a state whose fields are
/// known when the program compiles (the derive's: [`fields`](State::fields) returns a constant
/// slice, so nothing is looked up at run time), or a value made when the program runs, as for
/// [`DynState`](crate::DynState), whose fields come from a file. The compiled graph holds the
/// schema and hands it to the functions that have no state at hand.
///
/// # Examples
///
/// Written by hand (the derive writes the same):
///
/// ```
/// use agentgraph_engine::{codec, CodecError, State, reducer::{self, ReducerKind}, Field};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Counter { total: u64 }
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct CounterUpdate { total: Option<u64> }
///
/// impl State for Counter {
///     type Update = CounterUpdate;
///     type Schema = ();
///     fn fields(_: &()) -> &'static [Field] {
///         const FIELDS: &[Field] = &[Field::new("total", ReducerKind::Add)];
///         FIELDS
///     }
///     fn for_each_written(update: &CounterUpdate, mut f: impl FnMut(usize)) {
///         if update.total.is_some() { f(0) }
///     }
///     fn apply(&mut self, update: CounterUpdate) {
///         if let Some(v) = update.total { reducer::add(&mut self.total, v) }
///     }
///     fn encode_field(&self, i: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
///         match i { 0 => codec::encode_into(&self.total, out), _ => Err(CodecError::no_field(i, 1)) }
///     }
///     fn encode_written(u: &CounterUpdate, i: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
///         match (i, &u.total) {
///             (0, Some(v)) => codec::encode_into(v, out),
///             (0, None) => Ok(()),
///             _ => Err(CodecError::no_field(i, 1)),
///         }
///     }
///     fn decode_fields(_: &(), fields: &[&[u8]]) -> Result<Self, CodecError> {
///         match fields {
///             [total] => Ok(Counter { total: codec::decode(total)? }),
///             _ => Err(CodecError::new("expected 1 field")),
///         }
///     }
///     fn merge_encoded(&mut self, i: usize, bytes: &[u8]) -> Result<(), CodecError> {
///         match i { 0 => Ok(reducer::add(&mut self.total, codec::decode(bytes)?)), _ => Err(CodecError::no_field(i, 1)) }
///     }
/// }
///
/// let mut c = Counter::default();
/// c.apply(CounterUpdate { total: Some(2) });
/// c.apply(CounterUpdate { total: Some(3) });
/// assert_eq!(c.total, 5);
/// ```
pub trait State: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// A partial update of the state: one optional value per field.
    type Update: Default + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// The version of the state type, as stored with every checkpoint (from 1, the default).
    /// Raise it when the stored form of the state changes (a field renamed, removed, retyped
    /// or reordered), and register how a state of the previous version becomes one of this
    /// version with [`Migrations`](crate::Migrations). The derive sets it with
    /// `#[state(version = 2)]`; checkpoints written before versions existed are version 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::State;
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph_engine, version = 3)]
    /// struct Notes { lines: Vec<String> }
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph_engine)]
    /// struct Count { n: u64 }
    /// assert_eq!((Notes::VERSION, Count::VERSION), (3, 1));
    /// ```
    const VERSION: u32 = 1;

    /// What describes the fields when the program runs: `()` when they are known when it
    /// compiles (the derive's choice), or a value such as [`DynState`](crate::DynState)'s
    /// `Arc<DynSchema>`. Cloned into the compiled graph once; cheap to clone.
    type Schema: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// The fields, in declaration order, with their reducers. Indexes into this slice are the
    /// field indexes used by [`for_each_written`](State::for_each_written). The derive
    /// returns its constant `FIELDS`.
    fn fields(schema: &Self::Schema) -> &[Field];

    /// Calls `f` with the index of every field that `update` writes, in increasing order.
    fn for_each_written(update: &Self::Update, f: impl FnMut(usize));

    /// Merges one update into the state, field by field, with each field's reducer.
    fn apply(&mut self, update: Self::Update);

    /// Appends the encoding of field `index` to `out` (checkpoints store fields one by one,
    /// and only those that changed).
    ///
    /// # Errors
    ///
    /// When the field's `Serialize` fails, or there is no such field.
    fn encode_field(&self, index: usize, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Field `index` as JSON, for views of the state (see
    /// [`RunConfig::state_views`](crate::RunConfig::state_views)). The derive serializes the
    /// field alone; this default serializes the whole state and takes the field by name.
    ///
    /// # Errors
    ///
    /// When the field's `Serialize` fails, JSON cannot hold what it makes, or there is no such
    /// field.
    fn field_json(
        &self,
        schema: &Self::Schema,
        index: usize,
    ) -> Result<serde_json::Value, CodecError> {
        let fields = Self::fields(schema);
        let Some(field) = fields.get(index) else {
            return Err(CodecError::no_field(index, fields.len()));
        };
        match crate::codec::to_json(self)? {
            serde_json::Value::Object(mut map) => map.remove(field.name).ok_or_else(|| {
                CodecError::new("the state serializes without a field of that name")
                    .in_field(field.name)
            }),
            _ => Err(CodecError::new(
                "the state does not serialize as a JSON object",
            )),
        }
    }

    /// Appends the encoding of the value `update` writes to field `index` to `out`; appends
    /// nothing when it writes none. Checkpoints store these values (deltas) for fields whose
    /// reducer is not `overwrite`, so that a growing list costs its new items, not its length.
    ///
    /// # Errors
    ///
    /// When the value's `Serialize` fails, or there is no such field.
    fn encode_written(
        update: &Self::Update,
        index: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError>;

    /// Builds a state from the encodings of all its fields, in field order.
    ///
    /// # Errors
    ///
    /// When the number of fields differs or a field does not decode.
    fn decode_fields(schema: &Self::Schema, fields: &[&[u8]]) -> Result<Self, CodecError>;

    /// A state from JSON (a run's input given as JSON: the [`GraphRegistry`](crate::GraphRegistry),
    /// the command line). The default deserializes it; a state with a run-time schema reads
    /// it through the schema.
    ///
    /// # Errors
    ///
    /// When `value` is not the state's JSON.
    fn from_json(schema: &Self::Schema, value: serde_json::Value) -> Result<Self, CodecError> {
        let _ = schema;
        serde_json::from_value(value).map_err(|e| CodecError::new(e.to_string()))
    }

    /// An update from JSON (a thread's input or a resume's update given as JSON). The default
    /// deserializes it; a state with a run-time schema reads it through the schema.
    ///
    /// # Errors
    ///
    /// When `value` is not the update's JSON.
    fn update_from_json(
        schema: &Self::Schema,
        value: serde_json::Value,
    ) -> Result<Self::Update, CodecError> {
        let _ = schema;
        serde_json::from_value(value).map_err(|e| CodecError::new(e.to_string()))
    }

    /// Appends the encoding of field `index`'s default value to `out` and returns true, or
    /// returns false when the field has no default. A checkpoint stored with fewer fields
    /// than the state has (fields added at the end since) is read with these defaults, without
    /// a migration. The derive gives a default to the fields marked `#[serde(default)]` (or
    /// `#[serde(default = "path")]`), and to every field of a struct marked `#[serde(default)]`;
    /// this default gives none.
    ///
    /// # Errors
    ///
    /// When the default's `Serialize` fails, or there is no such field.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{State, codec};
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph_engine)]
    /// struct Job {
    ///     name: String,
    ///     #[serde(default = "three")]
    ///     attempts: u32,
    /// }
    /// fn three() -> u32 { 3 }
    ///
    /// let mut out = Vec::new();
    /// assert!(!Job::default_field(&(), 0, &mut out)?);
    /// assert!(Job::default_field(&(), 1, &mut out)?);
    /// assert_eq!(codec::decode::<u32>(&out)?, 3);
    /// # Ok::<(), agentgraph_engine::CodecError>(())
    /// ```
    fn default_field(
        schema: &Self::Schema,
        index: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, CodecError> {
        let _ = (schema, index, out);
        Ok(false)
    }

    /// Decodes a value of field `index`, as [`encode_written`](State::encode_written) made it,
    /// and merges it into the state with the field's reducer.
    ///
    /// # Errors
    ///
    /// When the bytes do not decode, or there is no such field.
    fn merge_encoded(&mut self, index: usize, bytes: &[u8]) -> Result<(), CodecError>;
}

/// One field of a [`State`]: its name and its reducer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Field {
    /// The field's name, as written in the struct.
    pub name: &'static str,
    /// How updates to the field are merged.
    pub reducer: ReducerKind,
    /// The field's type as written in the struct (empty when unknown). Part of the graph's
    /// fingerprint, so that resuming a run whose state type changed is detected.
    pub ty: &'static str,
}

impl Field {
    /// A field description.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{Field, reducer::ReducerKind};
    /// let f = Field::new("notes", ReducerKind::Append);
    /// assert!(!f.reducer.is_exclusive());
    /// ```
    pub const fn new(name: &'static str, reducer: ReducerKind) -> Self {
        Field {
            name,
            reducer,
            ty: "",
        }
    }

    /// The same field, with its type as written (the derive records it).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{Field, reducer::ReducerKind};
    /// const F: Field = Field::new("notes", ReducerKind::Append).with_type("Vec<String>");
    /// assert_eq!(F.ty, "Vec<String>");
    /// ```
    #[must_use]
    pub const fn with_type(mut self, ty: &'static str) -> Self {
        self.ty = ty;
        self
    }
}
