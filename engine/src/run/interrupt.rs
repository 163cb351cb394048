//! Human-in-the-loop interrupts: [`Interrupt`], the [`Interrupted`] stop of a run, and the
//! [`Resume`] that answers it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::define::state::State;
use crate::ids::TaskId;

/// Where an interrupt comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InterruptKind {
    /// Before a node named with
    /// [`GraphBuilder::interrupt_before`](crate::GraphBuilder::interrupt_before) runs: its
    /// step waits. Resuming lets the step run.
    Before,
    /// After a node named with
    /// [`GraphBuilder::interrupt_after`](crate::GraphBuilder::interrupt_after) ran and its
    /// step was checkpointed. Resuming goes on with the next step.
    After,
    /// From inside a node, by [`Context::interrupt`](crate::Context::interrupt). Resuming runs
    /// the node again, and the call returns the value given for the interrupt's id.
    Node,
}

/// An interrupt the run waits on.
///
/// # Examples
///
/// ```
/// # use agentgraph_engine::*;
/// # fn show(e: Error) {
/// if let Error::Interrupted(stop) = e {
///     for i in &stop.interrupts {
///         println!("{} waits at {} ({:?}): {}", i.node, i.id, i.kind, i.payload);
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Interrupt {
    /// The id to answer with [`Resume::answer`]: stable across resumes and processes.
    pub id: String,
    /// Where it comes from.
    pub kind: InterruptKind,
    /// The node.
    pub node: String,
    /// The step of the task (for [`InterruptKind::Before`], the step that waits).
    pub step: u64,
    /// The task.
    pub task: TaskId,
    /// What the node asked, as JSON (`null` for `Before` and `After`).
    pub payload: serde_json::Value,
    /// The subgraph nodes it is inside, outermost first (empty for the run's own nodes).
    pub path: Vec<String>,
}

impl Interrupt {
    pub(crate) fn id_for(task: TaskId, kind: InterruptKind, index: u32) -> String {
        match kind {
            InterruptKind::Before => format!("{task}:before"),
            InterruptKind::After => format!("{task}:after"),
            InterruptKind::Node => format!("{task}:{index}"),
        }
    }

    /// The interrupt of the task `task` of `node` at a gate (`interrupt_before`,
    /// `interrupt_after`) of `step`.
    pub(crate) fn at_gate(node: String, task: TaskId, kind: InterruptKind, step: u64) -> Self {
        Interrupt {
            id: Interrupt::id_for(task, kind, 0),
            kind,
            node,
            step,
            task,
            payload: serde_json::Value::Null,
            path: Vec::new(),
        }
    }
}

/// Why a run stopped at interrupts: carried by [`Error::Interrupted`](crate::Error::Interrupted).
/// The run is checkpointed and its status is `Interrupted`; resume it with
/// [`CompiledGraph::resume_with`](crate::CompiledGraph::resume_with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Interrupted {
    /// The run.
    pub run_id: String,
    /// The step at which it stopped.
    pub step: u64,
    /// What it waits on, in task order.
    pub interrupts: Vec<Interrupt>,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run `{}` stopped at step {} waiting on {} interrupt(s):",
            self.run_id,
            self.step,
            self.interrupts.len()
        )?;
        for i in &self.interrupts {
            let path: String = i.path.iter().map(|p| format!("{p}/")).collect();
            write!(f, " `{path}{}` ({:?}, id {})", i.node, i.kind, i.id)?;
        }
        f.write_str("; resume it with `resume_with`")
    }
}

/// The signal [`Context::interrupt`](crate::Context::interrupt) returns (as the node's error)
/// when the interrupt has no answer yet. Return it from the node (the `?` operator does): the
/// engine stops the run at the interrupt. Do not wrap it in another error.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptSignal {
    pub(crate) index: u32,
    pub(crate) payload: serde_json::Value,
}

impl fmt::Display for InterruptSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interrupted, waiting for an answer to interrupt #{}",
            self.index
        )
    }
}

impl std::error::Error for InterruptSignal {}

/// The signal of a subgraph node whose child run stopped at interrupts.
#[derive(Debug)]
pub(crate) struct SubgraphInterrupted(pub(crate) Vec<Interrupt>);

impl fmt::Display for SubgraphInterrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the subgraph stopped at {} interrupt(s)", self.0.len())
    }
}

impl std::error::Error for SubgraphInterrupted {}

