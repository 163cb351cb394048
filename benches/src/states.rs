//! The states the workloads run on, derived with `#[derive(State)]` as users write them.

use agentgraph::State;
use serde::{Deserialize, Serialize};

/// One integer, summed (`add` reducer): the state of the chain, loop and CPU workloads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, State)]
pub struct Counter {
    /// The sum of every update.
    #[reducer(add)]
    pub n: u64,
}

impl CounterUpdate {
    /// An update adding `v` to the counter.
    pub fn add(v: u64) -> Self {
        CounterUpdate::new().n(v)
    }
}

/// A list (`append` reducer) and a counter (`add` reducer): the state of the fan-out workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, State)]
pub struct Items {
    /// One item per branch that ran, in merge order.
    #[reducer(append)]
    pub items: Vec<u64>,
    /// The sum of every update.
    #[reducer(add)]
    pub n: u64,
}

impl ItemsUpdate {
    /// An update appending one item.
    pub fn push(item: u64) -> Self {
        ItemsUpdate::new().items(vec![item])
    }

    /// An update adding `v` to the counter.
    pub fn add(v: u64) -> Self {
        ItemsUpdate::new().n(v)
    }
}

/// A large list (`append` reducer) and a counter (`add` reducer): the state of the
/// `big_state_*` workloads, whose input holds 10,000 strings of 20 characters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, State)]
pub struct Big {
    /// The list the `big_state_append` nodes append to.
    #[reducer(append)]
    pub items: Vec<String>,
    /// The sum of every update: what the `big_state_untouched` nodes write instead.
    #[reducer(add)]
    pub n: u64,
}

impl BigUpdate {
    /// An update appending one item.
    pub fn push(item: String) -> Self {
        BigUpdate::new().items(vec![item])
    }

    /// An update adding `v` to the counter.
    pub fn add(v: u64) -> Self {
        BigUpdate::new().n(v)
    }
}

/// A conversation: its messages (`append` reducer). The state of `thread_100_turns`, whose
/// every invocation appends one message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, State)]
pub struct Chat {
    /// The messages, one more per turn.
    #[reducer(append)]
    pub messages: Vec<String>,
}

impl ChatUpdate {
    /// An update appending one message.
    pub fn say(message: String) -> Self {
        ChatUpdate::new().messages(vec![message])
    }
}
