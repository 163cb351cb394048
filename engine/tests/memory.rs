//! Long-term memory through `Context::memory`: writes committed with their step's checkpoint,
//! exactly once across retries, failing siblings, crashes and resumes; reads of a task's own
//! writes; runs without a store; semantic search with a deterministic embedder.

mod common;

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::items::{Filter, HashEmbedder, ItemQuery, Namespace};
use agentgraph_checkpoint::{MemoryStore, StoreError};
use agentgraph_engine::{
    BoxError, CheckpointStore, Context, Durability, END, GraphBuilder, MemoryError, Mode,
    RetryPolicy, RunConfig, START,
};
use common::store::Hooked;
use common::{Calls, Trace, TraceUpdate, cfg, crash_when, stores, sync_cfg};
use tokio::sync::Notify;

fn ns() -> Namespace {
    Namespace::new(["users", "ann"])
}

/// Every item under `users/ann`, as `key=value`.
async fn items(store: &Arc<dyn CheckpointStore>) -> Vec<String> {
    store
        .scan_items(&ns())
        .await
        .unwrap()
        .into_iter()
        .map(|i| format!("{}={}", i.key, i.value))
        .collect()
}

/// A node that adds 1 to the counter `key` in memory (read, then write).
async fn bump(ctx: &Context, key: &str) -> Result<u64, BoxError> {
    let memory = ctx.memory();
    let n = memory
        .get(&ns(), key)
        .await?
        .and_then(|i| i.value.as_u64())
        .unwrap_or(0);
    memory.put(ns(), key, &(n + 1))?;
    Ok(n + 1)
}

#[tokio::test]
async fn memory_outlives_runs_and_commits_with_the_checkpoint() {
    for (store, _dir) in stores() {
        let mut b = GraphBuilder::<Trace>::new();
        b.add_node("count", |_, ctx: Context| async move {
            let n = bump(&ctx, "visits").await?;
            Ok(TraceUpdate::note(n.to_string()))
        })
        .add_edge(START, "count")
        .add_edge("count", END);
        let g = b.compile().unwrap();
        for run in ["r1", "r2", "r3"] {
            let done = g
                .run_with(Trace::default(), cfg(&store, run))
                .await
                .unwrap();
            assert_eq!(done.log.len(), 1);
        }
        assert_eq!(items(&store).await, ["visits=3"]);
    }
}

#[tokio::test]
async fn a_write_is_not_visible_before_its_step_commits_and_the_task_reads_its_own() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let reached = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let mut b = GraphBuilder::<Trace>::new();
    let (r, l) = (reached.clone(), release.clone());
    b.add_node("write", move |_, ctx: Context| {
        let (r, l) = (r.clone(), l.clone());
        async move {
            let memory = ctx.memory();
            memory.put(ns(), "a", &1)?;
            memory.put(ns(), "b", &2)?;
            memory.delete(&ns(), "b")?;
            // The task's own writes, over the committed items.
            assert_eq!(memory.get(&ns(), "a").await?.unwrap().value, 1);
            assert!(memory.get(&ns(), "b").await?.is_none());
            let hits = memory.search(ItemQuery::new(ns())).await?;
            assert_eq!(hits.len(), 1);
            r.notify_one();
            l.notified().await;
            Ok(TraceUpdate::note("write"))
        }
    })
    .add_edge(START, "write")
    .add_edge("write", END);
    let g = b.compile().unwrap();
    let run = tokio::spawn(
        g.run_with(Trace::default(), sync_cfg(&store, "r"))
            .into_future(),
    );
    reached.notified().await;
    assert!(
        items(&store).await.is_empty(),
        "nothing is committed mid-step"
    );
    release.notify_one();
    run.await.unwrap().unwrap();
    assert_eq!(items(&store).await, ["a=1"]);
}

/// A retried node's failed attempts write nothing: the counter moves by one.
#[tokio::test]
async fn a_retried_node_does_not_double_its_write() {
    for (store, _dir) in stores() {
        for mode in [Mode::Sequential, Mode::Parallel] {
            let attempts = Arc::new(AtomicU32::new(0));
            let mut b = GraphBuilder::<Trace>::new();
            let a = attempts.clone();
            b.add_node("flaky", move |_, ctx: Context| {
                let a = a.clone();
                async move {
                    bump(&ctx, "retried").await?;
                    ctx.memory()
                        .put(ns(), format!("attempt-{}", ctx.attempt()), &true)?;
                    if a.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err::<TraceUpdate, BoxError>("flaky".into());
                    }
                    Ok(TraceUpdate::note("ok"))
                }
            })
            .retry(
                "flaky",
                RetryPolicy::new(5).backoff(Duration::ZERO, Duration::ZERO),
            )
            .add_edge(START, "flaky")
            .add_edge("flaky", END);
            let g = b.compile().unwrap();
            let run = format!("retry-{mode:?}");
            g.run_with(Trace::default(), cfg(&store, &run).mode(mode))
                .await
                .unwrap();
            assert_eq!(
                items(&store).await,
                ["attempt-3=true", "retried=1"],
                "{mode:?}"
            );
            for i in store.scan_items(&ns()).await.unwrap() {
                let mut batch = agentgraph_checkpoint::WriteBatch::new();
                batch.delete_item(&i.namespace, &i.key);
                store.commit(batch).await.unwrap();
            }
        }
    }
}

