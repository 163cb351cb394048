//! [`Parallel`]: every attempt of a step spawned on the tokio runtime at once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;

use super::{Failure, Finished, TaskFailure, TaskOutcome, TaskRunner};
use crate::define::state::State;

/// Spawns each attempt as a tokio task, so that a step's tasks run on every worker thread;
/// attempts finish in any order. Dropping it aborts the attempts still running.
pub(super) struct Parallel<S: State> {
    running: FuturesUnordered<Spawned<S>>,
    /// The attempts aborted, until their tasks are gone.
    aborted: Vec<Spawned<S>>,
}

impl<S: State> Parallel<S> {
    pub(super) fn new() -> Self {
        Parallel {
            running: FuturesUnordered::new(),
            aborted: Vec::new(),
        }
    }
}

impl<S, F> TaskRunner<S, F> for Parallel<S>
where
    S: State,
    F: Future<Output = TaskOutcome<S>> + Send + 'static,
{
    fn has_room(&self) -> bool {
        true
    }

    fn start(&mut self, index: usize, attempt: u32, future: F) {
        self.running.push(Spawned {
            handle: tokio::spawn(future),
            index,
            attempt,
        });
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<Finished<S>> {
        match self.running.poll_next_unpin(cx) {
            Poll::Ready(Some(finished)) => Poll::Ready(finished),
            // Empty: nothing will finish until an attempt starts.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn abort(&mut self) {
        // Aborted when dropped, but kept until their tasks are gone (`poll_aborted`).
        let running = std::mem::take(&mut self.running);
        self.aborted.extend(
            running
                .into_iter()
                .inspect(|attempt| attempt.handle.abort()),
        );
    }

    fn poll_aborted(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(attempt) = self.aborted.last_mut() {
            // Aborted, or it ended just before: either way its task is dropped once ready.
            std::task::ready!(Pin::new(&mut attempt.handle).poll(cx)).ok();
            self.aborted.pop();
        }
        Poll::Ready(())
    }
}

/// A spawned attempt of the step's task `index`, aborted when dropped. A tokio task that ends
/// without an outcome (it panicked outside the node's guard, or was cancelled) is a lost task.
struct Spawned<S: State> {
    handle: JoinHandle<TaskOutcome<S>>,
    index: usize,
    attempt: u32,
}

impl<S: State> Drop for Spawned<S> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl<S: State> Future for Spawned<S> {
    type Output = Finished<S>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match std::task::ready!(Pin::new(&mut self.handle).poll(cx)) {
            Ok(outcome) => outcome,
            Err(e) => Err(TaskFailure::Failed(Failure::Lost(e.into()))),
        };
        Poll::Ready((self.index, self.attempt, outcome))
    }
}
