//! Tokio tasks that end without a result: a node's attempt (`Error::TaskLost`), a spawned run
//! (`Error::RunLost`), the checkpoint writer of `Durability::Async` (`Error::WriterLost`). Each
//! error carries how the task ended (`TaskEnd`).

mod common;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, Durability, END, Error, GraphBuilder, Mode, RunConfig, RunStatus,
    START, TaskEnd,
};
use common::store::Hooked;
use common::{Trace, TraceUpdate};

/// A node error whose message cannot be shown: formatting it (for the `NodeFailed` event)
/// panics outside the node's own code.
#[derive(Debug)]
struct Unprintable;

impl fmt::Display for Unprintable {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("this error cannot be shown")
    }
}

impl std::error::Error for Unprintable {}

/// START -> {bad, good} -> END: `bad` fails with [`Unprintable`], `good` writes its note.
fn fan_out() -> agentgraph_engine::CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("bad", |_, _| async {
        Err::<TraceUpdate, BoxError>(Box::new(Unprintable))
    })
    .add_node("good", |_, _| async { Ok(TraceUpdate::note("good")) })
    .add_edge(START, "bad")
    .add_edge(START, "good")
    .add_edge("bad", END)
    .add_edge("good", END);
    b.compile().unwrap()
}

fn panicked(end: &TaskEnd) -> &str {
    match end {
        TaskEnd::Panicked { message } => message,
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_attempt_that_panics_outside_its_node_is_a_lost_task() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let config = RunConfig::new()
        .mode(Mode::Parallel)
        .run_id("lost")
        .store(store.clone());
    let run = fan_out().run_with(Trace::default(), config);
    // A subscriber makes the run build its events, and so format the node's error.
    let _events = run.events();
    let e = run.await.unwrap_err();
    let Error::TaskLost {
        node,
        step,
        end,
        task: _,
    } = &e
    else {
        panic!("expected a lost task, got {e:?}");
    };
    assert_eq!((node.as_str(), *step), ("bad", 1));
    assert_eq!(panicked(end), "this error cannot be shown");
    let message = e.to_string();
    assert!(
        message.contains("node `bad` at step 1") && message.contains("resume the run"),
        "{message}"
    );
    // The run failed at step 1, resumable, with its failure recorded.
    let record = store.get_run("lost").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(record.error.as_deref(), Some(message.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_run_that_panics_outside_its_nodes_is_a_lost_run() {
    let run = fan_out().run_with(
        Trace::default(),
        RunConfig::new().mode(Mode::Sequential).run_id("r"),
    );
    let _events = run.events();
    let e = run.spawn().await.unwrap_err();
    let Error::RunLost { run, end } = &e else {
        panic!("expected a lost run, got {e:?}");
    };
    assert_eq!(run, "r");
    assert_eq!(panicked(end), "this error cannot be shown");
    assert!(e.to_string().contains("run `r`"), "{e}");
}

#[test]
fn a_spawned_run_whose_runtime_shuts_down_is_a_lost_run() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("slow", |_, _| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(TraceUpdate::note("slow"))
    })
    .add_edge(START, "slow")
    .add_edge("slow", END);
    let graph = b.compile().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let handle = {
        let _inside = runtime.enter();
        graph
            .run_with(Trace::default(), RunConfig::new().run_id("r"))
            .spawn()
    };
    drop(runtime);
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    match other.block_on(handle) {
        Err(Error::RunLost {
            run,
            end: TaskEnd::Cancelled,
        }) => assert_eq!(run, "r"),
        other => panic!("expected a cancelled run, got {other:?}"),
    }
}

/// A memory store whose first commit panics, as a store with a bug would.
fn panicking_store() -> Arc<dyn CheckpointStore> {
    let panicked = AtomicBool::new(false);
    Arc::new(Hooked::new(common::memory()).on_commit(move || {
        if !panicked.swap(true, Ordering::SeqCst) {
            panic!("the store cannot commit");
        }
        None
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_writer_that_panics_is_a_lost_writer() {
    let store = panicking_store();
    // Steps slower than the writer's delay (2 ms), so that the writer commits before the run
    // ends (a run that ends sooner commits what the writer held itself).
    let graph = common::chain(3, |_, _| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(TraceUpdate::new().count(1))
    });
    let config = RunConfig::new()
        .durability(Durability::Async)
        .run_id("w")
        .store(store.clone());
    let e = graph.run_with(Trace::default(), config).await.unwrap_err();
    let Error::WriterLost { end } = &e else {
        panic!("expected a lost writer, got {e:?}");
    };
    assert_eq!(panicked(end), "the store cannot commit");
    assert!(e.to_string().contains("resume the run"), "{e}");
    // Nothing of the run was written, so its id stays free (the run records that itself).
    assert!(store.get_run("w").await.unwrap().is_none());
}
