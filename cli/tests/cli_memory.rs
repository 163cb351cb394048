//! `agentgraph memory`: namespaces, one item, filtered searches, over a sled store.

mod common;

use std::sync::Arc;

use agentgraph::memory::{Item, Namespace};
use agentgraph::prelude::*;
use agentgraph::store::WriteBatch;
use common::{failure, json, stdout};
use serde_json::json as j;

fn store_with_memory(dir: &std::path::Path) {
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut batch = WriteBatch::new();
        for (ns, key, value) in [
            (["tenant", "acme"], "ann", j!({"team": "red", "age": 41})),
            (["tenant", "acme"], "bob", j!({"team": "blue", "age": 29})),
            (
                ["tenant", "acme-corp"],
                "cyd",
                j!({"team": "red", "age": 50}),
            ),
        ] {
            batch.put_item(Item::new(Namespace::new(ns), key, value));
        }
        store.commit(batch).await.unwrap();
        store.flush().await.unwrap();
    });
}

#[test]
fn memory_lists_gets_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    store_with_memory(&path);

    assert_eq!(
        stdout(&path, &["memory", "list", "--namespace", "tenant"]),
        "tenant/acme\ntenant/acme-corp\n"
    );
    assert_eq!(
        json(&path, &["memory", "list", "--namespace", "tenant/acme"]),
        j!({"namespaces": [["tenant", "acme"]]})
    );
    let got = json(&path, &["memory", "get", "tenant/acme", "bob"]);
    assert_eq!(got["value"], j!({"team": "blue", "age": 29}));
    let text = stdout(&path, &["memory", "get", "tenant/acme", "ann"]);
    assert!(text.contains("\"team\": \"red\""), "{text}");
    assert!(failure(&path, &["memory", "get", "tenant/acme", "cyd"]).contains("no item"));

    let hits = json(
        &path,
        &[
            "memory",
            "search",
            "--namespace",
            "tenant",
            "--filter",
            r#"{"gte": ["age", 41]}"#,
        ],
    );
    let keys: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ann", "cyd"]);
    let table = stdout(&path, &["memory", "search", "--namespace", "tenant/acme"]);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(table.contains("tenant/acme  bob"), "{table}");
    assert!(!table.contains("cyd"), "{table}");
    assert!(failure(&path, &["memory", "search", "--filter", "nope"]).contains("--filter"));
}
