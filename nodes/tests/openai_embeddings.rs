//! The OpenAI-compatible embeddings provider against the scripted server: the request sent,
//! vectors put back in the texts' order, batches, retries, malformed answers; and semantic
//! memory in a graph with it as the run's embedder.

mod support;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
use agentgraph_engine::items::{Embedder, Namespace};
use agentgraph_engine::{BoxError, Context, END, GraphBuilder, RunConfig, START};
use agentgraph_nodes::model::ModelError;
use agentgraph_nodes::model::openai::{OpenAiEmbedder, OpenAiModel};
use serde_json::{Value, json};
use support::{Reply, Scripted};

fn embedder(server: &Scripted) -> OpenAiEmbedder {
    OpenAiModel::builder("chat")
        .base_url(&server.base_url)
        .no_api_key()
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap()
        .embedder("embed-small")
}

/// An answer with the vectors of `(index, vector)`, in that order.
fn answer(vectors: &[(usize, [f32; 2])]) -> Reply {
    let data: Vec<Value> = vectors
        .iter()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    Reply::json(
        json!({"object": "list", "data": data, "model": "embed-small", "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
    )
}

#[tokio::test]
async fn vectors_come_back_in_the_texts_order() {
    let server = Scripted::start([answer(&[(1, [0.0, 1.0]), (0, [1.0, 0.0])])]).await;
    let e = embedder(&server).dimensions(2);
    let v = e
        .embed(&["tea".to_owned(), "bike".to_owned()])
        .await
        .unwrap();
    assert_eq!(v, [vec![1.0, 0.0], vec![0.0, 1.0]]);
    let sent = &server.requests()[0].body;
    assert_eq!(sent["model"], "embed-small");
    assert_eq!(sent["input"], json!(["tea", "bike"]));
    assert_eq!(sent["dimensions"], 2);
    assert_eq!(sent["encoding_format"], "float");
}

#[tokio::test]
async fn texts_go_in_batches_and_failures_are_retried() {
    let server = Scripted::start([
        Reply::error(500, "busy"),
        answer(&[(0, [1.0, 0.0]), (1, [0.0, 1.0])]),
        answer(&[(0, [0.5, 0.5])]),
    ])
    .await;
    let e = embedder(&server).batch_size(2);
    let texts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let v = e.embed_texts(&texts).await.unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[2], [0.5, 0.5]);
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one retry, then two batches");
    assert_eq!(requests[2].body["input"], json!(["c"]));
}

#[tokio::test]
async fn a_wrong_number_of_vectors_is_malformed() {
    let server = Scripted::start([answer(&[(0, [1.0, 0.0])]), Reply::raw("not json")]).await;
    let e = embedder(&server);
    let two = ["a".to_owned(), "b".to_owned()];
    assert!(matches!(
        e.embed_texts(&two).await,
        Err(ModelError::Malformed { .. })
    ));
    assert!(matches!(
        e.embed_texts(&two[..1]).await,
        Err(ModelError::Malformed { .. })
    ));
}

#[tokio::test]
async fn semantic_memory_through_the_provider() {
    // The put embeds one text, the search one.
    let server = Scripted::start([answer(&[(0, [1.0, 0.0])]), answer(&[(0, [0.9, 0.1])])]).await;
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let ns = || Namespace::new(["users", "ann"]);
    #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
    #[state(crate = agentgraph_engine)]
    struct Found {
        key: String,
    }
    let mut b = GraphBuilder::<Found>::new();
    b.add_node("learn", move |_, ctx: Context| async move {
        ctx.memory()
            .put_indexed(
                ns(),
                "tea",
                &json!({"likes": "green tea"}),
                "likes green tea",
            )
            .await?;
        Ok::<_, BoxError>(FoundUpdate::new())
    })
    .add_node("recall", move |_, ctx: Context| async move {
        let hits = ctx
            .memory()
            .search_text(ns(), "what does ann drink", 1)
            .await?;
        Ok::<_, BoxError>(FoundUpdate::new().key(hits[0].item.key.clone()))
    })
    .add_edge(START, "learn")
    .add_edge("learn", "recall")
    .add_edge("recall", END);
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("r")
        .embedder(Arc::new(embedder(&server)));
    let done = b
        .compile()
        .unwrap()
        .run_with(Found::default(), config)
        .await
        .unwrap();
    assert_eq!(done.key, "tea");
    assert_eq!(
        server.requests()[1].body["input"],
        json!(["what does ann drink"])
    );
    let item = store.get_item(&ns(), "tea", 0).await.unwrap().unwrap();
    assert_eq!(item.embedding, Some(vec![1.0, 0.0]));
}
