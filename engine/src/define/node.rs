//! Nodes as values: the [`Node`] trait, the closures that implement it, and [`Layer`]s that
//! wrap nodes in middleware.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::define::route::{Command, IntoCommand};
use crate::define::state::State;
use crate::error::BoxError;
use crate::run::context::Context;

/// The future a [`Node`] returns.
pub type NodeFuture<S> = BoxFuture<'static, Result<Command<S>, BoxError>>;

/// A node of a graph: reads a snapshot of the state and returns an update.
///
/// [`GraphBuilder::add_node`](crate::GraphBuilder::add_node) and
/// [`add_cpu_node`](crate::GraphBuilder::add_cpu_node) take closures; implement this trait (or
/// wrap a node in [`Layer`]s with [`NodeBuilder`]) and add the value with
/// [`add_node_with`](crate::GraphBuilder::add_node_with) for anything else.
///
/// A node may be called again for the same task: on a retry, or after a crash. Its
/// [`Context`] says which attempt it is and gives an idempotency key.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// /// Adds a fixed amount.
/// struct AddN(u64);
///
/// impl Node<Count> for AddN {
///     fn call(&self, _state: Arc<Count>, _ctx: Context) -> NodeFuture<Count> {
///         let n = self.0;
///         Box::pin(async move { Ok(Command::new(CountUpdate::new().n(n))) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("add", AddN(5)).add_edge(START, "add").add_edge("add", END);
/// assert_eq!(b.compile()?.invoke(Count::default()).await?.n, 5);
/// # Ok(()) }
/// ```
pub trait Node<S: State>: Send + Sync + 'static {
    /// Runs the node once for a task.
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S>;
}

impl<S: State, N: Node<S> + ?Sized> Node<S> for Arc<N> {
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        (**self).call(state, ctx)
    }
}

impl<S: State, N: Node<S> + ?Sized> Node<S> for Box<N> {
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        (**self).call(state, ctx)
    }
}

/// Wraps a node in middleware, like tower's `Layer`: rate limits, caches, concurrency limits.
///
/// Stack layers with [`NodeBuilder`]. The engine itself provides retries and timeouts (see
/// [`RetryPolicy`](crate::RetryPolicy) and
/// [`GraphBuilder::timeout`](crate::GraphBuilder::timeout)), because they must survive a
/// crash; ready-made layers live in the `agentgraph-layers` crate (`agentgraph::layers`).
///
/// # Examples
///
/// A layer that counts calls:
///
/// ```
/// # use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
/// # use agentgraph_engine::*;
/// #[derive(Clone, Default)]
/// struct CountCalls(Arc<AtomicU64>);
///
/// struct Counted<N> { inner: N, calls: Arc<AtomicU64> }
///
/// impl<N> Layer<N> for CountCalls {
///     type Node = Counted<N>;
///     fn layer(&self, inner: N) -> Counted<N> {
///         Counted { inner, calls: self.0.clone() }
///     }
/// }
///
/// impl<S: State, N: Node<S>> Node<S> for Counted<N> {
///     fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
///         self.calls.fetch_add(1, Ordering::Relaxed);
///         self.inner.call(state, ctx)
///     }
/// }
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calls = CountCalls::default();
/// let node = NodeBuilder::new()
///     .layer(calls.clone())
///     .node(async_node(|_: Arc<Count>, _| async { Ok(CountUpdate::new().n(1)) }));
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("one", node).add_edge(START, "one").add_edge("one", END);
/// b.compile()?.invoke(Count::default()).await?;
/// assert_eq!(calls.0.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
pub trait Layer<N> {
    /// The wrapped node.
    type Node;

    /// Wraps `inner`.
    fn layer(&self, inner: N) -> Self::Node;
}

/// The layer that adds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<N> Layer<N> for Identity {
    type Node = N;

    fn layer(&self, inner: N) -> N {
        inner
    }
}

/// Two layers: `outer` wraps what `inner` makes.
#[derive(Debug, Clone)]
pub struct Stack<Inner, Outer> {
    inner: Inner,
    outer: Outer,
}

impl<N, Inner: Layer<N>, Outer: Layer<Inner::Node>> Layer<N> for Stack<Inner, Outer> {
    type Node = Outer::Node;

    fn layer(&self, node: N) -> Self::Node {
        self.outer.layer(self.inner.layer(node))
    }
}

/// Stacks [`Layer`]s around a node, like tower's `ServiceBuilder`: the first layer added is the
/// outermost, the first to see a call.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// let node = NodeBuilder::new()
///     .layer(Identity) // a rate limit, a cache, ... from `agentgraph-layers`
///     .node(cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new().n(1))));
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("one", node);
/// ```
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder<L> {
    layer: L,
}

impl NodeBuilder<Identity> {
    /// A builder with no layers.
    pub fn new() -> Self {
        NodeBuilder { layer: Identity }
    }
}

impl<L> NodeBuilder<L> {
    /// Adds a layer inside the ones added before.
    pub fn layer<T>(self, layer: T) -> NodeBuilder<Stack<T, L>> {
        NodeBuilder {
            layer: Stack {
                inner: layer,
                outer: self.layer,
            },
        }
    }

    /// Wraps `node` in the layers.
    pub fn node<N>(&self, node: N) -> L::Node
    where
        L: Layer<N>,
    {
        self.layer.layer(node)
    }

