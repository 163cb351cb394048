use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct TwoReducers {
    #[reducer(add, max)]
    total: u64,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Argument {
    #[reducer(add = 1)]
    total: u64,
}

fn main() {}
