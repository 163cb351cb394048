//! Tenants and callers on the workers' queue (issue 16, items 5 and 6): a job queued for a
//! tenant runs as the tenant's run (its record carries the tenant, its audit trail names who
//! queued it), another tenant neither sees nor cancels nor resumes nor continues it, and a
//! job of one tenant cannot write to another tenant's run.

mod support;

use std::time::Duration;

use agentgraph::prelude::*;
use agentgraph::run::GraphRegistry;
use agentgraph::store::RunStatus;
use agentgraph_checkpoint::audit::AuditAction;
use agentgraph_checkpoint::{CheckpointStore, StoreError, TenantId};
use agentgraph_engine::DynResume;
use agentgraph_postgres::PostgresStore;
use agentgraph_postgres::worker::{JobInfo, NotQueued, Queue, Worker};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::wait_for;

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Notes {
    #[reducer(append)]
    notes: Vec<String>,
    approved: bool,
}

/// `note` (appends "noted"), `review` (waits on an interrupt) and `chat` (a thread that
/// echoes its last note).
fn registry() -> GraphRegistry {
    let mut note = GraphBuilder::<Notes>::new();
    note.add_node("note", |_, _| async {
        Ok(NotesUpdate::new().notes(vec!["noted".to_owned()]))
    })
    .add_edge(START, "note")
    .add_edge("note", END);
    let mut review = GraphBuilder::<Notes>::new();
    review
        .add_node("review", |_, ctx: Context| async move {
            let ok: bool = ctx.interrupt("approve?")?;
            Ok(NotesUpdate::new().approved(ok))
        })
        .add_edge(START, "review")
        .add_edge("review", END);
    let mut chat = GraphBuilder::<Notes>::new();
    chat.add_node("reply", |s: std::sync::Arc<Notes>, _| async move {
        let heard = s.notes.last().cloned().unwrap_or_default();
        Ok(NotesUpdate::new().notes(vec![format!("you said {heard}")]))
    })
    .add_edge(START, "reply")
    .add_edge("reply", END);
    GraphRegistry::new()
        .with("note", note.compile().unwrap())
        .with("review", review.compile().unwrap())
        .with("chat", chat.compile().unwrap())
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// The actions and callers of `run`'s audit trail, in order.
async fn trail(store: &PostgresStore, run: &str) -> Vec<(AuditAction, String)> {
    store
        .audit(run)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.record.action, e.record.caller))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_job_runs_as_the_tenants_and_stays_out_of_other_tenants_sight() {
    let store = support::fresh_store("w_tenants").await;
    let all = Queue::new(&store);
    let acme = all.clone().tenant(tenant("acme")).caller("alice");
    let globex = all.clone().tenant(tenant("globex")).caller("gus");

    // Queued before any worker: each tenant sees its own depth and jobs only.
    let done = acme.submit("note", json!({})).await.unwrap();
    assert!(
        acme.submit_with_id("review", "acme-review", json!({}))
            .await
            .unwrap()
    );
    assert!(
        globex
            .submit_with_id("note", "globex-note", json!({}))
            .await
            .unwrap()
    );
    // A run id is the store's: another tenant's is taken (and its job stays the first's).
    assert!(
        !globex
            .submit_with_id("review", "acme-review", json!({}))
            .await
            .unwrap()
    );
    assert_eq!(acme.depth().await.unwrap(), 2);
    assert_eq!(globex.depth().await.unwrap(), 1);
    assert_eq!(all.depth().await.unwrap(), 3);
    let job = acme.job(&done).await.unwrap().unwrap();
    assert_eq!(job.tenant, Some(tenant("acme")));
    assert_eq!(job.caller.as_deref(), Some("alice"));
    assert!(globex.job(&done).await.unwrap().is_none());
    assert!(globex.job("acme-review").await.unwrap().is_none());
    let runs = |jobs: Vec<JobInfo>| jobs.into_iter().map(|j| j.run).collect::<Vec<_>>();
    assert_eq!(
        runs(acme.jobs(None, 0, 100).await.unwrap()),
        [done.clone(), "acme-review".to_owned()]
    );
    assert_eq!(
        runs(globex.jobs(Some("queued"), 0, 100).await.unwrap()),
        ["globex-note"]
    );
    assert_eq!(all.jobs(None, 0, 100).await.unwrap().len(), 3);
    // The JSON of a job names its tenant and caller.
    let text = serde_json::to_value(&job).unwrap();
    assert_eq!(
        (&text["tenant"], &text["caller"], &text["run_id"]),
        (&json!("acme"), &json!("alice"), &json!(done))
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(store.clone(), registry(), "tw1")
        .lease_ttl(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(5));
    let running = tokio::spawn(worker.run_until(async {
        stopped.await.ok();
    }));

    // The run is the tenant's, and its trail names who queued it.
    let job = wait_for(&acme, &done, "done").await;
    assert_eq!(job.output.unwrap()["notes"], json!(["noted"]));
    let record = store.get_run(&done).await.unwrap().unwrap();
    assert_eq!(record.tenant, Some(tenant("acme")));
    assert_eq!(
        trail(&store, &done).await,
        [(AuditAction::Started, "alice".to_owned())]
    );
    wait_for(&globex, "globex-note", "done").await;
    assert_eq!(
        store.get_run("globex-note").await.unwrap().unwrap().tenant,
        Some(tenant("globex"))
    );
    assert_eq!(trail(&store, "globex-note").await[0].1, "gus");

    // An interrupted run of acme's: globex can neither resume nor cancel it; acme's queue
    // resumes it, under another name.
    wait_for(&acme, "acme-review", "interrupted").await;
    let resume: DynResume = serde_json::from_value(json!({ "value": true })).unwrap();
    let err = globex
        .resume("acme-review", resume.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(e) if e.downcast_ref::<NotQueued>().is_some()),
        "{err:?}"
    );
    assert!(!globex.cancel("acme-review").await.unwrap());
    assert_eq!(
        all.jobs(None, 0, 100).await.unwrap().len(),
        3,
        "nothing queued"
    );
    acme.clone()
        .caller("bob")
        .resume("acme-review", resume)
        .await
        .unwrap();
    let job = wait_for(&acme, "acme-review", "done").await;
    assert_eq!(
        (job.kind.as_str(), job.caller.as_deref()),
        ("resume", Some("bob"))
    );
    assert_eq!(job.tenant, Some(tenant("acme")));
    let actions = trail(&store, "acme-review").await;
    assert_eq!(actions[0], (AuditAction::Started, "alice".to_owned()));
    assert!(
        actions.contains(&(AuditAction::Resumed, "bob".to_owned())),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .all(|(_, who)| who == "alice" || who == "bob"),
        "{actions:?}"
    );
    assert_eq!(
        store.get_run("acme-review").await.unwrap().unwrap().status,
        RunStatus::Completed
    );

    // A thread of acme's: globex cannot give it an input; a queue over every tenant gives
    // it one as acme's.
    acme.submit_thread("chat", "acme-chat", json!({ "notes": ["hi"] }))
        .await
        .unwrap();
    wait_for(&acme, "acme-chat", "done").await;
    let err = globex
        .submit_thread("chat", "acme-chat", json!({ "notes": ["mine now"] }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotInTenant { run } if run == "acme-chat"),
        "{err:?}"
    );
    all.submit_thread("chat", "acme-chat", json!({ "notes": ["again"] }))
        .await
        .unwrap();
    let job = wait_for(&acme, "acme-chat", "done").await;
    assert_eq!((job.tenant, job.caller), (Some(tenant("acme")), None));
    assert_eq!(
        job.output.unwrap()["notes"],
        json!(["hi", "you said hi", "again", "you said again"])
    );
    assert_eq!(
        store.get_run("acme-chat").await.unwrap().unwrap().tenant,
        Some(tenant("acme"))
    );

    // A job of globex's cannot write to a run of acme's that the queue never saw: the worker
    // runs it as globex's, and the engine does not find acme's thread.
    let graph = registry();
    let config = RunConfig::new()
        .store(store.clone())
        .tenant(tenant("acme"))
        .run_id("acme-outside");
    graph
        .get("note")
        .unwrap()
        .start(json!({}), config)
        .unwrap()
        .outcome()
        .await
        .unwrap();
    globex
        .submit_thread("chat", "acme-outside", json!({ "notes": ["stolen"] }))
        .await
        .unwrap();
    let job = wait_for(&globex, "acme-outside", "failed").await;
    assert!(job.error.unwrap().contains("acme-outside"));
    let record = store.get_run("acme-outside").await.unwrap().unwrap();
    assert_eq!(
        (record.tenant, record.status),
        (Some(tenant("acme")), RunStatus::Completed)
    );
    assert_eq!(
        trail(&store, "acme-outside").await,
        [(AuditAction::Started, "unknown".to_owned())]
    );

    // A queued job of acme's (no worker has its graph): globex cannot cancel it, acme can.
    let waiting = acme.submit("nobody-runs-this", json!({})).await.unwrap();
    assert!(!globex.cancel(&waiting).await.unwrap());
    assert_eq!(acme.job(&waiting).await.unwrap().unwrap().status, "queued");
    assert!(acme.cancel(&waiting).await.unwrap());
    assert_eq!(
        acme.job(&waiting).await.unwrap().unwrap().status,
        "cancelled"
    );

    stop.send(()).ok();
    running.await.unwrap().unwrap();
}
