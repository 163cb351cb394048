//! What the audit trail records of the engine's actions on a run (the entries themselves
//! are `agentgraph_checkpoint::audit`'s, sealed by the store in the action's batch).

use agentgraph_checkpoint::audit::{AuditAction, AuditRecord, UNKNOWN_CALLER, sha256_hex};
use agentgraph_checkpoint::{CheckpointStore, WriteBatch};

/// The largest answer recorded in full in an `interrupt_answered` entry, in bytes of JSON;
/// a larger one is recorded by its SHA-256 and size only.
pub(crate) const ANSWER_IN_FULL: usize = 1024;

/// The details of an `interrupt_answered` entry: the interrupt's id, the SHA-256 and size of
/// the answer's JSON, and the answer itself when it is at most [`ANSWER_IN_FULL`] bytes.
pub(crate) fn answer_details(id: &str, json: &str) -> serde_json::Value {
    let mut details = serde_json::json!({
        "interrupt": id,
        "answer_sha256": sha256_hex(json.as_bytes()),
        "answer_bytes": json.len(),
    });
    if json.len() <= ANSWER_IN_FULL
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(json)
    {
        details["answer"] = value;
    }
    details
}

/// Adds an entry of `action` on `run` by `caller` to `batch`, when `store` keeps audit
/// trails.
pub(crate) fn put(
    store: &dyn CheckpointStore,
    batch: &mut WriteBatch,
    run: &str,
    caller: Option<&str>,
    action: AuditAction,
    details: serde_json::Value,
) {
    if store.supports_audit() {
        let caller = caller.unwrap_or(UNKNOWN_CALLER);
        batch.put_audit(run, AuditRecord::new(caller, action).with_details(details));
    }
}
