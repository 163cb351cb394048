//! A hand-written state shared by the engine's integration tests (the facade's tests use the
//! derive).
#![allow(dead_code, unreachable_pub)]

use agentgraph_engine::reducer::{self, ReducerKind};
use agentgraph_engine::{Command, Field, IntoCommand, State};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub log: Vec<String>,
    pub count: u64,
    pub last: String,
}

#[derive(Default, Serialize, Deserialize)]
pub struct TraceUpdate {
    pub log: Option<Vec<String>>,
    pub count: Option<u64>,
    pub last: Option<String>,
}

impl TraceUpdate {
    pub fn log(item: impl Into<String>) -> Self {
        TraceUpdate {
            log: Some(vec![item.into()]),
            ..Default::default()
        }
    }
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }
    pub fn last(mut self, s: impl Into<String>) -> Self {
        self.last = Some(s.into());
        self
    }
}

impl State for Trace {
    type Update = TraceUpdate;
    const FIELDS: &'static [Field] = &[
        Field::new("log", ReducerKind::Append),
        Field::new("count", ReducerKind::Add),
        Field::new("last", ReducerKind::Overwrite),
    ];
    fn for_each_written(u: &TraceUpdate, mut f: impl FnMut(usize)) {
        if u.log.is_some() {
            f(0)
        }
        if u.count.is_some() {
            f(1)
        }
        if u.last.is_some() {
            f(2)
        }
    }
    fn apply(&mut self, u: TraceUpdate) {
        if let Some(v) = u.log {
            reducer::append(&mut self.log, v)
        }
        if let Some(v) = u.count {
            reducer::add(&mut self.count, v)
        }
        if let Some(v) = u.last {
            reducer::overwrite(&mut self.last, v)
        }
    }
}

impl IntoCommand<Trace> for TraceUpdate {
    fn into_command(self) -> Command<Trace> {
        Command::new(self)
    }
}