/// A finished task's write survives its sibling's failure (in its pending write), is not
/// visible until the step commits, and is committed once when the resumed step does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sibling_does_not_lose_a_finished_tasks_write() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let fail = Arc::new(AtomicBool::new(true));
        let mut b = GraphBuilder::<Trace>::new();
        let c = calls.clone();
        b.add_node("writer", move |_, ctx: Context| {
            let c = c.clone();
            async move {
                c.hit("writer");
                bump(&ctx, "sibling").await?;
                Ok(TraceUpdate::note("writer"))
            }
        });
        let (c, f) = (calls.clone(), fail.clone());
        b.add_node("failer", move |_, _| {
            let (c, f) = (c.clone(), f.clone());
            async move {
                c.hit("failer");
                // Fails after the writer finished.
                tokio::time::sleep(Duration::from_millis(30)).await;
                if f.load(Ordering::SeqCst) {
                    return Err::<TraceUpdate, BoxError>("down".into());
                }
                Ok(TraceUpdate::note("failer"))
            }
        });
        b.add_edges(START, ["writer", "failer"])
            .add_edge("writer", END)
            .add_edge("failer", END);
        let g = b.compile().unwrap();
        let config = || sync_cfg(&store, "sib").mode(Mode::Parallel);
        g.run_with(Trace::default(), config()).await.unwrap_err();
        assert!(
            items(&store).await.is_empty(),
            "the failed step committed nothing"
        );
        fail.store(false, Ordering::SeqCst);
        g.resume("sib", config()).await.unwrap();
        assert_eq!(
            calls.get("writer"),
            1,
            "the finished task did not run again"
        );
        assert_eq!(items(&store).await, ["sibling=1"]);
    }
}

/// A run dropped mid-step (a crash) after a task finished keeps that task's write in its
/// pending write; the resume commits it once, with the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_step_then_resume_commits_each_write_once() {
    for (store, _dir) in stores() {
        let calls = Calls::default();
        let reached = Arc::new(Notify::new());
        let hang = Arc::new(AtomicBool::new(true));
        let mut b = GraphBuilder::<Trace>::new();
        let c = calls.clone();
        b.add_node("first", move |_, ctx: Context| {
            let c = c.clone();
            async move {
                c.hit("first");
                bump(&ctx, "first").await?;
                Ok(TraceUpdate::note("first"))
            }
        });
        let c = calls.clone();
        b.add_node("writer", move |_, ctx: Context| {
            let c = c.clone();
            async move {
                c.hit("writer");
                bump(&ctx, "writer").await?;
                Ok(TraceUpdate::note("writer"))
            }
        });
        let (r, h) = (reached.clone(), hang.clone());
        b.add_node("slow", move |_, _| {
            let (r, h) = (r.clone(), h.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if h.load(Ordering::SeqCst) {
                    r.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok(TraceUpdate::note("slow"))
            }
        });
        b.add_edge(START, "first")
            .add_edges("first", ["writer", "slow"])
            .add_edge("writer", END)
            .add_edge("slow", END);
        let g = b.compile().unwrap();
        let config = || sync_cfg(&store, "crash").mode(Mode::Parallel);
        crash_when(g.run_with(Trace::default(), config()), &reached).await;
        assert_eq!(items(&store).await, ["first=1"], "step 1 only");
        hang.store(false, Ordering::SeqCst);
        // The dropped run's lease is released by the drop.
        let done = g.resume("crash", config()).await.unwrap();
        assert_eq!(done.log.len(), 3);
        assert_eq!(calls.get("writer"), 1);
        assert_eq!(calls.get("first"), 1);
        assert_eq!(items(&store).await, ["first=1", "writer=1"]);
    }
}

/// The checkpoint's batch fails: neither the step nor its memory writes are stored.
#[tokio::test]
async fn a_failed_checkpoint_commits_no_memory() {
    let inner: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let armed = Arc::new(AtomicBool::new(false));
    let a = armed.clone();
    let store: Arc<dyn CheckpointStore> =
        Arc::new(Hooked::new(inner.clone()).on_commit(move || {
            a.load(Ordering::SeqCst)
                .then(|| Err(StoreError::Backend("disk full".into())))
        }));
    let mut b = GraphBuilder::<Trace>::new();
    let a = armed.clone();
    b.add_node("write", move |_, ctx: Context| {
        let a = a.clone();
        async move {
            ctx.memory().put(ns(), "lost", &1)?;
            a.store(true, Ordering::SeqCst);
            Ok(TraceUpdate::note("write"))
        }
    })
    .add_edge(START, "write")
    .add_edge("write", END);
    let g = b.compile().unwrap();
    g.run_with(Trace::default(), sync_cfg(&store, "r"))
        .await
        .unwrap_err();
    assert!(items(&inner).await.is_empty());
}

