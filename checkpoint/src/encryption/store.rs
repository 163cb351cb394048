//! [`EncryptedStore`]: a store that encrypts what is written through it.

use std::sync::Arc;
use std::time::Duration;

use super::{Encryption, Place};
use crate::envelope::RecordKind;
use crate::items::{Hit, Item, ItemIndex, ItemQuery, Namespace};
use crate::{
    BoxFuture, CheckpointStore, IntoStore, Lease, Op, Result, RunRecord, StoreError, WriteBatch,
};

/// A [`CheckpointStore`] wrapped so that the checkpoints, field values, pending writes and
/// events written through it are encrypted (see the [module docs](super)), and decrypted when
/// read through it. Everything else passes through: run records, leases, memory items.
/// Records stored without encryption read as they are.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::encryption::{EncryptedStore, Encryption, EncryptionError, Key, StaticKeys};
/// use agentgraph_checkpoint::{CheckpointStore, MemoryStore, StoreError, WriteBatch};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let shared = std::sync::Arc::new(MemoryStore::new());
///     let k1 = Key::generate("k1")?;
///     let old = EncryptedStore::new(shared.clone(), Encryption::new(StaticKeys::new(k1.clone())));
///     let mut batch = WriteBatch::new();
///     batch.put_event("run-1", 0, b"an event".to_vec());
///     old.commit(batch).await?;
///
///     // Rotated: new records use k2, k1's still read.
///     let keys = StaticKeys::new(Key::generate("k2")?).with(k1);
///     let store = EncryptedStore::new(shared.clone(), Encryption::new(keys));
///     assert_eq!(store.get_events("run-1", None, 10).await?[0].1, b"an event");
///
///     // Without k1: a typed error that names it.
///     let other = EncryptedStore::new(shared, Encryption::new(StaticKeys::new(Key::generate("k2")?)));
///     let Err(StoreError::Encryption { source, .. }) = other.get_events("run-1", None, 10).await else {
///         panic!("read without its key");
///     };
///     assert_eq!(source, EncryptionError::MissingKey { key_id: "k1".into() });
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct EncryptedStore {
    inner: Arc<dyn CheckpointStore>,
    encryption: Encryption,
}

impl EncryptedStore {
    /// `inner`, encrypted with `encryption`'s keys.
    pub fn new(inner: impl IntoStore, encryption: Encryption) -> EncryptedStore {
        EncryptedStore {
            inner: inner.into_store(),
            encryption,
        }
    }

    /// The store underneath (its records as stored: encrypted).
    pub fn inner(&self) -> &Arc<dyn CheckpointStore> {
        &self.inner
    }

    /// The encryption.
    pub fn encryption(&self) -> &Encryption {
        &self.encryption
    }

    /// The batch with its records encrypted.
    fn seal_batch(&self, batch: WriteBatch) -> Result<WriteBatch> {
        let mut sealed = WriteBatch::new();
        let mut sealer = self.encryption.sealer();
        let mut seal = |kind: RecordKind, place: &Place<'_>, bytes: &[u8]| {
            sealer
                .seal(kind, place, bytes)
                .map_err(|source| StoreError::Encryption {
                    what: what(kind, place),
                    source,
                })
        };
        for op in batch.into_ops() {
            let op = match op {
                Op::PutCheckpoint { run, step, bytes } => {
                    let place = Place {
                        run: &run,
                        a: step,
                        b: 0,
                    };
                    let bytes = seal(RecordKind::Checkpoint, &place, &bytes)?;
                    Op::PutCheckpoint { run, step, bytes }
                }
                Op::PutBlob {
                    run,
                    field,
                    version,
                    bytes,
                } => {
                    let place = Place {
                        run: &run,
                        a: u64::from(field),
                        b: version,
                    };
                    let bytes = seal(RecordKind::Blob, &place, &bytes)?;
                    Op::PutBlob {
                        run,
                        field,
                        version,
                        bytes,
                    }
                }
                Op::PutPendingWrite {
                    run,
                    step,
                    task,
                    bytes,
                } => {
                    let place = Place {
                        run: &run,
                        a: step,
                        b: u64::from(task),
                    };
                    let bytes = seal(RecordKind::PendingWrite, &place, &bytes)?;
                    Op::PutPendingWrite {
                        run,
                        step,
                        task,
                        bytes,
                    }
                }
                Op::PutEvent { run, seq, bytes } => {
                    let place = Place {
                        run: &run,
                        a: seq,
                        b: 0,
                    };
                    let bytes = seal(RecordKind::Event, &place, &bytes)?;
                    Op::PutEvent { run, seq, bytes }
                }
                other => other,
            };
            sealed.push(op);
        }
        Ok(sealed)
    }

    fn open(&self, kind: RecordKind, place: Place<'_>, bytes: Vec<u8>) -> Result<Vec<u8>> {
        self.encryption
            .open(kind, &place, bytes)
            .map_err(|source| StoreError::Encryption {
                what: what(kind, &place),
                source,
            })
    }
}

