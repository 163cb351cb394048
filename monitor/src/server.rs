//! [`Server`]: a running monitor.

use std::fmt;
use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// A monitor serving on a tokio task, made by [`Monitor::serve`](crate::Monitor::serve) or
/// [`serve`](crate::serve). Dropping it stops the server, as
/// [`shutdown`](Server::shutdown) does without waiting.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), agentgraph_monitor::Error> {
/// use std::sync::Arc;
///
/// let store = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let server = agentgraph_monitor::serve(([127, 0, 0, 1], 0).into(), store).await?;
/// assert!(server.local_addr().ip().is_loopback());
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("stopped", &self.stop.is_cancelled())
            .finish()
    }
}

impl Server {
    pub(crate) fn new(
        addr: SocketAddr,
        stop: CancellationToken,
        join: JoinHandle<std::io::Result<()>>,
    ) -> Self {
        Server {
            addr,
            stop,
            join: Some(join),
        }
    }

    /// The address it listens on (with the port the system chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address: `http://{local_addr}/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops accepting connections, ends the open event streams (each gets an `end` event
    /// with status `shutdown`), lets requests in flight finish, and returns once it has
    /// stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the server had failed, [`Error::Task`] if its task panicked.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop.cancel();
        self.join_task().await
    }

    /// Serves until the server fails (nothing else stops it while `wait` holds it): for a
    /// program that only serves. To stop on Ctrl-C, race it with the signal in
    /// `tokio::select!`; the server stops when the losing future is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the server failed, [`Error::Task`] if its task panicked.
    pub async fn wait(mut self) -> Result<()> {
        self.join_task().await
    }

    async fn join_task(&mut self) -> Result<()> {
        let Some(join) = self.join.take() else {
            return Ok(());
        };
        match join.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(Error::Task(e.to_string())),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Server>();
}
