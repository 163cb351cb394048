//! Control of a run across processes, with a real sled store. The first process is this test
//! binary run again as the ignored test `control_child`, in one of two roles:
//!
//! - `subgraph`: it runs a graph until an interrupt inside a subgraph stops it, and exits. This
//!   process then opens the same store, finds the interrupt, answers it, and finishes the run.
//! - `backoff`: it runs a node that fails twice, with a long delay before its third attempt;
//!   this process kills it with SIGKILL during that delay, then resumes the run, which goes on
//!   at attempt 3 (after what is left of the delay), not attempt 1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agentgraph::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

const CHILD_DIR: &str = "AGENTGRAPH_CONTROL_CHILD_DIR";
const CHILD_ROLE: &str = "AGENTGRAPH_CONTROL_CHILD_ROLE";

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
        .store(store.clone())
        .run_id("order-7")
        .durability(Durability::Sync)
}

#[test]
#[ignore = "the first process of the tests in this file; they start it themselves"]
fn control_child() {
    let (Some(dir), Ok(role)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_ROLE)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.join("db")).unwrap());
        match role.as_str() {
            "subgraph" => {
                let input = Order {
                    item: "a chair".into(),
                    log: Vec::new(),
                };
                match graph(&dir).run_with(input, config(&store)).await {
                    Err(Error::Interrupted(_)) => {}
                    other => panic!("expected the run to stop at the interrupt: {other:?}"),
                }
            }
            "backoff" => {
                let run = flaky(&dir).run_with(Order::default(), config(&store));
                let mut events = run.events();
                let handle = run.spawn();
                while let Some(e) = events.next().await {
                    // Emitted once the retry is durable: tell the parent, which kills us.
                    if let EventKind::RetryScheduled { attempt: 3, .. } = e.unwrap().kind {
                        std::fs::write(dir.join("retry-3-scheduled"), b"").unwrap();
                    }
                }
                panic!("the run should have been killed: {:?}", handle.await);
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn start_child(dir: &Path, role: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["control_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROLE, role)
        .spawn()
        .unwrap()
}

/// START -> fetch -> END, where `fetch` fails its first two attempts; the delay before the
/// third is 1.5 s.
fn flaky(dir: &Path) -> CompiledGraph<Order> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_during_a_backoff_resumes_at_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_child(dir.path(), "backoff");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !dir.path().join("retry-3-scheduled").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited early: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never scheduled its retry"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let g = flaky(dir.path());
    let run = g.resume("order-7", config(&store));
    let events = run.events();
    let state = run.await.unwrap();
    assert_eq!(state.log, ["fetched at attempt 3"]);
    let attempts: Vec<u32> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::NodeStarted { attempt, .. } => Some(attempt),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(attempts, [3], "the attempt count continues after the crash");
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    let runs: Vec<_> = effects
        .lines()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(runs, ["fetch #1", "fetch #2", "fetch #3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_in_a_subgraph_is_resumed_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let status = start_child(dir.path(), "subgraph").wait().unwrap();
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
