//! JSON views of a run's state, for monitors: [`FieldView`] changes carried by
//! [`EventKind::StateView`](crate::EventKind::StateView), and [`StateJson`], which folds them
//! back into the state at any step.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::define::state::State;
use crate::observe::event::{Event, EventKind};

/// How one field's JSON view changed at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViewChange {
    /// The field's whole value.
    Set(Value),
    /// Items (or text) appended to the field's previous value, an array (or a string): a
    /// growing list costs its new items, not its length.
    Extend(Value),
    /// The field's value could not be represented as JSON (the message says why).
    Unavailable(String),
}

/// One field's change in a [`StateView`](crate::EventKind::StateView) event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FieldView {
    /// The field's name.
    pub field: Cow<'static, str>,
    /// Its change.
    #[serde(flatten)]
    pub change: ViewChange,
}

/// A state as JSON, rebuilt from a run's [`StateView`](crate::EventKind::StateView) events:
/// what monitors and the `agentgraph` command-line tool show, without the program's state
/// type.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{FieldView, StateJson, ViewChange};
/// use serde_json::json;
///
/// let mut state = StateJson::new();
/// state.apply(&[FieldView::new("notes", ViewChange::Set(json!(["a"])))]);
/// state.apply(&[FieldView::new("notes", ViewChange::Extend(json!(["b", "c"])))]);
/// assert_eq!(state.to_value(), json!({ "notes": ["a", "b", "c"] }));
/// ```
#[derive(Debug, Clone, Default)]
pub struct StateJson {
    fields: Map<String, Value>,
    /// A `Graph` event was seen: the next view is of the whole state.
    whole: bool,
}

impl PartialEq for StateJson {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl FieldView {
    /// A field's change.
    pub fn new(field: impl Into<Cow<'static, str>>, change: ViewChange) -> Self {
        FieldView {
            field: field.into(),
            change,
        }
    }
}

impl StateJson {
    /// An empty state.
    pub fn new() -> Self {
        StateJson::default()
    }

    /// Applies one step's field changes.
    pub fn apply(&mut self, fields: &[FieldView]) {
        for view in fields {
            let slot = self
                .fields
                .entry(view.field.to_string())
                .or_insert(Value::Null);
            match &view.change {
                ViewChange::Set(value) => *slot = value.clone(),
                ViewChange::Extend(more) => match (slot, more) {
                    (Value::Array(items), Value::Array(more)) => items.extend(more.iter().cloned()),
                    (Value::String(text), Value::String(more)) => text.push_str(more),
                    // An extension of what this fold never saw: keep what is known.
                    (slot, more) => *slot = more.clone(),
                },
                ViewChange::Unavailable(why) => {
                    *slot = Value::String(format!("<not representable as JSON: {why}>"));
                }
            }
        }
    }

    /// Applies the `StateView` events of `events` (others are skipped) whose step is at most
    /// `step` (all when `None`). Events must come in sequence order.
    pub fn apply_events<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
        step: Option<u64>,
    ) {
        // A run describes its graph, then views its whole state, when it starts or resumes:
        // fields that view leaves out are gone (a resume that upgraded the state to a version
        // of its type without them).
        for event in events {
            match &event.kind {
                EventKind::Graph { .. } => self.whole = true,
                EventKind::StateView { step: s, fields } if step.is_none_or(|step| *s <= step) => {
                    if std::mem::take(&mut self.whole) {
                        self.fields
                            .retain(|name, _| fields.iter().any(|f| f.field == **name));
                    }
                    self.apply(fields);
                }
                _ => {}
            }
        }
    }

    /// Whether no field was seen.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The state, as a JSON object of its fields.
    pub fn to_value(&self) -> Value {
        Value::Object(self.fields.clone())
    }

    /// The state, as a JSON object of its fields.
    pub fn into_value(self) -> Value {
        Value::Object(self.fields)
    }
}

/// The views a run has emitted so far, to send only what changed.
#[derive(Debug, Default)]
pub(crate) struct Views {
    last: Vec<Option<Value>>,
}

impl Views {
    /// The changes of the fields `written` marks (all fields when `None`), as the
    /// `StateView` event of `step`. A field that extends its previous view (an array with
    /// items appended, a string with text appended) is sent as the extension.
    pub(crate) fn changes<S: State>(
        &mut self,
        state: &S,
        schema: &S::Schema,
        written: Option<&[bool]>,
        step: u64,
    ) -> EventKind {
        let all = S::fields(schema);
        if self.last.len() != all.len() {
            self.last = vec![None; all.len()];
        }
        let mut fields = Vec::new();
        for (i, field) in all.iter().enumerate() {
            if written.is_some_and(|w| !w[i]) {
                continue;
            }
            let value = state.field_json(schema, i).map_err(|e| e.to_string());
            let change = match value {
                Ok(value) => {
                    let change = match (&self.last[i], &value) {
                        (Some(Value::Array(old)), Value::Array(new))
                            if new.len() >= old.len() && new[..old.len()] == old[..] =>
                        {
                            ViewChange::Extend(Value::Array(new[old.len()..].to_vec()))
                        }
                        (Some(Value::String(old)), Value::String(new))
                            if new.starts_with(old.as_str()) =>
                        {
                            ViewChange::Extend(Value::String(new[old.len()..].to_owned()))
                        }
                        _ => ViewChange::Set(value.clone()),
                    };
                    self.last[i] = Some(value);
                    change
                }
                Err(why) => {
                    self.last[i] = None;
                    ViewChange::Unavailable(why)
                }
            };
            fields.push(FieldView {
                field: Cow::Borrowed(field.name),
                change,
            });
        }
        EventKind::StateView { step, fields }
    }
}
