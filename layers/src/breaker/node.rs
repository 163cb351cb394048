//! [`CircuitBreaker`].

use std::fmt;
use std::sync::Arc;

use agentgraph_engine::{BoxError, Context, InterruptSignal, Node, NodeFuture, State};
use tokio::time::Instant;

use super::Shared;
use super::machine::{Outcome, Ticket};
use crate::error::{CircuitOpen, Error};

/// A node whose calls go through a shared circuit breaker; made by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{CircuitBreaker, CircuitBreakerLayer};
///
/// let node: CircuitBreaker<_> = NodeBuilder::new()
///     .layer(CircuitBreakerLayer::consecutive_failures(3))
///     .node(async_node(|_: Arc<Count>, _| async { Ok(CountUpdate::new().n(1)) }));
/// let _inner = node.get_ref();
/// GraphBuilder::<Count>::new().add_node_with("call_api", node);
/// ```
pub struct CircuitBreaker<N> {
    inner: Arc<N>,
    shared: Arc<Shared>,
}

impl<N> CircuitBreaker<N> {
    pub(super) fn new(inner: N, shared: Arc<Shared>) -> Self {
        CircuitBreaker {
            inner: Arc::new(inner),
            shared,
        }
    }

    /// The wrapped node.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Layer;
    /// use agentgraph_layers::CircuitBreakerLayer;
    /// let node = CircuitBreakerLayer::consecutive_failures(1).layer("any value");
    /// assert_eq!(*node.get_ref(), "any value");
    /// ```
    pub fn get_ref(&self) -> &N {
        &self.inner
    }
}

impl<N> Clone for CircuitBreaker<N> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<N: fmt::Debug> fmt::Debug for CircuitBreaker<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// A ticket on its way back: given back with the call's outcome, or as ignored when the call
/// is dropped (or panics) before it ends.
struct Pending {
    shared: Arc<Shared>,
    ticket: Option<Ticket>,
}

impl Pending {
    fn finish(mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.shared
                .machine()
                .record(ticket, outcome, Instant::now());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.shared
                .machine()
                .record(ticket, Outcome::Ignored, Instant::now());
        }
    }
}

fn outcome(shared: &Shared, error: &BoxError) -> Outcome {
    if error.is::<InterruptSignal>()
        || matches!(error.downcast_ref(), Some(Error::Cancelled { .. }))
    {
        return Outcome::Ignored;
    }
    match &shared.failure_if {
        Some(is_failure) if !is_failure(error) => Outcome::Ignored,
        _ => Outcome::Failure,
    }
}

impl<S: State, N: Node<S>> Node<S> for CircuitBreaker<N> {
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let acquired = self.shared.machine().acquire(Instant::now());
        let ticket = match acquired {
            Ok(ticket) => ticket,
            Err(refused) => {
                let e = CircuitOpen::new(
                    ctx.node(),
                    self.shared.name.as_deref().map(str::to_owned),
                    refused.state,
                    refused.retry_after,
                );
                return Box::pin(std::future::ready(Err(e.into())));
            }
        };
        let pending = Pending {
            shared: self.shared.clone(),
            ticket: Some(ticket),
        };
        let call = self.inner.call(state, ctx);
        Box::pin(async move {
            let result = call.await;
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(e) => outcome(&pending.shared, e),
            };
            pending.finish(outcome);
            result
        })
    }
}
