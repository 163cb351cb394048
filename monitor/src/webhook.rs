//! Webhooks (feature `webhooks`): chosen events of the runs in a store, POSTed to URLs, signed,
//! retried, delivered at least once from the stored event log.
//!
//! A [`Webhooks`] dispatcher reads the store's stored events (runs made with
//! `RunConfig::store_events` or `monitored`), and delivers each event a [`Webhook`] asks for
//! (by default the ends of runs: `run_finished`, `run_failed`, `run_interrupted`) as a
//! `POST` of JSON. Where it got to is kept per webhook and run in a cursor file, rewritten
//! atomically after each delivery: a dispatcher killed at any point starts again from there,
//! so no event is lost, and the event being delivered when it died is delivered again (the
//! receiver tells a repeat by its `X-Agentgraph-Delivery` id).
//!
//! A webhook [`for a tenant`](Webhook::tenant) gets the events of that tenant's runs only
//! (`RunConfig::tenant`); a webhook without one gets every run's, whatever its tenant (the
//! deployment's own receiver). The body of an event of a tenant's run names the tenant.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgraph_checkpoint::{CheckpointStore, RunRecord, TenantId};
use agentgraph_engine::{Event, StoreInspector};
use backon::{BackoffBuilder, ExponentialBuilder};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// The header with the delivery's id: `{run}/{seq}`, the same on every attempt.
pub const DELIVERY_HEADER: &str = "x-agentgraph-delivery";
/// The header with the time of the attempt, in seconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "x-agentgraph-timestamp";
/// The header with the signature: `sha256=` and the hex HMAC-SHA256, under the webhook's
/// secret, of the timestamp, a `.` and the body.
pub const SIGNATURE_HEADER: &str = "x-agentgraph-signature";

/// The event types a webhook sends unless told otherwise: the ends of runs.
pub const DEFAULT_EVENTS: [&str; 3] = ["run_finished", "run_failed", "run_interrupted"];

