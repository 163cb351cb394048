//! The Prometheus recorder behind `/metrics`: one per process, installed on first use.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::Error;

/// Latency buckets, in seconds: 1 ms to 5 min.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Size buckets, in bytes: 256 B to 64 MiB.
const BYTES: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// The recorder this process installed (or why it could not): a global recorder can be set
/// only once, so every monitor of the process shares it.
static GLOBAL: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The handle of the process-wide Prometheus recorder, installed on the first call, with
/// histogram buckets for the engine's `*_seconds` and `*_bytes` metrics.
pub(crate) fn global() -> Result<PrometheusHandle, Error> {
    GLOBAL
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES))
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(Error::Recorder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_is_installed_once_and_shared() {
        let a = global().unwrap();
        let b = global().unwrap();
        metrics::counter!("agentgraph_monitor_unit_test_total").increment(3);
        metrics::histogram!("agentgraph_monitor_unit_test_seconds").record(0.02);
        a.run_upkeep();
        let text = b.render();
        assert!(
            text.contains("agentgraph_monitor_unit_test_total 3"),
            "{text}"
        );
        // `*_seconds` histograms have buckets, not quantiles.
        assert!(
            text.contains("agentgraph_monitor_unit_test_seconds_bucket{le=\"0.025\"} 1"),
            "{text}"
        );
    }
}
