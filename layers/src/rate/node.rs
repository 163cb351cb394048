//! [`RateLimit`].

use std::fmt;
use std::sync::Arc;

use agentgraph_engine::{Context, Node, NodeFuture, State};
use governor::DefaultDirectRateLimiter;

use crate::error::{Error, Limit};

/// A node whose calls wait for a shared rate limiter; made by
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{RateLimit, RateLimitLayer};
///
/// let node: RateLimit<_> = NodeBuilder::new()
///     .layer(RateLimitLayer::per_second(5))
///     .node(async_node(|_: Arc<Count>, _| async { Ok(CountUpdate::new().n(1)) }));
/// GraphBuilder::<Count>::new().add_node_with("call_api", node);
/// ```
pub struct RateLimit<N> {
    inner: Arc<N>,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl<N> RateLimit<N> {
    pub(crate) fn new(inner: N, limiter: Arc<DefaultDirectRateLimiter>) -> Self {
        RateLimit {
            inner: Arc::new(inner),
            limiter,
        }
    }

    /// The wrapped node.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::RateLimitLayer;
    /// let node = RateLimitLayer::per_second(1).layer("any value");
    /// assert_eq!(*node.get_ref(), "any value");
    /// ```
    pub fn get_ref(&self) -> &N {
        &self.inner
    }
}

impl<N> Clone for RateLimit<N> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<N: fmt::Debug> fmt::Debug for RateLimit<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: State, N: Node<S>> Node<S> for RateLimit<N> {
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let inner = self.inner.clone();
        let limiter = self.limiter.clone();
        Box::pin(async move {
            tokio::select! {
                biased;
                () = ctx.cancelled() => {
                    return Err(Error::Cancelled {
                        node: ctx.node().to_owned(),
                        limit: Limit::Rate,
                    }
                    .into());
                }
                () = limiter.until_ready() => {}
            }
            inner.call(state, ctx).await
        })
    }
}
