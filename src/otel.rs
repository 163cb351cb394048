//! OpenTelemetry export of the engine's `run`, `step` and `node` spans (the `otel` feature).
//!
//! The engine traces every run with [`tracing`] spans: a `run` span (fields `run_id`, `mode`)
//! holds a `step` span per step (`step`, `tasks`; at `DEBUG` level), which holds a `node` span
//! per attempt of a task (`node`, `step`, `task`, `attempt`). [`layer`] turns them into
//! OpenTelemetry spans, one trace per run, and sends them to a collector over OTLP; compose it
//! with your own subscriber, or let [`init`] install a subscriber that also prints logs.
//!
//! ```no_run
//! use agentgraph::otel::{self, OtelConfig};
//! use tracing_subscriber::prelude::*;
//!
//! # fn main() -> Result<(), agentgraph::otel::Error> {
//! // Sends to OTEL_EXPORTER_OTLP_ENDPOINT, or http://localhost:4318 when it is not set.
//! let (otel_layer, _guard) = otel::layer(OtelConfig::new().service_name("research-bot"))?;
//! tracing_subscriber::registry()
//!     .with(otel_layer)
//!     .with(tracing_subscriber::fmt::layer())
//!     .init();
//! // ... run graphs; dropping `_guard` at the end of `main` sends the last spans.
//! # Ok(()) }
//! ```
//!
//! # Transport
//!
//! Spans go out in batches, from a thread of the OpenTelemetry SDK, as OTLP over HTTP with
//! protobuf bodies (`http/protobuf`, port 4318), posted with reqwest's blocking client. That
//! choice over gRPC (tonic): the gRPC exporter does its I/O on the application's tokio
//! runtime, so it needs one to be running, and under a current-thread runtime (the default of
//! `#[tokio::main(flavor = "current_thread")]` and of `#[tokio::test]`) flushing the last
//! spans blocks the only thread that could send them: shutting down waits out its 5-second
//! timeout and loses them. The HTTP exporter runs on threads of its own, so it works inside
//! any runtime, or none, and the guard may be dropped anywhere. It costs about 25 more crates
//! than tonic would (reqwest's URL parsing and its Unicode tables): the feature adds about 70.
//!
//! Plain HTTP only: for `https` endpoints, enable TLS in your own dependency on
//! `opentelemetry-otlp` 0.33 (its `reqwest-rustls` feature; cargo merges the features, so this
//! exporter gets it too), or send to a collector on the same host or network that forwards
//! over TLS.
//!
//! # Environment
//!
//! Unless set in code, the standard variables apply: `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_ENDPOINT` (the base URL, `/v1/traces` is
//! appended), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER`, and `OTEL_BSP_*` for the batches.
//! `OTEL_EXPORTER_OTLP_PROTOCOL` may only be `http/protobuf`.
//!
//! # Failed nodes
//!
//! A failed attempt marks its `node` span as an error, with the error's text in its `error`
//! attribute (as [`EventKind::NodeFailed`](crate::EventKind::NodeFailed) says it), and a
//! failed run marks its `run` span. Node spans are exported as `node {name}`. An `ERROR` event
//! that a node logs itself (`tracing::error!`) inside its span marks the span too.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter, TracerProviderBuilder};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

pub use tracing::Level;
pub use tracing_subscriber::filter::LevelFilter;

/// The collector's address when neither [`OtelConfig::endpoint`] nor an environment variable
/// sets one: a collector on this host, OTLP/HTTP port.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
const TRACES_PATH: &str = "/v1/traces";

/// Crates whose spans and events never go to the collector: the exporter's own (the SDK's
/// internal logs, its HTTP client), so that exporting never feeds what it exports. Prefixes:
/// `hyper` covers `hyper_util`, `opentelemetry` the SDK and the exporter.
const EXPORTER_TARGETS: [&str; 3] = ["opentelemetry", "reqwest", "hyper"];

