//! The audit trail of runs: each action on a run (started, resumed, an interrupt answered,
//! the state edited, forked, pruned, deleted, cancelled, a thread invoked) appends its entry,
//! with its caller, and the chain verifies; a deleted run's trail stays.

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::audit::{self, AuditAction, AuditEntry, UNKNOWN_CALLER};
use agentgraph_checkpoint::{CheckpointStore, MemoryStore, SledStore};
use agentgraph_engine::{
    CompiledGraph, Context, END, Error, GraphBuilder, Resume, RunConfig, START, StoreInspector,
};
use tokio::sync::Notify;

#[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Doc {
    #[reducer(add)]
    n: u64,
    note: String,
}

/// START -> bump -> review (asks a question) -> END.
fn review_graph() -> CompiledGraph<Doc> {
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("bump", |_, _| async { Ok(DocUpdate::new().n(1)) })
        .add_node("review", |_, ctx: Context| async move {
            let note: String = ctx.interrupt("approve?")?;
            Ok(DocUpdate::new().note(note))
        })
        .add_edge(START, "bump")
        .add_edge("bump", "review")
        .add_edge("review", END);
    b.compile().unwrap()
}

fn trail(entries: &[AuditEntry]) -> Vec<(AuditAction, &str)> {
    entries
        .iter()
        .map(|e| (e.record.action, e.record.caller.as_str()))
        .collect()
}

