//! Reading stored runs: the [`Inspector`](crate::Inspector), which needs no types, and the
//! typed [`History`](crate::History) of one graph over it.

pub(crate) mod history;
pub(crate) mod inspector;