#[tokio::test]
async fn a_run_without_a_store_commits_to_its_memory_store_or_refuses() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("count", |_, ctx: Context| async move {
        let n = bump(&ctx, "visits").await?;
        Ok(TraceUpdate::note(n.to_string()))
    })
    .add_node("again", |_, ctx: Context| async move {
        // The previous step's write is committed at its barrier.
        let n = bump(&ctx, "visits").await?;
        Ok(TraceUpdate::note(n.to_string()))
    })
    .add_edge(START, "count")
    .add_edge("count", "again")
    .add_edge("again", END);
    let g = b.compile().unwrap();
    let memory: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let done = g
        .run_with(Trace::default(), RunConfig::new().memory(memory.clone()))
        .await
        .unwrap();
    assert_eq!(done.log, ["1", "2"]);
    assert_eq!(items(&memory).await, ["visits=2"]);

    let e = g.invoke(Trace::default()).await.unwrap_err();
    let source = std::error::Error::source(&e).expect("the node's error");
    assert!(
        matches!(
            source.downcast_ref::<MemoryError>(),
            Some(MemoryError::NoStore)
        ),
        "{e}"
    );
}

#[tokio::test]
async fn semantic_memory_with_a_deterministic_embedder() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("learn", |_, ctx: Context| async move {
        let memory = ctx.memory();
        memory
            .put_indexed_many(
                &ns(),
                vec![
                    (
                        "tea".into(),
                        serde_json::json!({"kind": "drink"}),
                        "ann likes green tea".into(),
                    ),
                    (
                        "bike".into(),
                        serde_json::json!({"kind": "thing"}),
                        "ann rides a red bike".into(),
                    ),
                ],
            )
            .await?;
        memory
            .put_indexed(
                ns(),
                "pot",
                &serde_json::json!({"kind": "thing"}),
                "a pot for tea",
            )
            .await?;
        // Found before the step commits: the task's own writes.
        let hits = memory.search_text(ns(), "green tea", 1).await?;
        assert_eq!(hits[0].item.key, "tea");
        Ok(TraceUpdate::note("learned"))
    })
    .add_node("recall", |_, ctx: Context| async move {
        let memory = ctx.memory();
        let hits = memory.search_text(ns(), "green tea", 2).await?;
        let keys: Vec<String> = hits.into_iter().map(|h| h.item.key).collect();
        let things = memory
            .search(ItemQuery::new(ns()).filter(Filter::eq("kind", "thing")))
            .await?;
        Ok(TraceUpdate::note(keys.join(",")).last(things.len().to_string()))
    })
    .add_edge(START, "learn")
    .add_edge("learn", "recall")
    .add_edge("recall", END);
    let g = b.compile().unwrap();
    let config = cfg(&store, "sem").embedder(Arc::new(HashEmbedder::new(256)));
    let done = g.run_with(Trace::default(), config).await.unwrap();
    assert_eq!(done.log, ["learned", "tea,pot"]);
    assert_eq!(done.last, "2");
    assert!(
        store
            .scan_items(&ns())
            .await
            .unwrap()
            .iter()
            .all(|i| i.embedding.as_ref().is_some_and(|e| e.len() == 256)),
        "the vectors are stored with the items"
    );
    // Without an embedder, a semantic put is refused.
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("learn", |_, ctx: Context| async move {
        ctx.memory().put_indexed(ns(), "x", &1, "x").await?;
        Ok(TraceUpdate::note("x"))
    })
    .add_edge(START, "learn")
    .add_edge("learn", END);
    let e = b
        .compile()
        .unwrap()
        .run_with(Trace::default(), cfg(&store, "no-embedder"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("embedder") || format!("{e:?}").contains("NoEmbedder"),
        "{e:?}"
    );
}

/// Whatever the durability, a step reads what the step before it remembered (a step that
/// writes memory is committed before the next starts), and every write is stored once.
#[tokio::test]
async fn durability_modes_commit_memory_with_their_checkpoints() {
    for durability in [Durability::Sync, Durability::Async, Durability::Exit] {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let g = common::chain(3, |_, ctx: Context| async move {
            ctx.memory()
                .put(ns(), format!("step-{}", ctx.step()), &ctx.step())?;
            let n = bump(&ctx, "counter").await?;
            Ok(TraceUpdate::note(n.to_string()))
        });
        let done = g
            .run_with(Trace::default(), cfg(&store, "d").durability(durability))
            .await
            .unwrap();
        assert_eq!(done.log, ["1", "2", "3"], "{durability:?}");
        assert_eq!(
            items(&store).await,
            ["counter=3", "step-1=1", "step-2=2", "step-3=3"],
            "{durability:?}"
        );
    }
}
