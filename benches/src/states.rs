//! The states the workloads run on, with hand-written [`State`] and [`IntoCommand`] impls
//! (what `#[derive(State)]` will generate once it lands).

use agentgraph_engine::reducer::{self, ReducerKind};
use agentgraph_engine::{Command, Field, IntoCommand, State};
use serde::{Deserialize, Serialize};

/// One integer, summed (`add` reducer): the state of the chain, loop and CPU workloads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The sum of every update.
    pub n: u64,
}

/// An update of [`Counter`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterUpdate {
    /// Added to [`Counter::n`].
    pub n: Option<u64>,
}

impl CounterUpdate {
    /// An update adding `v` to the counter.
    pub fn add(v: u64) -> Self {
        CounterUpdate { n: Some(v) }
    }
}

impl State for Counter {
    type Update = CounterUpdate;
    const FIELDS: &'static [Field] = &[Field::new("n", ReducerKind::Add)];

    fn for_each_written(u: &CounterUpdate, mut f: impl FnMut(usize)) {
        if u.n.is_some() {
            f(0)
        }
    }

    fn apply(&mut self, u: CounterUpdate) {
        if let Some(v) = u.n {
            reducer::add(&mut self.n, v)
        }
    }
}

impl IntoCommand<Counter> for CounterUpdate {
    fn into_command(self) -> Command<Counter> {
        Command::new(self)
    }
}

/// A list (`append` reducer) and a counter (`add` reducer): the state of the fan-out workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Items {
    /// One item per branch that ran, in merge order.
    pub items: Vec<u64>,
    /// The sum of every update.
    pub n: u64,
}

/// An update of [`Items`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemsUpdate {
    /// Appended to [`Items::items`].
    pub items: Option<Vec<u64>>,
    /// Added to [`Items::n`].
    pub n: Option<u64>,
}

impl ItemsUpdate {
    /// An update appending one item.
    pub fn push(item: u64) -> Self {
        ItemsUpdate {
            items: Some(vec![item]),
            n: None,
        }
    }

    /// An update adding `v` to the counter.
    pub fn add(v: u64) -> Self {
        ItemsUpdate {
            items: None,
            n: Some(v),
        }
    }
}

impl State for Items {
    type Update = ItemsUpdate;
    const FIELDS: &'static [Field] = &[
        Field::new("items", ReducerKind::Append),
        Field::new("n", ReducerKind::Add),
    ];

    fn for_each_written(u: &ItemsUpdate, mut f: impl FnMut(usize)) {
        if u.items.is_some() {
            f(0)
        }
        if u.n.is_some() {
            f(1)
        }
    }

    fn apply(&mut self, u: ItemsUpdate) {
        if let Some(v) = u.items {
            reducer::append(&mut self.items, v)
        }
        if let Some(v) = u.n {
            reducer::add(&mut self.n, v)
        }
    }
}

impl IntoCommand<Items> for ItemsUpdate {
    fn into_command(self) -> Command<Items> {
        Command::new(self)
    }
}
