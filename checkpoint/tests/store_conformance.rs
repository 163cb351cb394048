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
