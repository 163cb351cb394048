//! What the control API's tests share: the graphs they register, requests with the token,
//! and waiting for a run's status.

use std::time::Duration;

use agentgraph_engine::{
    BoxError, CheckpointStore, Context, END, GraphBuilder, GraphRegistry, RunStatus, START,
};
use agentgraph_monitor::Server;
use serde_json::Value;

use super::{Doc, DocUpdate, url};

/// The token of the control tests' monitors.
pub const TOKEN: &str = "control-token";

/// `review` (a node that waits on an interrupt, then notes the answer), `count` (adds a
/// round) and `slow` (a node that sleeps for an hour).
pub fn registry() -> GraphRegistry {
    let mut review = GraphBuilder::<Doc>::new();
    review
        .named("review")
        .add_node("ask", |_, ctx: Context| async move {
            let verdict: String = ctx.interrupt("approve?")?;
            Ok::<_, BoxError>(DocUpdate::new().notes(vec![verdict]))
        })
        .add_edge(START, "ask")
        .add_edge("ask", END);
    let mut count = GraphBuilder::<Doc>::new();
    count
        .named("count")
        .add_node("inc", |_, _| async { Ok(DocUpdate::new().rounds(1)) })
        .add_edge(START, "inc")
        .add_edge("inc", END);
    let mut slow = GraphBuilder::<Doc>::new();
    slow.named("slow")
        .add_node("wait", |_, _| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(DocUpdate::new())
        })
        .add_edge(START, "wait")
        .add_edge("wait", END);
    GraphRegistry::new()
        .with("review", review.compile().unwrap())
        .with("count", count.compile().unwrap())
        .with("slow", slow.compile().unwrap())
}

/// `POST path` with `body` and the token: the status and the JSON answer (`null` if none).
pub async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url(server.local_addr(), path))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET path` with the token: the status and the JSON answer (`null` if none).
pub async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url(server.local_addr(), path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits (up to a minute) until `run`'s record in `store` has `status`.
pub async fn until_status(store: &dyn CheckpointStore, run: &str, status: RunStatus) {
    for _ in 0..6000 {
        if let Some(record) = store.get_run(run).await.unwrap()
            && record.status == status
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run `{run}` never reached {status}");
}
