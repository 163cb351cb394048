//! Graphs by name, driven with JSON: [`GraphRegistry`] and [`DynGraph`].
//!
//! A program that serves runs to others (the monitor's control API, a worker that takes runs
//! from a queue) cannot name its graphs' state types in the requests it receives: it looks a
//! graph up by name and hands it JSON. A [`CompiledGraph`] whose state has a `Default` (for
//! threads) is a [`DynGraph`]: its input is the state's JSON, a thread's input and a
//! resume's update are the update's JSON, and the final state comes back as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::define::state::State;
use crate::error::{Error, Result};
use crate::ids::Fingerprint;
use crate::observe::event::EventStream;
use crate::plan::compiled::CompiledGraph;
use crate::run::config::RunConfig;
use crate::run::handle::{CancelHandle, Run, RunOutcome};
use crate::run::interrupt::{Interrupted, Resume};
use crate::run::retry_at::RetryAt;

/// A future of a [`DynRun`]'s end.
pub type DynOutcomeFuture = Pin<Box<dyn Future<Output = Result<DynOutcome>> + Send>>;

/// How a run driven with JSON ended: its final state as JSON, the interrupts it waits on, or
/// the retry it waits for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DynOutcome {
    /// The run finished.
    Completed {
        /// Its final state, as JSON.
        state: Value,
    },
    /// The run stopped at interrupts: resume it with answers ([`DynResume`]).
    Interrupted {
        /// Where it stopped and on what.
        #[serde(flatten)]
        stop: Interrupted,
    },
    /// The run stopped until a failed task's retry is due
    /// ([`RunConfig::max_inline_backoff`]): resume it (with an empty [`DynResume`]) then. As
    /// JSON: `{"status": "retry_scheduled", "run_id": .., "step": .., "due_at_ms": ..,
    /// "tasks": [{"node": .., "task": .., "attempt": .., "due_at_ms": ..}]}`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{DynOutcome, RetryAt};
    /// let retry: RetryAt = serde_json::from_value(serde_json::json!({
    ///     "run_id": "r-1", "step": 2, "due_at_ms": 1_000, "tasks": []
    /// })).unwrap();
    /// let json = serde_json::to_value(DynOutcome::RetryScheduled { retry }).unwrap();
    /// assert_eq!((json["status"].as_str(), json["due_at_ms"].as_u64()), (Some("retry_scheduled"), Some(1_000)));
    /// ```
    RetryScheduled {
        /// When the retry is due, and for which tasks.
        #[serde(flatten)]
        retry: RetryAt,
    },
}

/// A run of a [`DynGraph`], spawned on the tokio runtime: its id, its events, a way to cancel
/// it, and its end.
pub struct DynRun {
    run_id: String,
    events: EventStream,
    cancel: CancelHandle,
    outcome: DynOutcomeFuture,
}

impl fmt::Debug for DynRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynRun")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl DynRun {
    /// Spawns `run` and keeps what a caller needs to follow it.
    fn spawn<S: State>(run: Run<S>) -> DynRun {
        let run_id = run.run_id().to_owned();
        let events = run.events();
        let cancel = run.cancel_handle();
        let handle = tokio::spawn(run.outcome());
        let id = run_id.clone();
        let outcome = Box::pin(async move {
            let outcome = handle.await.map_err(|e| Error::RunLost {
                run: id,
                end: e.into(),
            })??;
            Ok(match outcome {
                RunOutcome::Completed(state) => DynOutcome::Completed {
                    state: serde_json::to_value(&state).map_err(|e| Error::Json {
                        what: "the final state".into(),
                        message: e.to_string(),
                    })?,
                },
                RunOutcome::Interrupted(stop) => DynOutcome::Interrupted { stop },
                RunOutcome::RetryScheduled(retry) => DynOutcome::RetryScheduled { retry },
            })
        });
        DynRun {
            run_id,
            events,
            cancel,
            outcome,
        }
    }

    /// The run's id.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run's events, from its first one (taken when the run was spawned, so none is
    /// missed).
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub fn events(&mut self) -> &mut EventStream {
        &mut self.events
    }

    /// A handle that cancels the run.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Waits for the run's end.
    ///
    /// # Errors
    ///
    /// The run's error: a failure, a cancellation, a store error.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub async fn outcome(self) -> Result<DynOutcome> {
        self.outcome.await
    }

    /// Splits the run into its id, events, cancel handle and end, to keep them apart.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub fn into_parts(self) -> (String, EventStream, CancelHandle, DynOutcomeFuture) {
        (self.run_id, self.events, self.cancel, self.outcome)
    }
}

