//! [`FallbackCause`], [`FallbackNode`] and the result checks of a [`FallbackLayer`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use agentgraph_engine::{BoxError, Command, Context, IntoCommand, Node, NodeFuture, State};

#[cfg(doc)]
use crate::FallbackLayer;

/// Why a [`FallbackLayer`] called its fallback: the wrapped node's error, or the result its
/// check rejected.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::BoxError;
/// use agentgraph_layers::FallbackCause;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { n: u64 }
/// let cause: FallbackCause<Count> = FallbackCause::Failed(BoxError::from("503"));
/// assert_eq!(cause.error().unwrap().to_string(), "503");
/// ```
#[non_exhaustive]
pub enum FallbackCause<S: State> {
    /// The node failed with this error.
    Failed(BoxError),
    /// The node succeeded with this result, which the layer's
    /// [`on_result`](FallbackLayer::on_result) check rejected.
    Rejected(Command<S>),
}

impl<S: State> FallbackCause<S> {
    /// The node's error, if it failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Command;
    /// use agentgraph_layers::FallbackCause;
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    /// # #[state(crate = agentgraph_engine)]
    /// # struct Count { n: u64 }
    /// let cause = FallbackCause::<Count>::Rejected(Command::new(CountUpdate::new()));
    /// assert!(cause.error().is_none());
    /// ```
    pub fn error(&self) -> Option<&BoxError> {
        match self {
            FallbackCause::Failed(e) => Some(e),
            FallbackCause::Rejected(_) => None,
        }
    }
}

impl<S: State> fmt::Debug for FallbackCause<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackCause::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            FallbackCause::Rejected(cmd) => f.debug_tuple("Rejected").field(cmd).finish(),
        }
    }
}

/// What a [`FallbackLayer`] calls: a [`Node`] ([`FallbackLayer::new`] wraps it in a
/// [`NodeFallback`], which calls it with the task's state and context, as the wrapped node
/// was, without the cause), a closure given the cause too ([`with_cause`]), or a type of your
/// own (give it to [`FallbackLayer::from_fallback`]).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{FallbackCause, FallbackNode};
///
/// use agentgraph_layers::FallbackLayer;
///
/// /// Adds 100 for a failed call, nothing for a rejected result.
/// struct Penalty;
///
/// impl FallbackNode<Count> for Penalty {
///     fn fall_back(&self, _: Arc<Count>, _: Context, cause: FallbackCause<Count>) -> NodeFuture<Count> {
///         let n = if cause.error().is_some() { 100 } else { 0 };
///         Box::pin(async move { Ok(Command::new(CountUpdate::new().n(n))) })
///     }
/// }
///
/// let layer = FallbackLayer::from_fallback(Penalty);
/// # let _ = layer;
/// ```
pub trait FallbackNode<S: State>: Send + Sync + 'static {
    /// Runs the fallback for a call the wrapped node did not answer well.
    fn fall_back(&self, state: Arc<S>, ctx: Context, cause: FallbackCause<S>) -> NodeFuture<S>;
}

/// A [`Node`] as a [`FallbackNode`]: called with the task's state and context, without the
/// cause. What [`FallbackLayer::new`] makes of its node.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::{Context, async_node};
/// use agentgraph_layers::{FallbackLayer, NodeFallback};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { n: u64 }
/// let backup = async_node(|_: Arc<Count>, _: Context| async { Ok(CountUpdate::new().n(0)) });
/// let same: FallbackLayer<NodeFallback<_>> = FallbackLayer::from_fallback(NodeFallback::new(backup));
/// # let _ = same;
/// ```
#[derive(Debug, Clone)]
pub struct NodeFallback<N>(N);

impl<N> NodeFallback<N> {
    /// `node` as a fallback.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::NodeFallback;
    /// assert_eq!(*NodeFallback::new(7).get_ref(), 7);
    /// ```
    pub fn new(node: N) -> Self {
        NodeFallback(node)
    }

    /// The node.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_layers::NodeFallback;
    /// assert_eq!(*NodeFallback::new("n").get_ref(), "n");
    /// ```
    pub fn get_ref(&self) -> &N {
        &self.0
    }
}