/// What [`layer`] and [`init`] export, and where to.
///
/// Every setting is optional: [`OtelConfig::new`] takes the standard `OTEL_*` environment
/// variables (see the [module docs](self#environment)), then the defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use agentgraph::otel::{Level, LevelFilter, OtelConfig};
///
/// let config = OtelConfig::new()
///     .service_name("research-bot")
///     .endpoint("http://collector.internal:4318")
///     .header("x-team", "search")
///     .timeout(Duration::from_secs(3))
///     .level(Level::INFO) // run and node spans, no step spans
///     .other_level(LevelFilter::WARN)
///     .sample_ratio(0.25);
/// assert_eq!(
///     config.traces_endpoint().unwrap(),
///     "http://collector.internal:4318/v1/traces"
/// );
/// ```
#[must_use = "an OtelConfig does nothing until it is passed to otel::layer or otel::init"]
pub struct OtelConfig {
    service_name: Option<String>,
    endpoint: Option<String>,
    headers: HashMap<String, String>,
    timeout: Option<Duration>,
    resource: Vec<KeyValue>,
    level: Level,
    other_level: LevelFilter,
    sample_ratio: Option<f64>,
    exporter: Option<Box<dyn FnOnce(TracerProviderBuilder) -> TracerProviderBuilder + Send>>,
}

