//! The value files of the sled store: values of 64 KiB and more live in `values/` of the store's
//! directory, one file each, deleted after the flush that follows their removal, collected when
//! orphaned, and checked when read.
#![cfg(feature = "sled")]

use std::path::{Path, PathBuf};

use agentgraph_checkpoint::{CheckpointStore, SledStore, StoreError, WriteBatch};

const LARGE: usize = 300_000;

fn large(seed: u8) -> Vec<u8> {
    (0..LARGE).map(|i| (i as u8).wrapping_mul(seed)).collect()
}

/// The value files, by name.
fn files(store: &SledStore) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(store.path().join("values"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
}

async fn commit(store: &SledStore, batch: WriteBatch) {
    store.commit(batch).await.unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn a_large_value_has_one_file_deleted_after_the_flush_that_follows_its_removal() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = SledStore::open(dir.path()).unwrap();
        let mut batch = WriteBatch::new();
        batch
            .put_checkpoint("r", 0, large(3))
            .put_blob("r", 0, 0, large(5))
            .put_pending_write("r", 1, 0, vec![1; 100]);
        commit(&store, batch).await;
        assert_eq!(
            files(&store).len(),
            2,
            "one file per large value, none for small"
        );
        assert_eq!(store.get_checkpoint("r", 0).await.unwrap(), Some(large(3)));

        let mut batch = WriteBatch::new();
        batch.put_checkpoint("r", 0, b"small now".to_vec());
        commit(&store, batch).await;
        assert_eq!(
            files(&store).len(),
            2,
            "a replaced value's file stays until a flush makes the replacement durable"
        );
        assert_eq!(
            store.get_checkpoint("r", 0).await.unwrap(),
            Some(b"small now".to_vec())
        );
        store.flush().await.unwrap();
        assert_eq!(files(&store).len(), 1, "the flush deleted it");

        let mut batch = WriteBatch::new();
        batch.delete_run("r");
        commit(&store, batch).await;
        store.flush().await.unwrap();
        assert!(
            files(&store).is_empty(),
            "DeleteRun's flush deleted the rest"
        );
    });
}

#[test]
fn files_no_reference_names_are_deleted_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let kept = {
        let store = SledStore::open(dir.path()).unwrap();
        rt.block_on(async {
            let mut batch = WriteBatch::new();
            batch.put_blob("r", 0, 0, large(7));
            commit(&store, batch).await;
            store.flush().await.unwrap();
            // Removed, but the store is dropped before a flush of its own could delete the
            // file (sled flushes the removal as it closes).
            let mut batch = WriteBatch::new();
            batch.put_blob("r", 1, 0, large(9)).delete_run("r");
            batch.put_blob("r", 2, 0, large(11));
            commit(&store, batch).await;
        });
        files(&store)
    };
    assert_eq!(
        kept.len(),
        2,
        "the deleted run's file waits for a flush; none for a value deleted in its own batch"
    );
    let values = dir.path().join("values");
    std::fs::write(values.join("00000000deadbeef"), b"left by a crash").unwrap();
    std::fs::write(values.join("notes.txt"), b"not a value file").unwrap();

    let store = SledStore::open(dir.path()).unwrap();
    let names: Vec<String> = files(&store)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "one value file and the stranger: {names:?}");
    assert!(names.contains(&"notes.txt".to_owned()));
    rt.block_on(async {
        assert_eq!(
            store.get_blobs("r", 2, 0, 0).await.unwrap(),
            [(0, large(11))],
            "the referenced file is kept and reads back after reopening"
        );
        assert_eq!(store.get_blobs("r", 0, 0, 9).await.unwrap(), []);
    });
}

/// The only value file of `store`.
fn only_file(store: &SledStore) -> PathBuf {
    let files = files(store);
    assert_eq!(files.len(), 1);
    files.into_iter().next().unwrap()
}

fn expect_corrupt(result: agentgraph_checkpoint::Result<Option<Vec<u8>>>, file: &Path) {
    match result {
        Err(StoreError::Corrupt { what, .. }) => assert!(
            what.contains(&*file.file_name().unwrap().to_string_lossy()),
            "the error names the file: {what}"
        ),
        other => panic!("a damaged value file must be Corrupt, got {other:?}"),
    }
}

#[test]
fn a_damaged_value_file_is_corrupt_never_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = SledStore::open(dir.path()).unwrap();
        let mut batch = WriteBatch::new();
        batch.put_checkpoint("r", 0, large(13));
        commit(&store, batch).await;
        store.flush().await.unwrap();
        let file = only_file(&store);
        let good = std::fs::read(&file).unwrap();

        let mut flipped = good.clone();
        flipped[LARGE / 2] ^= 1;
        let mut longer = good.clone();
        longer.push(0);
        for damaged in [flipped, good[..LARGE - 1].to_vec(), longer] {
            std::fs::write(&file, damaged).unwrap();
            expect_corrupt(store.get_checkpoint("r", 0).await, &file);
            let latest = store
                .latest_checkpoint("r")
                .await
                .map(|l| l.map(|(_, v)| v));
            expect_corrupt(latest, &file);
        }
        std::fs::remove_file(&file).unwrap();
        expect_corrupt(store.get_checkpoint("r", 0).await, &file);
        std::fs::write(&file, good).unwrap();
        assert_eq!(store.get_checkpoint("r", 0).await.unwrap(), Some(large(13)));
    });
}
