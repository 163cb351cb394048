//! What the cross-process tests (`tests/control_processes.rs`) and their first process (the
//! binary `control_child`, `src/bin/control_child.rs`) share: the graphs, their states and
//! side effects, and the run's configuration.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use serde::{Deserialize, Serialize};

pub const CHILD_DIR: &str = "AGENTGRAPH_CONTROL_CHILD_DIR";
pub const CHILD_ROLE: &str = "AGENTGRAPH_CONTROL_CHILD_ROLE";

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
pub struct Order {
    pub item: String,
    #[reducer(append)]
    pub log: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
pub struct Approval {
    pub item: String,
    #[reducer(append)]
    pub log: Vec<String>,
}

/// Appends `line` to the side-effect log in `dir`: which process ran which node.
pub fn side_effect(dir: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("effects.log"))
        .unwrap();
    writeln!(f, "{} {line}", std::process::id()).unwrap();
}

/// START -> take -> approval (a subgraph: check -> decide) -> ship -> END.
pub fn graph(dir: &Path) -> CompiledGraph<Order> {
    let mut inner = GraphBuilder::<Approval>::new();
    let d = dir.to_owned();
    inner.add_node("check", move |s: Arc<Approval>, _| {
        side_effect(&d, "check");
        async move { Ok(ApprovalUpdate::new().log(vec![format!("checked {}", s.item)])) }
    });
    let d = dir.to_owned();
    inner.add_node("decide", move |s: Arc<Approval>, ctx: Context| {
        side_effect(&d, "decide");
        async move {
            let verdict: String = ctx.interrupt(&format!("ship {}?", s.item))?;
            Ok::<_, BoxError>(ApprovalUpdate::new().log(vec![verdict]))
        }
    });
    inner
        .add_edge(START, "check")
        .add_edge("check", "decide")
        .add_edge("decide", END);

    let mut outer = GraphBuilder::<Order>::new();
    let d = dir.to_owned();
    outer.add_node("take", move |_, _| {
        side_effect(&d, "take");
        async { Ok(OrderUpdate::new().log(vec!["taken".to_owned()])) }
    });
    let d = dir.to_owned();
    outer.add_node("ship", move |_, _| {
        side_effect(&d, "ship");
        async { Ok(OrderUpdate::new().log(vec!["shipped".to_owned()])) }
    });
    outer
        .add_subgraph(
            "approval",
            inner.compile().unwrap(),
            |o: &Order| Approval {
                item: o.item.clone(),
                log: Vec::new(),
            },
            |a: Approval| OrderUpdate::new().log(a.log),
        )
        .add_edge(START, "take")
        .add_edge("take", "approval")
        .add_edge("approval", "ship")
        .add_edge("ship", END);
    outer.compile().unwrap()
}

pub fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id("order-7")
        .durability(Durability::Sync)
}

/// START -> fetch -> END, where `fetch` fails its first two attempts; the delay before the
/// third is 1.5 s.
pub fn flaky(dir: &Path) -> CompiledGraph<Order> {
    let mut b = GraphBuilder::<Order>::new();
    let d = dir.to_owned();
    b.add_node("fetch", move |_, ctx: Context| {
        side_effect(&d, &format!("fetch #{}", ctx.attempt()));
        async move {
            if ctx.attempt() < 3 {
                return Err::<OrderUpdate, BoxError>("the service is down".into());
            }
            Ok(OrderUpdate::new().log(vec![format!("fetched at attempt {}", ctx.attempt())]))
        }
    })
    .retry(
        "fetch",
        RetryPolicy::new(3)
            .backoff(Duration::from_millis(1), Duration::from_millis(1500))
            .factor(1500.0)
            .jitter(false),
    )
    .add_edge(START, "fetch")
    .add_edge("fetch", END);
    b.compile().unwrap()
}