/// What a resume of a [`DynGraph`]'s run brings, as JSON: the answer to its only interrupt,
/// answers by interrupt id, and an update of the state applied before it goes on (see
/// [`Resume`]).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::DynResume;
/// let resume: DynResume = serde_json::from_str(r#"{"answers": {"approve-1": true}}"#).unwrap();
/// assert_eq!(resume.answers["approve-1"], serde_json::json!(true));
/// assert!(resume.value.is_none() && resume.update.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynResume {
    /// The answer to the run's only interrupt ([`Resume::value`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Answers by interrupt id ([`Resume::answer`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answers: BTreeMap<String, Value>,
    /// An update of the state, as the state's update JSON ([`Resume::update`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Value>,
}

/// A graph driven with JSON. Every [`CompiledGraph`] whose state has a `Default` is one; hold
/// them as `Arc<dyn DynGraph>` in a [`GraphRegistry`].
///
/// Each method spawns the run on the current tokio runtime, so it must be called inside one.
pub trait DynGraph: Send + Sync + fmt::Debug + 'static {
    /// The graph's fingerprint (a resume checks it against the run's).
    fn fingerprint(&self) -> Fingerprint;

    /// Starts a run with `input`, the state's JSON; the fields an object leaves out keep the
    /// default state's values.
    ///
    /// # Errors
    ///
    /// [`Error::Json`] when `input` is not the state's JSON.
    fn start(&self, input: Value, config: RunConfig) -> Result<DynRun>;

    /// Gives `thread` its next input, the JSON of the state's update
    /// ([`CompiledGraph::invoke_thread`]).
    ///
    /// # Errors
    ///
    /// [`Error::Json`] when `input` is not the update's JSON.
    fn invoke_thread(&self, thread: String, input: Value, config: RunConfig) -> Result<DynRun>;

    /// Resumes `run` ([`CompiledGraph::resume_with`]).
    ///
    /// # Errors
    ///
    /// [`Error::Json`] when the resume's update is not the update's JSON.
    fn resume(&self, run: String, resume: DynResume, config: RunConfig) -> Result<DynRun>;
}

/// `input` laid over the default state's JSON: the fields an object leaves out keep their
/// defaults. Anything else than an object is left as it is (and fails to decode).
fn over_default<S: State + Default>(input: Value) -> Value {
    let Value::Object(given) = input else {
        return input;
    };
    match serde_json::to_value(S::default()) {
        Ok(Value::Object(mut state)) => {
            state.extend(given);
            Value::Object(state)
        }
        _ => Value::Object(given),
    }
}

