//! Observing runs: the typed events, JSON views of the state, metrics.

pub(crate) mod event;
pub(crate) mod metrics;
pub(crate) mod view;