impl<S: State, N: Node<S>> FallbackNode<S> for NodeFallback<N> {
    fn fall_back(&self, state: Arc<S>, ctx: Context, _cause: FallbackCause<S>) -> NodeFuture<S> {
        self.0.call(state, ctx)
    }
}

/// An async closure given the cause as a [`FallbackNode`]: `Fn(Arc<S>, Context,
/// FallbackCause<S>) -> impl Future<Output = Result<impl IntoCommand<S>, BoxError>>`.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Answer { text: String }
/// use agentgraph_layers::{FallbackCause, FallbackLayer, with_cause};
///
/// let apology = with_cause(|_: Arc<Answer>, _: Context, cause: FallbackCause<Answer>| async move {
///     let why = cause.error().map_or("a rejected answer".to_owned(), |e| e.to_string());
///     Ok(AnswerUpdate::new().text(format!("sorry ({why})")))
/// });
/// let layer = FallbackLayer::from_fallback(apology);
/// # let _ = layer;
/// ```
pub fn with_cause<S, F, Fut, O>(f: F) -> WithCause<F, O>
where
    S: State,
    F: Fn(Arc<S>, Context, FallbackCause<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
    O: IntoCommand<S>,
{
    WithCause {
        f,
        _out: PhantomData,
    }
}

/// An async closure given the cause, as a [`FallbackNode`]; made by [`with_cause`].
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// use agentgraph_layers::{FallbackCause, FallbackLayer, WithCause, with_cause};
///
/// let zero: WithCause<_, _> = with_cause(|_: Arc<Count>, _: Context, _: FallbackCause<Count>| async {
///     Ok(CountUpdate::new())
/// });
/// let node = FallbackLayer::from_fallback(zero).layer(cpu_node(|_: &Count, _: &Context| Ok(CountUpdate::new().n(1))));
/// GraphBuilder::<Count>::new().add_node_with("count", node);
/// ```
pub struct WithCause<F, O> {
    f: F,
    _out: PhantomData<fn() -> O>,
}

impl<F, O> fmt::Debug for WithCause<F, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WithCause")
    }
}

impl<S, F, Fut, O> FallbackNode<S> for WithCause<F, O>
where
    S: State,
    F: Fn(Arc<S>, Context, FallbackCause<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
    O: IntoCommand<S> + 'static,
{
    fn fall_back(&self, state: Arc<S>, ctx: Context, cause: FallbackCause<S>) -> NodeFuture<S> {
        let fut = (self.f)(state, ctx, cause);
        Box::pin(async move { fut.await.map(IntoCommand::into_command) })
    }
}

/// Which successful results a [`FallbackLayer`] rejects: none ([`NoResultCheck`], the
/// default), or those for which a closure `Fn(&Command<S>) -> bool` returns true (set with
/// [`on_result`](FallbackLayer::on_result)).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::Command;
/// use agentgraph_layers::{FallbackOnResult, NoResultCheck};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { n: u64 }
/// let cmd = Command::<Count>::new(CountUpdate::new());
/// assert!(!NoResultCheck.rejects(&cmd));
/// let empty = |c: &Command<Count>| !c.has_goto();
/// assert!(empty.rejects(&cmd));
/// ```
pub trait FallbackOnResult<S: State>: Send + Sync + 'static {
    /// Whether `result` is rejected, so that the fallback runs instead.
    fn rejects(&self, result: &Command<S>) -> bool;
}

/// The default [`FallbackOnResult`]: no successful result is rejected.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_engine::{Context, async_node};
/// use agentgraph_layers::{FallbackLayer, NoResultCheck};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { n: u64 }
/// let backup = async_node(|_: Arc<Count>, _: Context| async { Ok(CountUpdate::new().n(0)) });
/// let _layer: FallbackLayer<_, NoResultCheck> = FallbackLayer::new(backup);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResultCheck;

impl<S: State> FallbackOnResult<S> for NoResultCheck {
    fn rejects(&self, _: &Command<S>) -> bool {
        false
    }
}

impl<S: State, F> FallbackOnResult<S> for F
where
    F: Fn(&Command<S>) -> bool + Send + Sync + 'static,
{
    fn rejects(&self, result: &Command<S>) -> bool {
        self(result)
    }
}
