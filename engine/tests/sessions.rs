//! Sessions (issue 11, item 2): a thread's metadata and time to live on its run record, kept
//! across its invocations; listing threads by metadata; sweeping expired threads (with their
//! subgraph runs), never one in use; records written before sessions still read.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgraph_checkpoint::envelope::{self, RecordKind};
use agentgraph_checkpoint::{MemoryStore, RunFilter, RunMetadata, Sweeper};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, Error, GraphBuilder, Resume, RunConfig,
    RunRecord, RunStatus, START, StoreInspector,
};
use common::{Trace, TraceUpdate, cfg, stores, sync_cfg};
use tokio::sync::Notify;

/// `START -> ask -> END`: `ask` waits for a message (an interrupt) and logs it; a thread
/// whose every turn is one question and its answer.
fn asker() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("ask", |_, ctx: Context| async move {
        let said: String = ctx.interrupt(&"your message?")?;
        Ok::<_, BoxError>(TraceUpdate::note(said))
    })
    .add_edge(START, "ask")
    .add_edge("ask", END);
    b.compile().unwrap()
}

fn ann() -> RunMetadata {
    RunMetadata::new()
        .with_user("ann")
        .with_title("Refund for order 17")
        .with_tags(["support", "billing"])
        .with_label("channel", "email")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn record(store: &Arc<dyn CheckpointStore>, run: &str) -> RunRecord {
    store.get_run(run).await.unwrap().expect("the run's record")
}

fn ids(records: &[RunRecord]) -> Vec<&str> {
    records.iter().map(|r| r.run_id.as_str()).collect()
}

/// A thread started with metadata and a time to live keeps both across a resume that gives
/// neither, its expiry sliding with each write; a resume that gives them replaces them; and
/// threads are listed by user, tag, label and title.
#[tokio::test]
async fn a_thread_keeps_its_metadata_and_ttl_across_invocations() {
    for (store, _dir) in stores() {
        let graph = asker();
        let hour = Duration::from_secs(3600);
        let e = graph
            .run_with(
                Trace::default(),
                cfg(&store, "chat-1").metadata(ann()).ttl(hour),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Interrupted(_)), "{e:?}");
        let first = record(&store, "chat-1").await;
        assert_eq!(first.metadata, ann());
        assert_eq!(first.ttl_ms, Some(3_600_000));
        assert_eq!(
            first.expires_at_ms,
            Some(first.updated_at_ms + 3_600_000),
            "the expiry is the last write plus the time to live"
        );

        // Another thread, of another user; and one without metadata.
        let bob = RunMetadata::new().with_user("bob").with_tag("support");
        let _ = graph
            .run_with(
                Trace::default(),
                cfg(&store, "chat-2").metadata(bob.clone()),
            )
            .await;
        let _ = graph
            .run_with(Trace::default(), cfg(&store, "chat-3"))
            .await;

        // The next invocation says neither: both are kept, the expiry slides.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let state = graph
            .resume_with("chat-1", Resume::value("hello"), cfg(&store, "chat-1"))
            .await
            .unwrap();
        assert_eq!(state.log, ["hello"]);
        let second = record(&store, "chat-1").await;
        assert_eq!(second.status, RunStatus::Completed);
        assert_eq!(
            second.metadata,
            ann(),
            "a resume keeps the thread's metadata"
        );
        assert_eq!(second.ttl_ms, Some(3_600_000), "and its time to live");
        assert!(second.updated_at_ms > first.updated_at_ms);
        assert_eq!(
            second.expires_at_ms,
            Some(second.updated_at_ms + 3_600_000),
            "the expiry slides with each write"
        );

        // Listing by metadata.
        let inspector = StoreInspector::new(store.clone());
        let by = |f: RunFilter| {
            let inspector = inspector.clone();
            async move { inspector.runs_matching(&f, None, 100).await.unwrap() }
        };
        assert_eq!(ids(&by(RunFilter::new().user("ann")).await), ["chat-1"]);
        assert_eq!(
            ids(&by(RunFilter::new().tag("support")).await),
            ["chat-1", "chat-2"]
        );
        assert_eq!(
            ids(&by(RunFilter::new().tag("support").tag("billing")).await),
            ["chat-1"]
        );
        assert_eq!(
            ids(&by(RunFilter::new().label("channel", "email")).await),
            ["chat-1"]
        );
        assert_eq!(
            ids(&by(RunFilter::new().title_contains("ORDER 17")).await),
            ["chat-1"]
        );
        assert_eq!(
            ids(&by(RunFilter::new().status(RunStatus::Interrupted)).await),
            ["chat-2", "chat-3"]
        );
        assert_eq!(by(RunFilter::new()).await.len(), 3);
        assert!(by(RunFilter::new().user("carol")).await.is_empty());
        // A page, and the next one after it.
        let support = RunFilter::new().tag("support");
        let page = inspector.runs_matching(&support, None, 1).await.unwrap();
        assert_eq!(ids(&page), ["chat-1"]);
        let next = inspector
            .runs_matching(&support, Some("chat-1"), 1)
            .await
            .unwrap();
        assert_eq!(ids(&next), ["chat-2"]);

        // An invocation that gives them replaces them.
        let moved = RunMetadata::new().with_user("bob").with_tag("escalated");
        graph
            .resume_with(
                "chat-2",
                Resume::value("hi"),
                cfg(&store, "chat-2")
                    .metadata(moved.clone())
                    .ttl(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        let replaced = record(&store, "chat-2").await;
        assert_eq!(replaced.metadata, moved);
        assert_eq!(replaced.ttl_ms, Some(60_000));
        assert_eq!(
            ids(&by(RunFilter::new().tag("escalated")).await),
            ["chat-2"]
        );
        assert_eq!(record(&store, "chat-3").await.expires_at_ms, None);
    }
}

/// A thread with a time to live is swept once it expires, with its subgraph runs (which carry
/// no time to live of their own), and not before.
#[tokio::test]
async fn a_thread_with_a_ttl_is_swept_with_its_subgraph_runs() {
    for (store, _dir) in stores() {
        let mut b = GraphBuilder::<Trace>::new();
        b.add_subgraph(
            "sub",
            common::counting_chain(2),
            |_: &Trace| Trace::default(),
            |c: Trace| TraceUpdate::new().count(c.count),
        )
        .add_edge(START, "sub")
        .add_edge("sub", END);
        let graph = b.compile().unwrap();
        let config = || cfg(&store, "thread").metadata(ann());
        graph
            .run_with(Trace::default(), config().ttl(Duration::from_millis(50)))
            .await
            .unwrap();
        graph
            .run_with(Trace::default(), cfg(&store, "kept"))
            .await
            .unwrap();
        let inspector = StoreInspector::new(store.clone());
        let children = inspector.subgraph_runs("thread").await.unwrap();
        assert_eq!(children.len(), 1);
        let child = record(&store, &children[0]).await;
        assert_eq!(
            (child.ttl_ms, child.expires_at_ms),
            (None, None),
            "a subgraph run has no time to live of its own"
        );
        assert!(child.metadata.is_empty(), "nor the thread's metadata");

        let expires = record(&store, "thread").await.expires_at_ms.unwrap();
        assert!(store.sweep_expired(expires - 1).await.unwrap().is_empty());
        assert!(store.get_run("thread").await.unwrap().is_some());

        // In real time: 50 ms later, a sweep "now" deletes it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(now_ms() >= expires);
        assert_eq!(store.sweep_expired(now_ms()).await.unwrap(), ["thread"]);
        assert!(store.get_run("thread").await.unwrap().is_none());
        assert!(store.get_run(&children[0]).await.unwrap().is_none());
        assert!(inspector.subgraph_runs("thread").await.unwrap().is_empty());
        assert!(store.get_run("kept").await.unwrap().is_some());
        // The id is free again.
        graph
            .run_with(Trace::default(), cfg(&store, "thread"))
            .await
            .unwrap();
    }
}

/// A running thread holds its lease: a sweep skips it however late its expiry, and deletes it
/// once it has ended and expired.
#[tokio::test]
async fn a_running_thread_is_never_swept() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let reached = Arc::new(Notify::new());
    let go = Arc::new(Notify::new());
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("quick", |_, _| async { Ok(TraceUpdate::note("quick")) });
    let (r, g) = (reached.clone(), go.clone());
    b.add_node("slow", move |_, _| {
        let (r, g) = (r.clone(), g.clone());
        async move {
            r.notify_one();
            g.notified().await;
            Ok(TraceUpdate::note("slow"))
        }
    })
    .add_edge(START, "quick")
    .add_edge("quick", "slow")
    .add_edge("slow", END);
    let graph = b.compile().unwrap();
    let ttl = Duration::from_millis(1);
    let run = graph
        .run_with(Trace::default(), sync_cfg(&store, "busy").ttl(ttl))
        .spawn();
    reached.notified().await;
    // Its record says it expired long ago (step 0 was written with a 1 ms time to live).
    let during = record(&store, "busy").await;
    assert_eq!(during.status, RunStatus::Running);
    assert!(during.is_expired(u64::MAX));
    assert!(
        store.sweep_expired(u64::MAX).await.unwrap().is_empty(),
        "a running run is never swept"
    );
    go.notify_one();
    run.await.unwrap();
    let after = record(&store, "busy").await;
    assert_eq!(after.status, RunStatus::Completed);
    assert_eq!(
        store
            .sweep_expired(after.expires_at_ms.unwrap())
            .await
            .unwrap(),
        ["busy"]
    );
}

/// The background sweeper deletes an expired thread on its own, and stops when asked.
#[tokio::test]
async fn a_sweeper_deletes_expired_threads() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let graph = common::counting_chain(1);
    graph
        .run_with(
            Trace::default(),
            cfg(&store, "t").ttl(Duration::from_millis(20)),
        )
        .await
        .unwrap();
    let sweeper = Sweeper::spawn(store.clone(), Duration::from_millis(10));
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while sweeper.swept() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the sweeper deleted the expired thread");
    assert!(store.get_run("t").await.unwrap().is_none());
    sweeper.stop().await;
}