impl fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelConfig")
            .field("service_name", &self.service_name)
            .field("endpoint", &self.endpoint)
            // Header values are often credentials.
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("resource", &self.resource)
            .field("level", &self.level)
            .field("other_level", &self.other_level)
            .field("sample_ratio", &self.sample_ratio)
            .field("exporter", &self.exporter.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl OtelConfig {
    /// A configuration that takes everything from the environment, then the defaults: service
    /// name `OTEL_SERVICE_NAME` (else `unknown_service`), endpoint
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` (else
    /// `http://localhost:4318`), all of agentgraph's spans (level `DEBUG`), other crates' spans
    /// at `INFO` and above, every trace kept (unless `OTEL_TRACES_SAMPLER` says otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let config = OtelConfig::new();
    /// # if std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    /// #     && std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
    /// assert_eq!(config.traces_endpoint().unwrap(), "http://localhost:4318/v1/traces");
    /// # }
    /// ```
    pub fn new() -> Self {
        Self {
            service_name: None,
            endpoint: None,
            headers: HashMap::new(),
            timeout: None,
            resource: Vec::new(),
            level: Level::DEBUG,
            other_level: LevelFilter::INFO,
            sample_ratio: None,
            exporter: None,
        }
    }

    /// Names the service the spans come from (the `service.name` resource attribute), over
    /// `OTEL_SERVICE_NAME`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let config = OtelConfig::new().service_name("research-bot");
    /// assert!(format!("{config:?}").contains("research-bot"));
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Sends to the collector at `url`, over the environment variables: its base URL, as in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://host:4318`; `/v1/traces` is appended), or the
    /// full URL of its traces endpoint (one ending in `/v1/traces` is taken as it is).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let base = OtelConfig::new().endpoint("http://127.0.0.1:4318/");
    /// assert_eq!(base.traces_endpoint().unwrap(), "http://127.0.0.1:4318/v1/traces");
    /// let full = OtelConfig::new().endpoint("http://127.0.0.1:4318/v1/traces");
    /// assert_eq!(full.traces_endpoint().unwrap(), "http://127.0.0.1:4318/v1/traces");
    /// ```
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Adds an HTTP header to every export request (an API key, a tenant), besides those of
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let config = OtelConfig::new().header("authorization", "Bearer s3cr3t");
    /// // Debug output names the headers, never their values.
    /// assert!(!format!("{config:?}").contains("s3cr3t"));
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// How long one export request may take (default: `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10
    /// seconds).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let config = OtelConfig::new().timeout(Duration::from_secs(2));
    /// assert!(format!("{config:?}").contains("2s"));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a resource attribute, describing the process that sends the spans
    /// (`deployment.environment.name`, `service.version`...), besides those of
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let config = OtelConfig::new()
    ///     .resource_attribute("deployment.environment.name", "staging")
    ///     .resource_attribute("service.version", env!("CARGO_PKG_VERSION"));
    /// assert!(format!("{config:?}").contains("staging"));
    /// ```
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource.push(KeyValue::new(key.into(), value.into()));
        self
    }

    /// The most verbose of agentgraph's spans to export: `DEBUG` (the default) exports `run`,
    /// `step` and `node` spans; `INFO` leaves out the `step` spans, and each `node` span
    /// becomes a child of its `run` span.
    ///
    /// A span that the subscriber as a whole disables is never seen by this layer: with a
    /// global filter at `INFO` (say, an `EnvFilter` added with `.with(...)`), no `step` spans
    /// are exported whatever this says. Filter your other layers one by one
    /// ([`Layer::with_filter`]) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::{Level, OtelConfig};
    ///
    /// // One span per run and per node attempt: fewer spans on graphs with many steps.
    /// let config = OtelConfig::new().level(Level::INFO);
    /// assert!(format!("{config:?}").contains("INFO"));
    /// ```
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// The most verbose spans and events of other crates to export (the spans your nodes
    /// open, for instance, which nest under their `node` span); `INFO` by default.
    /// [`LevelFilter::OFF`] exports agentgraph's spans alone. The exporter's own crates
    /// (opentelemetry, reqwest, hyper) are never exported.
    ///
    /// Events become events of the span they happen in.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::{LevelFilter, OtelConfig};
    ///
    /// let config = OtelConfig::new().other_level(LevelFilter::OFF);
    /// assert!(format!("{config:?}").contains("other_level: LevelFilter::OFF"));
    /// ```
    pub fn other_level(mut self, level: LevelFilter) -> Self {
        self.other_level = level;
        self
    }

    /// Keeps this share of the traces (one trace per run: a run is kept or dropped whole),
    /// over `OTEL_TRACES_SAMPLER`. A run that is itself part of a sampled trace (a span of
    /// yours around it) follows its parent's decision.
    ///
    /// # Panics
    ///
    /// If `ratio` is not between 0 and 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let config = OtelConfig::new().sample_ratio(0.1); // one run in ten
    /// assert!(format!("{config:?}").contains("0.1"));
    /// ```
    pub fn sample_ratio(mut self, ratio: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&ratio),
            "OtelConfig::sample_ratio takes a share between 0 and 1, not {ratio}"
        );
        self.sample_ratio = Some(ratio);
        self
    }

    /// Sends the spans to `exporter` instead of over OTLP/HTTP: opentelemetry_sdk's
    /// in-memory exporter in tests, an OTLP exporter you built yourself (gRPC, TLS, other
    /// options), or any other [`SpanExporter`] of opentelemetry_sdk 0.33. The endpoint,
    /// headers and timeout are then not used; spans still go out in batches.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::{self, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter; // feature "testing"
    /// use tracing_subscriber::prelude::*;
    ///
    /// # fn main() -> Result<(), agentgraph::otel::Error> {
    /// let spans = InMemorySpanExporter::default();
    /// let (layer, guard) = otel::layer(OtelConfig::new().exporter(spans.clone()))?;
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("request").in_scope(|| {});
    /// });
    /// guard.force_flush()?;
    /// assert_eq!(spans.get_finished_spans().unwrap()[0].name, "request");
    /// # Ok(()) }
    /// ```
    pub fn exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.exporter = Some(Box::new(move |builder| {
            builder.with_batch_exporter(exporter)
        }));
        self
    }

    /// The URL the spans are posted to: [`OtelConfig::endpoint`], else
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` followed by
    /// `/v1/traces`, else `http://localhost:4318/v1/traces`. Worth logging at start-up.
    ///
    /// # Errors
    ///
    /// [`Error::Endpoint`] if the URL does not start with `http://` or `https://`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::OtelConfig;
    ///
    /// let config = OtelConfig::new().endpoint("http://collector:4318");
    /// assert_eq!(config.traces_endpoint().unwrap(), "http://collector:4318/v1/traces");
    /// assert!(OtelConfig::new().endpoint("collector:4318").traces_endpoint().is_err());
    /// ```
    pub fn traces_endpoint(&self) -> Result<String, Error> {
        traces_endpoint(self.endpoint.as_deref(), |var| std::env::var(var).ok())
    }

    /// Which spans and events go to the collector.
    fn filter(&self) -> Targets {
        EXPORTER_TARGETS
            .iter()
            .fold(Targets::new(), |t, target| {
                t.with_target(*target, LevelFilter::OFF)
            })
            .with_target("agentgraph", self.level)
            .with_default(self.other_level)
    }

    /// The tracer provider: resource, sampler and a batch processor over the exporter.
    fn provider(self) -> Result<SdkTracerProvider, Error> {
        let mut resource = Resource::builder();
        if let Some(name) = self.service_name {
            resource = resource.with_service_name(name);
        }
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource.with_attributes(self.resource).build());
        if let Some(ratio) = self.sample_ratio {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        let builder = match self.exporter {
            Some(with_exporter) => with_exporter(builder),
            None => {
                check_protocol(|var| std::env::var(var).ok())?;
                let url = traces_endpoint(self.endpoint.as_deref(), |var| std::env::var(var).ok())?;
                let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(url)
                    .with_headers(self.headers);
                if let Some(timeout) = self.timeout {
                    exporter = exporter.with_timeout(timeout);
                }
                builder.with_batch_exporter(exporter.build()?)
            }
        };
        Ok(builder.build())
    }
}

