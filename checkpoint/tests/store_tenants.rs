//! A tenant's view of a store ([`TenantStore`]) never returns, nor writes to, another tenant's
//! runs, subgraph runs, checkpoints, events, pending writes, leases or memory items: on every
//! backend built in.

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::items::{HashEmbedder, Item, ItemQuery, Namespace};
use agentgraph_checkpoint::{
    CheckpointStore, MemoryStore, RunRecord, RunStatus, StoreError, TenantId, TenantStore,
    WriteBatch,
};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// Writes, through `view`, a run `id` with a checkpoint, a blob, a pending write, an event
/// and a subgraph run, and an item under `users/ann` keyed `id`.
async fn write_run(view: &TenantStore, id: &str) {
    let embedder = HashEmbedder::new(8);
    let mut batch = WriteBatch::new();
    let child = format!("{id}/@node/0");
    batch
        .put_run(RunRecord::new(id, RunStatus::Interrupted, 7, 1))
        .put_checkpoint(id, 0, vec![1])
        .put_blob(id, 0, 1, vec![2])
        .put_pending_write(id, 1, 0, vec![3])
        .put_event(id, 0, vec![4])
        .put_run(RunRecord::new(child.as_str(), RunStatus::Completed, 7, 1))
        .put_event(&child, 0, vec![5])
        .put_item(
            Item::new(Namespace::new(["users", "ann"]), id, id.into())
                .written_at(1)
                .with_embedding(embedder.vector(id)),
        );
    view.commit(batch).await.unwrap();
}

/// What `view` sees of `run`, each read.
async fn sees_anything_of(view: &TenantStore, run: &str) -> Vec<&'static str> {
    let mut seen = Vec::new();
    if view.get_run(run).await.unwrap().is_some() {
        seen.push("get_run");
    }
    if view.get_checkpoint(run, 0).await.unwrap().is_some() {
        seen.push("get_checkpoint");
    }
    if view.latest_checkpoint(run).await.unwrap().is_some() {
        seen.push("latest_checkpoint");
    }
    if !view
        .list_checkpoints(run, None, 10)
        .await
        .unwrap()
        .is_empty()
    {
        seen.push("list_checkpoints");
    }
    if !view.get_blobs(run, 0, 0, 10).await.unwrap().is_empty() {
        seen.push("get_blobs");
    }
    if !view.get_pending_writes(run, 1).await.unwrap().is_empty() {
        seen.push("get_pending_writes");
    }
    if !view.get_events(run, None, 10).await.unwrap().is_empty() {
        seen.push("get_events");
    }
    if view.last_event(run).await.unwrap().is_some() {
        seen.push("last_event");
    }
    let child = format!("{run}/@node/0");
    if view.get_run(&child).await.unwrap().is_some() {
        seen.push("get_run(child)");
    }
    if !view.get_events(&child, None, 10).await.unwrap().is_empty() {
        seen.push("get_events(child)");
    }
    seen
}

