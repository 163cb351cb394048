//! Tokio tasks that end without a result: a node's attempt (`Error::TaskLost`), a spawned run
//! (`Error::RunLost`), the checkpoint writer of `Durability::Async` (`Error::WriterLost`). Each
//! error carries how the task ended (`TaskEnd`).

mod common;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::{BoxFuture, Lease, MemoryStore, RunRecord, StoreError, WriteBatch};
use agentgraph_engine::{
    BoxError, CheckpointStore, Durability, END, Error, GraphBuilder, Mode, RunConfig, RunStatus,
    START, TaskEnd,
};
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
#[derive(Debug, Default)]
struct PanickingStore {
    inner: MemoryStore,
    panicked: AtomicBool,
}

type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

impl CheckpointStore for PanickingStore {
    fn commit(&self, batch: WriteBatch) -> StoreFuture<'_, ()> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("the store cannot commit");
        }
        self.inner.commit(batch)
    }
    fn flush(&self) -> StoreFuture<'_, ()> {
        self.inner.flush()
    }
    fn get_run<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        self.inner.get_run(run)
    }
    fn list_runs<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<RunRecord>> {
        self.inner.list_runs(after, limit)
    }
    fn get_checkpoint<'a>(&'a self, run: &'a str, step: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.get_checkpoint(run, step)
    }
    fn latest_checkpoint<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<(u64, Vec<u8>)>> {
        self.inner.latest_checkpoint(run)
    }
    fn list_checkpoints<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.list_checkpoints(run, after, limit)
    }
    fn get_blobs<'a>(
        &'a self,
        run: &'a str,
        field: u32,
        from: u64,
        to: u64,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.get_blobs(run, field, from, to)
    }
    fn get_pending_writes<'a>(
        &'a self,
        run: &'a str,
        step: u64,
    ) -> StoreFuture<'a, Vec<(u32, Vec<u8>)>> {
        self.inner.get_pending_writes(run, step)
    }
    fn get_events<'a>(
        &'a self,
        run: &'a str,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        self.inner.get_events(run, after, limit)
    }
    fn last_event<'a>(&'a self, run: &'a str) -> StoreFuture<'a, Option<u64>> {
        self.inner.last_event(run)
    }
    fn acquire_lease<'a>(&'a self, run: &'a str, ttl: Duration) -> StoreFuture<'a, Lease> {
        self.inner.acquire_lease(run, ttl)
    }
    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, ()> {
        self.inner.renew_lease(lease, ttl)
    }
    fn release_lease(&self, lease: Lease) -> StoreFuture<'_, ()> {
        self.inner.release_lease(lease)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_writer_that_panics_is_a_lost_writer() {
    let store: Arc<dyn CheckpointStore> = Arc::new(PanickingStore::default());
    let graph = common::chain(3, |_, _| async { Ok(TraceUpdate::new().count(1)) });
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
