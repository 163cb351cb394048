//! The monitor's [`Error`].

use std::io;
use std::net::SocketAddr;

/// What can go wrong when the monitor is built or served.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use agentgraph_monitor::{Error, Monitor};
///
/// let store = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// // Beyond loopback, a token is required.
/// let err = Monitor::new(store).bind(([0, 0, 0, 0], 7070).into()).serve().await.unwrap_err();
/// assert!(matches!(err, Error::Exposed { .. }));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address is not a loopback address and no token was set.
    #[error(
        "refusing to serve the monitor on {addr} without a token: anyone who can reach that \
         address could read every run in the store; set one with `Monitor::token`, or bind to \
         127.0.0.1"
    )]
    Exposed {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The control API was turned on without a token: anyone who reaches the monitor could
    /// start, resume and cancel runs.
    #[error(
        "refusing to serve the control API without a token: anyone who can reach the monitor \
         could start, resume and cancel runs; set one with `Monitor::token`"
    )]
    ControlWithoutToken,
    /// The token is empty or has characters a bearer token cannot carry.
    #[error(
        "the monitor token must be 1 to 512 visible ASCII characters (no spaces); pass another \
         to `Monitor::token`"
    )]
    InvalidToken,
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; is another server using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process-wide Prometheus recorder could not be installed, because another `metrics`
    /// recorder is installed already.
    #[error(
        "cannot install the Prometheus recorder for `/metrics`: {0}; pass the handle of your \
         own recorder with `Monitor::prometheus`, or serve without `/metrics` with \
         `Monitor::metrics(false)`"
    )]
    Recorder(String),
    /// The server stopped with an I/O error.
    #[error("the monitor server failed: {0}")]
    Io(#[from] io::Error),
    /// The server task panicked or was aborted.
    #[error("the monitor server task ended abnormally: {0}")]
    Task(String),
    /// The same token was given twice ([`Monitor::tokens`](crate::Monitor::tokens)): which
    /// grant it carries would be ambiguous.
    #[error("a monitor token was given twice (named {name:?}); give each grant its own token")]
    DuplicateToken {
        /// The name of the second grant ([`TokenGrant::named`](crate::TokenGrant::named)).
        name: Option<String>,
    },
}

/// A result with the monitor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
