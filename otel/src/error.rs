//! [`Error`]: why export could not be set up, or a flush failed.

use opentelemetry_sdk::error::OTelSdkError;
use tracing_subscriber::util::TryInitError;

/// Why OpenTelemetry export could not be set up, or a flush failed.
///
/// # Examples
///
/// ```
/// use agentgraph_otel::{self as otel, Error, OtelConfig};
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
    /// `RUST_LOG` is not a list of `target=level` directives (for [`init`](crate::init)).
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
    /// [`init`](crate::init) found a global subscriber already installed.
    #[error(
        "a global tracing subscriber or log logger is already installed: add otel::layer to \
         that subscriber instead of calling otel::init ({0})"
    )]
    AlreadyInstalled(#[from] TryInitError),
    /// The SDK failed to export or to shut down.
    #[error("OpenTelemetry export failed: {0}")]
    Sdk(#[from] OTelSdkError),
}
