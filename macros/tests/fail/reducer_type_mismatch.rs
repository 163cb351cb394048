use agentgraph::State;
use serde::{Deserialize, Serialize};

fn concat(acc: &mut String, update: &str) {
    acc.push_str(update);
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Mismatch {
    #[reducer(append)]
    count: u32,
    #[reducer(add)]
    names: Vec<String>,
    #[reducer(with = concat)]
    text: String,
}

fn main() {}
