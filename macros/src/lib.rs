//! Procedural macros for agentgraph: `#[derive(State)]`.
//!
//! Use them through the facade crate, as `agentgraph::State` or `agentgraph::prelude::*`; the
//! generated code names `::agentgraph::__private`, so this crate is not used on its own.

mod state;

use proc_macro::TokenStream;

/// Derives `agentgraph::State` for a struct with named fields, with a reducer per field.
///
/// For a struct `Foo` the derive generates:
///
/// - `FooUpdate`, with the visibility of `Foo`: one `pub field: Option<T>` per field of `Foo`
///   (`None` leaves the field unchanged), `Default`, `Serialize` and `Deserialize`;
/// - `FooUpdate::new()` (the empty update), `FooUpdate::is_empty()`, and a setter per field,
///   `fn field(self, value: T) -> Self` (the field's own type, so literals infer), to build
///   updates by chaining;
/// - `impl State for Foo`, whose `apply` merges each written field with its reducer.
///
/// `State` needs `Clone + Serialize + Deserialize` on the struct itself (checkpoints store
/// it), so derive those too: `#[derive(Clone, Default, Serialize, Deserialize, State)]`.
/// Every field type must be `Serialize + Deserialize`, and `Send + Sync + 'static`.
///
/// # Field attributes
///
/// | attribute | field type | merge of one update into the state |
/// |---|---|---|
/// | none, or `#[reducer(overwrite)]` | any | replaces the value; two writers in one step is an error |
/// | `#[reducer(append)]` | `Vec`, `VecDeque`, `LinkedList`, `String`, any `reducer::Append` | extends |
/// | `#[reducer(add)]` | numbers, any `AddAssign` | adds |
/// | `#[reducer(min)]` / `#[reducer(max)]` | any `PartialOrd` | keeps the smaller / larger |
/// | `#[reducer(merge)]` | `HashMap`, `BTreeMap` | inserts every entry, the update wins per key |
/// | `#[reducer(union)]` | `HashSet`, `BTreeSet` | set union |
/// | `#[reducer(with = path::to::function)]` | any | calls `function(&mut field, value)` |
///
/// A field takes at most one `#[reducer]`. The reducer kinds are listed, in field order, in
/// the constant `FIELDS` the derive adds to the struct (what `State::fields` returns); `with = path` is recorded as `ReducerKind::Custom("path")`, the path as
/// written without spaces.
///
/// # Struct attributes
///
/// - `#[state(update = Name)]` (or `update = "Name"`): names the update type instead of
///   `FooUpdate`.
/// - `#[state(crate = path)]` (or `crate = "path"`): the generated code names
///   `path::__private` instead of `::agentgraph::__private`, for crates that re-export
///   agentgraph, and for the engine's own tests (`#[state(crate = agentgraph_engine)]`).
/// - `#[state(version = N)]`: the state type's version, `State::VERSION` (1 when not given),
///   stored with every checkpoint. Raise it when a field is renamed, removed, retyped or
///   reordered, and register the step from the previous version with
///   `agentgraph::state::Migrations` (`GraphBuilder::migrations`).
///
/// A field marked `#[serde(default)]` or `#[serde(default = "path")]` (or every field, when the
/// struct is marked `#[serde(default)]`) has a default (`State::default_field`): a checkpoint
/// stored before the field was added at the end of the struct reads with it, without a new
/// version or a migration.
///
/// # Errors
///
/// Compile errors, pointing at the offending code, for: an enum, a union, a tuple or unit
/// struct, generic parameters, an unknown reducer name, two `#[reducer]` attributes on one
/// field, `#[reducer]` without a reducer, `with` without a path, tokens after the reducer, an
/// unknown `#[state]` setting, and a field named `new` or `is_empty` (the update's methods).
///
/// # Examples
///
/// ```
/// use std::collections::BTreeSet;
///
/// use agentgraph::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
/// struct Research {
///     /// Overwritten by each update.
///     topic: String,
///     #[reducer(append)]
///     notes: Vec<String>,
///     #[reducer(add)]
///     tokens_used: u64,
///     #[reducer(max)]
///     confidence: f32,
///     #[reducer(union)]
///     sources: BTreeSet<String>,
/// }
///
/// let mut state = Research::default();
/// state.apply(
///     ResearchUpdate::new()
///         .topic("rust".into())
///         .notes(vec!["fast".to_string()])
///         .tokens_used(10) // the field's own type, so the literal is a u64
///         .confidence(0.5),
/// );
/// state.apply(ResearchUpdate::new().notes(vec!["safe".to_string()]).tokens_used(5u64));
///
/// assert_eq!(state.topic, "rust");
/// assert_eq!(state.notes, ["fast", "safe"]);
/// assert_eq!(state.tokens_used, 15);
/// assert_eq!(state.confidence, 0.5);
///
/// assert_eq!(Research::FIELDS[1].name, "notes");
/// assert!(ResearchUpdate::new().is_empty());
/// ```
///
/// A reducer of your own, and a renamed update type:
///
/// ```
/// use agentgraph::State;
/// use agentgraph::state::reducer::ReducerKind;
/// use serde::{Deserialize, Serialize};
///
/// mod fold {
///     /// Keeps the longest string.
///     pub fn longest(acc: &mut String, update: String) {
///         if update.len() > acc.len() {
///             *acc = update;
///         }
///     }
/// }
///
/// #[derive(Clone, Default, Serialize, Deserialize, State)]
/// #[state(update = Draft)]
/// struct Essay {
///     #[reducer(with = fold::longest)]
///     best: String,
/// }
///
/// let mut essay = Essay::default();
/// essay.apply(Draft::new().best("a long draft".into()));
/// essay.apply(Draft::new().best("short".into()));
/// assert_eq!(essay.best, "a long draft");
/// assert_eq!(Essay::FIELDS[0].reducer, ReducerKind::Custom("fold::longest"));
/// ```
///
/// Mistakes are compile errors:
///
/// ```compile_fail
/// use agentgraph::State;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize, State)]
/// struct Counter {
///     #[reducer(sum)] // error: unknown reducer `sum`; expected one of `overwrite`, ...
///     total: u64,
/// }
/// ```
#[proc_macro_derive(State, attributes(state, reducer))]
pub fn derive_state(input: TokenStream) -> TokenStream {
    expand_with(input, state::expand)
}

/// Parses `input`, expands it, and turns the error, if any, into `compile_error!` at its span.
/// The one place where errors become tokens.
fn expand_with(
    input: TokenStream,
    expand: fn(syn::DeriveInput) -> syn::Result<proc_macro2::TokenStream>,
) -> TokenStream {
    syn::parse(input)
        .and_then(expand)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
