use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
#[state(version = 0)]
struct Zero {
    total: u64,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
#[state(version = "2")]
struct Text {
    total: u64,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
#[state(version = 1, version = 2)]
struct Twice {
    total: u64,
}

fn main() {}
