//! [`Migrations`]: how a state (and the updates of finished tasks) stored by an older version of
//! a state type becomes one of the current version, when a run is resumed or read.
//!
//! Checkpoints store a state field by field, each field encoded with its type (bincode, which
//! does not describe itself): a stored state is read back with the type that wrote it. So a
//! migration step names the type of the version it reads (kept in the program, `StateV1` say,
//! with its `#[state(version = 1)]`) and the type it makes, and converts one into the other,
//! typed; the loader decodes with the step's old type and runs the steps up to the current
//! version.

use std::any::{Any, TypeId, type_name};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::codec::CodecError;
use crate::define::state::{Field, State};
use crate::error::BoxError;

/// A value of one version's state (or update) type, between two steps.
type AnyBox = Box<dyn Any + Send>;
/// A step's conversion, on values of its old type.
type Convert = Box<dyn Fn(AnyBox) -> Result<AnyBox, BoxError> + Send + Sync>;
/// Decodes a state stored by a step's old type: its fields' full values, then their deltas.
type DecodeStored = fn(&[&[u8]], &[Vec<serde_bytes::ByteBuf>]) -> Result<AnyBox, CodecError>;

/// The migrations of a state type `S`: one step per older version, each from the state type
/// of that version to the next one's, up to `S::VERSION` (see [`State::VERSION`]). Give them to
/// the graph with [`GraphBuilder::migrations`](crate::GraphBuilder::migrations): a run whose
/// checkpoint was written by an older version is upgraded when it is resumed (once: the
/// upgraded state is stored at once, as the current version) or read
/// ([`GraphHistory`](crate::GraphHistory)).
///
/// A step converts a state and an update (the saved result of a task that finished in the step
/// a run stopped in): both, so that finished tasks need not run again. Steps chain: a run of
/// version 1 read by version 3 goes through the steps from 1 and from 2. A field added at the
/// end of a state with a default (`#[serde(default)]`) needs no step and no new version.
///
/// Only states whose fields are known when the program compiles (a schema `()`, as the
/// derive's) take part in steps.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{Migrations, State};
/// # use agentgraph_engine as agentgraph;
/// use serde::{Deserialize, Serialize};
///
/// // The type that wrote the stored runs, kept to read them.
/// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
/// #[state(crate = agentgraph)]
/// struct NotesV1 { #[reducer(append)] lines: Vec<String>, words: u32 }
///
/// // The state type now: `lines` renamed `notes`, `words` now a u64.
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
/// #[state(crate = agentgraph, version = 2)]
/// struct Notes { #[reducer(append)] notes: Vec<String>, words: u64 }
///
/// let migrations = Migrations::<Notes>::new().step(
///     |old: NotesV1| Notes { notes: old.lines, words: old.words.into() },
///     |old: NotesV1Update| NotesUpdate { notes: old.lines, words: old.words.map(Into::into) },
/// );
/// let old = NotesV1 { lines: vec!["a".into()], words: 1 };
/// assert_eq!(migrations.upgrade(old)?, Notes { notes: vec!["a".into()], words: 1 });
/// assert_eq!(Notes::VERSION, 2);
/// # Ok::<(), agentgraph_engine::MigrationError>(())
/// ```
pub struct Migrations<S: State> {
    steps: Arc<BTreeMap<u32, Arc<Step>>>,
    _state: PhantomData<fn() -> S>,
}

/// One registered step, type-erased.
struct Step {
    to: u32,
    old: TypeId,
    old_name: &'static str,
    /// The old type's fields.
    old_fields: &'static [Field],
    /// Decodes a state stored by the old type.
    decode: DecodeStored,
    /// Decodes an update encoded by the old type.
    decode_update: fn(&[u8]) -> Result<AnyBox, CodecError>,
    state: Convert,
    update: Convert,
}

impl<S: State> Clone for Migrations<S> {
    fn clone(&self) -> Self {
        Migrations {
            steps: self.steps.clone(),
            _state: PhantomData,
        }
    }
}

impl<S: State> Default for Migrations<S> {
    fn default() -> Self {
        Migrations {
            steps: Arc::default(),
            _state: PhantomData,
        }
    }
}

impl<S: State> fmt::Debug for Migrations<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.steps.iter().map(|(from, s)| (from, s.to)))
            .finish()
    }
}

