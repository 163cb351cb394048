//! [`OtelGuard`]: keeps the exporter running, flushes and shuts it down.

use std::fmt;

use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::Error;

/// Keeps the exporter running; dropping it sends the spans still buffered and shuts the
/// exporter down, blocking for at most 5 seconds (it is safe to drop inside a tokio runtime).
///
/// Spans that end after the guard is dropped are not exported.
///
/// # Examples
///
/// ```
/// use agentgraph_otel::{self as otel, OtelConfig};
/// use opentelemetry_sdk::trace::InMemorySpanExporter;
///
/// # fn main() -> Result<(), agentgraph_otel::Error> {
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
    pub(crate) provider: Option<SdkTracerProvider>,
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
    /// use agentgraph_otel::{self as otel, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// # fn main() -> Result<(), agentgraph_otel::Error> {
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
    /// use agentgraph_otel::{self as otel, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// # fn main() -> Result<(), agentgraph_otel::Error> {
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
    /// use agentgraph_otel::{self as otel, OtelConfig};
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// # fn main() -> Result<(), agentgraph_otel::Error> {
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