/// How an error names the record.
fn what(kind: RecordKind, place: &Place<'_>) -> String {
    let run = place.run;
    match kind {
        RecordKind::Checkpoint => format!("checkpoint {} of run `{run}`", place.a),
        RecordKind::Blob => format!("field {} version {} of run `{run}`", place.a, place.b),
        RecordKind::PendingWrite => format!(
            "pending write of task {} of step {} of run `{run}`",
            place.b, place.a
        ),
        RecordKind::Event => format!("event {} of run `{run}`", place.a),
        other => format!("{other:?} record of run `{run}`"),
    }
}

impl CheckpointStore for EncryptedStore {
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, Result<()>> {
        match self.seal_batch(batch) {
            Ok(batch) => self.inner.commit(batch),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.flush()
    }

    fn get_run<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>>> {
        self.inner.get_run(run)
    }

    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>>> {
        self.inner.list_runs(after, limit)
    }

    fn get_checkpoint<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let Some(bytes) = self.inner.get_checkpoint(run, step).await? else {
                return Ok(None);
            };
            let place = Place { run, a: step, b: 0 };
            self.open(RecordKind::Checkpoint, place, bytes).map(Some)
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            let Some((step, bytes)) = self.inner.latest_checkpoint(run).await? else {
                return Ok(None);
            };
            let place = Place { run, a: step, b: 0 };
            Ok(Some((
                step,
                self.open(RecordKind::Checkpoint, place, bytes)?,
            )))
        })
    }

    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            let page = self.inner.list_checkpoints(run, after, limit).await?;
            page.into_iter()
                .map(|(step, bytes)| {
                    let place = Place { run, a: step, b: 0 };
                    Ok((step, self.open(RecordKind::Checkpoint, place, bytes)?))
                })
                .collect()
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
            let blobs = self.inner.get_blobs(run, field, from, to).await?;
            blobs
                .into_iter()
                .map(|(version, bytes)| {
                    let place = Place {
                        run,
                        a: u64::from(field),
                        b: version,
                    };
                    Ok((version, self.open(RecordKind::Blob, place, bytes)?))
                })
                .collect()
        })
    }

    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> BoxFuture<'a, Result<Vec<(u32, Vec<u8>)>>> {
        Box::pin(async move {
            let writes = self.inner.get_pending_writes(run, step).await?;
            writes
                .into_iter()
                .map(|(task, bytes)| {
                    let place = Place {
                        run,
                        a: step,
                        b: u64::from(task),
                    };
                    Ok((task, self.open(RecordKind::PendingWrite, place, bytes)?))
                })
                .collect()
        })
    }

    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        Box::pin(async move {
            let events = self.inner.get_events(run, after, limit).await?;
            events
                .into_iter()
                .map(|(seq, bytes)| {
                    let place = Place { run, a: seq, b: 0 };
                    Ok((seq, self.open(RecordKind::Event, place, bytes)?))
                })
                .collect()
        })
    }

    fn last_event<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        self.inner.last_event(run)
    }

    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Lease>> {
        self.inner.acquire_lease(run, ttl)
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        self.inner.renew_lease(lease, ttl)
    }

    fn release_lease(&self, lease: Lease) -> BoxFuture<'_, Result<()>> {
        self.inner.release_lease(lease)
    }

    fn sweep_expired(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<String>>> {
        self.inner.sweep_expired(now_ms)
    }

    fn supports_items(&self) -> bool {
        self.inner.supports_items()
    }

    fn prune_deleted_items(&self) -> BoxFuture<'_, Result<u64>> {
        self.inner.prune_deleted_items()
    }

    // Audit entries are hash-chained by the store as they are written: they pass through in
    // plain text, as run records do (an answer's digest, and the answer itself only up to
    // 1 KiB; see the `audit` module).
    fn supports_audit(&self) -> bool {
        self.inner.supports_audit()
    }

    fn get_audit<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, Vec<u8>)>>> {
        self.inner.get_audit(run, after, limit)
    }

    fn audited_runs(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        self.inner.audited_runs()
    }

    fn get_item<'a>(
        &'a self,
        namespace: &'a Namespace,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Item>>> {
        self.inner.get_item(namespace, key, now_ms)
    }

    fn scan_items<'a>(&'a self, prefix: &'a Namespace) -> BoxFuture<'a, Result<Vec<Item>>> {
        self.inner.scan_items(prefix)
    }

    fn item_index(&self) -> Option<&ItemIndex> {
        self.inner.item_index()
    }

    fn search_items<'a>(&'a self, query: &'a ItemQuery) -> BoxFuture<'a, Result<Vec<Hit>>> {
        self.inner.search_items(query)
    }

    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a Namespace,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Namespace>>> {
        self.inner.list_namespaces(prefix, now_ms)
    }
}