    /// The layers, as one layer.
    pub fn into_inner(self) -> L {
        self.layer
    }
}

/// An async closure as a [`Node`]: `Fn(Arc<S>, Context) -> impl Future<Output = Result<impl
/// IntoCommand<S>, BoxError>>`. What [`GraphBuilder::add_node`](crate::GraphBuilder::add_node)
/// makes of its closure; use it to wrap a closure in [`Layer`]s.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// let node = async_node(|_: Arc<Count>, _: Context| async { Ok(CountUpdate::new().n(1)) });
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("one", NodeBuilder::new().layer(Identity).node(node));
/// ```
pub fn async_node<S, F, Fut, O>(f: F) -> AsyncNode<F, O>
where
    S: State,
    F: Fn(Arc<S>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
    O: IntoCommand<S>,
{
    AsyncNode {
        f,
        _out: PhantomData,
    }
}

/// An async closure as a [`Node`]; made by [`async_node`].
pub struct AsyncNode<F, O> {
    f: F,
    _out: PhantomData<fn() -> O>,
}

impl<F, O> fmt::Debug for AsyncNode<F, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncNode")
    }
}

impl<S, F, Fut, O> Node<S> for AsyncNode<F, O>
where
    S: State,
    F: Fn(Arc<S>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
    O: IntoCommand<S> + 'static,
{
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let fut = (self.f)(state, ctx);
        Box::pin(async move { fut.await.map(IntoCommand::into_command) })
    }
}

/// A CPU-bound closure as a [`Node`]: `Fn(&S, &Context) -> Result<impl IntoCommand<S>,
/// BoxError>`, run on the rayon pool so that it never blocks the async runtime. What
/// [`GraphBuilder::add_cpu_node`](crate::GraphBuilder::add_cpu_node) makes of its closure.
///
/// When its attempt times out or the run is cancelled, the closure is not stopped (no thread
/// can be), but its [`Context::is_cancelled`] turns true and its result is discarded.
///
/// # Examples
///
/// ```
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// let node = cpu_node(|s: &Count, ctx: &Context| {
///     let mut sum = 0;
///     for i in 0..1_000_000u64 {
///         if i % 10_000 == 0 && ctx.is_cancelled() {
///             return Err("cancelled".into()); // discarded anyway; stop working
///         }
///         sum += i % 7;
///     }
///     Ok(CountUpdate::new().n(s.n + sum % 2))
/// });
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node_with("crunch", node);
/// ```
pub fn cpu_node<S, F, O>(f: F) -> CpuNode<F, O>
where
    S: State,
    F: Fn(&S, &Context) -> Result<O, BoxError> + Send + Sync + 'static,
    O: IntoCommand<S>,
{
    CpuNode {
        f: Arc::new(f),
        _out: PhantomData,
    }
}

/// A CPU-bound closure as a [`Node`]; made by [`cpu_node`].
pub struct CpuNode<F, O> {
    f: Arc<F>,
    _out: PhantomData<fn() -> O>,
}

impl<F, O> fmt::Debug for CpuNode<F, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CpuNode")
    }
}

impl<S, F, O> Node<S> for CpuNode<F, O>
where
    S: State,
    F: Fn(&S, &Context) -> Result<O, BoxError> + Send + Sync + 'static,
    O: IntoCommand<S> + 'static,
{
    fn call(&self, state: Arc<S>, ctx: Context) -> NodeFuture<S> {
        let f = self.f.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        rayon::spawn(move || {
            // Cancelled while it waited for a thread: do not start.
            if ctx.is_cancelled() {
                return;
            }
            let result = span.in_scope(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    f(&state, &ctx).map(IntoCommand::into_command)
                }))
            });
            drop(state);
            let _ = tx.send(result);
        });
        Box::pin(async move {
            match rx.await {
                Ok(Ok(result)) => result,
                // The panic goes on in this future, where the engine catches it like any other.
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => Err("the CPU-bound node was cancelled before it started".into()),
            }
        })
    }
}

/// How a node was given, for fingerprints and DOT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Async,
    Cpu,
    /// A [`Node`] value (possibly layered).
    Custom,
    /// A subgraph, with the child graph's fingerprint.
    Subgraph(u128),
}

/// A node as the plan holds it.
pub(crate) struct NodeFn<S: State> {
    pub(crate) node: Arc<dyn Node<S>>,
    pub(crate) kind: NodeKind,
}

impl<S: State> Clone for NodeFn<S> {
    fn clone(&self) -> Self {
        NodeFn {
            node: self.node.clone(),
            kind: self.kind,
        }
    }
}

impl<S: State> fmt::Debug for NodeFn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl<S: State> NodeFn<S> {
    pub(crate) fn new(node: impl Node<S>, kind: NodeKind) -> Self {
        NodeFn {
            node: Arc::new(node),
            kind,
        }
    }

    /// `async`, `cpu` or `node`, for fingerprints and DOT.
    pub(crate) fn kind(&self) -> &'static str {
        match self.kind {
            NodeKind::Async => "async",
            NodeKind::Cpu => "cpu",
            NodeKind::Custom => "node",
            NodeKind::Subgraph(_) => "subgraph",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _obj_safe<S: State>(_: &dyn Node<S>) {}
}
