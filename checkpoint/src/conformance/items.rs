//! Long-term memory items: namespaces, filters, expiry, semantic search, atomicity.

use serde_json::json;

use super::*;
use crate::items::{Embedder, Filter, HashEmbedder, Item, ItemQuery, Namespace};

fn ns(segments: &[&str]) -> Namespace {
    Namespace::new(segments.iter().copied())
}

fn keys(hits: &[crate::items::Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| format!("{}:{}", h.item.namespace, h.item.key))
        .collect()
}

/// Deletes every item of the store, so that the next check starts empty.
async fn clear_items(store: &dyn CheckpointStore, check: &str) {
    let all = ok(store.scan_items(&Namespace::root()).await, check);
    let mut batch = WriteBatch::new();
    for item in &all {
        batch.delete_item(&item.namespace, &item.key);
    }
    commit(
        store,
        batch,
        &format!("{check}: deleting the check's items"),
    )
    .await;
    let left = ok(store.scan_items(&Namespace::root()).await, check);
    assert!(
        left.is_empty(),
        "{check}: items left after deleting: {left:?}"
    );
}

/// Items in namespaces: put, replace, get and delete; a namespace is never a prefix of one
/// whose segment only starts like its own (`acme` / `acme-corp`), whatever its segments
/// hold (separators, NUL, nothing); searches page in namespace and key order; listing
/// namespaces; invalid namespaces and keys refuse the whole batch; deleting a run leaves
/// items alone.
pub async fn items(store: &dyn CheckpointStore) {
    const C: &str = "items";
    if !store.supports_items() {
        return;
    }
    expect_empty(store, C).await;
    clear_items(store, C).await;
    let spaces = [
        ns(&["tenant", "acme"]),
        ns(&["tenant", "acme-corp"]),
        ns(&["tenant", "acme", ""]),
        ns(&["tenant", "acme", "notes"]),
        ns(&["tenant", "acme/notes"]),
        ns(&["tenant", "acme\0"]),
        ns(&["tenant", ""]),
        ns(&["tenant/acme"]),
        ns(&["", "acme"]),
    ];
    let mut batch = WriteBatch::new();
    for (i, space) in spaces.iter().enumerate() {
        batch.put_item(Item::new(space.clone(), "k", json!({ "i": i })).written_at(7));
    }
    commit(store, batch, C).await;
    for (i, space) in spaces.iter().enumerate() {
        let got = ok(store.get_item(space, "k", 0).await, C);
        assert_eq!(
            got.map(|g| g.value),
            Some(json!({ "i": i })),
            "{C}: the item of namespace {space:?} reads back as written"
        );
        let found = ok(
            store
                .search_items(&ItemQuery::new(space.clone()).limit(100))
                .await,
            C,
        );
        let expected: Vec<String> = {
            let mut under: Vec<&Namespace> =
                spaces.iter().filter(|s| s.starts_with(space)).collect();
            under.sort();
            under.iter().map(|s| format!("{s}:k")).collect()
        };
        assert_eq!(
            keys(&found),
            expected,
            "{C}: a search under {space:?} finds exactly the namespaces it is a prefix of, in order"
        );
    }
    let acme = ns(&["tenant", "acme"]);
    let listed = ok(store.list_namespaces(&acme, 0).await, C);
    assert_eq!(
        listed,
        [
            ns(&["tenant", "acme"]),
            ns(&["tenant", "acme", ""]),
            ns(&["tenant", "acme", "notes"])
        ],
        "{C}: list_namespaces under tenant/acme (not acme-corp, acme/notes or acme\\0)"
    );

    // Replace, delete, paging.
    let mut batch = WriteBatch::new();
    batch
        .put_item(Item::new(acme.clone(), "k", json!("new")).written_at(9))
        .delete_item(&ns(&["tenant", "acme-corp"]), "k")
        .delete_item(&acme, "never-written");
    for k in ["b", "a", "c"] {
        batch.put_item(Item::new(acme.clone(), k, json!(k)));
    }
    commit(store, batch, C).await;
    let got = ok(store.get_item(&acme, "k", 0).await, C).expect("replaced item");
    assert_eq!(
        (got.value, got.updated_at_ms),
        (json!("new"), 9),
        "{C}: a put replaces"
    );
    assert!(
        ok(
            store.get_item(&ns(&["tenant", "acme-corp"]), "k", 0).await,
            C
        )
        .is_none(),
        "{C}: a deleted item is gone"
    );
    let page = ok(
        store
            .search_items(&ItemQuery::new(acme.clone()).limit(2).offset(1))
            .await,
        C,
    );
    assert_eq!(
        keys(&page),
        ["tenant/acme:b", "tenant/acme:c"],
        "{C}: offset and limit page in key order"
    );

    // Invalid targets refuse the batch whole.
    for (space, key) in [
        (Namespace::root(), "k"),
        (acme.clone(), ""),
        (
            acme.clone(),
            &*"x".repeat(crate::items::MAX_ITEM_KEY_LEN + 1),
        ),
    ] {
        let mut batch = WriteBatch::new();
        batch
            .put_item(Item::new(acme.clone(), "valid", json!(1)))
            .put_item(Item::new(space.clone(), key, json!(1)));
        assert!(
            matches!(
                store.commit(batch).await,
                Err(StoreError::InvalidItem { .. })
            ),
            "{C}: an item in {space:?} under a key of {} bytes is refused",
            key.len()
        );
        assert!(
            ok(store.get_item(&acme, "valid", 0).await, C).is_none(),
            "{C}: a refused batch applies none of its items"
        );
    }

    // Items are not a run's: deleting runs leaves them.
    let mut batch = WriteBatch::new();
    batch
        .put_run(record("item-run", RunStatus::Running, 1))
        .put_item(Item::new(ns(&["runs"]), "item-run", json!(1)));
    commit(store, batch, C).await;
    delete_runs(store, &["item-run"], C).await;
    assert!(
        ok(store.get_item(&ns(&["runs"]), "item-run", 0).await, C).is_some(),
        "{C}: deleting a run keeps the items its batches wrote"
    );
    clear_items(store, C).await;
}

