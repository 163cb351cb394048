use agentgraph::State;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, State)]
#[state(updates = CounterDelta)]
struct UnknownSetting {
    total: u64,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
#[reducer(add)]
struct ReducerOnStruct {
    total: u64,
}

#[derive(Clone, Default, Serialize, Deserialize, State)]
struct StateOnField {
    #[state(update = X)]
    total: u64,
}

fn main() {}