/// Why a stored state could not be brought to the current version of its type (in
/// [`Error::Migration`](crate::Error::Migration), with the run).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::MigrationError;
/// let e = MigrationError::MissingStep { from: 1, to: 3 };
/// assert_eq!(
///     e.to_string(),
///     "no migration is registered from version 1 of the state type (this build's is version 3)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// It was stored by a newer version of the state type than this build's.
    #[error(
        "its state was stored by version {stored} of the state type, newer than this build's \
         version {current}"
    )]
    Newer {
        /// The stored version.
        stored: u32,
        /// The state type's version ([`State::VERSION`]).
        current: u32,
    },
    /// No step is registered from a version the stored state passes through.
    #[error(
        "no migration is registered from version {from} of the state type (this build's is \
         version {to})"
    )]
    MissingStep {
        /// The version without a step.
        from: u32,
        /// The state type's version ([`State::VERSION`]).
        to: u32,
    },
    /// Two steps disagree on the type of a version: the step from `version` takes `expected`,
    /// or, at the current version, the state type is `expected`.
    #[error(
        "the migrations disagree on the state type of version {version}: expected `{expected}`"
    )]
    Mismatch {
        /// The version.
        version: u32,
        /// The type the step from it (or the graph, at the current version) takes.
        expected: &'static str,
    },
    /// A step does not raise the version, or its function failed.
    #[error("the migration from version {from} to version {to} failed: {reason}")]
    Failed {
        /// The step's old version.
        from: u32,
        /// The step's new version.
        to: u32,
        /// Why.
        reason: String,
    },
}

impl<S: State> Migrations<S> {
    /// No migrations: a state stored by an older version is an error
    /// ([`MigrationError::MissingStep`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { n: u64 }
    /// let none = agentgraph_engine::Migrations::<Count>::new();
    /// assert!(none.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no step is registered.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { n: u64 }
    /// assert!(agentgraph_engine::Migrations::<Count>::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Adds the step from `Old` (of version `Old::VERSION`) to `New` (of version
    /// `New::VERSION`, higher): `state` converts a stored state, `update` the saved update of a
    /// task that finished in the step a run stopped in. A later step from the same version
    /// replaces an earlier one.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Migrations;
    /// # use agentgraph_engine as agentgraph;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph)]
    /// struct V1 { name: String }
    /// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph, version = 2)]
    /// struct V2 { names: Vec<String> }
    /// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph, version = 3)]
    /// struct V3 { names: Vec<String>, count: u32 }
    ///
    /// let m = Migrations::<V3>::new()
    ///     .step(
    ///         |old: V1| V2 { names: vec![old.name] },
    ///         |old: V1Update| V2Update { names: old.name.map(|n| vec![n]) },
    ///     )
    ///     .step(
    ///         |old: V2| V3 { count: old.names.len() as u32, names: old.names },
    ///         |old: V2Update| V3Update { names: old.names, count: None },
    ///     );
    /// let v3 = m.upgrade(V1 { name: "ada".into() })?;
    /// assert_eq!(v3, V3 { names: vec!["ada".into()], count: 1 });
    /// # Ok::<(), agentgraph_engine::MigrationError>(())
    /// ```
    #[must_use]
    pub fn step<Old, New>(
        self,
        state: impl Fn(Old) -> New + Send + Sync + 'static,
        update: impl Fn(Old::Update) -> New::Update + Send + Sync + 'static,
    ) -> Self
    where
        Old: State<Schema = ()>,
        New: State<Schema = ()>,
    {
        self.try_step::<Old, New>(move |old| Ok(state(old)), move |old| Ok(update(old)))
    }