/// Filters on JSON fields: equality (numbers by value), comparisons of numbers and strings,
/// presence, nested paths and array indices, and/or/not.
pub async fn item_filters(store: &dyn CheckpointStore) {
    const C: &str = "item_filters";
    if !store.supports_items() {
        return;
    }
    clear_items(store, C).await;
    let space = ns(&["people"]);
    let people = [
        (
            "ann",
            json!({"age": 41, "team": "red", "tags": ["lead"], "email": "a@x"}),
        ),
        ("bob", json!({"age": 29.0, "team": "blue", "tags": []})),
        (
            "cyd",
            json!({"age": 29, "team": "red", "tags": ["new"], "address": {"city": "Oslo"}}),
        ),
        ("dan", json!({"team": null})),
    ];
    let mut batch = WriteBatch::new();
    for (k, v) in &people {
        batch.put_item(Item::new(space.clone(), *k, v.clone()));
    }
    commit(store, batch, C).await;
    let cases = [
        (Filter::eq("team", "red"), vec!["ann", "cyd"]),
        (Filter::eq("age", 29), vec!["bob", "cyd"]),
        (Filter::ne("team", "red"), vec!["bob", "dan"]),
        (Filter::gt("age", 29), vec!["ann"]),
        (Filter::gte("age", 29), vec!["ann", "bob", "cyd"]),
        (Filter::lt("age", 41.5), vec!["ann", "bob", "cyd"]),
        (Filter::lte("team", "blue"), vec!["bob"]),
        (Filter::exists("email"), vec!["ann"]),
        (Filter::exists("team").not(), vec![]),
        (Filter::eq("team", serde_json::Value::Null), vec!["dan"]),
        (Filter::eq("tags.0", "new"), vec!["cyd"]),
        (Filter::eq("address.city", "Oslo"), vec!["cyd"]),
        (
            Filter::eq("team", "red").and(Filter::lt("age", 30)),
            vec!["cyd"],
        ),
        (
            Filter::eq("team", "blue").or(Filter::exists("email")),
            vec!["ann", "bob"],
        ),
    ];
    for (filter, expected) in cases {
        let q = ItemQuery::new(space.clone())
            .filter(filter.clone())
            .limit(10);
        let found: Vec<String> = ok(store.search_items(&q).await, C)
            .into_iter()
            .map(|h| h.item.key)
            .collect();
        assert_eq!(found, expected, "{C}: {filter:?}");
    }
    clear_items(store, C).await;
}

