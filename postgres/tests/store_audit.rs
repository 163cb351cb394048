//! Audit entries on PostgreSQL, sent in their batch's one statement: a fenced step with an
//! entry writes nothing at all, and commits appending to one run's chain at once (on several
//! connections, and beside `append_audit`, which a process of the previous version calls)
//! take every number once and make one chain that verifies.

mod support;

use std::time::Duration;

use agentgraph_checkpoint::audit::{self, AuditAction, AuditRecord};
use agentgraph_checkpoint::{CheckpointStore, RunRecord, RunStatus, StoreError, WriteBatch};
use agentgraph_postgres::PostgresStore;

fn entry(action: AuditAction, n: u64) -> AuditRecord {
    AuditRecord::new("store-audit", action).at(n)
}

/// A run's first step as the engine writes it: the record, a blob, the checkpoint, an event
/// and the `started` entry, fenced by `epoch`.
fn first_step(run: &str, epoch: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch
        .fence(run, epoch)
        .put_run(RunRecord::new(run, RunStatus::Running, 7, 1))
        .put_audit(run, entry(AuditAction::Started, 1))
        .put_blob(run, 0, 1, vec![1; 64])
        .put_checkpoint(run, 1, vec![2; 64])
        .put_event(run, 0, b"event".to_vec());
    batch
}

/// The rows of `run` in each table, read in one statement by another connection.
async fn rows(admin: &tokio_postgres::Client, schema: &str, run: &str) -> [i64; 5] {
    let row = admin
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.runs WHERE run_id = $1), \
                        (SELECT count(*) FROM {schema}.blobs WHERE run_id = $1), \
                        (SELECT count(*) FROM {schema}.checkpoints WHERE run_id = $1), \
                        (SELECT count(*) FROM {schema}.events WHERE run_id = $1), \
                        (SELECT count(*) FROM {schema}.audit WHERE run_id = $1)"
            ),
            &[&run.as_bytes()],
        )
        .await
        .unwrap();
    std::array::from_fn(|i| row.get(i))
}

/// A step with an audit entry whose fence is stale writes no row of any table, its entry's
/// neither; with the current epoch it writes them all, and the entry is numbered 1.
#[tokio::test]
async fn a_fenced_step_with_an_audit_entry_writes_nothing() {
    let schema = support::fresh_schema("auditfence");
    let store = PostgresStore::connect_with(support::options(&schema))
        .await
        .unwrap();
    let admin = support::admin().await;
    let run = "fenced-audit";
    let ttl = Duration::from_secs(30);
    let stale = store.acquire_lease(run, ttl).await.unwrap();
    let stale_epoch = stale.epoch();
    store.release_lease(stale).await.unwrap();
    let lease = store.acquire_lease(run, ttl).await.unwrap();

    let err = store
        .commit(first_step(run, stale_epoch))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { epoch, .. } if epoch == stale_epoch),
        "{err:?}"
    );
    assert_eq!(rows(&admin, &schema, run).await, [0; 5], "nothing written");
    assert!(store.audit(run).await.unwrap().is_empty());

    store.commit(first_step(run, lease.epoch())).await.unwrap();
    assert_eq!(rows(&admin, &schema, run).await, [1; 5], "all written");
    let entries = store.audit(run).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, 1);
    assert_eq!(entries[0].prev, [0; 32]);
    audit::verify(&store, run)
        .await
        .unwrap()
        .unwrap_or_else(|broken| panic!("the chain verifies: {broken}"));
    store.release_lease(lease).await.unwrap();
}

/// Commits that append to one run's chain at once, on several connections (batches of one
/// and of two entries, alone and with other writes) and beside `append_audit` calls, number
/// the entries 1..=N once each, and the chain verifies: the advisory lock serialises them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_chain_are_serialised() {
    const TASKS: u64 = 8;
    const ROUNDS: u64 = 10;
    let schema = support::fresh_schema("auditrace");
    let store = PostgresStore::connect_with(support::options(&schema).max_connections(8))
        .await
        .unwrap();
    let run = "raced";
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = 0;
            for r in 0..ROUNDS {
                let n = t * 1000 + r;
                let mut batch = WriteBatch::new();
                match r % 3 {
                    0 => {
                        batch.put_audit(run, entry(AuditAction::StateEdited, n));
                        written += 1;
                    }
                    1 => {
                        batch
                            .put_audit(run, entry(AuditAction::StateEdited, n))
                            .put_audit(run, entry(AuditAction::Forked, n));
                        written += 2;
                    }
                    _ => {
                        batch
                            .put_checkpoint(&format!("other-{t}"), r, vec![1])
                            .put_audit(run, entry(AuditAction::Pruned, n))
                            .put_audit(&format!("other-{t}"), entry(AuditAction::Pruned, n));
                        written += 1;
                    }
                }
                store.commit(batch).await.unwrap();
            }
            written
        }));
    }
    // A process of the previous version appends with `append_audit`, one entry a statement.
    let old = tokio::spawn({
        let schema = schema.clone();
        async move {
            let admin = support::admin().await;
            for n in 0..ROUNDS {
                let body = audit::encode_body(&entry(AuditAction::Resumed, 9000 + n)).unwrap();
                admin
                    .execute(
                        &format!("SELECT {schema}.append_audit($1, $2)"),
                        &[&run.as_bytes(), &body],
                    )
                    .await
                    .unwrap();
            }
            ROUNDS
        }
    });
    let mut total = old.await.unwrap();
    for t in tasks {
        total += t.await.unwrap();
    }
    let entries = store.audit(run).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "every number once"
    );
    let head = audit::verify(&store, run)
        .await
        .unwrap()
        .unwrap_or_else(|broken| panic!("the chain verifies: {broken}"));
    assert_eq!(head.entries, total);
    for t in 0..TASKS {
        let other = format!("other-{t}");
        let head = audit::verify(&store, &other)
            .await
            .unwrap()
            .unwrap_or_else(|broken| panic!("{other}'s chain verifies: {broken}"));
        assert_eq!(head.entries, ROUNDS / 3);
    }
}
