//! What error edges and compensations give their nodes as input: [`NodeFailure`] and
//! [`Compensation`].

use serde::{Deserialize, Serialize};

use crate::ids::TaskId;

/// The final failure of a node's task, as its error handler receives it
/// ([`GraphBuilder::on_error`](crate::GraphBuilder::on_error)): the handler reads it with
/// [`Context::input`](crate::Context::input).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Log { #[reducer(append)] log: Vec<String> }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Log>::new();
/// b.add_node("charge", |_, _| async { Err::<LogUpdate, BoxError>("card declined".into()) })
///     .add_node("apologize", |_, ctx: Context| async move {
///         let failure: NodeFailure = ctx.input()?;
///         Ok(LogUpdate::new().log(vec![format!("{} failed: {}", failure.node, failure.error)]))
///     })
///     .add_edge(START, "charge")
///     .add_edge("charge", END)
///     .add_edge("apologize", END)
///     .on_error("charge", "apologize");
/// let done = b.compile()?.invoke(Log::default()).await?;
/// assert_eq!(done.log, ["charge failed: card declined"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeFailure {
    /// The node that failed.
    pub node: String,
    /// Its task.
    pub task: TaskId,
    /// The step it failed in.
    pub step: u64,
    /// The attempts it made (its retry policy's, across resumes).
    pub attempts: u32,
    /// The error, as text, with its cause chain.
    pub error: String,
}

/// What a compensation node is given when it runs
/// ([`GraphBuilder::compensate`](crate::GraphBuilder::compensate)): the node whose work it
/// undoes and the error that failed the run. It reads it with
/// [`Context::input`](crate::Context::input).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Log { #[reducer(append)] log: Vec<String> }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Log>::new();
/// b.add_node("book", |_, _| async { Ok(LogUpdate::new().log(vec!["booked".into()])) })
///     .add_node("pay", |_, _| async { Err::<LogUpdate, BoxError>("no funds".into()) })
///     .add_node("cancel_booking", |_, ctx: Context| async move {
///         let undo: Compensation = ctx.input()?;
///         Ok(LogUpdate::new().log(vec![format!("undo {}", undo.node)]))
///     })
///     .add_edge(START, "book")
///     .add_edge("book", "pay")
///     .add_edge("pay", END)
///     .compensate("book", "cancel_booking");
/// let Err(Error::Compensated { compensated, .. }) = b.compile()?.invoke(Log::default()).await else {
///     panic!("the run fails, compensated");
/// };
/// assert_eq!(compensated, ["book"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Compensation {
    /// The node whose work this compensation undoes.
    pub node: String,
    /// The error that failed the run, as text.
    pub error: String,
}
