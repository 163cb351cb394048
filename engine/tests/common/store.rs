//! [`Hooked`]: a store that passes every call to an inner store, except the calls a test
//! hooks to fail, panic or never arrive.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::{BoxFuture, Lease, RunRecord, StoreError, WriteBatch};
use agentgraph_engine::CheckpointStore;

type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Called before the call it hooks reaches the inner store: `None` lets the call through,
/// `Some(result)` answers it instead (the inner store never sees it). A hook that panics
/// makes the call panic, as a store with a bug would.
pub type Hook = Box<dyn Fn() -> Option<Result<(), StoreError>> + Send + Sync>;

/// A store that delegates every call to `inner`, but for `commit` and `renew_lease`, which
/// go through a hook when one is set.
pub struct Hooked {
    inner: Arc<dyn CheckpointStore>,
    commit: Option<Hook>,
    flush: Option<Hook>,
    renew_lease: Option<Hook>,
}

impl Hooked {
    /// `inner`, with no hooks: every call passes through.
    pub fn new(inner: Arc<dyn CheckpointStore>) -> Self {
        Hooked {
            inner,
            commit: None,
            flush: None,
            renew_lease: None,
        }
    }

    /// Runs `hook` on every `commit`, before the batch reaches the inner store.
    pub fn on_commit(
        mut self,
        hook: impl Fn() -> Option<Result<(), StoreError>> + Send + Sync + 'static,
    ) -> Self {
        self.commit = Some(Box::new(hook));
        self
    }

    /// Runs `hook` on every `flush`, before it reaches the inner store.
    #[allow(dead_code)]
    pub fn on_flush(
        mut self,
        hook: impl Fn() -> Option<Result<(), StoreError>> + Send + Sync + 'static,
    ) -> Self {
        self.flush = Some(Box::new(hook));
        self
    }

    /// Runs `hook` on every `renew_lease`, before the renewal reaches the inner store.
    pub fn on_renew_lease(
        mut self,
        hook: impl Fn() -> Option<Result<(), StoreError>> + Send + Sync + 'static,
    ) -> Self {
        self.renew_lease = Some(Box::new(hook));
        self
    }

    /// The inner store.
    pub fn get_ref(&self) -> &Arc<dyn CheckpointStore> {
        &self.inner
    }
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooked")
            .field("inner", &self.inner)
            .field("commit", &self.commit.is_some())
            .field("flush", &self.flush.is_some())
            .field("renew_lease", &self.renew_lease.is_some())
            .finish()
    }
}

/// What `hook` says about a call: `None` to pass it on, or the future of its answer.
fn intercept(hook: &Option<Hook>) -> Option<StoreFuture<'static, ()>> {
    let answer = hook.as_ref()?()?;
    Some(Box::pin(async move { answer }))
}

impl CheckpointStore for Hooked {
    fn commit(&self, batch: WriteBatch) -> StoreFuture<'_, ()> {
        if let Some(answer) = intercept(&self.commit) {
            return answer;
        }
        self.inner.commit(batch)
    }
    fn flush(&self) -> StoreFuture<'_, ()> {
        if let Some(answer) = intercept(&self.flush) {
            return answer;
        }
        self.inner.flush()
    }
    fn get_run<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        self.inner.get_run(run)
    }
    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<RunRecord>> {
        self.inner.list_runs(after, limit)
    }
    fn get_checkpoint<'a>(&'a self, run: &'a str, step: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.get_checkpoint(run, step)
    }
    fn latest_checkpoint<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<(u64, Vec<u8>)>> {
        self.inner.latest_checkpoint(run)
    }
    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.list_checkpoints(run, after, limit)
    }
    fn get_blobs<'a>(
        &'a self,
        run: &'a str,
        field: u32,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.get_blobs(run, field, from, to)
    }
    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> StoreFuture<'a, Vec<(u32, Vec<u8>)>> {
        self.inner.get_pending_writes(run, step)
    }
    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.get_events(run, after, limit)
    }
    fn last_event<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<u64>> {
        self.inner.last_event(run)
    }
    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> StoreFuture<'a, Lease> {
        self.inner.acquire_lease(run, ttl)
    }
    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, ()> {
        if let Some(answer) = intercept(&self.renew_lease) {
            return answer;
        }
        self.inner.renew_lease(lease, ttl)
    }
    fn release_lease(&self, lease: Lease) -> StoreFuture<'_, ()> {
        self.inner.release_lease(lease)
    }
}
