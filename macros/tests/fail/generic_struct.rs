use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Wrapper<T> {
    #[reducer(append)]
    items: Vec<T>,
}

fn main() {}
