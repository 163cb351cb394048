//! The engine on a PostgreSQL store: a run that fails half-way is resumed by another
//! connection (another process, in all but name), running only what had not finished.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use agentgraph::prelude::*;
use agentgraph::store::{CheckpointStore, StoreError};
use agentgraph_postgres::PostgresStore;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Notes {
    #[reducer(append)]
    notes: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_resumes_from_another_connection() {
    let calls: Arc<[AtomicU32; 3]> = Arc::new(Default::default());
    let fail = Arc::new(AtomicBool::new(true));
    let mut graph = GraphBuilder::<Notes>::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let (calls, fail) = (calls.clone(), fail.clone());
        graph.add_node(name, move |_, _| {
            calls[i].fetch_add(1, Ordering::SeqCst);
            let failing = i == 2 && fail.load(Ordering::SeqCst);
            async move {
                if failing {
                    return Err::<NotesUpdate, BoxError>("c failed".into());
                }
                Ok(NotesUpdate::new().notes(vec![name.to_owned()]))
            }
        });
    }
    graph
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    let graph = graph.compile().unwrap();

    let schema = support::fresh_schema("engine");
    let first = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let config = RunConfig::new()
        .store(first)
        .run_id("report-1")
        .durability(Durability::Sync);
    assert!(graph.run_with(Notes::default(), config).await.is_err());

    fail.store(false, Ordering::SeqCst);
    let second = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    // The failed run's lease was dropped: its release runs in a spawned task, and until it
    // lands another process sees the run busy.
    let mut released = false;
    for _ in 0..200 {
        match CheckpointStore::acquire_lease(&second, "report-1", Duration::from_secs(5)).await {
            Ok(lease) => {
                CheckpointStore::release_lease(&second, lease)
                    .await
                    .unwrap();
                released = true;
                break;
            }
            Err(StoreError::RunBusy { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(released, "the failed run's lease was released");
    let done = graph
        .resume("report-1", RunConfig::new().store(second.clone()))
        .await
        .unwrap();
    assert_eq!(done.notes, ["a", "b", "c"]);
    let calls: Vec<u32> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(calls, [1, 1, 2], "only the failed node ran again");
    let record = CheckpointStore::get_run(&second, "report-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, agentgraph::store::RunStatus::Completed);
}

/// A lease says whether the store held the run or a run of its subgraphs when it was taken
/// (`Lease::run_vacant`): an engine that trusts it still refuses a run id that is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_says_whether_its_run_is_vacant() {
    let store = support::fresh_store("vacant").await;
    let ttl = Duration::from_secs(5);
    let vacant = |run: &'static str| {
        let store = store.clone();
        async move {
            let lease = CheckpointStore::acquire_lease(&store, run, ttl)
                .await
                .unwrap();
            let vacant = lease.run_vacant();
            CheckpointStore::release_lease(&store, lease).await.unwrap();
            vacant
        }
    };
    assert!(vacant("v-1").await);
    let mut batch = agentgraph::store::WriteBatch::new();
    batch
        .put_run(agentgraph::store::RunRecord::new(
            "v-1",
            agentgraph::store::RunStatus::Completed,
            7,
            0,
        ))
        .put_run(agentgraph::store::RunRecord::new(
            "v-2/@sub/1",
            agentgraph::store::RunStatus::Completed,
            7,
            0,
        ))
        .put_run(agentgraph::store::RunRecord::new(
            "v-30",
            agentgraph::store::RunStatus::Completed,
            7,
            0,
        ));
    CheckpointStore::commit(&store, batch).await.unwrap();
    assert!(!vacant("v-1").await, "the run is stored");
    assert!(!vacant("v-2").await, "a run of its subgraphs is stored");
    assert!(vacant("v-3").await, "`v-30` is another run");

    // The engine: a second run with a taken id is refused, a first one runs.
    let mut graph = GraphBuilder::<Notes>::new();
    graph
        .add_node("a", |_, _| async {
            Ok(NotesUpdate::new().notes(vec!["a".to_owned()]))
        })
        .add_edge(START, "a")
        .add_edge("a", END);
    let graph = graph.compile().unwrap();
    let config = || RunConfig::new().store(store.clone()).run_id("v-4");
    let state = graph.run_with(Notes::default(), config()).await.unwrap();
    assert_eq!(state.notes, ["a"]);
    let mut refused = false;
    for _ in 0..200 {
        match graph.run_with(Notes::default(), config()).await {
            Err(Error::RunExists(run)) => {
                assert_eq!(run, "v-4");
                refused = true;
                break;
            }
            // The first run's lease is released in a spawned task.
            Err(Error::Store(StoreError::RunBusy { .. })) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("{:?}", other.map(|s| s.notes)),
        }
    }
    assert!(refused);
}

/// Memory on PostgreSQL: a parallel step whose sibling fails keeps the finished task's memory
/// write in its pending write, uncommitted; another connection resumes the run and commits it
/// once, with the step; a retried node's failed attempt writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_writes_commit_once_with_their_step() {
    use agentgraph::memory::Namespace;
    let ns = || Namespace::new(["pg", "memory"]);
    let fail = Arc::new(AtomicBool::new(true));
    let writer_runs = Arc::new(AtomicU32::new(0));
    let mut graph = GraphBuilder::<Notes>::new();
    let w = writer_runs.clone();
    graph.add_node("writer", move |_, ctx: Context| {
        let w = w.clone();
        async move {
            w.fetch_add(1, Ordering::SeqCst);
            let memory = ctx.memory();
            let n = memory
                .get(&ns(), "count")
                .await?
                .and_then(|i| i.value.as_u64())
                .unwrap_or(0);
            memory.put(ns(), "count", &(n + 1))?;
            Ok::<_, BoxError>(NotesUpdate::new().notes(vec!["writer".into()]))
        }
    });
    let f = fail.clone();
    graph.add_node("failer", move |_, ctx: Context| {
        let f = f.clone();
        async move {
            ctx.memory().put(ns(), "failer", &ctx.attempt())?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if f.load(Ordering::SeqCst) {
                return Err::<NotesUpdate, BoxError>("down".into());
            }
            Ok(NotesUpdate::new().notes(vec!["failer".into()]))
        }
    });
    graph
        .add_edges(START, ["writer", "failer"])
        .add_edge("writer", END)
        .add_edge("failer", END);
    let graph = graph.compile().unwrap();
    let first = support::fresh_store("memory").await;
    let store: Arc<dyn CheckpointStore> = Arc::new(first.clone());
    let config = |store: &Arc<dyn CheckpointStore>| {
        RunConfig::new()
            .store(store.clone())
            .run_id("mem")
            .mode(Mode::Parallel)
            .durability(Durability::Sync)
    };
    assert!(
        graph
            .run_with(Notes::default(), config(&store))
            .await
            .is_err()
    );
    assert!(store.scan_items(&ns()).await.unwrap().is_empty());
    fail.store(false, Ordering::SeqCst);
    let other: Arc<dyn CheckpointStore> = Arc::new(
        PostgresStore::connect_with(first.options().clone())
            .await
            .unwrap(),
    );
    // The failed run's lease is released in a spawned task: until then the run is busy.
    let mut resumed = None;
    for _ in 0..200 {
        match graph.resume("mem", config(&other)).await {
            Err(Error::Store(StoreError::RunBusy { .. })) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => {
                resumed = Some(other);
                break;
            }
        }
    }
    resumed.expect("the run's lease is released").unwrap();
    assert_eq!(writer_runs.load(Ordering::SeqCst), 1);
    let items = store.scan_items(&ns()).await.unwrap();
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["count", "failer"]);
    assert_eq!(
        items[0].value,
        serde_json::json!(1),
        "the writer's write, once"
    );
}
