//! The conformance suite every [`CheckpointStore`] passes: run it against a new backend.
//!
//! Each check takes an **empty** store, panics with a message naming the check and the
//! expectation when the store misbehaves, and leaves the store empty again. [`run_all`] runs
//! them all; the others are public so that a failing one can be run alone.
//!
//! One check needs to damage a stored run record, which no trait method can do: the backend
//! hands [`run_all`] (and [`corrupt_run_record`]) a function that overwrites the raw bytes
//! stored for a run's record.
//!
//! # Examples
//!
//! ```
//! use agentgraph_checkpoint::{MemoryStore, conformance};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let store = MemoryStore::new();
//!     let raw = store.clone();
//!     conformance::run_all(&store, &move |run: &str, bytes: Vec<u8>| {
//!         raw.put_raw_run_record(run, bytes)
//!     })
//!     .await;
//! }
//! ```

use std::fmt::Debug;
use std::time::Duration;

use crate::envelope::{self, RecordKind};
use crate::error::{Result, StoreError};
use crate::store::{CheckpointStore, MAX_RUN_ID_LEN, Op, RunRecord, RunStatus, WriteBatch};

mod audit;
mod damage;
mod ids;
mod isolation;
mod items;
mod leases;
mod records;
mod sessions;
mod values;

pub use audit::*;
pub use damage::*;
pub use ids::*;
pub use isolation::*;
pub use items::*;
pub use leases::*;
pub use records::*;
pub use sessions::*;
pub use values::*;

/// Overwrites the raw bytes a backend stores for a run's record (see the [module](self)).
pub type PutRawRun<'a> = &'a (dyn Fn(&str, Vec<u8>) + Sync);

/// Runs every check, in order, on an empty `store`.
///
/// # Panics
///
/// When the store breaks the contract; the message names the check and what went wrong.
pub async fn run_all(store: &dyn CheckpointStore, put_raw_run: PutRawRun<'_>) {
    run_records(store).await;
    checkpoints(store).await;
    blobs(store).await;
    pending_writes(store).await;
    events(store).await;
    prune(store).await;
    value_sizes(store).await;
    delete_run_isolation(store).await;
    batches_apply_in_order(store).await;
    invalid_run_ids(store).await;
    graph_names(store).await;
    run_leases(store).await;
    vacant_runs(store).await;
    lease_expiry(store).await;
    run_metadata(store).await;
    sweeps(store).await;
    items(store).await;
    item_filters(store).await;
    item_expiry(store).await;
    item_semantic_search(store).await;
    item_atomicity(store).await;
    corrupt_run_record(store, put_raw_run).await;
    audit_trails(store).await;
}

/// Unwraps `result`, panicking with `what` and the error.
fn ok<T>(result: Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

async fn commit(store: &dyn CheckpointStore, batch: WriteBatch, what: &str) {
    ok(store.commit(batch).await, what);
}

async fn expect_empty(store: &dyn CheckpointStore, check: &str) {
    let runs = ok(store.list_runs(None, usize::MAX).await, check);
    assert!(
        runs.is_empty(),
        "{check}: the store must be empty before (and is left empty after) each check, found runs {:?}",
        runs.iter().map(|r| &r.run_id).collect::<Vec<_>>()
    );
}

async fn delete_runs(store: &dyn CheckpointStore, runs: &[&str], check: &str) {
    let mut batch = WriteBatch::new();
    for run in runs {
        batch.delete_run(run);
    }
    commit(store, batch, &format!("{check}: deleting the check's runs")).await;
    expect_empty(store, check).await;
}

fn record(run: &str, status: RunStatus, now_ms: u64) -> RunRecord {
    RunRecord::new(run, status, 0xfeed_beef_u128 << 64 | 42, now_ms)
}

fn ids<T, U: Debug>(items: &[(T, U)]) -> Vec<&T> {
    items.iter().map(|(k, _)| k).collect()
}

fn bytes(tag: &str) -> Vec<u8> {
    envelope::seal(RecordKind::Checkpoint, tag.as_bytes())
}
