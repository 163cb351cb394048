//! Reading stored runs: the [`StoreInspector`](crate::StoreInspector), which needs no types, and the
//! typed [`GraphHistory`](crate::GraphHistory) of one graph over it.

pub(crate) mod history;
pub(crate) mod inspector;
pub(crate) mod pending;
