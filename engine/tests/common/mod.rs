//! The state shared by the engine's integration tests.
#![allow(dead_code, unreachable_pub)]

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
pub struct Trace {
    #[reducer(append)]
    pub log: Vec<String>,
    #[reducer(add)]
    pub count: u64,
    pub last: String,
}

impl TraceUpdate {
    /// An update appending one entry to the log.
    pub fn note(item: impl Into<String>) -> Self {
        TraceUpdate::new().log(vec![item.into()])
    }
}
