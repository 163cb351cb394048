//! [`layer`] and [`init`]: the `tracing-subscriber` layer, and a global subscriber with it.

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{Error, LevelFilter, OtelConfig, OtelGuard};

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
/// use agentgraph_otel::{self as otel, OtelConfig};
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
/// use agentgraph_otel::{self as otel, OtelConfig};
///
/// # fn main() -> Result<(), agentgraph_otel::Error> {
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
