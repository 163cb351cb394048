//! The conformance suite against every backend.

use agentgraph_checkpoint::{MemoryStore, conformance};

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    let raw = store.clone();
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        raw.put_raw_run_record(run, bytes)
    })
    .await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_store_conforms() {
    use agentgraph_checkpoint::{CheckpointStore, SledStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let raw = store.clone();
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        raw.put_raw_run_record(run, bytes)
    })
    .await;
    store.flush().await.unwrap();
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_store_conforms_after_reopening() {
    use agentgraph_checkpoint::{CheckpointStore, SledStore};
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        conformance::checkpoints(&store).await;
        conformance::delete_run_isolation(&store).await;
        store.flush().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let raw = store.clone();
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        raw.put_raw_run_record(run, bytes)
    })
    .await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_lease_epochs_keep_growing_across_reopening() {
    use std::time::Duration;

    use agentgraph_checkpoint::{CheckpointStore, SledStore, StoreError, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(600);
    let mut last = 0;
    for round in 0..3 {
        let store = SledStore::open(dir.path()).unwrap();
        // A lease held when the store was closed (the process died) does not outlive it.
        let lease = store.acquire_lease("r", ttl).await.unwrap();
        assert!(
            lease.epoch() > last,
            "round {round}: epoch {} after {last}",
            lease.epoch()
        );
        if last > 0 {
            // The previous store's epoch is stale in this one.
            let mut batch = WriteBatch::new();
            batch.fence("r", last).put_checkpoint("r", round, vec![1]);
            assert!(matches!(
                store.commit(batch).await,
                Err(StoreError::Fenced { epoch, current, .. }) if epoch == last && current == lease.epoch()
            ));
        }
        let mut batch = WriteBatch::new();
        batch
            .fence("r", lease.epoch())
            .put_checkpoint("r", round, vec![1]);
        store.commit(batch).await.unwrap();
        last = lease.epoch();
        std::mem::forget(lease); // as a killed process would
        store.flush().await.unwrap();
    }
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn redb_store_conforms() {
    use agentgraph_checkpoint::{CheckpointStore, RedbStore};
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("store.redb")).unwrap();
    let raw = store.clone();
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        raw.put_raw_run_record(run, bytes)
    })
    .await;
    store.flush().await.unwrap();
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn redb_store_conforms_after_reopening() {
    use agentgraph_checkpoint::{CheckpointStore, RedbStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        conformance::checkpoints(&store).await;
        conformance::delete_run_isolation(&store).await;
        store.flush().await.unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let raw = store.clone();
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        raw.put_raw_run_record(run, bytes)
    })
    .await;
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn redb_lease_epochs_keep_growing_across_reopening() {
    use std::time::Duration;

    use agentgraph_checkpoint::{CheckpointStore, RedbStore, StoreError, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let ttl = Duration::from_secs(600);
    let mut last = 0;
    for round in 0..3 {
        let store = RedbStore::open(&path).unwrap();
        // A lease held when the store was closed (the process died) does not outlive it.
        let lease = store.acquire_lease("r", ttl).await.unwrap();
        assert!(
            lease.epoch() > last,
            "round {round}: epoch {} after {last}",
            lease.epoch()
        );
        if last > 0 {
            let mut batch = WriteBatch::new();
            batch.fence("r", last).put_checkpoint("r", round, vec![1]);
            assert!(matches!(
                store.commit(batch).await,
                Err(StoreError::Fenced { epoch, current, .. }) if epoch == last && current == lease.epoch()
            ));
        }
        let mut batch = WriteBatch::new();
        batch
            .fence("r", lease.epoch())
            .put_checkpoint("r", round, vec![1]);
        store.commit(batch).await.unwrap();
        last = lease.epoch();
        std::mem::forget(lease); // as a killed process would
        store.flush().await.unwrap();
    }
}
