//! Owning a run: the store's lease, renewed in the background while the run is alive, and a
//! view of the store that stamps every batch of the run with the lease's fencing epoch.

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::items::{Hit, Item, ItemIndex, ItemQuery, Namespace};

use super::heartbeat::Beat;
use crate::error::Result;
use agentgraph_checkpoint::{
    BoxFuture, CheckpointStore, Lease, Result as StoreResult, RunRecord, WriteBatch,
};

/// The lease time to live of the engine's short operations (fork, prune, delete).
pub(crate) const SHORT_TTL: Duration = Duration::from_secs(30);

/// The engine's ownership of one run. While it lives, a heartbeat renews the lease (see
/// [`heartbeat`](super::heartbeat)); when it is dropped, the heartbeat stops and the lease is
/// dropped (an embedded store releases the run at once; any other lets it expire).
pub(crate) struct RunOwnership {
    lease: Arc<Lease>,
    /// The store, fencing every batch with the lease's epoch.
    fenced: Arc<dyn CheckpointStore>,
    /// `None` outside a tokio runtime (an inspection driven by another executor): the lease
    /// then lives its TTL unrenewed.
    heartbeat: Option<Arc<Beat>>,
}

impl std::fmt::Debug for RunOwnership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOwnership")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RunOwnership {
    /// Takes `run` in `store` for `ttl`, renewed every third of it.
    ///
    /// # Errors
    ///
    /// `StoreError::RunBusy` when another owner holds the run.
    pub(crate) async fn acquire(
        store: &Arc<dyn CheckpointStore>,
        run: &str,
        ttl: Duration,
    ) -> Result<RunOwnership> {
        let lease = Arc::new(store.acquire_lease(run, ttl).await?);
        let fenced: Arc<dyn CheckpointStore> = Arc::new(FencedStore {
            inner: store.clone(),
            run: run.into(),
            epoch: lease.epoch(),
        });
        let heartbeat = tokio::runtime::Handle::try_current()
            .ok()
            .map(|runtime| Beat::start(store, &lease, ttl, runtime));
        Ok(RunOwnership {
            lease,
            fenced,
            heartbeat,
        })
    }

    /// The store as this owner writes it: every batch committed through it carries the
    /// lease's epoch, and fails whole with `StoreError::Fenced` once the run was taken over.
    pub(crate) fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.fenced
    }

    /// Whether the store said, granting the lease, that it held neither the run nor its
    /// subgraphs' runs: a new run needs no opening reads.
    pub(crate) fn vacant(&self) -> bool {
        self.lease.run_vacant()
    }

    /// Stamps `batch` with this owner's epoch (for a batch committed through another run's
    /// store).
    pub(crate) fn fence(&self, batch: &mut WriteBatch) {
        batch.fence(self.lease.run(), self.lease.epoch());
    }
}

impl RunOwnership {
    /// Stops the heartbeat and waits until no renewal of it holds the store.
    ///
    /// Dropping the owner only stops the heartbeat: a renewal under way, and the store it
    /// holds, lives on until the runtime next polls it. On a current-thread runtime that is
    /// after the run's caller yields, so a caller that reopens an embedded store (sled holds a
    /// file lock while a handle lives) right after the run returned would find it still held.
    /// The run releases its lease this way before it returns. Between renewals (a run shorter
    /// than a third of its lease's TTL never has one) there is nothing to wait for.
    pub(crate) async fn release(&self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.release().await;
        }
    }
}

impl Drop for RunOwnership {
    fn drop(&mut self) {
        if let Some(renewal) = self.heartbeat.as_ref().and_then(|h| h.stop()) {
            renewal.abort();
        }
    }
}

/// A store whose commits are fenced with one run's lease epoch; everything else passes
/// through.
#[derive(Debug)]
struct FencedStore {
    inner: Arc<dyn CheckpointStore>,
    run: Arc<str>,
    epoch: u64,
}

impl CheckpointStore for FencedStore {
    fn commit(&self, mut batch: WriteBatch) -> BoxFuture<'_, StoreResult<()>> {
        batch.fence(&self.run, self.epoch);
        self.inner.commit(batch)
    }

    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.flush()
    }

    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, StoreResult<Option<RunRecord>>> {
        self.inner.get_run(run)
    }

    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<RunRecord>>> {
        self.inner.list_runs(after, limit)
    }

    fn get_checkpoint<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        self.inner.get_checkpoint(run, step)
    }

    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<(u64, Vec<u8>)>>> {
        self.inner.latest_checkpoint(run)
    }

    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<(u64, Vec<u8>)>>> {
        self.inner.list_checkpoints(run, after, limit)
    }

    fn get_blobs<'a>(
        &'a self,
        run: &'a str,
        field: u32,
        from: u64,
        to: u64,
    ) -> BoxFuture<'a, StoreResult<Vec<(u64, Vec<u8>)>>> {
        self.inner.get_blobs(run, field, from, to)
    }

    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, StoreResult<Vec<(u32, Vec<u8>)>>> {
        self.inner.get_pending_writes(run, step)
    }

    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<(u64, Vec<u8>)>>> {
        self.inner.get_events(run, after, limit)
    }

    fn last_event<'a>(&'a self, run: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        self.inner.last_event(run)
    }

    fn acquire_lease<'a>(
        &'a self,
        run: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<Lease>> {
        self.inner.acquire_lease(run, ttl)
    }

    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.inner.renew_lease(lease, ttl)
    }

    fn release_lease(&self, lease: Lease) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.release_lease(lease)
    }

    fn supports_items(&self) -> bool {
        self.inner.supports_items()
    }

    fn supports_audit(&self) -> bool {
        self.inner.supports_audit()
    }

    fn get_audit<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, StoreResult<Vec<(u64, Vec<u8>)>>> {
        self.inner.get_audit(run, after, limit)
    }

    fn audited_runs(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.inner.audited_runs()
    }

    fn get_item<'a>(
        &'a self,
        namespace: &'a Namespace,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, StoreResult<Option<Item>>> {
        self.inner.get_item(namespace, key, now_ms)
    }

    fn scan_items<'a>(&'a self, prefix: &'a Namespace) -> BoxFuture<'a, StoreResult<Vec<Item>>> {
        self.inner.scan_items(prefix)
    }

    fn item_index(&self) -> Option<&ItemIndex> {
        self.inner.item_index()
    }

    fn search_items<'a>(&'a self, query: &'a ItemQuery) -> BoxFuture<'a, StoreResult<Vec<Hit>>> {
        self.inner.search_items(query)
    }

    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a Namespace,
        now_ms: u64,
    ) -> BoxFuture<'a, StoreResult<Vec<Namespace>>> {
        self.inner.list_namespaces(prefix, now_ms)
    }

    fn prune_deleted_items(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.inner.prune_deleted_items()
    }
}
