//! [`ConcurrencyLimit`].

use std::fmt;
use std::sync::Arc;

use agentgraph_engine::{Context, Node, NodeFuture, State};
use tokio::sync::Semaphore;

use crate::error::{Error, Limit};

/// A node whose calls wait for a permit of a shared limit; made by
/// [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{ConcurrencyLimit, ConcurrencyLimitLayer};
///
/// let node: ConcurrencyLimit<_> = NodeBuilder::new()
///     .layer(ConcurrencyLimitLayer::new(2))
///     .node(cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new().n(1))));
/// let _inner = node.get_ref();
/// GraphBuilder::<Count>::new().add_node_with("work", node);
/// ```
pub struct ConcurrencyLimit<N> {
    inner: Arc<N>,
    semaphore: Arc<Semaphore>,
}

impl<N> ConcurrencyLimit<N> {
    pub(crate) fn new(inner: N, semaphore: Arc<Semaphore>) -> Self {
        ConcurrencyLimit {
            inner: Arc::new(inner),
            semaphore,
        }
    }

    /// The wrapped node.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::ConcurrencyLimitLayer;
    /// let node = ConcurrencyLimitLayer::new(1).layer("any value");
    /// assert_eq!(*node.get_ref(), "any value");
    /// ```
    pub fn get_ref(&self) -> &N {
        &self.inner
    }
}

impl<N> Clone for ConcurrencyLimit<N> {
    fn clone(&self) -> Self {
        ConcurrencyLimit {
            inner: self.inner.clone(),
            semaphore: self.semaphore.clone(),
        }
    }
}

impl<N: fmt::Debug> fmt::Debug for ConcurrencyLimit<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("available", &self.semaphore.available_permits())
            .finish()
    }
}

impl<S: State, N: Node<S>> Node<S> for ConcurrencyLimit<N> {
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let inner = self.inner.clone();
        let semaphore = self.semaphore.clone();
        Box::pin(async move {
            let permit = tokio::select! {
                biased;
                () = ctx.cancelled() => {
                    return Err(Error::Cancelled {
                        node: ctx.node().to_owned(),
                        limit: Limit::Concurrency,
                    }
                    .into());
                }
                permit = semaphore.acquire_owned() => {
                    permit.expect("the layer's semaphore is never closed")
                }
            };
            // The node is called only now that it holds a permit: a CPU-bound node starts its
            // work when called, not when awaited.
            let result = inner.call(state, ctx).await;
            drop(permit);
            result
        })
    }
}
