//! Graph names on run records; run leases, their expiry and fencing.

use super::*;

/// The graph's name on a run record reads back as written, from `get_run` and `list_runs`,
/// and a record without one reads back without one.
pub async fn graph_names(store: &dyn CheckpointStore) {
    const C: &str = "graph_names";
    expect_empty(store, C).await;
    let named = record("named", RunStatus::Running, 1).with_graph("triage/v2");
    let unnamed = record("unnamed", RunStatus::Running, 1);
    let mut batch = WriteBatch::new();
    batch.put_run(named.clone()).put_run(unnamed.clone());
    commit(store, batch, C).await;
    assert_eq!(
        ok(store.get_run("named").await, C),
        Some(named.clone()),
        "{C}: the graph's name reads back"
    );
    assert_eq!(
        ok(store.list_runs(None, 10).await, C),
        vec![named, unnamed],
        "{C}: list_runs gives the graph's name (or none) as written"
    );
    delete_runs(store, &["named", "unnamed"], C).await;
}

/// A long time to live, for leases that must not expire during a check.
const LONG: Duration = Duration::from_secs(600);

/// Whether `result` is [`StoreError::Fenced`] of `run` with `epoch` against `current`.
fn expect_fenced<T: Debug>(result: Result<T>, run: &str, epoch: u64, current: u64, what: &str) {
    match result {
        Err(StoreError::Fenced {
            run: r,
            epoch: e,
            current: c,
        }) => assert_eq!(
            (r.as_str(), e, c),
            (run, epoch, current),
            "{what}: Fenced names the run, the stale epoch and the current one"
        ),
        other => panic!("{what}: must fail with Fenced, got {other:?}"),
    }
}

/// A lease never says its run is vacant ([`Lease::run_vacant`](crate::Lease::run_vacant)) while the store holds the
/// run's record or a record of one of its subgraph runs (`{run}/@..`); a store that does not
/// know says `false`.
pub async fn vacant_runs(store: &dyn CheckpointStore) {
    const C: &str = "vacant_runs";
    expect_empty(store, C).await;
    let runs = ["vacant-1", "vacant-2/@sub/1", "vacant-30"];
    let mut batch = WriteBatch::new();
    for run in runs {
        batch.put_run(record(run, RunStatus::Completed, 1));
    }
    commit(store, batch, C).await;
    for (run, why) in [
        ("vacant-1", "its record is stored"),
        ("vacant-2", "a run of its subgraphs is stored"),
    ] {
        let lease = ok(store.acquire_lease(run, LONG).await, C);
        assert!(!lease.run_vacant(), "{C}: `{run}` is not vacant: {why}");
        ok(store.release_lease(lease).await, C);
    }
    delete_runs(store, &runs, C).await;
}

/// Run leases ([`acquire_lease`](CheckpointStore::acquire_lease)): one live lease per run;
/// each new lease has a greater epoch (after a release, and after the run was deleted); a
/// batch fenced with the current epoch applies, one fenced with a stale epoch applies nothing
/// and fails with [`StoreError::Fenced`]; releasing a lease frees the run.
pub async fn run_leases(store: &dyn CheckpointStore) {
    const C: &str = "run_leases";
    expect_empty(store, C).await;
    let run = "leased";
    let first = ok(store.acquire_lease(run, LONG).await, C);
    assert_eq!(first.run(), run, "{C}: the lease names its run");
    assert!(first.epoch() >= 1, "{C}: epochs start at 1");
    match store.acquire_lease(run, LONG).await {
        Err(StoreError::RunBusy { run: r }) => assert_eq!(r, run, "{C}: RunBusy names the run"),
        other => panic!("{C}: a second acquire_lease must fail with RunBusy, got {other:?}"),
    }
    let other = ok(
        store.acquire_lease("leased2", LONG).await,
        &format!("{C}: another run is free"),
    );
    ok(
        store.renew_lease(&first, LONG).await,
        &format!("{C}: renew"),
    );

    let mut batch = WriteBatch::new();
    batch
        .fence(run, first.epoch())
        .put_run(record(run, RunStatus::Running, 1))
        .put_checkpoint(run, 0, bytes("step 0"));
    commit(
        store,
        batch,
        &format!("{C}: a batch with the current epoch"),
    )
    .await;

    let stale = first.epoch();
    ok(store.release_lease(first).await, &format!("{C}: release"));
    let second = ok(
        store.acquire_lease(run, LONG).await,
        &format!("{C}: acquire_lease after a release"),
    );
    assert!(
        second.epoch() > stale,
        "{C}: a new lease has a greater epoch ({} after {stale})",
        second.epoch()
    );

    // A stale epoch, wherever its fence stands in the batch, applies nothing of it.
    for fence_first in [true, false] {
        let mut batch = WriteBatch::new();
        if fence_first {
            batch.fence(run, stale);
        }
        batch
            .put_run(record(run, RunStatus::Failed, 2))
            .put_checkpoint(run, 1, bytes("step 1"))
            .delete_checkpoints_before(run, 1)
            .put_event(run, 0, bytes("event"));
        if !fence_first {
            batch.fence(run, stale);
        }
        let what = format!("{C}: a batch fenced with a stale epoch (fence first: {fence_first})");
        expect_fenced(store.commit(batch).await, run, stale, second.epoch(), &what);
        assert_eq!(
            ok(store.get_run(run).await, C),
            Some(record(run, RunStatus::Running, 1)),
            "{what}: the run record is unchanged"
        );
        assert_eq!(
            ids(&ok(store.list_checkpoints(run, None, 10).await, C)),
            [&0],
            "{what}: no checkpoint written or deleted"
        );
        assert_eq!(
            ok(store.last_event(run).await, C),
            None,
            "{what}: no event written"
        );
    }
    // A batch with a stale fence among current ones fails too; the current epoch writes.
    let mut batch = WriteBatch::new();
    batch
        .fence(run, second.epoch())
        .fence("leased2", other.epoch() + 1)
        .put_checkpoint(run, 1, bytes("step 1"));
    expect_fenced(
        store.commit(batch).await,
        "leased2",
        other.epoch() + 1,
        other.epoch(),
        &format!("{C}: a batch with one stale fence of two"),
    );
    let mut batch = WriteBatch::new();
    batch
        .fence(run, second.epoch())
        .put_checkpoint(run, 1, bytes("step 1"));
    commit(store, batch, &format!("{C}: the new owner writes")).await;

    // Deleting the run keeps its epoch: a run created again never reuses one.
    let mut batch = WriteBatch::new();
    batch.fence(run, second.epoch()).delete_run(run);
    commit(store, batch, &format!("{C}: the owner deletes the run")).await;
    let last = second.epoch();
    ok(store.release_lease(second).await, C);
    let third = ok(store.acquire_lease(run, LONG).await, C);
    assert!(
        third.epoch() > last,
        "{C}: a lease after the run was deleted has a greater epoch ({} after {last})",
        third.epoch()
    );
    ok(store.release_lease(third).await, C);
    ok(store.release_lease(other).await, C);
    let again = ok(store.acquire_lease("leased2", LONG).await, C);
    ok(store.release_lease(again).await, C);
    expect_empty(store, C).await;
}