/// A fork of a thread keeps its session: the metadata and the time to live.
#[tokio::test]
async fn a_fork_keeps_the_threads_session() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let graph = common::counting_chain(2);
    graph
        .run_with(
            Trace::default(),
            cfg(&store, "t")
                .metadata(ann())
                .ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    graph
        .history(store.clone())
        .fork("t", 1, "t-fork", |_| {})
        .await
        .unwrap();
    let fork = record(&store, "t-fork").await;
    assert_eq!(fork.metadata, ann());
    assert_eq!(fork.ttl_ms, Some(60_000));
    assert_eq!(fork.expires_at_ms, Some(fork.updated_at_ms + 60_000));
}

/// A run record written before sessions (no metadata, no time to live) reads, resumes, and
/// takes the metadata the resume gives.
#[tokio::test]
async fn a_run_recorded_before_sessions_resumes_and_takes_metadata() {
    let memory = MemoryStore::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(memory.clone());
    let graph = asker();
    let e = graph
        .run_with(Trace::default(), cfg(&store, "old"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e:?}");
    let now = record(&store, "old").await;

    /// The run record's layout before sessions.
    #[derive(serde::Serialize)]
    struct BeforeSessions {
        run_id: String,
        status: u32,
        fingerprint: u128,
        created_at_ms: u64,
        updated_at_ms: u64,
        last_step: Option<u64>,
        error: Option<String>,
        forked_from: Option<(String, u64)>,
        graph: Option<String>,
    }
    let old = BeforeSessions {
        run_id: "old".into(),
        status: 4, // interrupted
        fingerprint: now.fingerprint,
        created_at_ms: now.created_at_ms,
        updated_at_ms: now.updated_at_ms,
        last_step: now.last_step,
        error: None,
        forked_from: None,
        graph: None,
    };
    memory.put_raw_run_record("old", envelope::encode(RecordKind::Run, &old).unwrap());
    let read = record(&store, "old").await;
    assert_eq!(read.status, RunStatus::Interrupted);
    assert!(read.metadata.is_empty());
    assert_eq!(read.expires_at_ms, None);

    graph
        .resume_with(
            "old",
            Resume::value("back"),
            RunConfig::new()
                .store(store.clone())
                .metadata(ann())
                .ttl(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let resumed = record(&store, "old").await;
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(resumed.metadata, ann());
    assert_eq!(resumed.ttl_ms, Some(1_000));
}