async fn every_action(store: Arc<dyn CheckpointStore>) {
    let graph = review_graph();
    let config = |caller: &str| {
        RunConfig::new()
            .store(store.clone())
            .run_id("doc-1")
            .caller(caller)
    };
    let Err(Error::Interrupted(stop)) = graph.run_with(Doc::default(), config("alice")).await
    else {
        panic!("the run waits for a review");
    };
    let entries = store.audit("doc-1").await.unwrap();
    assert_eq!(trail(&entries), [(AuditAction::Started, "alice")]);

    let resume = Resume::new()
        .answer(&stop.interrupts[0].id, "looks good")
        .update(DocUpdate::new().n(5));
    let done = graph
        .resume_with("doc-1", resume, config("bob"))
        .await
        .unwrap();
    assert_eq!((done.n, done.note.as_str()), (6, "looks good"));
    let entries = store.audit("doc-1").await.unwrap();
    assert_eq!(
        trail(&entries),
        [
            (AuditAction::Started, "alice"),
            (AuditAction::Resumed, "bob"),
            (AuditAction::InterruptAnswered, "bob"),
            (AuditAction::StateEdited, "bob"),
        ]
    );
    let answered = &entries[2].record.details;
    assert_eq!(answered["interrupt"], stop.interrupts[0].id.as_str());
    assert_eq!(answered["answer"], "looks good");
    assert_eq!(
        answered["answer_sha256"],
        audit::sha256_hex(br#""looks good""#)
    );
    assert_eq!(
        entries[3].record.details["fields"],
        serde_json::json!(["n"])
    );
    assert_eq!(entries[1].record.details["status"], "interrupted");

    let last = store.get_run("doc-1").await.unwrap().unwrap().last_step;
    graph
        .history(store.clone())
        .caller("carol")
        .fork("doc-1", last.unwrap(), "doc-2", |doc| doc.n = 0)
        .await
        .unwrap();
    let forked = store.audit("doc-2").await.unwrap();
    assert_eq!(trail(&forked), [(AuditAction::Forked, "carol")]);
    assert_eq!(forked[0].record.details["run"], "doc-1");

    let inspector = StoreInspector::new(store.clone()).caller("dave");
    assert!(inspector.prune("doc-1", 1).await.unwrap() > 0);
    inspector.delete("doc-1").await.unwrap();
    assert!(store.get_run("doc-1").await.unwrap().is_none());
    let entries = store.audit("doc-1").await.unwrap();
    assert_eq!(
        trail(&entries)[4..],
        [
            (AuditAction::Pruned, "dave"),
            (AuditAction::Deleted, "dave")
        ]
    );
    let head = audit::verify(&*store, "doc-1").await.unwrap().unwrap();
    assert_eq!((head.entries, head.head), (6, entries[5].hash));
    assert!(audit::verify(&*store, "doc-2").await.unwrap().is_ok());
    let runs = store.audited_runs().await.unwrap();
    assert_eq!(runs, ["doc-1", "doc-2"]);
}

#[tokio::test]
async fn every_action_is_recorded_in_memory() {
    every_action(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn every_action_is_recorded_in_sled() {
    let dir = tempfile::tempdir().unwrap();
    every_action(Arc::new(SledStore::open(dir.path().join("db")).unwrap())).await;
}

#[tokio::test]
async fn a_large_answer_is_recorded_by_its_digest_and_no_caller_is_unknown() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let graph = review_graph();
    let config = || RunConfig::new().store(store.clone()).run_id("doc");
    let Err(Error::Interrupted(stop)) = graph.run_with(Doc::default(), config()).await else {
        panic!("the run waits for a review");
    };
    let long = "x".repeat(5000);
    let resume = Resume::value(&long);
    graph.resume_with("doc", resume, config()).await.unwrap();
    let entries = store.audit("doc").await.unwrap();
    assert!(entries.iter().all(|e| e.record.caller == UNKNOWN_CALLER));
    let answered = &entries[2].record.details;
    assert_eq!(entries[2].record.action, AuditAction::InterruptAnswered);
    assert!(answered.get("answer").is_none(), "{answered}");
    assert_eq!(answered["answer_bytes"], 5002);
    assert_eq!(
        answered["answer_sha256"],
        audit::sha256_hex(format!("\"{long}\"").as_bytes())
    );
    let _ = stop;
}

/// START -> one -> slow (says it started, then sleeps for an hour) -> END.
fn slow_graph(reached: &Arc<Notify>) -> CompiledGraph<Doc> {
    let mut b = GraphBuilder::<Doc>::new();
    let at_slow = reached.clone();
    b.add_node("one", |_, _| async { Ok(DocUpdate::new().n(1)) })
        .add_node("slow", move |_, _| {
            let at_slow = at_slow.clone();
            async move {
                at_slow.notify_one();
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(DocUpdate::new())
            }
        })
        .add_edge(START, "one")
        .add_edge("one", "slow")
        .add_edge("slow", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn a_cancelled_run_and_a_thread_are_recorded() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let reached = Arc::new(Notify::new());
    let graph = slow_graph(&reached);
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("c")
        .caller("ann");
    let run = graph.run_with(Doc::default(), config);
    let cancel = run.cancel_handle();
    let handle = run.spawn();
    reached.notified().await;
    cancel.cancel();
    assert!(matches!(handle.await, Err(Error::Cancelled { .. })));
    let entries = store.audit("c").await.unwrap();
    assert_eq!(
        trail(&entries),
        [
            (AuditAction::Started, "ann"),
            (AuditAction::Cancelled, "ann")
        ]
    );
    assert!(audit::verify(&*store, "c").await.unwrap().is_ok());

    // A thread: its first invocation and the next.
    let mut b = GraphBuilder::<Doc>::new();
    b.add_node("one", |_, _| async { Ok(DocUpdate::new().n(1)) })
        .add_edge(START, "one")
        .add_edge("one", END);
    let graph = b.compile().unwrap();
    let config = || RunConfig::new().store(store.clone()).caller("tom");
    for _ in 0..2 {
        graph
            .invoke_thread("t", DocUpdate::new().n(1), config())
            .await
            .unwrap();
    }
    let entries = store.audit("t").await.unwrap();
    assert_eq!(
        trail(&entries),
        [(AuditAction::Invoked, "tom"), (AuditAction::Invoked, "tom")]
    );
}

#[tokio::test]
async fn a_cancellation_names_who_cancelled() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let reached = Arc::new(Notify::new());
    let graph = slow_graph(&reached);
    let config = |run: &str| {
        RunConfig::new()
            .store(store.clone())
            .run_id(run)
            .caller("ann")
    };

    // Through the run's cancel handle: the first name counts.
    let run = graph.run_with(Doc::default(), config("by-handle"));
    let (cancel, other) = (run.cancel_handle(), run.cancel_handle());
    let handle = run.spawn();
    reached.notified().await;
    cancel.cancel_as("operator-1");
    other.cancel_as("operator-2");
    assert!(matches!(handle.await, Err(Error::Cancelled { .. })));
    let entries = store.audit("by-handle").await.unwrap();
    assert_eq!(
        trail(&entries),
        [
            (AuditAction::Started, "ann"),
            (AuditAction::Cancelled, "operator-1")
        ]
    );
    let details = &entries[1].record.details;
    assert_eq!(details["invoked_by"], "ann");
    assert_eq!(details["step"], 1);
    assert!(audit::verify(&*store, "by-handle").await.unwrap().is_ok());

    // Through the spawned run's handle, after a resume by someone else.
    let run = graph.resume_with("by-handle", Resume::new(), config("by-handle").caller("cy"));
    let handle = run.spawn();
    reached.notified().await;
    handle.cancel_as("operator-3");
    assert!(matches!(handle.await, Err(Error::Cancelled { .. })));
    let entries = store.audit("by-handle").await.unwrap();
    assert_eq!(
        trail(&entries)[2..],
        [
            (AuditAction::Resumed, "cy"),
            (AuditAction::Cancelled, "operator-3")
        ]
    );
    assert_eq!(entries[3].record.details["invoked_by"], "cy");

    // A name given after an unnamed cancellation does not replace the invocation's caller.
    let run = graph.run_with(Doc::default(), config("unnamed"));
    let cancel = run.cancel_handle();
    let handle = run.spawn();
    reached.notified().await;
    cancel.cancel();
    cancel.cancel_as("too-late");
    assert!(matches!(handle.await, Err(Error::Cancelled { .. })));
    let entries = store.audit("unnamed").await.unwrap();
    assert_eq!(entries[1].record.action, AuditAction::Cancelled);
    assert_eq!(entries[1].record.caller, "ann");
    assert!(entries[1].record.details.get("invoked_by").is_none());
}
