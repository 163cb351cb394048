//! [`Sequential`]: a step's attempts one at a time, in the run's own task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::{Finished, TaskOutcome, TaskRunner};
use crate::define::state::State;

/// Runs one attempt at a time, polled in place by the run's own task: the attempt lives in a
/// slot the caller pinned (on its stack), so a step allocates nothing to run it. Used in
/// sequential mode, and for a step of one task in parallel mode.
pub(super) struct Sequential<'a, F> {
    running: Pin<&'a mut Option<F>>,
    /// The task and attempt of `running`.
    index: usize,
    attempt: u32,
}

impl<'a, F> Sequential<'a, F> {
    /// A runner whose attempts live in `slot`, empty.
    pub(super) fn new(slot: Pin<&'a mut Option<F>>) -> Self {
        Sequential {
            running: slot,
            index: 0,
            attempt: 0,
        }
    }
}

impl<S: State, F: Future<Output = TaskOutcome<S>>> TaskRunner<S, F> for Sequential<'_, F> {
    fn has_room(&self) -> bool {
        self.running.is_none()
    }

    fn start(&mut self, index: usize, attempt: u32, future: F) {
        self.running.set(Some(future));
        self.index = index;
        self.attempt = attempt;
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<Finished<S>> {
        let Some(future) = self.running.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let outcome = ready!(future.poll(cx));
        self.running.set(None);
        Poll::Ready((self.index, self.attempt, outcome))
    }

    fn abort(&mut self) {
        self.running.set(None);
    }
}
