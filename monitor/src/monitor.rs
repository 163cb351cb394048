//! [`Monitor`]: the builder, and [`serve`], the one call.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::{CheckpointStore, IntoStore};
use agentgraph_engine::{GraphRegistry, RunConfig, StoreInspector};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::auth::{Role, TokenGrant, Tokens};
use crate::error::{Error, Result};
use crate::live::LiveTokens;
use crate::server::Server;

/// The address a monitor binds by default: loopback, port 7070.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7070);

/// How often a followed run's store is polled for new events by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The longest token accepted.
const MAX_TOKEN_LEN: usize = 512;

/// A monitor over a checkpoint store: the web page, the JSON API, the event streams and
/// `/metrics`. Set it up, then [`serve`](Monitor::serve) it, or take its
/// [`router`](Monitor::router) into a server of your own.
///
/// It reads the store only (through [`StoreInspector`]); runs show in it when they are run with
/// [`RunConfig::monitored`](agentgraph_engine::RunConfig::monitored) on the same store (or
/// on a store the same files back, in another process).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use agentgraph_monitor::Monitor;
///
/// let store = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let server = Monitor::new(store)
///     .bind(([127, 0, 0, 1], 0).into())
///     .token("correct-horse-battery-staple")
///     .poll_interval(Duration::from_millis(100))
///     .serve()
///     .await?;
/// println!("monitor at {}", server.url());
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a monitor does nothing until it is served"]
pub struct Monitor {
    store: Arc<dyn CheckpointStore>,
    addr: SocketAddr,
    tokens: Tokens,
    poll: Duration,
    prometheus: Option<PrometheusHandle>,
    metrics: bool,
    live: Option<LiveTokens>,
    control: Option<(GraphRegistry, RunConfig)>,
    #[cfg(feature = "postgres")]
    queue: Option<agentgraph_postgres::worker::Queue>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("store", &self.store)
            .field("addr", &self.addr)
            .field("tokens", &self.tokens)
            .field("poll", &self.poll)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor of `store`, to bind to [`DEFAULT_ADDR`] (127.0.0.1:7070), without a token,
    /// polling every [`DEFAULT_POLL_INTERVAL`], with `/metrics` from a process-wide
    /// Prometheus recorder it installs when it is served (or its router made). Metrics
    /// recorded before a recorder is installed are lost: start the monitor before the runs.
    ///
    /// # Examples
    ///
    /// See [`Monitor`].
    pub fn new(store: impl IntoStore) -> Self {
        Monitor {
            store: store.into_store(),
            addr: DEFAULT_ADDR,
            tokens: Tokens::new(),
            poll: DEFAULT_POLL_INTERVAL,
            prometheus: None,
            metrics: true,
            live: None,
            control: None,
            #[cfg(feature = "postgres")]
            queue: None,
        }
    }

