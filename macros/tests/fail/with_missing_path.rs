use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct NoEquals {
    #[reducer(with)]
    best: String,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct NoPath {
    #[reducer(with = )]
    best: String,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Quoted {
    #[reducer(with = "my::fold")]
    best: String,
}

fn main() {}