/// Resolves the traces URL as [`OtelConfig::traces_endpoint`] says, reading variables with
/// `env`.
fn traces_endpoint(
    explicit: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let non_empty = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    let url = match explicit {
        Some(url) => with_traces_path(url),
        None => match non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url,
            None => with_traces_path(
                &non_empty("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            ),
        },
    };
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url)
    } else {
        Err(Error::Endpoint { url })
    }
}

/// `base` followed by `/v1/traces`, unless it ends with it already.
fn with_traces_path(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// Fails if the environment asks for an OTLP protocol other than `http/protobuf`.
fn check_protocol(env: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = env(var).filter(|v| !v.trim().is_empty()) {
            return match value.trim() {
                "http/protobuf" => Ok(()),
                _ => Err(Error::Protocol { var, value }),
            };
        }
    }
    Ok(())
}

/// A [`tracing_subscriber::Layer`] that exports the engine's spans to OpenTelemetry, and the
/// guard that sends the last of them.
///
/// Add the layer to your subscriber, and keep the guard alive as long as spans should be
/// exported (bind it in `main`: `let _guard = ...`, not `let _ = ...`, which drops it at
/// once). Spans are sent in batches, in the background; dropping the guard sends what is left
/// and stops the exporter.
///
/// # Errors
///
/// [`Error::Exporter`] if the OTLP exporter cannot be built, [`Error::Endpoint`] and
/// [`Error::Protocol`] if the endpoint or the environment's protocol is unusable. Nothing is
/// sent yet: an unreachable collector is not an error here (the SDK reports failed exports
/// as `tracing` events of target `opentelemetry_sdk`).
///
/// # Examples
///
/// ```no_run
/// use agentgraph::otel::{self, OtelConfig};
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (otel_layer, _guard) = otel::layer(
///     OtelConfig::new().service_name("research-bot").endpoint("http://localhost:4318"),
/// )?;
/// tracing_subscriber::registry()
///     .with(otel_layer)
///     .with(tracing_subscriber::fmt::layer().with_filter(otel::LevelFilter::INFO))
///     .try_init()?;
/// // ... run graphs while `_guard` lives.
/// # Ok(()) }
/// ```
pub fn layer<S>(
    config: OtelConfig,
) -> Result<(impl Layer<S> + Send + Sync + 'static, OtelGuard), Error>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let filter = config.filter();
    let provider = config.provider()?;
    let scope = InstrumentationScope::builder("agentgraph")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer_with_scope(scope))
        .with_filter(filter);
    Ok((
        layer,
        OtelGuard {
            provider: Some(provider),
        },
    ))
}

/// Installs a global subscriber that exports to OpenTelemetry (see [`layer`]) and prints logs
/// to standard output, filtered by `RUST_LOG` (`target=level` lists such as
/// `info,my_app=debug`; `INFO` when it is not set). Keep the guard alive until the end of
/// `main`.
///
/// # Errors
///
/// Those of [`layer`]; [`Error::Filter`] if `RUST_LOG` is not a `target=level` list;
/// [`Error::AlreadyInstalled`] if a global subscriber (or `log` logger) is already set: then
/// add [`layer`] to that one instead.
///
/// # Examples
///
/// ```no_run
/// use agentgraph::otel::{self, OtelConfig};
///
/// # fn main() -> Result<(), agentgraph::otel::Error> {
/// let _guard = otel::init(OtelConfig::new().service_name("research-bot"))?;
/// tracing::info!("started"); // printed; exported as well when inside a span
/// # Ok(()) }
/// ```
pub fn init(config: OtelConfig) -> Result<OtelGuard, Error> {
    let logs = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => value
            .parse::<Targets>()
            .map_err(|source| Error::Filter { value, source })?,
        _ => Targets::new().with_default(LevelFilter::INFO),
    };
    let (otel_layer, guard) = layer(config)?;
    tracing_subscriber::registry()
        .with(otel_layer)
        .with(tracing_subscriber::fmt::layer().with_filter(logs))
        .try_init()?;
    Ok(guard)
}

