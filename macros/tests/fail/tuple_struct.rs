use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Pair(u64, String);

fn main() {}
