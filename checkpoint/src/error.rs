//! Store errors.

use crate::envelope::FormatError;

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process has the store open.
    #[error(
        "the store at {path} is open in another process; stop it, or give this process another path"
    )]
    Locked {
        /// The store's path.
        path: String,
    },
    /// The run is leased by another owner: another run of this process, or, for shared stores,
    /// another worker.
    #[error("run `{run}` is already running; wait for it to end before resuming it")]
    RunBusy {
        /// The run.
        run: String,
    },
    /// A write or a renewal carried a lease epoch that is no longer the run's: another owner
    /// took the run over. Nothing of the batch was applied; the old owner must stop.
    #[error(
        "run `{run}` was taken over: this writer's lease epoch {epoch} is stale (the run's is {current}); nothing of the write was applied"
    )]
    Fenced {
        /// The run.
        run: String,
        /// The epoch the writer held.
        epoch: u64,
        /// The run's current epoch.
        current: u64,
    },
    /// A stored record is damaged, truncated, foreign or too new.
    #[error("{what} is unreadable: {source}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        #[source]
        source: FormatError,
    },
    /// The run id cannot be stored.
    #[error("invalid run id `{run}`: {reason}")]
    InvalidRunId {
        /// The run id (its start).
        run: String,
        /// Why.
        reason: String,
    },
    /// An item cannot be stored under this namespace and key.
    #[error("invalid item `{key}` in namespace `{namespace}`: {reason}")]
    InvalidItem {
        /// The namespace, segments joined by `/`.
        namespace: String,
        /// The key (its start).
        key: String,
        /// Why.
        reason: String,
    },
    /// The store keeps no long-term memory items (a store written before they existed, or
    /// a third-party store that does not implement them).
    #[error("this store does not keep long-term memory items")]
    ItemsUnsupported,
    /// The store's server cannot be reached, or the connection to it was lost (a networked
    /// store, such as PostgreSQL). A batch whose commit failed this way was applied whole or
    /// not at all: read the run back to know which. Retry once the server is back.
    #[error(
        "the store's server is unavailable (connection refused or lost): {0}; a batch in flight was applied whole or not at all"
    )]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The backend failed (I/O, for example).
    #[error("store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A [`TenantStore`](crate::TenantStore) was asked to write to, or take the lease of,
    /// a run that is not its tenant's (another tenant's, or one of no tenant). Nothing of the
    /// batch was applied. Says nothing of whose run it is.
    #[error("no run `{run}` of this tenant")]
    NotInTenant {
        /// The run.
        run: String,
    },
    /// A record could not be encrypted or decrypted ([`EncryptedStore`]): a missing or wrong
    /// key (named by its id), a tampered record. Not damage: a run is never resumed from an
    /// older checkpoint past it.
    ///
    /// [`EncryptedStore`]: crate::encryption::EncryptedStore
    #[cfg(feature = "encryption")]
    #[error("{what}: {source}")]
    Encryption {
        /// Which record.
        what: String,
        /// Why.
        #[source]
        source: crate::encryption::EncryptionError,
    },
}
