//! [`OtelConfig`]: what is exported and where to, and the tracer provider built from it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter, TracerProviderBuilder};
use tracing_subscriber::filter::Targets;

use crate::endpoint::{check_protocol, traces_endpoint};
use crate::{Error, Level, LevelFilter};

/// Crates whose spans and events never go to the collector: the exporter's own (the SDK's
/// internal logs, its HTTP client), so that exporting never feeds what it exports. Prefixes:
/// `hyper` covers `hyper_util`, `opentelemetry` the SDK and the exporter.
const EXPORTER_TARGETS: [&str; 3] = ["opentelemetry", "reqwest", "hyper"];

/// What [`layer`](crate::layer) and [`init`](crate::init) export, and where to.
///
/// Every setting is optional: [`OtelConfig::new`] takes the standard `OTEL_*` environment
/// variables (see the [crate docs](crate#environment)), then the defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use agentgraph_otel::{Level, LevelFilter, OtelConfig};
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
    /// use agentgraph_otel::OtelConfig;
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
    /// use agentgraph_otel::OtelConfig;
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
    /// use agentgraph_otel::OtelConfig;
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
    /// use agentgraph_otel::OtelConfig;
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
    /// use agentgraph_otel::OtelConfig;
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
    /// use agentgraph_otel::OtelConfig;
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
    /// ([`Layer::with_filter`](tracing_subscriber::Layer::with_filter)) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_otel::{Level, OtelConfig};
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
    /// use agentgraph_otel::{LevelFilter, OtelConfig};
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
    /// use agentgraph_otel::OtelConfig;
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
    /// use agentgraph_otel::{self as otel, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter; // feature "testing"
    /// use tracing_subscriber::prelude::*;
    ///
    /// # fn main() -> Result<(), agentgraph_otel::Error> {
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
    /// use agentgraph_otel::OtelConfig;
    ///
    /// let config = OtelConfig::new().endpoint("http://collector:4318");
    /// assert_eq!(config.traces_endpoint().unwrap(), "http://collector:4318/v1/traces");
    /// assert!(OtelConfig::new().endpoint("collector:4318").traces_endpoint().is_err());
    /// ```
    pub fn traces_endpoint(&self) -> Result<String, Error> {
        traces_endpoint(self.endpoint.as_deref(), |var| std::env::var(var).ok())
    }

    /// Which spans and events go to the collector.
    pub(crate) fn filter(&self) -> Targets {
        EXPORTER_TARGETS
            .iter()
            .fold(Targets::new(), |t, target| {
                t.with_target(*target, LevelFilter::OFF)
            })
            .with_target("agentgraph", self.level)
            .with_default(self.other_level)
    }

    /// The tracer provider: resource, sampler and a batch processor over the exporter.
    pub(crate) fn provider(self) -> Result<SdkTracerProvider, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
