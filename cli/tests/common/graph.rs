//! The test graph: what the CLI tests and the crash test's child process
//! (`tests/cli_crash.rs`, started again as its own child) share.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use serde::{Deserialize, Serialize};

/// The state of the test graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
pub struct Work {
    /// What to do: `fail` makes `check` fail, `ask` makes it interrupt; `slow` and `steady`
    /// make `tick` loop (1,000 and 40 times), waiting 40 ms each time.
    pub topic: String,
    /// One line per node run.
    #[reducer(append)]
    pub log: Vec<String>,
    /// Steps run (each node adds one).
    #[reducer(add)]
    pub n: u64,
}

/// How many steps a run of `topic` takes.
fn rounds(topic: &str) -> u64 {
    match topic {
        "slow" => 1000,
        "steady" => 40,
        _ => 1,
    }
}

/// START -> fetch -> check -> tick -> END, where `tick` loops back to itself while `n` is
/// below the [`rounds`] of the topic.
pub fn graph() -> CompiledGraph<Work> {
    let mut b = GraphBuilder::<Work>::new();
    b.add_node("fetch", |s: Arc<Work>, _| async move {
        Ok(WorkUpdate::new()
            .log(vec![format!("fetched {}", s.topic)])
            .n(1))
    })
    .add_node("check", |s: Arc<Work>, ctx: Context| async move {
        match s.topic.as_str() {
            "fail" => Err("the checker is down".into()),
            "ask" => {
                let ok: bool = ctx.interrupt(&serde_json::json!({ "question": "publish?" }))?;
                Ok(WorkUpdate::new().log(vec![format!("answer {ok}")]).n(1))
            }
            _ => Ok(WorkUpdate::new().log(vec!["checked".to_owned()]).n(1)),
        }
    })
    .add_node("tick", |s: Arc<Work>, _| async move {
        if rounds(&s.topic) > 1 {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        Ok(WorkUpdate::new().log(vec![format!("tick {}", s.n)]).n(1))
    })
    .add_edge(START, "fetch")
    .add_edge("fetch", "check")
    .add_edge("check", "tick")
    .add_conditional_edges("tick", ["tick", END], |s: &Work| {
        if s.n < rounds(&s.topic) {
            Route::to(["tick"])
        } else {
            Route::end()
        }
    });
    b.compile().expect("the test graph compiles")
}
