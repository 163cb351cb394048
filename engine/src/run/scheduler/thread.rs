//! A thread's next invocation: its input applied to the state the last invocation left, as
//! the invocation's first checkpoint, and the run from `START` again.

use super::*;

impl<S: State> Scheduler<S> {
    /// Starts the thread's next invocation (or its first, from `initial`): applies `input`
    /// through the reducers, routes from `START` and checkpoints that, with fresh join
    /// bookkeeping and nothing pending. Returns the state the invocation's steps start from;
    /// `step` is the step of that checkpoint.
    pub(super) async fn invoke(
        &mut self,
        input: S::Update,
        initial: S,
        step: &mut u64,
        persist: &mut Option<Persister<S>>,
    ) -> Result<Arc<S>> {
        let plan = self.plan.clone();
        let Some(store) = self.config().store.clone() else {
            return Err(Error::NoStore);
        };
        let (p, loaded) = Persister::thread(store.clone(), self.settings(), &self.plan).await?;
        let p = persist.insert(p);
        p.store_events = self.shared.events.journals();
        crate::observe::metrics::run_started(false);
        let (mut state, at) = match loaded {
            None => {
                self.shared.events.emit(|| EventKind::RunStarted {
                    mode: self.config().mode,
                    seed: self.config().seed,
                    graph: plan.fingerprint,
                });
                (initial, 0)
            }
            Some(loaded) => {
                self.invocation = loaded.invocation() + 1;
                // The thread's totals go on; the new invocation's run budget counts from them.
                let (total, _) = loaded.usage();
                self.book.restore(&self.shared.usage, &total, total);
                self.number_events_after(&store, loaded.next_event())
                    .await?;
                let at = loaded.step() + 1;
                (loaded.state, at)
            }
        };
        // The input is merged like a step's update: stored as a delta where its reducer
        // allows (one message more costs one message), whole for the thread's first checkpoint.
        let mut written = vec![false; self.plan.fields().len()];
        S::for_each_written(&input, |f| written[f] = true);
        let fields: Vec<Cow<'static, str>> = self
            .plan
            .fields()
            .iter()
            .zip(written.iter())
            .filter(|(_, w)| **w)
            .map(|(f, _)| Cow::Borrowed(f.name))
            .collect();
        if at > 0 {
            p.capture(&input)?;
        }
        std::panic::catch_unwind(AssertUnwindSafe(|| state.apply(input))).map_err(|panic| {
            Error::Panicked {
                what: format!(
                    "a reducer, applying the input of invocation {}",
                    self.invocation
                ),
                message: panic_message(panic),
            }
        })?;
        self.shared.events.emit(|| EventKind::ThreadInvoked {
            invocation: self.invocation,
            step: at,
            fields,
            graph: plan.fingerprint,
        });
        let state = Arc::new(state);
        *step = at;
        self.begin_at(at, &state, &written, persist).await?;
        Ok(state)
    }
}
