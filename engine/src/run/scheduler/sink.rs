//! [`StoreSink`]: where the step executor's outcomes go in a run's store.

use super::executor::{OutcomeSink, TaskAt};
use crate::define::route::Command;
use crate::define::state::State;
use crate::error::{BoxError, Result};
use crate::persist::{Persister, Unfinished};

/// Keeps a step's outcomes as the run's pending writes; keeps nothing for a run without a
/// store.
pub(super) struct StoreSink<'a, S: State>(pub(super) Option<&'a mut Persister<S>>);

impl<S: State> OutcomeSink<S> for StoreSink<'_, S> {
    async fn finished(&mut self, at: TaskAt<'_>, attempts: u32, cmd: &Command<S>) -> Result<()> {
        let Some(p) = self.0.as_deref_mut() else {
            return Ok(());
        };
        p.pending_write(at.step, at.index, at.task, at.node, attempts, cmd)
            .await
    }

    async fn retrying(
        &mut self,
        at: TaskAt<'_>,
        attempt: u32,
        error: &BoxError,
        retry_at_ms: u64,
        answers: &[(String, String)],
    ) -> Result<()> {
        let Some(p) = self.0.as_deref_mut() else {
            return Ok(());
        };
        let unfinished = Unfinished::Retrying {
            error: crate::error::chain(error.as_ref()),
            retry_at_ms,
            answers,
        };
        p.unfinished(at.step, at.index, at.task, at.node, attempt, unfinished)
            .await
    }
}
