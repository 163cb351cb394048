//! Pruning a run's old checkpoints, and deleting runs.

use agentgraph_checkpoint::WriteBatch;
use agentgraph_checkpoint::audit::AuditAction;

use super::reader::Reader;
use super::{SHORT_TTL, audit, lease};
use crate::error::Result;

/// Keeps the newest `keep` checkpoints of `run` (at least one) and deletes the older ones, with
/// the field values only they needed: the values of each field before the version (base) the
/// oldest kept checkpoint starts from. Returns how many checkpoints were deleted.
pub(crate) async fn prune(
    reader: &Reader,
    run: &str,
    keep: usize,
    caller: Option<&str>,
) -> Result<usize> {
    let owner = lease(reader.store(), run, SHORT_TTL).await?;
    let store = owner.store();
    let all = reader.records(run).await?;
    let keep = keep.max(1);
    if all.len() <= keep {
        return Ok(0);
    }
    let oldest_kept = &all[all.len() - keep];
    let mut batch = WriteBatch::new();
    batch.delete_checkpoints_before(run, oldest_kept.step);
    for (f, base) in oldest_kept.bases.iter().enumerate() {
        batch.delete_blobs_before(run, f as u32, *base);
    }
    // Fields that older checkpoints have and the oldest kept one does not (a state type
    // upgraded to one with fewer fields): no kept checkpoint reads their values up to its step
    // (a later one that has such a field again stored it whole since).
    let most = all.iter().map(|r| r.bases.len()).max().unwrap_or(0);
    for f in oldest_kept.bases.len()..most {
        batch.delete_blobs_before(run, f as u32, oldest_kept.step + 1);
    }
    let pruned = serde_json::json!({
        "kept": keep,
        "deleted": all.len() - keep,
        "oldest_kept_step": oldest_kept.step,
    });
    audit::put(
        &**store,
        &mut batch,
        run,
        caller,
        AuditAction::Pruned,
        pruned,
    );
    store.commit(batch).await?;
    store.flush().await?;
    Ok(all.len() - keep)
}

/// Deletes `run` and everything stored for it, with the runs of its subgraphs.
pub(crate) async fn delete(reader: &Reader, run: &str, caller: Option<&str>) -> Result<()> {
    let owner = lease(reader.store(), run, SHORT_TTL).await?;
    let store = owner.store();
    let mut batch = WriteBatch::new();
    batch.delete_run(run);
    let children = reader.child_runs(run).await?;
    for child in &children {
        batch.delete_run(child);
    }
    let existed = store.get_run(run).await?.is_some();
    if existed || !children.is_empty() {
        let deleted = serde_json::json!({ "subgraph_runs": children.len() });
        audit::put(
            &**store,
            &mut batch,
            run,
            caller,
            AuditAction::Deleted,
            deleted,
        );
    }
    store.commit(batch).await?;
    store.flush().await?;
    Ok(())
}
