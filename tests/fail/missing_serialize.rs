use agentgraph::State;

#[derive(Clone, Default, State)]
struct Counter {
    #[reducer(add)]
    total: u64,
}

fn main() {}
