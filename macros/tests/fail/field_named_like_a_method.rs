use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Inbox {
    new: Vec<String>,
    is_empty: bool,
}

fn main() {}
