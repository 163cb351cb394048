//! Metrics, recorded with the `metrics` facade when the `metrics` feature is on (and costing
//! nothing when it is off). The program chooses the recorder: the monitor installs a
//! Prometheus one.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `agentgraph_runs_started_total`, `agentgraph_runs_resumed_total` | counter | |
//! | `agentgraph_runs_finished_total`, `agentgraph_runs_failed_total`, `agentgraph_runs_interrupted_total`, `agentgraph_runs_cancelled_total`, `agentgraph_runs_retry_scheduled_total`, `agentgraph_runs_budget_exceeded_total` | counter | |
//! | `agentgraph_steps_total` | counter | |
//! | `agentgraph_node_duration_seconds` | histogram | `node` |
//! | `agentgraph_node_failures_total`, `agentgraph_retries_total` | counter | `node` |
//! | `agentgraph_checkpoint_bytes` | histogram | |
//! | `agentgraph_checkpoint_duration_seconds` | histogram | |

#[cfg(feature = "metrics")]
mod on {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use agentgraph_checkpoint::RunStatus;

    use metrics::{SharedString, counter, histogram};

    fn node_label(node: &Arc<str>) -> SharedString {
        SharedString::from_shared(node.clone())
    }

    pub(crate) fn run_started(resumed: bool) {
        if resumed {
            counter!("agentgraph_runs_resumed_total").increment(1);
        } else {
            counter!("agentgraph_runs_started_total").increment(1);
        }
    }

    pub(crate) fn run_ended(status: RunStatus) {
        match status {
            RunStatus::Completed => counter!("agentgraph_runs_finished_total").increment(1),
            RunStatus::Interrupted => counter!("agentgraph_runs_interrupted_total").increment(1),
            RunStatus::Cancelled => counter!("agentgraph_runs_cancelled_total").increment(1),
            RunStatus::RetryScheduled => {
                counter!("agentgraph_runs_retry_scheduled_total").increment(1)
            }
            RunStatus::BudgetExceeded => {
                counter!("agentgraph_runs_budget_exceeded_total").increment(1)
            }
            _ => counter!("agentgraph_runs_failed_total").increment(1),
        }
    }

    /// When a timed operation began.
    pub(crate) fn now() -> Option<Instant> {
        Some(Instant::now())
    }

    pub(crate) fn step() {
        counter!("agentgraph_steps_total").increment(1);
    }

    pub(crate) fn node_finished(node: &Arc<str>, duration: Duration) {
        histogram!("agentgraph_node_duration_seconds", "node" => node_label(node))
            .record(duration.as_secs_f64());
    }

    pub(crate) fn node_failed(node: &Arc<str>) {
        counter!("agentgraph_node_failures_total", "node" => node_label(node)).increment(1);
    }

    pub(crate) fn retry(node: &Arc<str>) {
        counter!("agentgraph_retries_total", "node" => node_label(node)).increment(1);
    }

    pub(crate) fn checkpoint(bytes: u64, began: Option<Instant>) {
        histogram!("agentgraph_checkpoint_bytes").record(bytes as f64);
        if let Some(began) = began {
            histogram!("agentgraph_checkpoint_duration_seconds")
                .record(began.elapsed().as_secs_f64());
        }
    }
}

/// Without the feature: nothing, not even a clock read.
#[cfg(not(feature = "metrics"))]
mod on {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use agentgraph_checkpoint::RunStatus;

    #[inline(always)]
    pub(crate) fn run_started(_: bool) {}
    #[inline(always)]
    pub(crate) fn run_ended(_: RunStatus) {}
    #[inline(always)]
    pub(crate) fn now() -> Option<Instant> {
        None
    }
    #[inline(always)]
    pub(crate) fn step() {}
    #[inline(always)]
    pub(crate) fn node_finished(_: &Arc<str>, _: Duration) {}
    #[inline(always)]
    pub(crate) fn node_failed(_: &Arc<str>) {}
    #[inline(always)]
    pub(crate) fn retry(_: &Arc<str>) {}
    #[inline(always)]
    pub(crate) fn checkpoint(_: u64, _: Option<Instant>) {}
}

pub(crate) use on::*;
