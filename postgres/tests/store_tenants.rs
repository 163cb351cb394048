//! A tenant's view ([`TenantStore`]) of a real PostgreSQL store: its runs, events and memory
//! items only; another tenant's run is not found and not written to.

mod support;

use std::sync::Arc;

use agentgraph_checkpoint::items::{Item, ItemQuery, Namespace};
use agentgraph_checkpoint::{
    CheckpointStore, RunRecord, RunStatus, StoreError, TenantId, TenantStore, WriteBatch,
};

#[tokio::test]
async fn the_postgres_store_is_isolated_by_tenant() {
    let store: Arc<dyn CheckpointStore> = Arc::new(support::fresh_store("tenants").await);
    let (acme, globex) = (
        TenantId::new("acme").unwrap(),
        TenantId::new("globex").unwrap(),
    );
    let as_acme = TenantStore::new(store.clone(), acme.clone());
    let as_globex = TenantStore::new(store.clone(), globex.clone());
    let ns = Namespace::new(["users", "ann"]);
    for (view, run) in [(&as_acme, "a"), (&as_globex, "g")] {
        let mut batch = WriteBatch::new();
        batch
            .put_run(RunRecord::new(run, RunStatus::Completed, 7, 1))
            .put_checkpoint(run, 0, vec![1])
            .put_event(run, 0, vec![2])
            .put_item(Item::new(ns.clone(), "k", run.into()).written_at(1));
        view.commit(batch).await.unwrap();
    }
    assert_eq!(
        store.get_run("a").await.unwrap().unwrap().tenant,
        Some(acme)
    );
    assert_eq!(
        store.get_run("g").await.unwrap().unwrap().tenant,
        Some(globex)
    );

    assert!(as_acme.get_run("g").await.unwrap().is_none());
    assert!(as_acme.latest_checkpoint("g").await.unwrap().is_none());
    assert!(as_acme.get_events("g", None, 10).await.unwrap().is_empty());
    let listed: Vec<String> = as_acme
        .list_runs(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, ["a"]);
    assert_eq!(
        as_acme.get_item(&ns, "k", 2).await.unwrap().unwrap().value,
        "a"
    );
    assert_eq!(
        as_globex
            .get_item(&ns, "k", 2)
            .await
            .unwrap()
            .unwrap()
            .value,
        "g"
    );
    let hits = as_acme
        .search_items(&ItemQuery::new(Namespace::root()).at(2).limit(10))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].item.namespace, ns);

    let mut batch = WriteBatch::new();
    batch.delete_run("g");
    assert!(matches!(
        as_acme.commit(batch).await,
        Err(StoreError::NotInTenant { .. })
    ));
    assert!(store.get_run("g").await.unwrap().is_some());
}
