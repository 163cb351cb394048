//! Tenants: [`TenantId`], the tenant a run, a thread and memory items belong to, and
//! [`TenantStore`], a view of a store that sees and writes one tenant's runs and memory only.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Result, StoreError};
use crate::items::{Hit, Item, ItemQuery, Namespace};
use crate::store::{BoxFuture, CheckpointStore, IntoStore, Lease, Op, RunRecord, WriteBatch};
use crate::sweep::SUBGRAPH_MARK;

/// The first segment of the namespaces that hold tenants' memory items: a tenant's items
/// live under `["@tenant", "<tenant id>", ...]` ([`TenantId::namespace`]).
pub const TENANT_NAMESPACE: &str = "@tenant";

/// The longest tenant id, in bytes.
pub const MAX_TENANT_ID_LEN: usize = 128;

/// The id of a tenant: a customer sharing a deployment with others. Runs (and so threads)
/// carry it on their record ([`RunRecord::tenant`], set with `RunConfig::tenant`), memory
/// items live under its namespace ([`TenantId::namespace`]), and a [`TenantStore`] sees
/// only its runs and items.
///
/// 1 to [`MAX_TENANT_ID_LEN`] bytes of ASCII letters, digits, `-`, `_`, `.` and `:`, so that
/// it fits in a URL, a header, a command line and a namespace segment as it is. In JSON: a
/// string.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::TenantId;
/// let acme = TenantId::new("acme-eu")?;
/// assert_eq!(acme.as_str(), "acme-eu");
/// assert_eq!(acme.to_string(), "acme-eu");
/// assert!(TenantId::new("").is_err());
/// assert!(TenantId::new("a/b").is_err());
/// let back: TenantId = serde_json::from_str("\"acme-eu\"")?;
/// assert_eq!(back, acme);
/// assert!(serde_json::from_str::<TenantId>("\"a b\"").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(Arc<str>);

/// Why a string is not a [`TenantId`].
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::TenantId;
/// let err = TenantId::new("no spaces").unwrap_err();
/// assert!(err.to_string().contains("tenant id"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a tenant id has 1 to {MAX_TENANT_ID_LEN} bytes of ASCII letters, digits, `-`, `_`, `.` and `:`; `{0}` is not one"
)]
pub struct InvalidTenantId(pub String);

impl TenantId {
    /// The tenant `id`, checked.
    ///
    /// # Errors
    ///
    /// [`InvalidTenantId`] for an empty or too long id, or one with other characters.
    ///
    /// # Examples
    ///
    /// See [`TenantId`].
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidTenantId> {
        let id = id.as_ref();
        let valid = !id.is_empty()
            && id.len() <= MAX_TENANT_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if valid {
            Ok(TenantId(Arc::from(id)))
        } else {
            Err(InvalidTenantId(id.chars().take(64).collect()))
        }
    }

