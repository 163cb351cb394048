use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, State)]
enum Phase {
    Plan,
    Act,
}

fn main() {}