    /// The address to listen on. Port 0 picks a free port ([`Server::local_addr`] says
    /// which). An address other than loopback needs a [`token`](Monitor::token).
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let monitor = agentgraph_monitor::Monitor::new(store).bind("127.0.0.1:8080".parse().unwrap());
    /// # drop(monitor);
    /// ```
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Requires `Authorization: Bearer <token>` on the API, the event streams and
    /// `/metrics`; event streams also take it as `?token=` (a browser's `EventSource`
    /// cannot set headers). The page itself (HTML, script, style: no data) stays public and
    /// asks for the token; it also takes it from its address as `/#token=...` (a fragment
    /// never reaches the server or its logs). Compared in constant time.
    ///
    /// The token is an [admin](Role::Admin) over every tenant's runs: it adds to the
    /// [`tokens`](Monitor::tokens) given, unnamed.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let token = std::env::var("MONITOR_TOKEN").unwrap_or_else(|_| "a-long-random-string".into());
    /// let monitor = agentgraph_monitor::Monitor::new(store)
    ///     .bind(([0, 0, 0, 0], 7070).into())
    ///     .token(token);
    /// # drop(monitor);
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens = std::mem::take(&mut self.tokens).add(token, TokenGrant::new(Role::Admin));
        self
    }

    /// How often a followed run's store is read for new events (default 200 ms). Events are
    /// read from the store, so a run written by another process is followed the same way.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let monitor = agentgraph_monitor::Monitor::new(store)
    ///     .poll_interval(std::time::Duration::from_millis(500));
    /// # drop(monitor);
    /// ```
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// Serves `/metrics` from this Prometheus recorder (one the application installed)
    /// instead of installing one.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// // A recorder that is not installed globally: only what is recorded through it shows.
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let monitor = agentgraph_monitor::Monitor::new(store).prometheus(recorder.handle());
    /// # drop(monitor);
    /// ```
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self.metrics = true;
        self
    }

    /// Whether to serve `/metrics` (default yes). Without it no recorder is installed, for
    /// an application that records its metrics another way.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let monitor = agentgraph_monitor::Monitor::new(store).metrics(false);
    /// # drop(monitor);
    /// ```
    pub fn metrics(mut self, serve: bool) -> Self {
        self.metrics = serve;
        if !serve {
            self.prometheus = None;
        }
        self
    }

    /// The monitor's routes, to serve from an application's own axum server (nest it, or
    /// merge it at the root: the page's files are at `/`). The address is not used and not
    /// checked: exposing the router beyond loopback without a token is the caller's call.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidToken`]; [`Error::Recorder`] when `/metrics` is served, no handle
    /// was given and another `metrics` recorder is installed.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let app = axum::Router::new()
    ///     .route("/health", axum::routing::get(|| async { "ok" }))
    ///     .merge(agentgraph_monitor::Monitor::new(store).router()?);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    /// # serving.abort();
    /// # Ok(()) }
    /// ```
    pub fn router(self) -> Result<axum::Router> {
        let state = self.state(CancellationToken::new())?;
        Ok(app::router(state))
    }

    /// Turns on the control API, which runs `registry`'s graphs in this process, on the
    /// monitor's store, from `config` (its store is replaced by the monitor's; start from
    /// `RunConfig::new().monitored()` for the page to show their events and states):
    ///
    /// - `GET /api/graphs`: the graphs, with their fingerprints;
    /// - `POST /api/graphs/{graph}/runs` with `{"input": {...}, "run_id": ".."}` starts a run
    ///   (`input` is the state's JSON; fields left out keep their defaults), or with
    ///   `{"thread": "..", "input": {...}}` gives a thread its next input (an update's JSON);
    /// - `POST /api/runs/{run}/resume` with `{"value": ..}`, `{"answers": {"id": ..}}` and/or
    ///   `{"update": {...}}` resumes a run of a registered graph (the graph its record names:
    ///   build graphs with `GraphBuilder::named`);
    /// - `POST /api/runs/{run}/cancel` cancels a run it started that is running.
    ///
    /// Each answers 202 with `{"run_id", "graph", "url"}` once the run has started; what stops
    /// a run before it starts is the answer instead (400 for input that is not the graph's,
    /// 404 for an unknown graph or run, 409 for a busy run or a thread waiting to be
    /// resumed). The runs go on in the background; follow them with the read routes. The
    /// control API needs a token ([`token`](Monitor::token)): serving it without one fails
    /// with [`Error::ControlWithoutToken`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use agentgraph_engine::{GraphRegistry, RunConfig};
    /// use agentgraph_monitor::{Error, Monitor};
    ///
    /// let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let err = Monitor::new(store.clone())
    ///     .control(GraphRegistry::new(), RunConfig::new())
    ///     .router()
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::ControlWithoutToken));
    /// let app = Monitor::new(store)
    ///     .token("s3cret")
    ///     .control(GraphRegistry::new(), RunConfig::new())
    ///     .router()?;
    /// # drop(app);
    /// # Ok(()) }
    /// ```
    pub fn control(mut self, registry: GraphRegistry, config: RunConfig) -> Self {
        self.control = Some((registry, config));
        self
    }

    /// Turns on the control API over a PostgreSQL queue of workers (feature `postgres`):
    /// `POST /api/graphs/{graph}/runs` submits the run (or the thread's input) to `queue`,
    /// for whichever [`Worker`](agentgraph_postgres::worker::Worker) has the graph;
    /// `POST /api/runs/{run}/resume` queues the answers, `POST /api/runs/{run}/cancel` asks the
    /// worker running it to stop, `GET /api/queue` tells the queue's depth,
    /// `GET /api/queue/jobs` lists its jobs and `GET /api/queue/jobs/{run}` shows a run's
    /// newest job. The controls answer 202 with `{"run_id", "graph", "url", "queued": true}`
    /// once the job is in the database. It takes the place of
    /// [`control`](Monitor::control)'s in-process runs, and needs the token as they do.
    ///
    /// A job carries the caller's tenant and name ([`TokenGrant::named`](crate::TokenGrant::named);
    /// `token` or `anonymous` without one): the worker runs it as the tenant's run, and its
    /// audit trail names the caller
    /// ([`Queue::tenant`](agentgraph_postgres::worker::Queue::tenant),
    /// [`Queue::caller`](agentgraph_postgres::worker::Queue::caller)). A tenant's token lists,
    /// cancels and resumes its tenant's jobs only; another tenant's are 404.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use agentgraph_postgres::{PostgresStore, worker::Queue};
    ///
    /// let store = PostgresStore::connect("postgres://app@db/app").await?;
    /// let server = agentgraph_monitor::Monitor::new(Arc::new(store.clone()))
    ///     .token("s3cret")
    ///     .queue(Queue::new(&store))
    ///     .serve()
    ///     .await?;
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn queue(mut self, queue: agentgraph_postgres::worker::Queue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Sends the tokens `live` passes on ([`LiveTokens::watch`]) to the event streams of
    /// their runs as `live_token` events, while their nodes run: the page shows a model's
    /// text growing, before the step's events reach the store.
    ///
    /// # Examples
    ///
    /// See [`LiveTokens`].
    pub fn live(mut self, live: LiveTokens) -> Self {
        self.live = Some(live);
        self
    }

    /// Binds the address, starts serving on a tokio task and returns at once.
    ///
    /// # Errors
    ///
    /// [`Error::Exposed`] for an address other than loopback without a token;
    /// [`Error::Bind`] when the address cannot be bound; the errors of
    /// [`router`](Monitor::router).
    ///
    /// # Examples
    ///
    /// See [`Monitor`].
    pub async fn serve(self) -> Result<Server> {
        let addr = self.addr;
        if !addr.ip().is_loopback() && self.tokens.is_empty() {
            return Err(Error::Exposed { addr });
        }
        let stop = CancellationToken::new();
        let router = app::router(self.state(stop.clone())?);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let signal = stop.clone();
        let join = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await
        });
        tracing::info!(url = %format!("http://{local}/"), "monitor: serving");
        Ok(Server::new(local, stop, join))
    }

    /// Takes these tokens, each bound to a tenant (or to every tenant) and a role: a
    /// [reader](Role::Reader) reads, an [operator](Role::Operator) also starts, resumes
    /// (answers interrupts) and cancels runs, an [admin](Role::Admin) also deletes and prunes
    /// them. A tenant's token sees only the tenant's runs, threads, events and memory: another
    /// tenant's run is 404 on every route, its lists show only the tenant's, and the runs it
    /// starts are the tenant's (through the queue of workers too, `Monitor::queue`:
    /// its jobs are the tenant's, `/api/queue/jobs` lists the tenant's only and `/api/queue`
    /// counts them). A route its role does not admit is 403; so are the routes that span
    /// tenants (`/metrics`, `/api/workers`) for a tenant's token.
    /// [`routes`](crate::routes) says who may call what. Handlers find the caller's grant as a
    /// [`Caller`](crate::Caller) in the request's extensions.
    ///
    /// Adds to the tokens given before (and to [`token`](Monitor::token)'s). Serving fails with
    /// [`Error::InvalidToken`] for a token that is not 1 to 512 visible ASCII characters, and
    /// with [`Error::DuplicateToken`] for a token given twice.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use agentgraph_checkpoint::TenantId;
    /// use agentgraph_monitor::{Monitor, Role, TokenGrant, Tokens};
    ///
    /// let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let acme = TenantId::new("acme")?;
    /// let server = Monitor::new(store)
    ///     .bind(([127, 0, 0, 1], 0).into())
    ///     .tokens(
    ///         Tokens::new()
    ///             .add("acme-reader-token", TokenGrant::new(Role::Reader).for_tenant(acme))
    ///             .add("root-token", TokenGrant::new(Role::Admin).named("root")),
    ///     )
    ///     .metrics(false)
    ///     .serve()
    ///     .await?;
    /// let client = reqwest::Client::new();
    /// let get = |path: &str, token: &str| {
    ///     client.get(format!("http://{}{path}", server.local_addr())).bearer_auth(token).send()
    /// };
    /// assert_eq!(get("/api/runs", "acme-reader-token").await?.status(), 200);
    /// assert_eq!(get("/api/runs", "wrong").await?.status(), 401);
    /// // A tenant's token may not read what spans tenants.
    /// assert_eq!(get("/api/workers", "acme-reader-token").await?.status(), 403);
    /// server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens.extend(tokens);
        self
    }

    fn state(self, shutdown: CancellationToken) -> Result<AppState> {
        let mut seen = std::collections::HashSet::new();
        for (token, grant) in self.tokens.iter() {
            let valid = !token.is_empty()
                && token.len() <= MAX_TOKEN_LEN
                && token.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                return Err(Error::InvalidToken);
            }
            if !seen.insert(token.clone()) {
                return Err(Error::DuplicateToken {
                    name: grant.name().map(str::to_owned),
                });
            }
        }
        let tokens = Arc::new(self.tokens);
        #[cfg(feature = "postgres")]
        let queued = self.queue.is_some();
        #[cfg(not(feature = "postgres"))]
        let queued = false;
        if (self.control.is_some() || queued) && tokens.is_empty() {
            return Err(Error::ControlWithoutToken);
        }
        let control = self.control.map(|(registry, config)| {
            crate::control::Control::new(registry, config.store(self.store.clone()))
        });
        let prometheus = match (self.metrics, self.prometheus) {
            (false, _) => None,
            (true, Some(handle)) => Some(handle),
            (true, None) => Some(crate::prom::global()?),
        };
        Ok(AppState {
            inspector: StoreInspector::new(self.store),
            poll: self.poll,
            tokens,
            prometheus,
            shutdown,
            live: self.live,
            control,
            #[cfg(feature = "postgres")]
            queue: self.queue.map(Arc::new),
        })
    }

    /// Reads the store's encrypted runs with the keys of `encryption` (feature `encryption`):
    /// the monitor's store is wrapped in an `EncryptedStore`, so that its API, event streams
    /// and webhooks read them decrypted, and the runs the [`control`](Monitor::control) API
    /// starts are encrypted under the current key. Without it, reading an encrypted run's
    /// records fails with an error that names the key id. Call it after [`new`](Monitor::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::Encryption;
    /// use agentgraph_engine::encryption::{Key, StaticKeys};
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let keys = StaticKeys::new(Key::parse("k1", &"ab".repeat(32)).unwrap());
    /// let monitor = agentgraph_monitor::Monitor::new(store).encryption(Encryption::new(keys));
    /// let shown = format!("{monitor:?}");
    /// assert!(shown.contains("EncryptedStore") && !shown.contains("abab"));
    /// ```
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub fn encryption(mut self, encryption: agentgraph_engine::Encryption) -> Self {
        self.store = encryption.wrap(self.store);
        self
    }
}

/// Serves a monitor of `store` on `addr` with the defaults of [`Monitor::new`]: the one call.
/// `addr` must be a loopback address (use [`Monitor::token`] to serve beyond it).
///
/// # Errors
///
/// See [`Monitor::serve`].
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// let store = Arc::new(agentgraph_checkpoint::SledStore::open("target/runs")?);
/// let server = agentgraph_monitor::serve(([127, 0, 0, 1], 7070).into(), store).await?;
/// println!("open {}", server.url());
/// server.wait().await?;
/// # Ok(()) }
/// ```
pub async fn serve(addr: SocketAddr, store: impl IntoStore) -> Result<Server> {
    Monitor::new(store).bind(addr).serve().await
}
