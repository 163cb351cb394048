//! The conformance suite against a real PostgreSQL (`AGENTGRAPH_TEST_POSTGRES_URL`), each test
//! in a schema of its own.

mod support;

use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, StoreError, WriteBatch, conformance};
use agentgraph_postgres::PostgresStore;

#[tokio::test]
async fn postgres_store_conforms() {
    let store = support::fresh_store("conforms").await;
    let raw = store.clone();
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        raw.put_raw_run_record_blocking(run, bytes)
    })
    .await;
    store.flush().await.unwrap();
}

#[tokio::test]
async fn postgres_store_conforms_after_reconnecting() {
    let schema = support::fresh_schema("reconnect");
    {
        let store = PostgresStore::connect_with(support::options(&schema))
            .await
            .unwrap();
        conformance::checkpoints(&store).await;
        conformance::delete_run_isolation(&store).await;
    }
    let store = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let raw = store.clone();
    conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
        raw.put_raw_run_record_blocking(run, bytes)
    })
    .await;
}

/// Two stores on one schema are two processes sharing it: a lease taken in one is busy in the
/// other, its epoch fences the other's writes, and epochs keep growing across both.
#[tokio::test]
async fn two_stores_share_leases_and_fences() {
    let schema = support::fresh_schema("shared");
    let a = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let b = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let short = Duration::from_millis(200);
    let first = a.acquire_lease("r", short).await.unwrap();
    assert!(matches!(
        b.acquire_lease("r", short).await,
        Err(StoreError::RunBusy { .. })
    ));
    // a's lease expires (a process paused past its TTL); b takes the run over.
    tokio::time::sleep(short * 2).await;
    let second = b.acquire_lease("r", Duration::from_secs(60)).await.unwrap();
    assert!(second.epoch() > first.epoch());
    let mut batch = WriteBatch::new();
    batch
        .fence("r", first.epoch())
        .put_checkpoint("r", 0, vec![1]);
    match a.commit(batch).await {
        Err(StoreError::Fenced {
            run,
            epoch,
            current,
        }) => assert_eq!(
            (run.as_str(), epoch, current),
            ("r", first.epoch(), second.epoch())
        ),
        other => panic!("the old owner's write must be fenced, got {other:?}"),
    }
    assert!(matches!(
        a.renew_lease(&first, short).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(b.get_checkpoint("r", 0).await.unwrap(), None);
    let mut batch = WriteBatch::new();
    batch
        .fence("r", second.epoch())
        .put_checkpoint("r", 0, vec![2]);
    b.commit(batch).await.unwrap();
    assert_eq!(a.get_checkpoint("r", 0).await.unwrap(), Some(vec![2]));
    a.release_lease(first).await.unwrap();
    assert!(matches!(
        a.acquire_lease("r", short).await,
        Err(StoreError::RunBusy { .. })
    ));
    let second_epoch = second.epoch();
    b.release_lease(second).await.unwrap();
    let third = a.acquire_lease("r", short).await.unwrap();
    assert!(third.epoch() > second_epoch);
    a.release_lease(third).await.unwrap();
}

/// A dropped lease is released (in a spawned task), and this store can take the run again at
/// once.
#[tokio::test]
async fn a_dropped_lease_is_released() {
    let store = support::fresh_store("dropped").await;
    let other = PostgresStore::connect_with(store.options().clone())
        .await
        .unwrap();
    let long = Duration::from_secs(600);
    let lease = store.acquire_lease("r", long).await.unwrap();
    drop(lease);
    let again = store.acquire_lease("r", long).await.unwrap();
    drop(again);
    // Another process sees it free once the spawned release ran.
    let mut taken = None;
    for _ in 0..100 {
        match other.acquire_lease("r", long).await {
            Ok(lease) => {
                taken = Some(lease);
                break;
            }
            Err(StoreError::RunBusy { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    }
    other
        .release_lease(taken.expect("the dropped lease was released"))
        .await
        .unwrap();
}

/// Strings PostgreSQL's `text` refuses (a NUL) in run ids and graph names read back as
/// written.
#[tokio::test]
async fn nul_bytes_round_trip() {
    use agentgraph_checkpoint::{RunRecord, RunStatus};
    let store = support::fresh_store("nul").await;
    let record = RunRecord::new("r\0un", RunStatus::Running, 7, 1).with_graph("g\0raph");
    let mut batch = WriteBatch::new();
    batch
        .put_run(record.clone())
        .put_checkpoint("r\0un", 0, vec![0]);
    store.commit(batch).await.unwrap();
    assert_eq!(store.get_run("r\0un").await.unwrap(), Some(record.clone()));
    assert_eq!(store.list_runs(None, 10).await.unwrap(), [record]);
    assert_eq!(store.get_run("r").await.unwrap(), None);
}

/// Two stores on one schema are two processes sharing memory: items one writes are found by
/// the other's semantic searches (its vector index catches up with the other's puts and
/// deletes at each search), and by its plain reads at once.
#[tokio::test]
async fn two_stores_share_memory_items() {
    use agentgraph_checkpoint::items::{Embedder, HashEmbedder, Item, ItemQuery, Namespace};
    let schema = support::fresh_schema("items");
    let a = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let b = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let embedder = HashEmbedder::new(128);
    let embed = |t: &str| embedder.vector(t);
    let ns = Namespace::new(["shared"]);
    let query = || {
        ItemQuery::new(ns.clone())
            .vector(embed("green tea"))
            .limit(5)
    };
    let keys = |hits: Vec<agentgraph_checkpoint::items::Hit>| {
        hits.into_iter().map(|h| h.item.key).collect::<Vec<_>>()
    };
    // b's index is built (empty) before a writes anything.
    assert!(b.search_items(&query()).await.unwrap().is_empty());
    let mut batch = WriteBatch::new();
    batch
        .put_item(
            Item::new(ns.clone(), "tea", serde_json::json!(1)).with_embedding(embed("green tea")),
        )
        .put_item(
            Item::new(ns.clone(), "pot", serde_json::json!(2)).with_embedding(embed("a tea pot")),
        );
    a.commit(batch).await.unwrap();
    assert_eq!(
        keys(b.search_items(&query()).await.unwrap()),
        ["tea", "pot"]
    );
    assert_eq!(
        keys(a.search_items(&query()).await.unwrap()),
        ["tea", "pot"]
    );
    let mut batch = WriteBatch::new();
    batch.delete_item(&ns, "tea").put_item(
        Item::new(ns.clone(), "pot", serde_json::json!(3)).with_embedding(embed("green tea pot")),
    );
    a.commit(batch).await.unwrap();
    let hits = b.search_items(&query()).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].item.key.as_str(), &hits[0].item.value),
        ("pot", &serde_json::json!(3))
    );
    // A deleted key written again is found again.
    let mut batch = WriteBatch::new();
    batch.put_item(
        Item::new(ns.clone(), "tea", serde_json::json!(4)).with_embedding(embed("green tea")),
    );
    b.commit(batch).await.unwrap();
    assert_eq!(
        keys(a.search_items(&query()).await.unwrap()),
        ["tea", "pot"]
    );
    assert_eq!(a.get_item(&ns, "tea", 0).await.unwrap().unwrap().value, 4);
    let _ = embedder.embed(&[]).await.unwrap();
}

/// The rows of `schema`'s `items` table, tombstones included.
async fn item_rows(schema: &str) -> i64 {
    support::admin()
        .await
        .query_one(&format!("SELECT count(*) FROM {schema}.items"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Deleted items leave tombstones (for other handles' vector indexes to catch up with); a
/// sweep prunes those older than the retention, so the table shrinks back to the live items.
/// Nothing a reader needs goes: a handle whose index predates a pruned tombstone reads every
/// item again (it never finds a deleted item), one caught up keeps catching up, and a key
/// deleted, pruned and written again is found again.
#[tokio::test]
async fn sweeps_prune_deleted_items_tombstones() {
    use agentgraph_checkpoint::items::{Item, ItemQuery, Namespace};
    let schema = support::fresh_schema("prune");
    let connect = |retention: Duration| {
        PostgresStore::connect_with(support::options(&schema).deleted_item_retention(retention))
    };
    let writer = connect(Duration::ZERO).await.unwrap();
    let lagging = connect(Duration::from_secs(3600)).await.unwrap();
    let current = connect(Duration::from_secs(3600)).await.unwrap();
    let ns = Namespace::new(["t", "acme"]);
    let item = |i: u32| {
        Item::new(ns.clone(), format!("k{i:02}"), serde_json::json!(i))
            .with_embedding(vec![1.0, i as f32 / 100.0])
    };
    let mut batch = WriteBatch::new();
    for i in 0..50 {
        batch.put_item(item(i));
    }
    writer.commit(batch).await.unwrap();
    let query = ItemQuery::new(ns.clone()).vector(vec![1.0, 0.0]).limit(100);
    let found = |hits: Vec<agentgraph_checkpoint::items::Hit>| {
        let mut keys: Vec<String> = hits.into_iter().map(|h| h.item.key).collect();
        keys.sort();
        keys
    };
    let live = |from: u32| (from..50).map(|i| format!("k{i:02}")).collect::<Vec<_>>();
    // Both readers' indexes hold the 50 items.
    assert_eq!(found(lagging.search_items(&query).await.unwrap()), live(0));
    assert_eq!(found(current.search_items(&query).await.unwrap()), live(0));

    let mut batch = WriteBatch::new();
    for i in 0..40 {
        batch.delete_item(&ns, &format!("k{i:02}"));
    }
    writer.commit(batch).await.unwrap();
    // `current` catches up with the deletes (tombstones are what it reads).
    assert_eq!(found(current.search_items(&query).await.unwrap()), live(40));
    assert_eq!(item_rows(&schema).await, 50, "40 tombstones and 10 items");

    // A handle that keeps tombstones an hour removes none of these.
    assert_eq!(lagging.prune_deleted_items().await.unwrap(), 0);
    assert_eq!(item_rows(&schema).await, 50);
    // The writer's sweep (retention zero) removes them: the table shrinks.
    writer.sweep_expired(0).await.unwrap();
    assert_eq!(item_rows(&schema).await, 10, "the tombstones are pruned");
    assert_eq!(
        writer.prune_deleted_items().await.unwrap(),
        0,
        "nothing left"
    );

    // The lagging handle never saw the deletes, and their tombstones are gone: it reads
    // every item again and finds only the live ones.
    assert_eq!(found(lagging.search_items(&query).await.unwrap()), live(40));
    assert_eq!(found(current.search_items(&query).await.unwrap()), live(40));

    // Later changes reach both, incrementally; a pruned key written again is found again.
    let mut batch = WriteBatch::new();
    batch.put_item(item(3)).delete_item(&ns, "k45");
    writer.commit(batch).await.unwrap();
    let mut want = live(40);
    want.retain(|k| k != "k45");
    want.insert(0, "k03".to_owned());
    assert_eq!(found(lagging.search_items(&query).await.unwrap()), want);
    assert_eq!(found(current.search_items(&query).await.unwrap()), want);
    assert_eq!(
        item_rows(&schema).await,
        11,
        "10 items and the tombstone of k45"
    );

    // Expired items: a sweep deletes them and, with retention zero, prunes their tombstones.
    let mut batch = WriteBatch::new();
    batch.put_item(
        Item::new(ns.clone(), "brief", serde_json::json!(0))
            .written_at(1_000)
            .with_ttl(Duration::from_millis(1)),
    );
    writer.commit(batch).await.unwrap();
    assert_eq!(item_rows(&schema).await, 12);
    writer.sweep_expired(2_000).await.unwrap();
    assert_eq!(item_rows(&schema).await, 10, "the live items only");
    assert!(writer.get_item(&ns, "brief", 0).await.unwrap().is_none());
    assert_eq!(found(current.search_items(&query).await.unwrap()), want);
}
