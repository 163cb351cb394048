use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Bare {
    #[reducer]
    total: u64,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct EmptyParens {
    #[reducer()]
    total: u64,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct NameValue {
    #[reducer = "add"]
    total: u64,
}

fn main() {}
