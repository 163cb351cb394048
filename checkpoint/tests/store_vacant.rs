//! The memory and sled stores say when a leased run is vacant (the engine then reads nothing
//! before a new run), and sled keeps each granted lease epoch, written with the run's next
//! fenced batch or when the store goes.

use std::time::Duration;

use agentgraph_checkpoint::{
    CheckpointStore, MemoryStore, RunRecord, RunStatus, StoreError, WriteBatch,
};

const TTL: Duration = Duration::from_secs(60);

/// Whether a lease of `run` says it is vacant.
async fn vacant(store: &dyn CheckpointStore, run: &str) -> bool {
    let lease = store.acquire_lease(run, TTL).await.unwrap();
    let vacant = lease.run_vacant();
    store.release_lease(lease).await.unwrap();
    vacant
}

async fn says_what_is_vacant(store: &dyn CheckpointStore) {
    assert!(vacant(store, "v-1").await, "a run never written is vacant");
    let mut batch = WriteBatch::new();
    for run in ["v-1", "v-2/@sub/1", "v-30"] {
        batch.put_run(RunRecord::new(run, RunStatus::Completed, 7, 0));
    }
    store.commit(batch).await.unwrap();
    assert!(!vacant(store, "v-1").await, "the run is stored");
    assert!(
        !vacant(store, "v-2").await,
        "a run of its subgraphs is stored"
    );
    assert!(vacant(store, "v-3").await, "`v-30` is another run");
    let mut batch = WriteBatch::new();
    batch.delete_run("v-1").delete_run("v-2/@sub/1");
    store.commit(batch).await.unwrap();
    assert!(vacant(store, "v-1").await, "a deleted run is vacant again");
    assert!(
        vacant(store, "v-2").await,
        "so is one whose subgraph runs were deleted"
    );
}

#[tokio::test]
async fn the_memory_store_says_what_is_vacant() {
    says_what_is_vacant(&MemoryStore::new()).await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn the_sled_store_says_what_is_vacant() {
    let dir = tempfile::tempdir().unwrap();
    says_what_is_vacant(&agentgraph_checkpoint::SledStore::open(dir.path()).unwrap()).await;
}

/// An epoch granted to a run is kept across reopening the store, whether a batch fenced with
/// it was committed or not: a later lease has a greater one, and the older lease is fenced.
#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_keeps_granted_epochs_across_reopening() {
    use agentgraph_checkpoint::SledStore;
    let dir = tempfile::tempdir().unwrap();
    let (written, unwritten) = {
        let store = SledStore::open(dir.path()).unwrap();
        let lease = store.acquire_lease("written", TTL).await.unwrap();
        let mut batch = WriteBatch::new();
        batch
            .fence("written", lease.epoch())
            .put_run(RunRecord::new("written", RunStatus::Running, 7, 0));
        store.commit(batch).await.unwrap();
        let written = lease.epoch();
        store.release_lease(lease).await.unwrap();
        let lease = store.acquire_lease("unwritten", TTL).await.unwrap();
        let unwritten = lease.epoch();
        store.release_lease(lease).await.unwrap();
        store.flush().await.unwrap();
        (written, unwritten)
    };
    let store = SledStore::open(dir.path()).unwrap();
    for (run, before) in [("written", written), ("unwritten", unwritten)] {
        let lease = store.acquire_lease(run, TTL).await.unwrap();
        assert!(
            lease.epoch() > before,
            "{run}: a new lease has a greater epoch than {before}, got {}",
            lease.epoch()
        );
        let mut stale = WriteBatch::new();
        stale
            .fence(run, before)
            .put_run(RunRecord::new(run, RunStatus::Failed, 7, 0));
        assert!(
            matches!(store.commit(stale).await, Err(StoreError::Fenced { .. })),
            "{run}: a batch fenced with the old epoch is refused"
        );
        store.release_lease(lease).await.unwrap();
    }
}
