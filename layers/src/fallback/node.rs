//! [`Fallback`].

use std::fmt;
use std::sync::Arc;

use agentgraph_engine::{Context, InterruptSignal, Node, NodeFuture, State};

use super::layer::OnError;
use super::{FallbackCause, FallbackNode, FallbackOnResult};

/// A node that calls a fallback when it fails; made by
/// [`FallbackLayer`](crate::FallbackLayer).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{Fallback, FallbackLayer};
///
/// let backup = cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new()));
/// let node: Fallback<_, _, _> = NodeBuilder::new()
///     .layer(FallbackLayer::new(backup))
///     .node(cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new().n(1))));
/// let _primary = node.get_ref();
/// GraphBuilder::<Count>::new().add_node_with("count", node);
/// ```
pub struct Fallback<N, F, R> {
    inner: Arc<N>,
    fallback: Arc<F>,
    on_error: Option<Arc<OnError>>,
    on_result: Arc<R>,
}

impl<N, F, R> Fallback<N, F, R> {
    pub(super) fn new(
        inner: N,
        fallback: Arc<F>,
        on_error: Option<Arc<OnError>>,
        on_result: Arc<R>,
    ) -> Self {
        Fallback {
            inner: Arc::new(inner),
            fallback,
            on_error,
            on_result,
        }
    }

    /// The wrapped node.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::FallbackLayer;
    /// let node = FallbackLayer::from_fallback("backup").layer("primary");
    /// assert_eq!(*node.get_ref(), "primary");
    /// assert_eq!(*node.fallback(), "backup");
    /// ```
    pub fn get_ref(&self) -> &N {
        &self.inner
    }

    /// The fallback.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::FallbackLayer;
    /// assert_eq!(*FallbackLayer::from_fallback(1).layer(0).fallback(), 1);
    /// ```
    pub fn fallback(&self) -> &F {
        &self.fallback
    }
}

impl<N, F, R> Clone for Fallback<N, F, R> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            fallback: self.fallback.clone(),
            on_error: self.on_error.clone(),
            on_result: self.on_result.clone(),
        }
    }
}

impl<N: fmt::Debug, F: fmt::Debug, R> fmt::Debug for Fallback<N, F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl<S, N, F, R> Node<S> for Fallback<N, F, R>
where
    S: State,
    N: Node<S>,
    F: FallbackNode<S>,
    R: FallbackOnResult<S>,
{
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let primary = self.inner.call(state.clone(), ctx.clone());
        let fallback = self.fallback.clone();
        let on_error = self.on_error.clone();
        let on_result = self.on_result.clone();
        Box::pin(async move {
            let cause = match primary.await {
                Ok(cmd) if on_result.rejects(&cmd) => FallbackCause::Rejected(cmd),
                Ok(cmd) => return Ok(cmd),
                Err(e) if e.is::<InterruptSignal>() => return Err(e),
                Err(e) if on_error.as_ref().is_some_and(|f| !f(&e)) => return Err(e),
                Err(e) => FallbackCause::Failed(e),
            };
            fallback.fall_back(state, ctx, cause).await
        })
    }
}