/// What a resumed run is given: answers to its interrupts (by id, or one [`value`](Resume::value)
/// for the one it waits on) and an edit of its state.
///
/// # Examples
///
/// ```no_run
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Draft { text: String }
/// # async fn f(graph: CompiledGraph<Draft>, store: Arc<dyn CheckpointStore>) -> Result<()> {
/// let pending = graph.history(store.clone()).interrupts("run-1").await?;
/// let resume = Resume::new()
///     .answer(&pending[0].id, "approved")
///     .update(DraftUpdate::new().text("the edited draft".into()));
/// let state = graph
///     .resume_with("run-1", resume, RunConfig::new().store(store))
///     .await?;
/// # Ok(()) }
/// ```
pub struct Resume<S: State> {
    pub(crate) answers: Vec<(String, Result<String, String>)>,
    /// The answer to the one interrupt the answers by id leave ([`Resume::value`]).
    pub(crate) value: Option<Result<String, String>>,
    pub(crate) update: Option<S::Update>,
}

impl<S: State> fmt::Debug for Resume<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resume")
            .field(
                "answers",
                &self.answers.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("value", &self.value.is_some())
            .field("update", &self.update.is_some())
            .finish()
    }
}

impl<S: State> Default for Resume<S> {
    fn default() -> Self {
        Resume {
            answers: Vec::new(),
            value: None,
            update: None,
        }
    }
}

impl<S: State> Resume<S> {
    /// Nothing to answer or edit: interrupts before and after nodes are passed; interrupts
    /// from inside nodes are raised again.
    pub fn new() -> Self {
        Resume::default()
    }

    /// Answers the one interrupt the run waits on, without its id: the node's
    /// [`Context::interrupt`](crate::Context::interrupt) call returns `value` (a gate, from
    /// `interrupt_before` or `interrupt_after`, is passed). Chain [`answer`](Resume::answer)
    /// and [`update`](Resume::update) as with [`Resume::new`].
    ///
    /// The value answers the interrupt that is left once the answers by id are taken out:
    /// with one interrupt pending, that one; with several, the only one not answered by id.
    /// When more than one is left, the resume fails with
    /// [`Error::AmbiguousResumeValue`](crate::Error::AmbiguousResumeValue), which lists them
    /// (ids, nodes); when none is (the run waits on nothing, or every interrupt is answered by
    /// id), with [`Error::NoInterruptToAnswer`](crate::Error::NoInterruptToAnswer). Either way
    /// nothing is stored and the run stays as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_engine::*;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Doc { approved: bool }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut b = GraphBuilder::<Doc>::new();
    /// b.add_node("review", |_, ctx: Context| async move {
    ///     let ok: bool = ctx.interrupt("approve the document?")?;
    ///     Ok(DocUpdate::new().approved(ok))
    /// })
    /// .add_edge(START, "review")
    /// .add_edge("review", END);
    /// let graph = b.compile()?;
    /// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let config = || RunConfig::new().run_id("doc-1").store(store.clone());
    ///
    /// let outcome = graph.run_with(Doc::default(), config()).outcome().await?;
    /// assert!(matches!(outcome, RunOutcome::Interrupted(_)));
    /// // It waits on one interrupt: answer it without its id.
    /// let doc = graph.resume_with("doc-1", Resume::value(true), config()).await?;
    /// assert!(doc.approved);
    /// # Ok(()) }
    /// ```
    pub fn value(value: impl Serialize) -> Self {
        Resume {
            value: Some(serde_json::to_string(&value).map_err(|e| e.to_string())),
            ..Resume::default()
        }
    }

    /// Answers the interrupt `id`: the node's
    /// [`Context::interrupt`](crate::Context::interrupt) call returns `value`. An id the run
    /// does not wait on fails the resume with
    /// [`Error::UnknownInterrupt`](crate::Error::UnknownInterrupt).
    #[must_use]
    pub fn answer(mut self, id: impl Into<String>, value: impl Serialize) -> Self {
        let json = serde_json::to_string(&value).map_err(|e| e.to_string());
        self.answers.push((id.into(), json));
        self
    }

    /// Edits the state before the run goes on: `update` is merged with the fields' reducers
    /// into the state of the run's last checkpoint, and that checkpoint is rewritten with it
    /// (durably, before anything runs).
    #[must_use]
    pub fn update(mut self, update: S::Update) -> Self {
        self.update = Some(update);
        self
    }
}
