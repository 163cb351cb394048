//! The store's errors, as [`StoreError`]s.

use std::fmt;

use agentgraph_checkpoint::StoreError;
use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// A configuration the store refuses: a URL that does not parse, a bad schema name.
#[derive(Debug)]
pub(crate) struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The database holds a newer schema than this build knows ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)):
/// a newer program migrated it. Connecting fails with a [`StoreError::Backend`] whose source
/// is this error.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::StoreError;
/// use agentgraph_postgres::SchemaTooNew;
///
/// fn too_new(err: &StoreError) -> Option<&SchemaTooNew> {
///     match err {
///         StoreError::Backend(source) => source.downcast_ref::<SchemaTooNew>(),
///         _ => None,
///     }
/// }
/// let err = StoreError::Backend(Box::new(SchemaTooNew { schema: "agentgraph".into(), found: 9, known: 1 }));
/// assert_eq!(too_new(&err).map(|e| e.found), Some(9));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaTooNew {
    /// The schema.
    pub schema: String,
    /// Its version in the database.
    pub found: i32,
    /// The newest version this build knows.
    pub known: i32,
}

impl fmt::Display for SchemaTooNew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the store's schema `{}` is at version {}, newer than this build of agentgraph-postgres knows ({}); upgrade the program, or give it another schema",
            self.schema, self.found, self.known
        )
    }
}

impl std::error::Error for SchemaTooNew {}

/// Whether `e` says the server is gone or cannot be reached (rather than refusing a
/// statement).
pub(crate) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        // Not the server's error: I/O, a connection that would not open, a timeout.
        None => {
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                if s.is::<std::io::Error>() {
                    return true;
                }
                source = s.source();
            }
            // Connecting failed before any I/O error (a timeout, for example).
            e.to_string().contains("timed out") || e.to_string().contains("connect")
        }
    }
}

/// A client error as a [`StoreError`]: `Unavailable` when the server is gone.
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

/// A pool error as a [`StoreError`]: no connection to be had is `Unavailable`.
pub(crate) fn pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db(e),
        e @ (PoolError::Timeout(_) | PoolError::Closed) => StoreError::Unavailable(Box::new(e)),
        e => StoreError::Backend(Box::new(e)),
    }
}
