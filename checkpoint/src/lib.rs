//! Checkpoint stores for agentgraph: the [`envelope`] every record is wrapped in, the
//! [`CheckpointStore`] trait with its atomic [`WriteBatch`], and the backends.
//!
//! # Quick start
//!
//! ```
//! use agentgraph_checkpoint::{CheckpointStore, MemoryStore, RunRecord, RunStatus, WriteBatch};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> agentgraph_checkpoint::Result<()> {
//!     let store = MemoryStore::new();
//!     let mut batch = WriteBatch::new();
//!     batch
//!         .put_run(RunRecord::new("run-1", RunStatus::Running, 7, 0))
//!         .put_pending_write("run-1", 0, 0, b"task 0 of step 0".to_vec());
//!     store.commit(batch).await?;
//!     assert_eq!(store.get_pending_writes("run-1", 0).await?.len(), 1);
//!
//!     // The step's checkpoint supersedes its pending writes, in one atomic batch.
//!     let mut batch = WriteBatch::new();
//!     batch
//!         .put_checkpoint("run-1", 0, b"step 0".to_vec())
//!         .delete_pending_writes("run-1", 0);
//!     store.commit(batch).await?;
//!     store.flush().await?;
//!     assert!(store.get_pending_writes("run-1", 0).await?.is_empty());
//!     Ok(())
//! }
//! ```
//!
//! # Backends
//!
//! | store | feature | durability |
//! | --- | --- | --- |
//! | [`MemoryStore`] | always | none: the process's memory |
//! | `SledStore` | `sled` (default) | survives a killed process; see its docs for power loss |
//! | `RedbStore` | `redb` | each flush is an fsynced commit: survives a killed process and a power loss |
//!
//! Tools open a store from a URL ([`StoreUrl`], [`open_url`]): `sled:PATH`, `redb:PATH`, or
//! a bare path (a sled store).
//!
//! A new backend proves itself with the [`conformance`] suite.

pub mod audit;
pub mod conformance;
#[cfg(feature = "encryption")]
pub mod encryption;
pub mod envelope;
mod error;
pub mod items;
#[cfg(any(feature = "sled", feature = "redb"))]
mod keys;
mod lease;
mod memory;
mod record;
#[cfg(feature = "redb")]
mod redb;
mod session;
#[cfg(feature = "sled")]
mod sled;
mod store;
mod sweep;
mod tenant;
mod url;

#[cfg(feature = "redb")]
pub use self::redb::RedbStore;
#[cfg(feature = "sled")]
pub use self::sled::SledStore;
pub use error::{Result, StoreError};
pub use memory::MemoryStore;
pub use record::{decode_run, encode_run};
pub use session::{RunFilter, RunMetadata};
pub use store::{
    BoxFuture, CheckpointStore, IntoStore, Lease, MAX_RUN_ID_LEN, Op, RunRecord, RunStatus,
    WriteBatch, check_run_id,
};
pub use sweep::{SUBGRAPH_MARK, Sweeper};
pub use tenant::{InvalidTenantId, MAX_TENANT_ID_LEN, TENANT_NAMESPACE, TenantId, TenantStore};
pub use url::{StoreUrl, UrlError, open_url};