/// `value` as a `T`, or an error naming `what` it should have been.
fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Json {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

impl<S: State + Default> DynGraph for CompiledGraph<S> {
    fn fingerprint(&self) -> Fingerprint {
        CompiledGraph::fingerprint(self)
    }

    fn start(&self, input: Value, config: RunConfig) -> Result<DynRun> {
        let input: S = decode(
            over_default::<S>(input),
            "the run's input (the graph's state)",
        )?;
        Ok(DynRun::spawn(self.run_with(input, config)))
    }

    fn invoke_thread(&self, thread: String, input: Value, config: RunConfig) -> Result<DynRun> {
        let input: S::Update = decode(input, "the thread's input (an update of the state)")?;
        Ok(DynRun::spawn(CompiledGraph::invoke_thread(
            self, thread, input, config,
        )))
    }

    fn resume(&self, run: String, resume: DynResume, config: RunConfig) -> Result<DynRun> {
        let mut out = match resume.value {
            Some(value) => Resume::value(value),
            None => Resume::new(),
        };
        for (id, value) in resume.answers {
            out = out.answer(id, value);
        }
        if let Some(update) = resume.update {
            out = out.update(decode(
                update,
                "the resume's update (an update of the state)",
            )?);
        }
        Ok(DynRun::spawn(self.resume_with(run, out, config)))
    }
}

/// A graph over a [`DynState`](crate::DynState) (one declared in a file) is driven with JSON
/// through its schema: a run's input names some fields (the others keep their defaults), a
/// thread's input and a resume's update name the fields they write.
impl DynGraph for CompiledGraph<crate::DynState> {
    fn fingerprint(&self) -> Fingerprint {
        CompiledGraph::fingerprint(self)
    }

    fn start(&self, input: Value, config: RunConfig) -> Result<DynRun> {
        let input = crate::DynState::from_json(self.schema(), input).map_err(|e| Error::Json {
            what: "the run's input (the graph's state)".to_owned(),
            message: e.to_string(),
        })?;
        Ok(DynRun::spawn(self.run_with(input, config)))
    }

    fn invoke_thread(&self, thread: String, input: Value, config: RunConfig) -> Result<DynRun> {
        let input = dyn_update(self, input, "the thread's input (an update of the state)")?;
        let initial = crate::DynState::new(self.schema());
        Ok(DynRun::spawn(
            self.invoke_thread_from(thread, input, initial, config),
        ))
    }

    fn resume(&self, run: String, resume: DynResume, config: RunConfig) -> Result<DynRun> {
        let mut out = match resume.value {
            Some(value) => Resume::value(value),
            None => Resume::new(),
        };
        for (id, value) in resume.answers {
            out = out.answer(id, value);
        }
        if let Some(update) = resume.update {
            out = out.update(dyn_update(
                self,
                update,
                "the resume's update (an update of the state)",
            )?);
        }
        Ok(DynRun::spawn(self.resume_with(run, out, config)))
    }
}

/// `value` as an update of `graph`'s state, or an error naming `what` it should have been.
fn dyn_update(
    graph: &CompiledGraph<crate::DynState>,
    value: Value,
    what: &str,
) -> Result<crate::DynUpdate> {
    crate::DynUpdate::from_json(graph.schema(), value).map_err(|e| Error::Json {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// Graphs by name, to start, continue and resume runs of with JSON: what a service that takes
/// runs from elsewhere (an HTTP API, a queue) holds. Cheap to clone.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{DynOutcome, GraphBuilder, GraphRegistry, RunConfig, START, END};
///
/// #[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// #[state(crate = agentgraph_engine)]
/// struct Count {
///     #[reducer(add)]
///     n: i64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node("inc", |_, _| async { Ok(CountUpdate::new().n(1)) })
///     .add_edge(START, "inc")
///     .add_edge("inc", END);
/// let registry = GraphRegistry::new().with("counter", b.compile()?);
///
/// let graph = registry.get("counter").expect("registered");
/// let run = graph.start(serde_json::json!({ "n": 41 }), RunConfig::new())?;
/// assert!(!run.run_id().is_empty());
/// let DynOutcome::Completed { state } = run.outcome().await? else { unreachable!() };
/// assert_eq!(state["n"], 42);
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["counter"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct GraphRegistry {
    graphs: BTreeMap<String, Arc<dyn DynGraph>>,
}

impl GraphRegistry {
    /// An empty registry.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_engine::GraphRegistry::new().is_empty());
    /// ```
    pub fn new() -> Self {
        GraphRegistry::default()
    }

    /// Registers `graph` as `name`, replacing a graph registered under that name.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, graph: impl DynGraph) -> Self {
        self.insert(name, graph);
        self
    }

    /// Registers `graph` as `name`; returns the graph it replaces.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        graph: impl DynGraph,
    ) -> Option<Arc<dyn DynGraph>> {
        self.graphs.insert(name.into(), Arc::new(graph))
    }

    /// The graph registered as `name`.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynGraph>> {
        self.graphs.get(name)
    }

    /// The names registered, in order.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry`].
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.graphs.keys().map(String::as_str)
    }

    /// The graphs and their names, in name order.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_engine::GraphRegistry::new().iter().count(), 0);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn DynGraph>)> {
        self.graphs.iter().map(|(n, g)| (n.as_str(), g))
    }

    /// How many graphs are registered.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_engine::GraphRegistry::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    /// Whether no graph is registered.
    ///
    /// # Examples
    ///
    /// See [`GraphRegistry::new`].
    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }
}
