//! How nodes are stored: async functions and CPU-bound closures behind one type.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::context::Context;
use crate::error::BoxError;
use crate::route::{Command, IntoCommand};
use crate::state::State;

/// The future an async node returns, boxed.
pub(crate) type NodeFuture<S> = Pin<Box<dyn Future<Output = Result<Command<S>, BoxError>> + Send>>;

type AsyncFn<S> = dyn Fn(Arc<S>, Context) -> NodeFuture<S> + Send + Sync;
type CpuFn<S> = dyn Fn(&S, &Context) -> Result<Command<S>, BoxError> + Send + Sync;

/// A node's function.
pub(crate) enum NodeFn<S: State> {
    /// Runs on the async runtime.
    Async(Arc<AsyncFn<S>>),
    /// Runs on the rayon pool, never blocking the async runtime.
    Cpu(Arc<CpuFn<S>>),
}

impl<S: State> Clone for NodeFn<S> {
    fn clone(&self) -> Self {
        match self {
            NodeFn::Async(f) => NodeFn::Async(f.clone()),
            NodeFn::Cpu(f) => NodeFn::Cpu(f.clone()),
        }
    }
}

impl<S: State> fmt::Debug for NodeFn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl<S: State> NodeFn<S> {
    pub(crate) fn from_async<F, Fut, O>(f: F) -> Self
    where
        F: Fn(Arc<S>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, BoxError>> + Send + 'static,
        O: IntoCommand<S>,
    {
        NodeFn::Async(Arc::new(move |state, ctx| {
            let fut = f(state, ctx);
            Box::pin(async move { fut.await.map(IntoCommand::into_command) })
        }))
    }

    pub(crate) fn from_cpu<F, O>(f: F) -> Self
    where
        F: Fn(&S, &Context) -> Result<O, BoxError> + Send + Sync + 'static,
        O: IntoCommand<S>,
    {
        NodeFn::Cpu(Arc::new(move |state, ctx| {
            f(state, ctx).map(IntoCommand::into_command)
        }))
    }

    /// `async` or `cpu`, for fingerprints and DOT.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            NodeFn::Async(_) => "async",
            NodeFn::Cpu(_) => "cpu",
        }
    }
}
