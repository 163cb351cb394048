use agentgraph::State;

#[derive(Clone, Copy, State)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
