use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Counter {
    #[reducer(add)]
    #[reducer(max)]
    total: u64,
}

fn main() {}