/// Time to live: an item expired at the reading time is invisible to `get_item`,
/// `search_items` and `list_namespaces`; a sweep deletes it, but not an item written again
/// with a later expiry, nor one without any.
pub async fn item_expiry(store: &dyn CheckpointStore) {
    const C: &str = "item_expiry";
    if !store.supports_items() {
        return;
    }
    clear_items(store, C).await;
    let space = ns(&["ttl"]);
    let other = ns(&["ttl", "short"]);
    let mut batch = WriteBatch::new();
    batch
        .put_item(
            Item::new(other.clone(), "short", json!(1))
                .written_at(1_000)
                .with_ttl(Duration::from_millis(500)),
        )
        .put_item(Item::new(space.clone(), "forever", json!(2)).written_at(1_000));
    commit(store, batch, C).await;
    assert!(ok(store.get_item(&other, "short", 1_499).await, C).is_some());
    assert!(
        ok(store.get_item(&other, "short", 1_500).await, C).is_none(),
        "{C}: an expired item is not read"
    );
    let q = |now| ItemQuery::new(space.clone()).at(now);
    assert_eq!(ok(store.search_items(&q(1_499)).await, C).len(), 2);
    assert_eq!(
        keys(&ok(store.search_items(&q(1_500)).await, C)),
        ["ttl:forever"],
        "{C}: an expired item is not found"
    );
    assert_eq!(
        ok(store.list_namespaces(&space, 1_500).await, C),
        std::slice::from_ref(&space),
        "{C}: a namespace of expired items only is not listed"
    );
    ok(store.sweep_expired(1_500).await, C);
    let left = ok(store.scan_items(&Namespace::root()).await, C);
    assert_eq!(
        left.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["forever"],
        "{C}: a sweep deletes expired items"
    );
    // A conditional delete of an item written again since it expired keeps it.
    let mut batch = WriteBatch::new();
    batch.put_item(
        Item::new(other.clone(), "short", json!(3))
            .written_at(2_000)
            .with_ttl(Duration::from_millis(500)),
    );
    batch.push(Op::DeleteItem {
        namespace: other.clone(),
        key: "short".into(),
        if_expired_at: Some(2_100),
    });
    commit(store, batch, C).await;
    assert!(
        ok(store.get_item(&other, "short", 2_100).await, C).is_some(),
        "{C}: a sweep's delete keeps an item that is no longer expired"
    );
    clear_items(store, C).await;
}