async fn isolates(store: Arc<dyn CheckpointStore>) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let as_acme = TenantStore::new(store.clone(), acme.clone());
    let as_globex = TenantStore::new(store.clone(), globex.clone());
    for i in 0..3 {
        write_run(&as_acme, &format!("a{i}")).await;
    }
    write_run(&as_globex, "g0").await;
    // A run of no tenant, written to the store itself.
    let mut batch = WriteBatch::new();
    batch
        .put_run(RunRecord::new("plain", RunStatus::Completed, 7, 1))
        .put_event("plain", 0, vec![1]);
    store.commit(batch).await.unwrap();

    // The store holds both tenants' runs, stamped.
    assert_eq!(
        store.get_run("a0").await.unwrap().unwrap().tenant,
        Some(acme.clone())
    );
    assert_eq!(
        store.get_run("g0").await.unwrap().unwrap().tenant,
        Some(globex.clone())
    );
    assert_eq!(
        store.get_run("a0/@node/0").await.unwrap().unwrap().tenant,
        Some(acme.clone())
    );

    // Each view sees all of its own and nothing of the other's, nor of no tenant's.
    let all = [
        "get_run",
        "get_checkpoint",
        "latest_checkpoint",
        "list_checkpoints",
        "get_blobs",
        "get_pending_writes",
        "get_events",
        "last_event",
        "get_run(child)",
        "get_events(child)",
    ];
    assert_eq!(sees_anything_of(&as_acme, "a0").await, all);
    assert_eq!(sees_anything_of(&as_globex, "g0").await, all);
    for (view, other) in [(&as_acme, "g0"), (&as_globex, "a0"), (&as_acme, "plain")] {
        assert_eq!(
            sees_anything_of(view, other).await,
            Vec::<&str>::new(),
            "{} reading {other}",
            view.tenant()
        );
    }

    // Listings, in pages too.
    let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    assert_eq!(
        ids(as_acme.list_runs(None, 100).await.unwrap()),
        ["a0", "a0/@node/0", "a1", "a1/@node/0", "a2", "a2/@node/0"]
    );
    assert_eq!(
        ids(as_acme.list_runs(Some("a1"), 2).await.unwrap()),
        ["a1/@node/0", "a2"]
    );
    assert_eq!(
        ids(as_globex.list_runs(None, 100).await.unwrap()),
        ["g0", "g0/@node/0"]
    );

    // Memory: each tenant's items under its own names, none of the other's.
    let ns = Namespace::new(["users", "ann"]);
    let keys = |items: Vec<Item>| items.into_iter().map(|i| i.key).collect::<Vec<_>>();
    assert_eq!(
        keys(as_acme.scan_items(&Namespace::root()).await.unwrap()),
        ["a0", "a1", "a2"]
    );
    assert_eq!(
        keys(as_globex.scan_items(&Namespace::root()).await.unwrap()),
        ["g0"]
    );
    assert!(as_globex.get_item(&ns, "a0", 2).await.unwrap().is_none());
    assert_eq!(
        as_acme
            .get_item(&ns, "a0", 2)
            .await
            .unwrap()
            .unwrap()
            .namespace,
        ns
    );
    assert_eq!(
        as_acme
            .list_namespaces(&Namespace::root(), 2)
            .await
            .unwrap(),
        std::slice::from_ref(&ns)
    );
    let hits = as_globex
        .search_items(&ItemQuery::new(Namespace::root()).at(2).limit(10))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.item.key.as_str()).collect::<Vec<_>>(),
        ["g0"]
    );
    let vector = HashEmbedder::new(8).vector("a0");
    let hits = as_globex
        .search_items(
            &ItemQuery::new(Namespace::root())
                .vector(vector)
                .at(2)
                .limit(10),
        )
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.item.key == "g0"), "{hits:?}");
    // A namespace spelled like another tenant's stays under the writer's own.
    let spoof = tenant("acme").scope(&ns);
    let mut batch = WriteBatch::new();
    batch.put_item(Item::new(spoof.clone(), "a0", "spoofed".into()).written_at(1));
    as_globex.commit(batch).await.unwrap();
    assert_eq!(
        as_acme.get_item(&ns, "a0", 2).await.unwrap().unwrap().value,
        "a0"
    );
    assert_eq!(
        as_globex
            .get_item(&spoof, "a0", 2)
            .await
            .unwrap()
            .unwrap()
            .value,
        "spoofed"
    );

    // Writes to another tenant's run, or one of no tenant, fail whole.
    for victim in ["a0", "a0/@node/0", "plain"] {
        let mut batch = WriteBatch::new();
        batch.put_event("g0", 9, vec![9]).delete_run(victim);
        let err = as_globex.commit(batch).await.unwrap_err();
        assert!(matches!(err, StoreError::NotInTenant { .. }), "{err:?}");
        assert!(!err.to_string().contains("acme"));
        assert_eq!(store.last_event("g0").await.unwrap(), Some(0));
    }
    let mut batch = WriteBatch::new();
    batch.put_run(RunRecord::new("a0", RunStatus::Completed, 7, 1));
    assert!(as_globex.commit(batch).await.is_err());
    let mut batch = WriteBatch::new();
    batch.put_run(RunRecord::new("new", RunStatus::Completed, 7, 1).with_tenant(acme.clone()));
    assert!(as_globex.commit(batch).await.is_err());
    assert!(store.get_run("new").await.unwrap().is_none());
    assert!(matches!(
        as_globex.acquire_lease("a0", Duration::from_secs(5)).await,
        Err(StoreError::NotInTenant { .. })
    ));
    let lease = as_globex
        .acquire_lease("g0", Duration::from_secs(5))
        .await
        .unwrap();
    as_globex.release_lease(lease).await.unwrap();
    assert!(store.get_run("a0").await.unwrap().is_some());

    // A tenant deletes its own run, and sweeps only its own expired runs.
    let mut batch = WriteBatch::new();
    batch.delete_run("a2").delete_run("a2/@node/0");
    as_acme.commit(batch).await.unwrap();
    assert!(store.get_run("a2").await.unwrap().is_none());
    let mut batch = WriteBatch::new();
    batch.put_run(
        RunRecord::new("g-old", RunStatus::Completed, 7, 1).with_ttl(Duration::from_millis(1)),
    );
    as_globex.commit(batch).await.unwrap();
    assert!(as_acme.sweep_expired(1_000).await.unwrap().is_empty());
    assert!(store.get_run("g-old").await.unwrap().is_some());
    assert_eq!(as_globex.sweep_expired(1_000).await.unwrap(), ["g-old"]);
}

#[tokio::test]
async fn the_memory_store_is_isolated_by_tenant() {
    isolates(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn the_sled_store_is_isolated_by_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = agentgraph_checkpoint::SledStore::open(dir.path().join("s")).unwrap();
    isolates(Arc::new(store)).await;
}

#[cfg(feature = "redb")]
#[tokio::test]
async fn the_redb_store_is_isolated_by_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = agentgraph_checkpoint::RedbStore::open(dir.path().join("r.redb")).unwrap();
    isolates(Arc::new(store)).await;
}

/// Many runs of other tenants between a tenant's: a listing reads on until its page is full.
#[tokio::test]
async fn listings_page_past_other_tenants_runs() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let as_acme = TenantStore::new(store.clone(), tenant("acme"));
    let as_globex = TenantStore::new(store.clone(), tenant("globex"));
    for i in 0..1_000 {
        let (view, id) = if i % 100 == 0 {
            (&as_acme, format!("r{i:04}"))
        } else {
            (&as_globex, format!("r{i:04}"))
        };
        let mut batch = WriteBatch::new();
        batch.put_run(RunRecord::new(id, RunStatus::Completed, 7, 1));
        view.commit(batch).await.unwrap();
    }
    let page = as_acme.list_runs(None, 4).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["r0000", "r0100", "r0200", "r0300"]
    );
    let rest = as_acme.list_runs(Some("r0300"), 100).await.unwrap();
    assert_eq!(rest.len(), 6);
    assert_eq!(as_globex.list_runs(None, 2_000).await.unwrap().len(), 990);
}
