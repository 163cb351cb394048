//! Subgraphs: a compiled graph run as a node of another graph.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::StoreError;
use futures_util::{FutureExt, StreamExt};

use crate::define::node::{Node, NodeFuture};
use crate::define::route::Command;
use crate::define::state::State;
use crate::error::{BoxError, Error};
use crate::observe::event::EventKind;
use crate::persist::runs::child_run_id;
use crate::plan::compiled::CompiledGraph;
use crate::run::config::RunConfig;
use crate::run::context::Context;
use crate::run::interrupt::{Resume, SubgraphInterrupted};

type InputFn<P, C> = dyn Fn(&P) -> C + Send + Sync;
type MapOut<P, C> = dyn Fn(C) -> <P as State>::Update + Send + Sync;

/// A node that runs a child graph: the parent's state mapped into the child's, the child's
/// final state mapped back into an update of the parent's.
///
/// The child run is named `{parent run}/@{node}/{task id}` (`/@` is reserved for child runs:
/// see `persist::runs`) and checkpointed to the parent's
/// store, so it is found again when the task runs again (after a crash, or to answer an
/// interrupt): a finished child is not run again, an unfinished one is resumed. The child's
/// interrupts stop the parent (with the subgraph node in their `path`), and answers given to
/// the parent reach them. The child's events reach the parent's subscribers wrapped in
/// [`EventKind::Subgraph`].
pub(crate) struct SubgraphNode<P: State, C: State> {
    pub(crate) graph: CompiledGraph<C>,
    pub(crate) input: Arc<InputFn<P, C>>,
    pub(crate) output: Arc<MapOut<P, C>>,
}

/// How long a task waits for its child run to be released by an attempt that was dropped
/// (its background checkpoint writer may still hold the run for a moment).
const BUSY_WAIT: Duration = Duration::from_secs(10);

impl<P: State, C: State> Node<P> for SubgraphNode<P, C> {
    fn call(&self, state: Arc<P>, ctx: Context) -> NodeFuture<P> {
        let graph = self.graph.clone();
        let input = self.input.clone();
        let output = self.output.clone();
        Box::pin(async move {
            let shared = ctx.shared().clone();
            let child_id = child_run_id(ctx.run_id(), ctx.node(), ctx.task_id());
            // The parent's store, mode, seed, durability, limits and event settings; not its
            // id, its timeouts (the parent's bound the child), its failure policy or its
            // session (the child goes with the parent).
            let config = RunConfig {
                run_id: None,
                step_timeout: None,
                run_timeout: None,
                on_failure: Default::default(),
                metadata: None,
                ttl: None,
                subgraph_run: true,
                // A child run's retries are its parent's task's: they run inline.
                max_inline_backoff: Duration::MAX,
                // The parent's budgets bound the parent, which counts its child's usage.
                budget: None,
                thread_budget: None,
                tenant_budget: None,
                usage_parent: Some(shared.clone()),
                ..shared.config.clone()
            };
            let started = std::time::Instant::now();
            let result = loop {
                let existing = match &shared.config.store {
                    Some(store) => store.get_run(&child_id).await?.is_some(),
                    None => false,
                };
                let run = if existing {
                    let store = shared
                        .config
                        .store
                        .clone()
                        .expect("a stored child run has a store");
                    let waiting = graph.history(store).interrupts(&child_id).await?;
                    let mut resume = Resume::new();
                    resume.answers.extend(
                        ctx.answers()
                            .iter()
                            .filter(|(id, _)| waiting.iter().any(|i| i.id == *id))
                            .map(|(id, json)| (id.clone(), Ok(json.clone()))),
                    );
                    graph.resume_with(&child_id, resume, config.clone())
                } else {
                    graph.run_with(input(&state), config.clone().run_id(&child_id))
                };
                let result = run_forwarding(run, &ctx).await;
                match result {
                    Err(Error::Store(StoreError::RunBusy { .. }))
                        if started.elapsed() < BUSY_WAIT =>
                    {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(child) => Ok(Command::new(output(child))),
                Err(Error::Interrupted(stop)) => {
                    Err(Box::new(SubgraphInterrupted(stop.interrupts)) as BoxError)
                }
                Err(e) => Err(Box::new(e) as BoxError),
            }
        })
    }
}

/// Runs the child, passing its events on to the parent's subscribers (if it has any).
async fn run_forwarding<C: State>(
    run: crate::run::handle::Run<C>,
    ctx: &Context,
) -> crate::error::Result<C> {
    let shared = ctx.shared();
    if !shared.events.is_watched() && !shared.events.journals() {
        return run.await;
    }
    let mut events = run.events();
    let forward = |event: crate::observe::event::Event| {
        shared.events.emit(|| EventKind::Subgraph {
            step: ctx.step(),
            node: ctx.node().into(),
            task: ctx.task_id(),
            event: Box::new(event),
        });
    };
    let mut fut = std::pin::pin!(run.into_future());
    let result = loop {
        tokio::select! {
            biased;
            result = &mut fut => break result,
            Some(event) = events.next() => {
                if let Ok(event) = event {
                    forward(event);
                }
            }
        }
    };
    // Everything the child emitted is buffered by now: pass it on without waiting for the
    // stream to close (a cancelled CPU-bound node may still hold the child's bus). Outside
    // tokio's cooperative budget, which would otherwise cut the drain short after about 128
    // events (a child that never waits emits all of its events in one poll).
    tokio::task::unconstrained(async {
        while let Some(Some(event)) = events.next().now_or_never() {
            if let Ok(event) = event {
                forward(event);
            }
        }
    })
    .await;
    result
}