    /// A tenant id as a store read it back (checked when it was made).
    pub(crate) fn from_stored(id: String) -> Self {
        TenantId(Arc::from(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace under which the tenant's memory items live: `["@tenant", id]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::TenantId;
    /// use agentgraph_checkpoint::items::Namespace;
    /// let acme = TenantId::new("acme")?;
    /// assert_eq!(acme.namespace(), Namespace::new(["@tenant", "acme"]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(&self) -> Namespace {
        Namespace::new([TENANT_NAMESPACE, self.as_str()])
    }

    /// `namespace` as the tenant's: under [`namespace`](TenantId::namespace). Whatever
    /// `namespace` is, the result is under the tenant's own: a tenant cannot name another's
    /// items.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::TenantId;
    /// use agentgraph_checkpoint::items::Namespace;
    /// let acme = TenantId::new("acme")?;
    /// let ns = Namespace::new(["users", "ann"]);
    /// let scoped = acme.scope(&ns);
    /// assert_eq!(scoped.segments(), ["@tenant", "acme", "users", "ann"]);
    /// assert_eq!(acme.unscope(&scoped), Some(ns));
    /// // Another tenant's namespace is not this one's.
    /// let other = TenantId::new("globex")?.scope(&Namespace::new(["users"]));
    /// assert_eq!(acme.unscope(&other), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scope(&self, namespace: &Namespace) -> Namespace {
        let mut segments = Vec::with_capacity(namespace.segments().len() + 2);
        segments.push(TENANT_NAMESPACE.to_owned());
        segments.push(self.as_str().to_owned());
        segments.extend(namespace.segments().iter().cloned());
        Namespace::new(segments)
    }

    /// `namespace` without the tenant's prefix: the namespace the tenant named; `None` when
    /// it is not under the tenant's [`namespace`](TenantId::namespace).
    ///
    /// # Examples
    ///
    /// See [`scope`](TenantId::scope).
    pub fn unscope(&self, namespace: &Namespace) -> Option<Namespace> {
        match namespace.segments() {
            [first, id, rest @ ..] if first == TENANT_NAMESPACE && id.as_str() == self.as_str() => {
                Some(Namespace::new(rest.iter().cloned()))
            }
            _ => None,
        }
    }

    /// `item` as the tenant sees it (its namespace unscoped), or `None` when it is not the
    /// tenant's.
    fn unscope_item(&self, mut item: Item) -> Option<Item> {
        item.namespace = self.unscope(&item.namespace)?;
        Some(item)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenantId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::new(s)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = Cow::<'de, str>::deserialize(d)?;
        TenantId::new(id).map_err(serde::de::Error::custom)
    }
}

/// The run a run id belongs to: the run itself, or the parent of a subgraph's run
/// (`{run}/@...`, [`SUBGRAPH_MARK`]).
fn root_run(run: &str) -> &str {
    run.split_once(SUBGRAPH_MARK).map_or(run, |(root, _)| root)
}

/// A store seen by one tenant: it lists and reads only the tenant's runs (records whose
/// [`tenant`](RunRecord::tenant) is this one; a subgraph's run goes with its parent), their
/// checkpoints, events, pending writes and leases, and only the tenant's memory items, with
/// their namespaces as the tenant named them (stored under [`TenantId::namespace`]). Another
/// tenant's run is not found: `get_run` answers `None`, its checkpoints and events are empty,
/// and writing to it or taking its lease fails with [`StoreError::NotInTenant`]. Runs it
/// creates are the tenant's (a [`RunRecord`] written without a tenant gets this one).
///
/// What the command-line tool's `--tenant` and the monitor's tenant-bound tokens read
/// through. Reading a run costs one extra read of its record (to check its tenant); a
/// listing reads on until it has a page of the tenant's runs.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_checkpoint::items::{Item, Namespace};
/// use agentgraph_checkpoint::{
///     CheckpointStore, MemoryStore, RunRecord, RunStatus, StoreError, TenantId, TenantStore,
///     WriteBatch,
/// };
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(MemoryStore::new());
/// let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
/// let as_acme = TenantStore::new(store.clone(), acme.clone());
/// let as_globex = TenantStore::new(store.clone(), globex);
///
/// // acme writes a run (stamped with its tenant) and an item (under its namespace).
/// let ns = Namespace::new(["users", "ann"]);
/// let mut batch = WriteBatch::new();
/// batch
///     .put_run(RunRecord::new("chat-1", RunStatus::Completed, 7, 0))
///     .put_event("chat-1", 0, vec![1])
///     .put_item(Item::new(ns.clone(), "tz", "UTC".into()));
/// as_acme.commit(batch).await?;
/// assert_eq!(store.get_run("chat-1").await?.unwrap().tenant, Some(acme));
/// assert_eq!(as_acme.get_item(&ns, "tz", 0).await?.unwrap().namespace, ns);
///
/// // globex sees none of it, and cannot write to it.
/// assert!(as_globex.get_run("chat-1").await?.is_none());
/// assert!(as_globex.list_runs(None, 10).await?.is_empty());
/// assert!(as_globex.get_events("chat-1", None, 10).await?.is_empty());
/// assert!(as_globex.get_item(&ns, "tz", 0).await?.is_none());
/// let mut batch = WriteBatch::new();
/// batch.delete_run("chat-1");
/// assert!(matches!(as_globex.commit(batch).await, Err(StoreError::NotInTenant { .. })));
/// assert!(store.get_run("chat-1").await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantStore {
    inner: Arc<dyn CheckpointStore>,
    tenant: TenantId,
}

