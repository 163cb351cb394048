//! Checkpoint stores for agentgraph: the [`envelope`] every record is wrapped in, the
//! [`CheckpointStore`] trait with its atomic [`WriteBatch`], and the backends.

pub mod envelope;
mod error;
mod store;

pub use error::{Result, StoreError};
pub use store::{
    BoxFuture, CheckpointStore, MAX_RUN_ID_LEN, Op, RunLease, RunLocks, RunRecord, RunStatus,
    WriteBatch, check_run_id,
};
