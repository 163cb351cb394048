//! [`JoinPolicy`]: when a join fires.

/// When a join fires: after all of its predecessors (the default), after a quorum of them,
/// and at the latest a number of steps after the first one arrived.
///
/// A join's pass begins when its first predecessor finishes. It fires once per pass:
///
/// - [`all`](JoinPolicy::all) (what [`add_join`](crate::GraphBuilder::add_join) uses): once
///   every predecessor has finished or can no longer arrive in the pass (a branch not taken
///   does not hang it), if at least one finished;
/// - [`quorum(k)`](JoinPolicy::quorum): as soon as `k` predecessors have finished in the
///   pass, or, if fewer than `k` can arrive, when no more can (like `all`);
/// - [`timeout_steps(t)`](JoinPolicy::timeout_steps): also, at the latest, at the end of the
///   `t`-th step after the step in which its first predecessor finished, with whatever
///   arrived by then.
///
/// The predecessors that have not arrived when a join fires early are **not cancelled**:
/// they run on, their other edges are followed, and their arrivals in the same pass are
/// ignored (the join does not fire again for them). The pass ends when every predecessor has
/// arrived or can no longer arrive; a predecessor that arrives a second time begins a new
/// pass. A timeout is counted in steps, not in wall time, so that the choice is the same in
/// sequential and parallel mode and on every resume (a node's wall time is bounded by its own
/// [`timeout`](crate::GraphBuilder::timeout)). The pass, whether it fired and the step it
/// began are checkpointed with the run.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Votes { #[reducer(append)] log: Vec<String> }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Votes>::new();
/// for name in ["fast", "quick", "slow", "tally", "slower"] {
///     b.add_node(name, move |_, _| async move { Ok(VotesUpdate::new().log(vec![name.to_owned()])) });
/// }
/// b.add_edges(START, ["fast", "quick", "slow"])
///     .add_edge("slow", "slower")
///     .add_edge("fast", END)
///     .add_edge("quick", END)
///     .add_edge("slower", END)
///     // Two of three: `tally` runs once `fast` and `quick` are in; `slower` is ignored.
///     .add_join_with(["fast", "quick", "slower"], "tally", JoinPolicy::quorum(2))
///     .add_edge("tally", END);
/// let done = b.compile()?.invoke(Votes::default()).await?;
/// assert_eq!(done.log, ["fast", "quick", "slow", "tally", "slower"]);
/// assert_eq!(JoinPolicy::quorum(2).timeout_steps(3).get_timeout_steps(), Some(3));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JoinPolicy {
    pub(crate) quorum: Option<usize>,
    pub(crate) timeout_steps: Option<u32>,
}

impl JoinPolicy {
    /// Fires when every predecessor has finished or can no longer arrive (the default).
    pub fn all() -> Self {
        JoinPolicy::default()
    }

    /// Fires as soon as `k` predecessors have finished in the pass. `compile` refuses a `k` of
    /// 0 or more than the join's predecessors ([`GraphError::InvalidQuorum`](crate::GraphError::InvalidQuorum)).
    pub fn quorum(k: usize) -> Self {
        JoinPolicy {
            quorum: Some(k),
            timeout_steps: None,
        }
    }

    /// Fires at the latest at the end of the `steps`-th step after the one in which the
    /// pass's first predecessor finished, with whatever arrived. `compile` refuses 0
    /// ([`GraphError::InvalidJoinTimeout`](crate::GraphError::InvalidJoinTimeout)).
    pub fn timeout_steps(self, steps: u32) -> Self {
        JoinPolicy {
            timeout_steps: Some(steps),
            ..self
        }
    }

    /// The quorum, if one was set.
    pub fn get_quorum(&self) -> Option<usize> {
        self.quorum
    }

    /// The timeout in steps, if one was set.
    pub fn get_timeout_steps(&self) -> Option<u32> {
        self.timeout_steps
    }
}