/// How many records a listing reads from the store at a time while it looks for a
/// tenant's runs.
const LIST_PAGE: usize = 256;

impl TenantStore {
    /// `store` as `tenant` sees it.
    ///
    /// # Examples
    ///
    /// See [`TenantStore`].
    pub fn new(store: impl IntoStore, tenant: TenantId) -> Self {
        TenantStore {
            inner: store.into_store(),
            tenant,
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The store the view reads (every tenant's runs).
    pub fn inner(&self) -> &Arc<dyn CheckpointStore> {
        &self.inner
    }

    fn mine(&self, record: &RunRecord) -> bool {
        record.tenant.as_ref() == Some(&self.tenant)
    }

    /// Whether `run` (or, for a subgraph's run, its parent) is a run of the tenant.
    async fn owns(&self, run: &str) -> Result<bool> {
        Ok(self
            .inner
            .get_run(root_run(run))
            .await?
            .is_some_and(|r| self.mine(&r)))
    }

    /// Fails unless `run` (or its parent) is the tenant's, or is no one's run yet.
    async fn may_write(&self, run: &str) -> Result<()> {
        match self.inner.get_run(root_run(run)).await? {
            Some(r) if !self.mine(&r) => Err(StoreError::NotInTenant {
                run: run.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn not_in_tenant(run: &str) -> StoreError {
        StoreError::NotInTenant {
            run: run.to_owned(),
        }
    }
}

impl CheckpointStore for TenantStore {
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut checked: Vec<String> = Vec::new();
            let mut scoped = WriteBatch::new();
            for op in batch.into_ops() {
                let op = match op {
                    Op::PutRun(mut record) => {
                        match &record.tenant {
                            None => record.tenant = Some(self.tenant.clone()),
                            Some(t) if *t == self.tenant => {}
                            Some(_) => return Err(Self::not_in_tenant(&record.run_id)),
                        }
                        Op::PutRun(record)
                    }
                    Op::PutItem(mut item) => {
                        item.namespace = self.tenant.scope(&item.namespace);
                        Op::PutItem(item)
                    }
                    Op::DeleteItem {
                        namespace,
                        key,
                        if_expired_at,
                    } => Op::DeleteItem {
                        namespace: self.tenant.scope(&namespace),
                        key,
                        if_expired_at,
                    },
                    other => other,
                };
                if let Some(run) = op_run(&op) {
                    let root = root_run(run);
                    if !checked.iter().any(|c| c == root) {
                        self.may_write(root).await?;
                        checked.push(root.to_owned());
                    }
                }
                scoped.push(op);
            }
            self.inner.commit(scoped).await
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.flush()
    }

    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>>> {
        Box::pin(async move {
            let Some(record) = self.inner.get_run(run).await? else {
                return Ok(None);
            };
            let mine = if root_run(run) == run {
                self.mine(&record)
            } else {
                self.owns(run).await?
            };
            Ok(mine.then_some(record))
        })
    }

    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut cursor = after.map(str::to_owned);
            while out.len() < limit {
                let page = self.inner.list_runs(cursor.as_deref(), LIST_PAGE).await?;
                let Some(last) = page.last() else { break };
                cursor = Some(last.run_id.clone());
                let full = page.len() < LIST_PAGE;
                out.extend(page.into_iter().filter(|r| self.mine(r)));
                if full {
                    break;
                }
            }
            out.truncate(limit);
            Ok(out)
        })
    }

    fn get_checkpoint<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(None);
            }
            self.inner.get_checkpoint(run, step).await
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(None);
            }
            self.inner.latest_checkpoint(run).await
        })
    }

    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(Vec::new());
            }
            self.inner.list_checkpoints(run, after, limit).await
        })
    }

    fn get_blobs<'a>(
        &'a self,
        run: &'a str,
        field: u32,
        from: u64,
        to: u64,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(Vec::new());
            }
            self.inner.get_blobs(run, field, from, to).await
        })
    }

    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Vec<(u32, Vec<u8>)>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(Vec::new());
            }
            self.inner.get_pending_writes(run, step).await
        })
    }

    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(Vec::new());
            }
            self.inner.get_events(run, after, limit).await
        })
    }

    fn last_event<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(None);
            }
            self.inner.last_event(run).await
        })
    }

    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            self.may_write(run).await?;
            self.inner.acquire_lease(run, ttl).await
        })
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        self.inner.renew_lease(lease, ttl)
    }

    fn release_lease(&self, lease: Lease) -> BoxFuture<'_, Result<()>> {
        self.inner.release_lease(lease)
    }

    fn supports_items(&self) -> bool {
        self.inner.supports_items()
    }

    fn prune_deleted_items(&self) -> BoxFuture<'_, Result<u64>> {
        self.inner.prune_deleted_items()
    }

    fn supports_audit(&self) -> bool {
        self.inner.supports_audit()
    }

    /// The trail of a run of the tenant's; none for another's, and none for a deleted run (its
    /// record, which names its tenant, is gone: read it through the unscoped store).
    fn get_audit<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            if !self.owns(run).await? {
                return Ok(Vec::new());
            }
            self.inner.get_audit(run, after, limit).await
        })
    }

    /// The tenant's runs with a trail (deleted runs are left out, as in
    /// [`get_audit`](CheckpointStore::get_audit)).
    fn audited_runs(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let mut mine = Vec::new();
            for run in self.inner.audited_runs().await? {
                if self.owns(&run).await? {
                    mine.push(run);
                }
            }
            Ok(mine)
        })
    }

    fn get_item<'a>(
        &'a self,
        namespace: &'a Namespace,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(async move {
            let scoped = self.tenant.scope(namespace);
            let item = self.inner.get_item(&scoped, key, now_ms).await?;
            Ok(item.and_then(|i| self.tenant.unscope_item(i)))
        })
    }

    fn scan_items<'a>(&'a self, prefix: &'a Namespace) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let scoped = self.tenant.scope(prefix);
            let items = self.inner.scan_items(&scoped).await?;
            Ok(items
                .into_iter()
                .filter_map(|i| self.tenant.unscope_item(i))
                .collect())
        })
    }

    fn search_items<'a>(&'a self, query: &'a ItemQuery) -> BoxFuture<'a, Result<Vec<Hit>>> {
        Box::pin(async move {
            let mut scoped = query.clone();
            scoped.prefix = self.tenant.scope(&query.prefix);
            let hits = self.inner.search_items(&scoped).await?;
            Ok(hits
                .into_iter()
                .filter_map(|h| {
                    let score = h.score;
                    self.tenant
                        .unscope_item(h.item)
                        .map(|item| Hit::new(item, score))
                })
                .collect())
        })
    }

    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a Namespace,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Namespace>>> {
        Box::pin(async move {
            let scoped = self.tenant.scope(prefix);
            let found = self.inner.list_namespaces(&scoped, now_ms).await?;
            Ok(found
                .iter()
                .filter_map(|ns| self.tenant.unscope(ns))
                .collect())
        })
    }
}

/// The run an operation writes, if it names one.
fn op_run(op: &Op) -> Option<&str> {
    match op {
        Op::PutRun(record) => Some(&record.run_id),
        Op::PutCheckpoint { run, .. }
        | Op::PutBlob { run, .. }
        | Op::PutPendingWrite { run, .. }
        | Op::PutEvent { run, .. }
        | Op::DeletePendingWrites { run, .. }
        | Op::DeleteCheckpointsBefore { run, .. }
        | Op::DeleteBlobsBefore { run, .. }
        | Op::DeleteAfter { run, .. }
        | Op::DeleteRun { run }
        | Op::Fence { run, .. }
        | Op::PutAudit { run, .. } => Some(run),
        Op::PutItem(_) | Op::DeleteItem { .. } => None,
    }
}