    /// As [`step`](Migrations::step), with conversions that may fail: a failure is
    /// [`MigrationError::Failed`], with the error's message, and the run is left as stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{BoxError, MigrationError, Migrations};
    /// # use agentgraph_engine as agentgraph;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph)]
    /// struct V1 { port: String }
    /// #[derive(Clone, Debug, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph, version = 2)]
    /// struct V2 { port: u16 }
    ///
    /// let m = Migrations::<V2>::new().try_step(
    ///     |old: V1| Ok::<_, BoxError>(V2 { port: old.port.parse()? }),
    ///     |old: V1Update| Ok(V2Update { port: old.port.map(|p| p.parse()).transpose()? }),
    /// );
    /// assert_eq!(m.upgrade(V1 { port: "80".into() })?.port, 80);
    /// let bad = m.upgrade(V1 { port: "eighty".into() }).unwrap_err();
    /// assert!(matches!(bad, MigrationError::Failed { from: 1, to: 2, .. }));
    /// # Ok::<(), MigrationError>(())
    /// ```
    #[must_use]
    pub fn try_step<Old, New>(
        self,
        state: impl Fn(Old) -> Result<New, BoxError> + Send + Sync + 'static,
        update: impl Fn(Old::Update) -> Result<New::Update, BoxError> + Send + Sync + 'static,
    ) -> Self
    where
        Old: State<Schema = ()>,
        New: State<Schema = ()>,
    {
        let step = Step {
            to: New::VERSION,
            old: TypeId::of::<Old>(),
            old_name: type_name::<Old>(),
            old_fields: Old::fields(&()),
            decode: decode_any::<Old>,
            decode_update: decode_update_any::<Old>,
            state: Box::new(move |old: AnyBox| {
                let old = old.downcast::<Old>().map_err(|_| "not the step's type")?;
                Ok(Box::new(state(*old)?) as AnyBox)
            }),
            update: Box::new(move |old: AnyBox| {
                let old = old
                    .downcast::<Old::Update>()
                    .map_err(|_| "not the step's update type")?;
                Ok(Box::new(update(*old)?) as AnyBox)
            }),
        };
        let mut steps = BTreeMap::clone(&self.steps);
        steps.insert(Old::VERSION, Arc::new(step));
        Migrations {
            steps: Arc::new(steps),
            _state: PhantomData,
        }
    }

    /// `old`, a state of an older version, brought to `S` through the registered steps (the
    /// same conversion a resume applies to a stored state): to test a migration.
    ///
    /// # Errors
    ///
    /// [`MigrationError::MissingStep`] when a step is missing on the way,
    /// [`MigrationError::Newer`] when `Old` is newer than `S`, [`MigrationError::Mismatch`]
    /// when `Old` is not the type the step from its version takes, [`MigrationError::Failed`].
    ///
    /// # Examples
    ///
    /// See [`step`](Migrations::step).
    pub fn upgrade<Old: State>(&self, old: Old) -> Result<S, MigrationError> {
        self.chain(Old::VERSION, Box::new(old), false)
            .map(|s| *s.downcast::<S>().expect("checked by chain"))
    }

    /// `old`, an update of an older version's state type, brought to an update of `S` through
    /// the registered steps (what a resume applies to the saved updates of finished tasks).
    ///
    /// # Errors
    ///
    /// As [`upgrade`](Migrations::upgrade).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Migrations;
    /// # use agentgraph_engine as agentgraph;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph)]
    /// struct V1 { #[reducer(add)] n: u32 }
    /// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
    /// #[state(crate = agentgraph, version = 2)]
    /// struct V2 { #[reducer(add)] total: u64 }
    ///
    /// let m = Migrations::<V2>::new().step(
    ///     |old: V1| V2 { total: old.n.into() },
    ///     |old: V1Update| V2Update { total: old.n.map(Into::into) },
    /// );
    /// let update = m.upgrade_update::<V1>(V1Update::new().n(5))?;
    /// assert_eq!(update.total, Some(5));
    /// # Ok::<(), agentgraph_engine::MigrationError>(())
    /// ```
    pub fn upgrade_update<Old: State>(
        &self,
        old: Old::Update,
    ) -> Result<S::Update, MigrationError> {
        if Old::VERSION == S::VERSION && TypeId::of::<Old>() != TypeId::of::<S>() {
            return Err(MigrationError::Mismatch {
                version: S::VERSION,
                expected: type_name::<S>(),
            });
        }
        if Old::VERSION < S::VERSION {
            self.check_type::<Old>()?;
        }
        self.chain(Old::VERSION, Box::new(old), true)
            .map(|u| *u.downcast::<S::Update>().expect("checked by chain"))
    }

    /// Checks that the step from `Old::VERSION` takes `Old`.
    fn check_type<Old: State>(&self) -> Result<(), MigrationError> {
        match self.steps.get(&Old::VERSION) {
            Some(step) if step.old != TypeId::of::<Old>() => Err(MigrationError::Mismatch {
                version: Old::VERSION,
                expected: step.old_name,
            }),
            _ => Ok(()),
        }
    }

    /// Runs the steps from `version` on `value` (a state, or with `update` an update, of the
    /// type of that version) up to `S::VERSION`.
    fn chain(
        &self,
        mut version: u32,
        mut value: AnyBox,
        update: bool,
    ) -> Result<AnyBox, MigrationError> {
        loop {
            if version == S::VERSION {
                let at_end = if update {
                    (*value).type_id() == TypeId::of::<S::Update>()
                } else {
                    (*value).type_id() == TypeId::of::<S>()
                };
                return if at_end {
                    Ok(value)
                } else {
                    Err(MigrationError::Mismatch {
                        version,
                        expected: type_name::<S>(),
                    })
                };
            }
            if version > S::VERSION {
                return Err(MigrationError::Newer {
                    stored: version,
                    current: S::VERSION,
                });
            }
            let step = self.step_from(version)?;
            if !update && (*value).type_id() != step.old {
                return Err(MigrationError::Mismatch {
                    version,
                    expected: step.old_name,
                });
            }
            let convert = if update { &step.update } else { &step.state };
            value = convert(value).map_err(|e| MigrationError::Failed {
                from: version,
                to: step.to,
                reason: e.to_string(),
            })?;
            version = step.to;
        }
    }