/// What can go wrong with webhooks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The store could not be read.
    #[error("webhooks: reading the store failed: {0}")]
    Store(#[from] agentgraph_engine::Error),
    /// The cursor file could not be read or written.
    #[error("webhooks: the cursor file {path}: {source}")]
    Cursor {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cursor file is not one this dispatcher wrote.
    #[error("webhooks: the cursor file {path} is not a webhook cursor file: {reason}")]
    CorruptCursor {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The secret's environment variable is not set.
    #[error("webhooks: the secret's environment variable `{0}` is not set")]
    MissingSecret(String),
    /// The HTTP client could not be built.
    #[error("webhooks: the HTTP client cannot be built: {0}")]
    Client(String),
}

/// A signing secret: never printed.
#[derive(Clone)]
struct Secret(Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One receiver of events: a URL, the event types it gets, the secret that signs them.
///
/// # Examples
///
/// ```
/// use agentgraph_monitor::webhook::Webhook;
/// let hook = Webhook::new("https://example.com/hooks/runs")
///     .events(["run_finished", "run_failed"])
///     .secret("whsec-not-a-real-one")
///     .max_attempts(5);
/// assert_eq!(hook.url(), "https://example.com/hooks/runs");
/// assert!(!format!("{hook:?}").contains("whsec"));
/// ```
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    events: Vec<String>,
    secret: Option<Secret>,
    max_attempts: u32,
    retry_delay: Duration,
    timeout: Duration,
    /// The tenant whose runs it gets; every run's without one.
    tenant: Option<TenantId>,
}

impl Webhook {
    /// A webhook to `url`, for [`DEFAULT_EVENTS`], unsigned, tried up to 8 times per
    /// delivery and pass (from 200 ms apart, doubling), each attempt at most 10 s.
    ///
    /// # Examples
    ///
    /// See [`Webhook`].
    pub fn new(url: impl Into<String>) -> Self {
        Webhook {
            url: url.into(),
            events: DEFAULT_EVENTS.iter().map(|s| (*s).to_owned()).collect(),
            secret: None,
            max_attempts: 8,
            retry_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            tenant: None,
        }
    }

    /// The event types to send, by their JSON `type` (`run_finished`, `node_failed`, ...).
    ///
    /// # Examples
    ///
    /// See [`Webhook`].
    #[must_use]
    pub fn events<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.events = types.into_iter().map(Into::into).collect();
        self
    }

    /// Signs each delivery with `secret` ([`SIGNATURE_HEADER`]).
    ///
    /// # Examples
    ///
    /// See [`Webhook`].
    #[must_use]
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(Secret(Arc::from(secret.as_ref())));
        self
    }

    /// Signs each delivery with the secret in the environment variable `var`.
    ///
    /// # Errors
    ///
    /// [`WebhookError::MissingSecret`] when it is not set.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_monitor::webhook::{Webhook, WebhookError};
    /// let missing = Webhook::new("http://127.0.0.1:9/").secret_env("AGENTGRAPH_NO_SUCH_VAR");
    /// assert!(matches!(missing, Err(WebhookError::MissingSecret(_))));
    /// ```
    pub fn secret_env(self, var: &str) -> Result<Self, WebhookError> {
        let secret = std::env::var(var).map_err(|_| WebhookError::MissingSecret(var.to_owned()))?;
        Ok(self.secret(secret))
    }

    /// How many attempts a delivery gets in one pass before the dispatcher moves on to the
    /// next run (it tries again at its next pass: a delivery is never skipped).
    ///
    /// # Examples
    ///
    /// See [`Webhook`].
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The delay before the second attempt (it doubles, with jitter, up to 30 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let hook = agentgraph_monitor::webhook::Webhook::new("http://127.0.0.1:9/")
    ///     .retry_delay(std::time::Duration::from_millis(10));
    /// # let _ = hook;
    /// ```
    #[must_use]
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The longest an attempt may take.
    ///
    /// # Examples
    ///
    /// ```
    /// let hook = agentgraph_monitor::webhook::Webhook::new("http://127.0.0.1:9/")
    ///     .timeout(std::time::Duration::from_secs(2));
    /// # let _ = hook;
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL.
    ///
    /// # Examples
    ///
    /// See [`Webhook`].
    pub fn url(&self) -> &str {
        &self.url
    }

    fn wants(&self, event: &Event) -> bool {
        let kind = event.kind.name();
        self.events.iter().any(|e| e == kind)
    }

    /// Scopes the webhook to `tenant`: it gets the events of the tenant's runs only
    /// (`RunConfig::tenant`), and never another tenant's or a run without a tenant. A webhook
    /// left unscoped gets every run's events, whatever their tenant.
    ///
    /// Where a scoped webhook got to is kept apart from an unscoped one's to the same URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::TenantId;
    /// use agentgraph_monitor::webhook::Webhook;
    /// let acme = TenantId::new("acme")?;
    /// let hook = Webhook::new("https://acme.example.com/hooks").tenant(acme.clone());
    /// assert_eq!(hook.tenant_scope(), Some(&acme));
    /// assert_eq!(Webhook::new("https://example.com/hooks").tenant_scope(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// The tenant the webhook is scoped to ([`tenant`](Webhook::tenant)); `None` for one that
    /// gets every run's events.
    ///
    /// # Examples
    ///
    /// See [`tenant`](Webhook::tenant).
    pub fn tenant_scope(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// Whether the webhook gets the events of `run`: any run's without a tenant scope, else
    /// only its tenant's.
    fn covers(&self, run: &RunRecord) -> bool {
        match &self.tenant {
            None => true,
            Some(tenant) => run.tenant.as_ref() == Some(tenant),
        }
    }

    /// Its key in the cursor file: the URL, and the tenant for a scoped webhook (a space
    /// cannot be in a tenant id nor unescaped in a URL).
    fn cursor_key(&self) -> String {
        match &self.tenant {
            None => self.url.clone(),
            Some(tenant) => format!("{} tenant={}", self.url, tenant.as_str()),
        }
    }
}

/// The signature of a delivery: `sha256=` and the hex HMAC-SHA256 under `secret` of
/// `{timestamp}.{body}`. What a receiver computes to check [`SIGNATURE_HEADER`].
///
/// # Examples
///
/// ```
/// use agentgraph_monitor::webhook::sign;
/// let signature = sign(b"key", 1_700_000_000, br#"{"a":1}"#);
/// assert!(signature.starts_with("sha256="));
/// assert_eq!(signature.len(), "sha256=".len() + 64);
/// assert_ne!(signature, sign(b"other key", 1_700_000_000, br#"{"a":1}"#));
/// ```
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// What a delivery's body holds.
#[derive(Serialize)]
struct Payload<'a> {
    /// `{run}/{seq}`.
    delivery: &'a str,
    run_id: &'a str,
    event: &'a Event,
    /// The run's tenant, for a tenant's run.
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a TenantId>,
}

/// Where each webhook got to in each run: the newest event handled.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    version: u32,
    /// By webhook (its URL; for one scoped to a tenant, the URL, a space and `tenant=ID`),
    /// then run.
    hooks: BTreeMap<String, BTreeMap<String, Seen>>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
struct Seen {
    /// The newest event handled (delivered, or not wanted).
    seq: Option<u64>,
}

const CURSOR_VERSION: u32 = 1;

impl Cursor {
    fn load(path: &Path) -> Result<Cursor, WebhookError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let cursor: Cursor =
                    serde_json::from_slice(&bytes).map_err(|e| WebhookError::CorruptCursor {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
                if cursor.version != CURSOR_VERSION {
                    return Err(WebhookError::CorruptCursor {
                        path: path.to_owned(),
                        reason: format!(
                            "version {} (this build knows {CURSOR_VERSION})",
                            cursor.version
                        ),
                    });
                }
                Ok(cursor)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor {
                version: CURSOR_VERSION,
                hooks: BTreeMap::new(),
            }),
            Err(source) => Err(WebhookError::Cursor {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the cursor whole: to a temporary file beside it, synced, then renamed over it.
    fn save(&self, path: &Path) -> Result<(), WebhookError> {
        let failed = |source| WebhookError::Cursor {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
        let bytes = serde_json::to_vec(self).expect("a cursor is JSON");
        file.write_all(&bytes).map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        file.persist(path).map_err(|e| failed(e.error))?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Delivers the events of a store's runs to [`Webhook`]s, at least once, from the stored
/// event log. [`pass`](Webhooks::pass) delivers what is new once; [`spawn`](Webhooks::spawn)
/// does so every poll interval on a tokio task.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use agentgraph_monitor::webhook::{Webhook, Webhooks};
///
/// let store = Arc::new(agentgraph_checkpoint::SledStore::open("target/runs")?);
/// let dispatcher = Webhooks::new(store, "target/webhooks.cursor")
///     .hook(Webhook::new("https://example.com/hooks").secret_env("HOOK_SECRET")?)
///     .spawn()?;
/// // ... runs with RunConfig::new().store(store.clone()).store_events(true) ...
/// dispatcher.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Webhooks {
    inspector: StoreInspector,
    hooks: Vec<Webhook>,
    cursor_path: PathBuf,
    poll: Duration,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("hooks", &self.hooks)
            .field("cursor_path", &self.cursor_path)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// A dispatcher of `store`'s events, keeping where it got to in `cursor_file`; polling
    /// every second.
    ///
    /// # Examples
    ///
    /// See [`Webhooks`].
    pub fn new(store: Arc<dyn CheckpointStore>, cursor_file: impl Into<PathBuf>) -> Self {
        Webhooks {
            inspector: StoreInspector::new(store),
            hooks: Vec::new(),
            cursor_path: cursor_file.into(),
            poll: Duration::from_secs(1),
        }
    }

    /// Adds a webhook.
    ///
    /// # Examples
    ///
    /// See [`Webhooks`].
    #[must_use]
    pub fn hook(mut self, hook: Webhook) -> Self {
        self.hooks.push(hook);
        self
    }

    /// How often [`spawn`](Webhooks::spawn)ed dispatching looks for new events.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
    /// let hooks = agentgraph_monitor::webhook::Webhooks::new(store, "cursor.json")
    ///     .poll_interval(std::time::Duration::from_millis(250));
    /// # let _ = hooks;
    /// ```
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Delivers every stored event the webhooks want that they have not had yet; returns
    /// how many deliveries succeeded. A delivery that fails all its attempts stops that
    /// webhook's pass over that run (the next pass tries it again); the other runs and
    /// webhooks go on.
    ///
    /// # Errors
    ///
    /// The store or the cursor file failing.
    ///
    /// # Examples
    ///
    /// See the crate's tests; [`spawn`](Webhooks::spawn) calls it in a loop.
    pub async fn pass(&self) -> Result<usize, WebhookError> {
        let client = client()?;
        self.pass_with(&client).await
    }

    async fn pass_with(&self, client: &reqwest::Client) -> Result<usize, WebhookError> {
        let mut cursor = Cursor::load(&self.cursor_path)?;
        let runs = self.inspector.runs().await?;
        let mut delivered = 0;
        for hook in &self.hooks {
            let key = hook.cursor_key();
            for record in runs.iter().filter(|r| hook.covers(r)) {
                let seen = cursor
                    .hooks
                    .get(&key)
                    .and_then(|runs| runs.get(&record.run_id))
                    .copied()
                    .unwrap_or_default();
                // A run with no event after the cursor needs no more reads.
                let newest = self.inspector.last_event(&record.run_id).await?;
                if newest.is_none() || newest <= seen.seq {
                    continue;
                }
                let mut at = seen.seq;
                'pages: loop {
                    let page = self.inspector.events(&record.run_id, at, 500).await?;
                    if page.is_empty() {
                        break;
                    }
                    for event in &page {
                        let wanted = hook.wants(event);
                        if wanted && !deliver(client, hook, event, record.tenant.as_ref()).await {
                            break 'pages;
                        }
                        at = Some(event.seq);
                        cursor
                            .hooks
                            .entry(key.clone())
                            .or_default()
                            .insert(record.run_id.clone(), Seen { seq: at });
                        if wanted {
                            delivered += 1;
                            // At least once: a delivery is recorded before the next is made.
                            cursor.save(&self.cursor_path)?;
                        }
                    }
                }
            }
        }
        cursor.save(&self.cursor_path)?;
        Ok(delivered)
    }

    /// Delivers on a tokio task, a [`pass`](Webhooks::pass) every poll interval, until the
    /// returned dispatcher is shut down. A pass that fails is logged and tried again.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Client`] when the HTTP client cannot be built; the cursor file being
    /// unreadable.
    ///
    /// # Examples
    ///
    /// See [`Webhooks`].
    pub fn spawn(self) -> Result<Dispatcher, WebhookError> {
        Cursor::load(&self.cursor_path)?;
        let client = client()?;
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let join = tokio::spawn(async move {
            loop {
                if let Err(e) = self.pass_with(&client).await {
                    tracing::warn!(error = %e, "webhooks: a pass failed; trying again");
                }
                tokio::select! {
                    () = signal.cancelled() => return,
                    () = tokio::time::sleep(self.poll) => {}
                }
            }
        });
        Ok(Dispatcher { stop, join })
    }
}

/// A running [`Webhooks`] dispatcher.
#[derive(Debug)]
pub struct Dispatcher {
    stop: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl Dispatcher {
    /// Stops after the delivery under way (whose cursor is saved) and waits for it.
    ///
    /// # Examples
    ///
    /// See [`Webhooks`].
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.join.await;
    }
}

fn client() -> Result<reqwest::Client, WebhookError> {
    reqwest::Client::builder()
        .build()
        .map_err(|e| WebhookError::Client(e.to_string()))
}

/// POSTs `event` to `hook`, retrying failed attempts (no answer, or not 2xx); whether it was
/// delivered.
async fn deliver(
    client: &reqwest::Client,
    hook: &Webhook,
    event: &Event,
    tenant: Option<&TenantId>,
) -> bool {
    let delivery = format!("{}/{}", event.run_id, event.seq);
    let body = serde_json::to_vec(&Payload {
        delivery: &delivery,
        run_id: &event.run_id,
        event,
        tenant,
    })
    .expect("an event is JSON");
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(hook.retry_delay)
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build();
    for attempt in 1..=hook.max_attempts {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = client
            .post(&hook.url)
            .timeout(hook.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, &delivery)
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = &hook.secret {
            request = request.header(SIGNATURE_HEADER, sign(&secret.0, timestamp, &body));
        }
        let outcome = request.body(body.clone()).send().await;
        match outcome {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => tracing::warn!(
                url = %hook.url, %delivery, attempt, status = %response.status(),
                "webhooks: delivery refused"
            ),
            Err(e) => tracing::warn!(
                url = %hook.url, %delivery, attempt, error = %e,
                "webhooks: delivery failed"
            ),
        }
        if attempt < hook.max_attempts
            && let Some(delay) = backoff.next()
        {
            tokio::time::sleep(delay).await;
        }
    }
    false
}
