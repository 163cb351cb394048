//! [`RetryAt`]: a run stopped until a failed task's retry is due, rather than sleeping through
//! its backoff ([`RunConfig::max_inline_backoff`](crate::RunConfig::max_inline_backoff)).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::TaskId;

/// Why a run stopped before its next retry: a task's retry delay was longer than
/// [`RunConfig::max_inline_backoff`](crate::RunConfig::max_inline_backoff), so the run did not
/// sleep through it. [`RunOutcome::RetryScheduled`](crate::RunOutcome::RetryScheduled) and
/// [`Error::RetryScheduled`](crate::Error::RetryScheduled) carry it.
///
/// The run is checkpointed with status `RetryScheduled`: its stopped step keeps the writes of
/// the tasks that finished (they do not run again) and, for each task in [`tasks`](RetryAt::tasks),
/// the attempts it made and when its next one is due. Continue it with
/// [`CompiledGraph::resume`](crate::CompiledGraph::resume) (or `resume_with` and an empty
/// [`Resume`](crate::Resume)) at or after [`due_at_ms`](RetryAt::due_at_ms), from any process:
/// the task's next attempt has the next number ([`Context::attempt`](crate::Context::attempt))
/// and the policy's attempt budget and delays go on where they were. Continued early, the run
/// waits the rest inline if it is within `max_inline_backoff`, and otherwise stops again at
/// once with the same `RetryAt` (nothing runs).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node("flaky", |_, ctx: Context| async move {
///     if ctx.attempt() < 2 {
///         return Err("the service is down".into());
///     }
///     Ok(CountUpdate::new().n(1))
/// })
/// .add_edge(START, "flaky")
/// .add_edge("flaky", END)
/// .retry("flaky", RetryPolicy::new(3).backoff(Duration::from_millis(300), Duration::from_secs(1)).jitter(false));
/// let graph = b.compile()?;
/// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let config = || {
///     RunConfig::new()
///         .run_id("r-1")
///         .store(store.clone())
///         .max_inline_backoff(Duration::from_millis(100))
/// };
///
/// // The first attempt fails and its 300 ms retry is longer than 100 ms: the run stops.
/// let RunOutcome::RetryScheduled(retry) = graph.run_with(Count::default(), config()).outcome().await? else {
///     panic!("the run should wait for its retry");
/// };
/// assert_eq!((retry.run_id.as_str(), retry.step), ("r-1", 1));
/// assert_eq!((retry.tasks[0].node.as_str(), retry.tasks[0].attempt), ("flaky", 2));
///
/// // When it is due, continue it (here, from the same process).
/// let wait = retry.due_at_ms.saturating_sub(RetryAt::now_ms());
/// tokio::time::sleep(Duration::from_millis(wait)).await;
/// let state = graph.resume_with("r-1", Resume::new(), config()).await?;
/// assert_eq!(state.n, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryAt {
    /// The run.
    pub run_id: String,
    /// The step that waits for the retries.
    pub step: u64,
    /// When the first retry is due: wall-clock milliseconds since the Unix epoch (the earliest
    /// of the tasks').
    pub due_at_ms: u64,
    /// The tasks that wait for a retry, in task order.
    pub tasks: Vec<RetryTask>,
}

/// A task of a [`RetryAt`] stop: which attempt comes next, and when.
///
/// # Examples
///
/// See [`RetryAt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryTask {
    /// The node.
    pub node: String,
    /// The task.
    pub task: TaskId,
    /// The number of the attempt that is due (from 1: the second attempt is 2).
    pub attempt: u32,
    /// When it is due: wall-clock milliseconds since the Unix epoch.
    pub due_at_ms: u64,
}

impl RetryAt {
    /// The wall clock now, in milliseconds since the Unix epoch: what
    /// [`due_at_ms`](RetryAt::due_at_ms) is compared with.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_engine::RetryAt::now_ms() > 1_700_000_000_000);
    /// ```
    pub fn now_ms() -> u64 {
        crate::persist::now_ms()
    }
}

impl fmt::Display for RetryAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run `{}` stopped at step {} until a retry is due at {} ms since the epoch:",
            self.run_id, self.step, self.due_at_ms
        )?;
        for t in &self.tasks {
            write!(
                f,
                " `{}` (attempt {}, due at {})",
                t.node, t.attempt, t.due_at_ms
            )?;
        }
        f.write_str("; continue it with `resume`")
    }
}