    /// The step from `version`: one that raises it.
    fn step_from(&self, version: u32) -> Result<&Step, MigrationError> {
        let step = self
            .steps
            .get(&version)
            .ok_or(MigrationError::MissingStep {
                from: version,
                to: S::VERSION,
            })?;
        if step.to <= version {
            return Err(MigrationError::Failed {
                from: version,
                to: step.to,
                reason: "a step must raise the version".to_owned(),
            });
        }
        Ok(step)
    }

    /// The fields of the state type of `version`, older than `S`'s: those of the type its step
    /// reads.
    pub(crate) fn fields_of(&self, version: u32) -> Result<&'static [Field], MigrationError> {
        self.step_from(version).map(|s| s.old_fields)
    }

    /// A state stored by version `version` (older than `S::VERSION`), from its fields' full
    /// values and deltas, decoded with that version's type and brought to `S`. The codec error
    /// says the stored bytes are not of that type.
    pub(crate) fn upgrade_stored(
        &self,
        version: u32,
        fields: &[&[u8]],
        deltas: &[Vec<serde_bytes::ByteBuf>],
    ) -> Result<Result<S, MigrationError>, CodecError> {
        let step = match self.step_from(version) {
            Ok(step) => step,
            Err(e) => return Ok(Err(e)),
        };
        let old = (step.decode)(fields, deltas)?;
        Ok(self
            .chain(version, old, false)
            .map(|s| *s.downcast::<S>().expect("checked by chain")))
    }

    /// An update encoded by version `version`'s type (older than `S::VERSION`), brought to an
    /// update of `S`.
    pub(crate) fn upgrade_stored_update(
        &self,
        version: u32,
        bytes: &[u8],
    ) -> Result<Result<S::Update, MigrationError>, CodecError> {
        let step = match self.step_from(version) {
            Ok(step) => step,
            Err(e) => return Ok(Err(e)),
        };
        let old = (step.decode_update)(bytes)?;
        Ok(self
            .chain(version, old, true)
            .map(|u| *u.downcast::<S::Update>().expect("checked by chain")))
    }
}

/// A state stored by `T` (the full values of its fields, then the deltas of each), with the
/// defaults of fields added after it was stored (at the end: `fields` may be shorter than
/// `T`'s fields).
pub(crate) fn decode_stored<T: State>(
    schema: &T::Schema,
    fields: &[&[u8]],
    deltas: &[Vec<serde_bytes::ByteBuf>],
) -> Result<T, CodecError> {
    let all = T::fields(schema);
    let mut state = if fields.len() < all.len() {
        let mut defaults = Vec::with_capacity(all.len() - fields.len());
        for f in fields.len()..all.len() {
            let mut out = Vec::new();
            if !T::default_field(schema, f, &mut out)? {
                return Err(CodecError::new(format!(
                    "{} fields are stored, the state type has {} and `{}` has no default",
                    fields.len(),
                    all.len(),
                    all[f].name
                )));
            }
            defaults.push(out);
        }
        let slices: Vec<&[u8]> = fields
            .iter()
            .copied()
            .chain(defaults.iter().map(Vec::as_slice))
            .collect();
        T::decode_fields(schema, &slices)?
    } else {
        T::decode_fields(schema, fields)?
    };
    for (f, field_deltas) in deltas.iter().enumerate() {
        for d in field_deltas {
            state.merge_encoded(f, d)?;
        }
    }
    Ok(state)
}

fn decode_any<T: State<Schema = ()>>(
    fields: &[&[u8]],
    deltas: &[Vec<serde_bytes::ByteBuf>],
) -> Result<AnyBox, CodecError> {
    decode_stored::<T>(&(), fields, deltas).map(|t| Box::new(t) as AnyBox)
}

fn decode_update_any<T: State>(bytes: &[u8]) -> Result<AnyBox, CodecError> {
    crate::codec::decode::<T::Update>(bytes).map(|u| Box::new(u) as AnyBox)
}
