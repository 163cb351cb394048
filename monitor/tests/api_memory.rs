//! The memory routes: `GET /api/memory` (items under a namespace, filtered, paged, without
//! embeddings) and `GET /api/memory/namespaces`.

mod common;

use agentgraph_checkpoint::WriteBatch;
use agentgraph_engine::items::{Item, Namespace};
use common::{monitor, store, url};
use serde_json::{Value, json};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let response = reqwest::get(url(addr, path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_items_and_namespaces() {
    let store = store();
    let mut batch = WriteBatch::new();
    for (ns, key, value) in [
        (["tenant", "acme"], "ann", json!({"team": "red"})),
        (["tenant", "acme"], "bob", json!({"team": "blue"})),
        (["tenant", "acme-corp"], "cyd", json!({"team": "red"})),
    ] {
        batch.put_item(Item::new(Namespace::new(ns), key, value).with_embedding(vec![1.0, 0.0]));
    }
    store.commit(batch).await.unwrap();
    let server = monitor(store).await;
    let addr = server.local_addr();

    let (status, body) = get(addr, "/api/memory?namespace=tenant/acme").await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ann", "bob"], "acme is not a prefix of acme-corp");
    assert_eq!(body["items"][0]["namespace"], json!(["tenant", "acme"]));
    assert_eq!(body["items"][0]["score"], Value::Null);
    assert!(body["items"][0].get("embedding").is_none());

    let filter = "%7B%22eq%22%3A%5B%22team%22%2C%22red%22%5D%7D"; // {"eq":["team","red"]}
    let (_, body) = get(
        addr,
        &format!("/api/memory?filter={filter}&limit=1&offset=1"),
    )
    .await;
    assert_eq!(body["items"][0]["key"], "cyd");

    let (status, body) = get(addr, "/api/memory?filter=nope").await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = get(addr, "/api/memory/namespaces?namespace=tenant").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["namespaces"],
        json!([["tenant", "acme"], ["tenant", "acme-corp"]])
    );
    server.shutdown().await.unwrap();
}