/// Keeps the exporter running; dropping it sends the spans still buffered and shuts the
/// exporter down, blocking for at most 5 seconds (it is safe to drop inside a tokio runtime).
///
/// Spans that end after the guard is dropped are not exported.
///
/// # Examples
///
/// ```
/// use agentgraph::otel::{self, OtelConfig};
/// use opentelemetry_sdk::trace::InMemorySpanExporter;
///
/// # fn main() -> Result<(), agentgraph::otel::Error> {
/// let spans = InMemorySpanExporter::default();
/// let (_layer, guard) = otel::layer::<tracing_subscriber::Registry>(
///     OtelConfig::new().exporter(spans.clone()),
/// )?;
/// guard.shutdown()?; // or drop(guard), which ignores errors
/// # Ok(()) }
/// ```
#[must_use = "dropping the guard shuts the exporter down: bind it with `let _guard = ...`"]
pub struct OtelGuard {
    /// `None` once shut down.
    provider: Option<SdkTracerProvider>,
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard")
            .field("running", &self.provider.is_some())
            .finish()
    }
}

impl OtelGuard {
    /// Sends every span that has ended and is still buffered now, blocking until the
    /// exporter has sent them (or given up).
    ///
    /// # Errors
    ///
    /// [`Error::Sdk`] if the export failed or timed out.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::{self, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// # fn main() -> Result<(), agentgraph::otel::Error> {
    /// let spans = InMemorySpanExporter::default();
    /// let (_layer, guard) = otel::layer::<tracing_subscriber::Registry>(
    ///     OtelConfig::new().exporter(spans.clone()),
    /// )?;
    /// guard.force_flush()?;
    /// assert!(spans.get_finished_spans().unwrap().is_empty()); // nothing was traced
    /// # Ok(()) }
    /// ```
    pub fn force_flush(&self) -> Result<(), Error> {
        Ok(self.tracer_provider().force_flush()?)
    }

    /// Sends the buffered spans and shuts the exporter down, as dropping the guard does, but
    /// says whether that worked.
    ///
    /// # Errors
    ///
    /// [`Error::Sdk`] if the last export failed or timed out.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::{self, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// # fn main() -> Result<(), agentgraph::otel::Error> {
    /// let (_layer, guard) = otel::layer::<tracing_subscriber::Registry>(
    ///     OtelConfig::new().exporter(InMemorySpanExporter::default()),
    /// )?;
    /// guard.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown(mut self) -> Result<(), Error> {
        match self.provider.take() {
            Some(provider) => Ok(provider.shutdown()?),
            None => Ok(()),
        }
    }

    /// The OpenTelemetry tracer provider behind the layer: install it as the global one
    /// (`opentelemetry::global::set_tracer_provider`) for code that uses the OpenTelemetry
    /// API directly, so that its spans join the same traces and the same exporter.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph::otel::{self, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// # fn main() -> Result<(), agentgraph::otel::Error> {
    /// let (_layer, guard) = otel::layer::<tracing_subscriber::Registry>(
    ///     OtelConfig::new().exporter(InMemorySpanExporter::default()),
    /// )?;
    /// let provider = guard.tracer_provider().clone();
    /// assert!(provider.force_flush().is_ok());
    /// # Ok(()) }
    /// ```
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        self.provider
            .as_ref()
            .expect("the provider is taken only by shutdown, which consumes the guard")
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Nowhere to report a failure from a drop; `shutdown` returns it.
            let _ = provider.shutdown();
        }
    }
}