/// An expired lease frees its run: another owner takes it with a greater epoch, after which
/// the old owner's renewals and batches fail with [`StoreError::Fenced`] (nothing of them
/// applied) and its release leaves the new lease alone. A lease that expired but was not
/// taken over still renews and writes.
pub async fn lease_expiry(store: &dyn CheckpointStore) {
    const C: &str = "lease_expiry";
    expect_empty(store, C).await;
    let run = "expiring";
    let short = Duration::from_millis(30);
    let old = ok(store.acquire_lease(run, short).await, C);
    tokio::time::sleep(short * 3).await;
    // Expired, not taken over: still the owner.
    ok(
        store.renew_lease(&old, short).await,
        &format!("{C}: renewing an expired lease nobody took over"),
    );
    let mut batch = WriteBatch::new();
    batch
        .fence(run, old.epoch())
        .put_run(record(run, RunStatus::Running, 1));
    commit(
        store,
        batch,
        &format!("{C}: writing with an expired lease nobody took over"),
    )
    .await;

    tokio::time::sleep(short * 3).await;
    let new = ok(
        store.acquire_lease(run, LONG).await,
        &format!("{C}: taking over an expired lease"),
    );
    assert!(
        new.epoch() > old.epoch(),
        "{C}: the new owner has a greater epoch ({} after {})",
        new.epoch(),
        old.epoch()
    );
    expect_fenced(
        store.renew_lease(&old, LONG).await,
        run,
        old.epoch(),
        new.epoch(),
        &format!("{C}: renewing a lease taken over"),
    );
    let mut batch = WriteBatch::new();
    batch
        .fence(run, old.epoch())
        .put_run(record(run, RunStatus::Failed, 2))
        .put_checkpoint(run, 0, bytes("stale"));
    expect_fenced(
        store.commit(batch).await,
        run,
        old.epoch(),
        new.epoch(),
        &format!("{C}: the old owner's batch"),
    );
    assert_eq!(
        ok(store.get_run(run).await, C),
        Some(record(run, RunStatus::Running, 1)),
        "{C}: nothing of the old owner's batch applied"
    );
    assert_eq!(
        ok(store.get_checkpoint(run, 0).await, C),
        None,
        "{C}: no checkpoint"
    );
    ok(
        store.release_lease(old).await,
        &format!("{C}: releasing a lease taken over"),
    );
    assert!(
        matches!(
            store.acquire_lease(run, LONG).await,
            Err(StoreError::RunBusy { .. })
        ),
        "{C}: releasing the old lease leaves the new one held"
    );
    let mut batch = WriteBatch::new();
    batch.fence(run, new.epoch()).delete_run(run);
    commit(store, batch, &format!("{C}: the new owner writes")).await;
    ok(store.release_lease(new).await, C);
    expect_empty(store, C).await;
}
