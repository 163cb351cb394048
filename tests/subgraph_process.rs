//! An interrupt inside a subgraph, raised by one process and resumed by another. The first
//! process is this test binary run again as the ignored test `subgraph_child`: it runs the
//! graph on a sled store until it stops at the interrupt, and exits. This process then opens
//! the same store, finds the interrupt, answers it, and finishes the run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use agentgraph::prelude::*;
use serde::{Deserialize, Serialize};

const CHILD_DIR: &str = "AGENTGRAPH_SUBGRAPH_CHILD_DIR";

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
struct Order {
    item: String,
    #[reducer(append)]
    log: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
struct Approval {
    item: String,
    #[reducer(append)]
    log: Vec<String>,
}

/// Appends `line` to the side-effect log in `dir`: which process ran which node.
fn side_effect(dir: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("effects.log"))
        .unwrap();
    writeln!(f, "{} {line}", std::process::id()).unwrap();
}

/// START -> take -> approval (a subgraph: check -> decide) -> ship -> END.
fn graph(dir: &Path) -> CompiledGraph<Order> {
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

fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .shared_store(store.clone())
        .run_id("order-7")
        .durability(Durability::Sync)
}

#[test]
#[ignore = "the first process of `an_interrupt_in_a_subgraph_is_resumed_by_another_process`"]
fn subgraph_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.join("db")).unwrap());
        let input = Order {
            item: "a chair".into(),
            log: Vec::new(),
        };
        match graph(&dir).run_with(input, config(&store)).await {
            Err(Error::Interrupted(_)) => {}
            other => panic!("expected the run to stop at the interrupt: {other:?}"),
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_in_a_subgraph_is_resumed_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["subgraph_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "the first process failed: {status}");

    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let g = graph(dir.path());
    let waiting = g
        .history(store.clone())
        .interrupts("order-7")
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].path, ["approval"]);
    assert_eq!(
        (waiting[0].node.as_str(), &waiting[0].payload),
        ("decide", &serde_json::json!("ship a chair?"))
    );

    let resume = Resume::new().answer(&waiting[0].id, "approved");
    let state = g
        .resume_with("order-7", resume, config(&store))
        .await
        .unwrap();
    assert_eq!(
        state.log,
        ["taken", "checked a chair", "approved", "shipped"]
    );

    // The first process ran take, check and decide; this one only decide (again) and ship.
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    let lines: Vec<(&str, &str)> = effects
        .lines()
        .map(|l| l.split_once(' ').unwrap())
        .collect();
    let me = std::process::id().to_string();
    let first: Vec<_> = lines
        .iter()
        .filter(|(p, _)| *p != me)
        .map(|(_, n)| *n)
        .collect();
    let second: Vec<_> = lines
        .iter()
        .filter(|(p, _)| *p == me)
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(first, ["take", "check", "decide"]);
    assert_eq!(second, ["decide", "ship"]);
}