/// Why OpenTelemetry export could not be set up, or a flush failed.
///
/// # Examples
///
/// ```
/// use agentgraph::otel::{self, Error, OtelConfig};
///
/// let e = OtelConfig::new().endpoint("localhost:4318").traces_endpoint().unwrap_err();
/// assert!(matches!(e, Error::Endpoint { .. }));
/// assert!(e.to_string().contains("http://localhost:4318"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OTLP exporter could not be built from the configuration.
    #[error(
        "cannot build the OTLP exporter: {0}; check OtelConfig and the OTEL_EXPORTER_OTLP_* \
         environment variables"
    )]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The collector's URL has no `http://` or `https://` scheme.
    #[error(
        "the OTLP endpoint `{url}` has no scheme; write it as a URL such as \
         `http://localhost:4318` (in OtelConfig::endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)"
    )]
    Endpoint {
        /// The URL, as resolved from the configuration and the environment.
        url: String,
    },
    /// The environment asks for an OTLP protocol other than `http/protobuf`.
    #[error(
        "{var} is `{value}`, but agentgraph::otel exports over http/protobuf only; unset it or \
         set it to `http/protobuf`, and point the endpoint at the collector's OTLP/HTTP port \
         (4318), or pass your own exporter with OtelConfig::exporter"
    )]
    Protocol {
        /// The environment variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// `RUST_LOG` is not a list of `target=level` directives (for [`init`]).
    #[error(
        "RUST_LOG `{value}` is not a list of target=level directives such as \
         `info,my_app=debug` (otel::init reads no span or field filters): {source}"
    )]
    Filter {
        /// The value of `RUST_LOG`.
        value: String,
        /// What is wrong with it.
        source: tracing_subscriber::filter::ParseError,
    },
    /// [`init`] found a global subscriber already installed.
    #[error(
        "a global tracing subscriber or log logger is already installed: add otel::layer to \
         that subscriber instead of calling otel::init ({0})"
    )]
    AlreadyInstalled(#[from] TryInitError),
    /// The SDK failed to export or to shut down.
    #[error("OpenTelemetry export failed: {0}")]
    Sdk(#[from] OTelSdkError),
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<OtelGuard>();
    send_sync::<Error>();
    fn send<T: Send>() {}
    send::<OtelConfig>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_endpoint_comes_from_code_then_the_traces_variable_then_the_base_variable() {
        let both = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:1/custom",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:2"),
        ];
        assert_eq!(
            traces_endpoint(Some("http://code:3"), env(&both)).unwrap(),
            "http://code:3/v1/traces"
        );
        // The signal's own variable is the full URL, taken as it is.
        assert_eq!(
            traces_endpoint(None, env(&both)).unwrap(),
            "http://traces:1/custom"
        );
        assert_eq!(
            traces_endpoint(None, env(&both[1..])).unwrap(),
            "http://base:2/v1/traces"
        );
        assert_eq!(
            traces_endpoint(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_endpoint(Some("https://otlp.example/v1/traces/"), env(&[])).unwrap(),
            "https://otlp.example/v1/traces"
        );
    }

    #[test]
    fn an_endpoint_without_a_scheme_is_an_error_naming_it() {
        let e = traces_endpoint(
            None,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
        )
        .unwrap_err();
        assert!(matches!(&e, Error::Endpoint { url } if url == "collector:4318/v1/traces"));
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
    }

    #[test]
    fn only_the_http_protobuf_protocol_is_accepted() {
        assert!(check_protocol(env(&[])).is_ok());
        assert!(check_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])).is_ok());
        let e = check_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("OTEL_EXPORTER_OTLP_PROTOCOL is `grpc`"),
            "{e}"
        );
        // The signal's own variable wins.
        let vars = [
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        assert!(check_protocol(env(&vars)).is_ok());
        let vars = [("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")];
        assert!(matches!(
            check_protocol(env(&vars)),
            Err(Error::Protocol {
                var: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                ..
            })
        ));
    }

    #[test]
    #[should_panic(expected = "between 0 and 1")]
    fn a_sample_ratio_outside_zero_to_one_panics() {
        let _ = OtelConfig::new().sample_ratio(1.5);
    }

    #[test]
    fn the_filter_drops_the_exporters_own_crates() {
        let filter = OtelConfig::new().filter();
        assert!(filter.would_enable("agentgraph_engine::scheduler", &Level::DEBUG));
        assert!(!filter.would_enable("agentgraph_engine::scheduler", &Level::TRACE));
        assert!(filter.would_enable("my_app", &Level::INFO));
        assert!(!filter.would_enable("my_app", &Level::DEBUG));
        assert!(!filter.would_enable("opentelemetry_sdk", &Level::ERROR));
        assert!(!filter.would_enable("opentelemetry-otlp", &Level::ERROR));
        assert!(!filter.would_enable("hyper_util::client", &Level::ERROR));
        // Spans around runs, such as tower-http's request spans, are kept.
        assert!(filter.would_enable("tower_http::trace::on_request", &Level::INFO));
        let filter = OtelConfig::new().level(Level::INFO).filter();
        assert!(!filter.would_enable("agentgraph_engine::scheduler", &Level::DEBUG));
    }
}