/// Semantic search: items ranked by cosine similarity to the query's vector, within the
/// prefix, filtered, expired ones left out; the ranking follows items written, replaced and
/// deleted after the first search (the index is kept up to date); items without a vector
/// are not found by a semantic query.
pub async fn item_semantic_search(store: &dyn CheckpointStore) {
    const C: &str = "item_semantic_search";
    if !store.supports_items() {
        return;
    }
    clear_items(store, C).await;
    let embedder = HashEmbedder::new(256);
    let embed = |t: &str| {
        let e = embedder;
        let t = t.to_owned();
        async move { e.embed(&[t]).await.expect("embeds").remove(0) }
    };
    let space = ns(&["docs", "acme"]);
    let texts = [
        ("tea", "green tea with lemon", json!({"kind": "drink"})),
        ("coffee", "black coffee no sugar", json!({"kind": "drink"})),
        ("bike", "a red bike with a bell", json!({"kind": "thing"})),
        ("teapot", "a teapot for green tea", json!({"kind": "thing"})),
    ];
    let mut batch = WriteBatch::new();
    for (k, text, value) in &texts {
        batch.put_item(
            Item::new(space.clone(), *k, value.clone()).with_embedding(embed(text).await),
        );
    }
    batch
        .put_item(Item::new(space.clone(), "plain", json!({"kind": "drink"})))
        .put_item(
            Item::new(ns(&["docs", "acme-corp"]), "tea", json!({}))
                .with_embedding(embed("green tea").await),
        )
        .put_item(
            Item::new(space.clone(), "old-tea", json!({}))
                .written_at(0)
                .with_ttl(Duration::from_millis(10))
                .with_embedding(embed("green tea").await),
        );
    commit(store, batch, C).await;
    let query = |filter: Option<Filter>, v: Vec<f32>| {
        let mut q = ItemQuery::new(space.clone()).vector(v).limit(3).at(100);
        q.filter = filter;
        q
    };
    let v = embed("green tea").await;
    let hits = ok(
        store.search_items(&query(None, v.clone()).limit(2)).await,
        C,
    );
    assert_eq!(
        keys(&hits),
        ["docs/acme:tea", "docs/acme:teapot"],
        "{C}: ranked by similarity, within the prefix, without expired items"
    );
    let scores: Vec<f32> = hits.iter().map(|h| h.score.expect("scored")).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] > 0.5,
        "{C}: scores descend: {scores:?}"
    );
    let hits = ok(
        store
            .search_items(&query(Some(Filter::eq("kind", "thing")), v.clone()))
            .await,
        C,
    );
    assert_eq!(
        keys(&hits),
        ["docs/acme:teapot", "docs/acme:bike"],
        "{C}: filtered"
    );
    // Changes after the index was built.
    let mut batch = WriteBatch::new();
    batch
        .delete_item(&space, "tea")
        .put_item(
            Item::new(space.clone(), "bike", json!({"kind": "thing"}))
                .with_embedding(embed("green tea bike").await),
        )
        .put_item(
            Item::new(space.clone(), "matcha", json!({}))
                .with_embedding(embed("green tea matcha latte").await),
        );
    commit(store, batch, C).await;
    let hits = ok(store.search_items(&query(None, v.clone())).await, C);
    assert_eq!(
        keys(&hits),
        ["docs/acme:bike", "docs/acme:matcha", "docs/acme:teapot"],
        "{C}: the ranking follows later writes and deletes"
    );
    let hits = ok(
        store.search_items(&query(None, v).offset(1).limit(1)).await,
        C,
    );
    assert_eq!(keys(&hits), ["docs/acme:matcha"], "{C}: paged");
    clear_items(store, C).await;
}

/// Item writes commit with the rest of their batch: a batch with a stale fence applies none
/// of its items (nor deletes any).
pub async fn item_atomicity(store: &dyn CheckpointStore) {
    const C: &str = "item_atomicity";
    if !store.supports_items() {
        return;
    }
    expect_empty(store, C).await;
    clear_items(store, C).await;
    let space = ns(&["atomic"]);
    let run = "item-fenced";
    let old = ok(store.acquire_lease(run, Duration::from_secs(600)).await, C);
    let old_epoch = old.epoch();
    ok(store.release_lease(old).await, C);
    let new = ok(store.acquire_lease(run, Duration::from_secs(600)).await, C);
    let mut batch = WriteBatch::new();
    batch
        .fence(run, new.epoch())
        .put_run(record(run, RunStatus::Running, 1))
        .put_item(Item::new(space.clone(), "kept", json!(1)));
    commit(store, batch, C).await;
    let mut batch = WriteBatch::new();
    batch
        .put_checkpoint(run, 1, bytes("stale"))
        .put_item(Item::new(space.clone(), "stale", json!(2)))
        .delete_item(&space, "kept")
        .fence(run, old_epoch);
    assert!(
        matches!(store.commit(batch).await, Err(StoreError::Fenced { .. })),
        "{C}: a stale fence fails the batch"
    );
    assert!(
        ok(store.get_item(&space, "stale", 0).await, C).is_none(),
        "{C}: a fenced batch puts no item"
    );
    assert!(
        ok(store.get_item(&space, "kept", 0).await, C).is_some(),
        "{C}: a fenced batch deletes no item"
    );
    assert!(ok(store.get_checkpoint(run, 1).await, C).is_none());
    ok(store.release_lease(new).await, C);
    delete_runs(store, &[run], C).await;
    clear_items(store, C).await;
}
