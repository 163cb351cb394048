//! [`Timeout`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{Context, Node, NodeFuture, State};

use crate::error::TimedOut;

/// A node whose calls are dropped after a time limit; made by
/// [`TimeoutLayer`](crate::TimeoutLayer).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{Timeout, TimeoutLayer};
///
/// let node: Timeout<_> = NodeBuilder::new()
///     .layer(TimeoutLayer::new(Duration::from_secs(1)))
///     .node(async_node(|_: Arc<Count>, _| async { Ok(CountUpdate::new().n(1)) }));
/// assert_eq!(node.after(), Duration::from_secs(1));
/// GraphBuilder::<Count>::new().add_node_with("quick", node);
/// ```
pub struct Timeout<N> {
    inner: Arc<N>,
    after: Duration,
}

impl<N> Timeout<N> {
    pub(super) fn new(inner: N, after: Duration) -> Self {
        Timeout {
            inner: Arc::new(inner),
            after,
        }
    }

    /// The wrapped node.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::TimeoutLayer;
    /// let node = TimeoutLayer::new(Duration::from_secs(1)).layer("any value");
    /// assert_eq!(*node.get_ref(), "any value");
    /// ```
    pub fn get_ref(&self) -> &N {
        &self.inner
    }

    /// The time limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::TimeoutLayer;
    /// let node = TimeoutLayer::new(Duration::from_secs(2)).layer(());
    /// assert_eq!(node.after(), Duration::from_secs(2));
    /// ```
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl<N> Clone for Timeout<N> {
    fn clone(&self) -> Self {
        Timeout {
            inner: self.inner.clone(),
            after: self.after,
        }
    }
}

impl<N: fmt::Debug> fmt::Debug for Timeout<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("after", &self.after)
            .finish()
    }
}

impl<S: State, N: Node<S>> Node<S> for Timeout<N> {
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let after = self.after;
        let mut call = self.inner.call(state, ctx.clone());
        Box::pin(async move {
            match tokio::time::timeout(after, &mut call).await {
                Ok(result) => result,
                Err(_) => {
                    // Cancel the call before answering: whatever it holds is released first.
                    drop(call);
                    Err(TimedOut::new(ctx.node(), after).into())
                }
            }
        })
    }
}
