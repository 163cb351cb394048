//! Smoke test: a fan-out, a join and a conditional loop, in both modes.
mod common;
use agentgraph_engine::*;
use common::{Trace, TraceUpdate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_join_loop() {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::note("a")) })
        .add_node("b", |_, _| async { Ok(TraceUpdate::note("b").count(1)) })
        .add_cpu_node("c", |_, _| Ok(TraceUpdate::note("c").count(2)))
        .add_node("d", |_, _| async { Ok(TraceUpdate::note("d")) })
        .add_edge(START, "a")
        .add_edges("a", ["b", "c"])
        .add_join(["b", "c"], "d")
        .add_conditional_edges(
            "d",
            ["a", END],
            |s: &Trace| if s.count < 6 { "a" } else { END },
        );
    let g = b.compile().unwrap();
    for mode in [Mode::Sequential, Mode::Parallel] {
        let s = g
            .run_with(Trace::default(), RunConfig::new().mode(mode))
            .await
            .unwrap();
        assert_eq!(s.log, ["a", "b", "c", "d", "a", "b", "c", "d"]);
        assert_eq!(s.count, 6);
    }
    println!("{}", g.to_dot());
}
