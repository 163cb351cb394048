//! Running a graph: the run handle, its configuration, the context nodes get, interrupts, and
//! the scheduler that advances a run step by step.

pub(crate) mod budget;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod handle;
pub(crate) mod interrupt;
pub(crate) mod ledger;
pub(crate) mod memory;
pub(crate) mod retry_at;
pub(crate) mod scheduler;
