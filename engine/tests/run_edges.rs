//! Every kind of edge, run in both modes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{
    BoxError, Command, CompiledGraph, Context, END, Error, EventKind, GraphBuilder, Mode, Packet,
    Route, RunConfig, START,
};
use common::{Trace, TraceUpdate, invoke_err, logger};
use futures_util::StreamExt;

const MODES: [Mode; 2] = [Mode::Sequential, Mode::Parallel];

async fn run(g: &CompiledGraph<Trace>, mode: Mode) -> Result<Trace, Error> {
    g.run_with(Trace::default(), RunConfig::new().mode(mode))
        .await
}

/// The nodes of each step, in merge order.
async fn steps(
    g: &CompiledGraph<Trace>,
    input: Trace,
    config: RunConfig,
) -> (Result<Trace, Error>, Vec<Vec<String>>) {
    let run = g.run_with(input, config);
    let events = run.events();
    let result = run.await;
    let all: Vec<_> = events.collect().await;
    let steps = all
        .into_iter()
        .filter_map(|e| match e.unwrap().kind {
            EventKind::StepStarted { tasks, .. } => {
                Some(tasks.iter().map(|t| t.node.to_string()).collect())
            }
            _ => None,
        })
        .collect();
    (result, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_chain_and_fan_out() {
    let mut b = GraphBuilder::new();
    for n in ["a", "b", "c", "d"] {
        logger(&mut b, n);
    }
    b.add_edge(START, "a")
        .add_edges("a", ["c", "b"])
        .add_edge("b", "d")
        .add_edge("c", "d")
        .add_edge("d", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        let (state, steps) = steps(&g, Trace::default(), RunConfig::new().mode(mode)).await;
        // b and c run in the same step, merged in plan order; d, scheduled twice, runs once.
        assert_eq!(steps, [vec!["a"], vec!["b", "c"], vec!["d"]]);
        assert_eq!(state.unwrap().log, ["a", "b", "c", "d"]);
    }
}

#[tokio::test]
async fn conditional_edges_from_start_and_nodes() {
    let mut b = GraphBuilder::new();
    for n in ["small", "big", "x", "y"] {
        logger(&mut b, n);
    }
    b.add_conditional_edges(START, ["small", "big"], |s: &Trace| {
        if s.count > 10 { "big" } else { "small" }
    })
    .add_conditional_edges("small", ["x", "y", END], |_: &Trace| Route::to(["x", "y"]))
    .add_conditional_edges("big", ["x", END], |_: &Trace| Route::end())
    .add_edge("x", END)
    .add_edge("y", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        let s = run(&g, mode).await.unwrap();
        assert_eq!(s.log, ["small", "x", "y"]);
        let s = g
            .run_with(
                Trace {
                    count: 11,
                    ..Default::default()
                },
                RunConfig::new().mode(mode),
            )
            .await
            .unwrap();
        assert_eq!(s.log, ["big"]);
    }
}

#[tokio::test]
async fn router_reads_the_merged_state() {
    let mut b = GraphBuilder::new();
    b.add_node("a", |_, _| async { Ok(TraceUpdate::default().count(1)) })
        .add_node("b", |_, _| async { Ok(TraceUpdate::default().count(2)) })
        .add_node("three", |_, _| async { Ok(TraceUpdate::note("three")) })
        .add_edges(START, ["a", "b"])
        .add_conditional_edges("a", ["three", END], |s: &Trace| {
            if s.count == 3 { "three" } else { END }
        })
        .add_edge("b", END)
        .add_edge("three", END);
    let g = b.compile().unwrap();
    assert_eq!(run(&g, Mode::Parallel).await.unwrap().log, ["three"]);
}

#[tokio::test]
async fn undeclared_route_fails_naming_the_edge() {
    let mut b = GraphBuilder::new();
    logger(&mut b, "a");
    logger(&mut b, "b");
    logger(&mut b, "c");
    b.add_edge(START, "a")
        .add_conditional_edges("a", ["b", END], |_: &Trace| "c")
        .add_edge("b", "c")
        .add_edge("c", END);
    let e = run(&b.compile().unwrap(), Mode::Sequential)
        .await
        .unwrap_err();
    match &e {
        Error::UndeclaredTarget {
            kind,
            from,
            target,
            declared,
        } => {
            assert_eq!(
                (*kind, from.as_str(), target.as_str()),
                ("conditional", "a", "c")
            );
            assert_eq!(declared, &format!("b, {END}"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("from `a` chose `c`"), "{e}");
}

fn weighted_graph() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::new();
    logger(&mut b, "heads");
    logger(&mut b, "tails");
    b.add_weighted_edges(START, [("heads", 1.0), ("tails", 3.0)])
        .add_edge("heads", END)
        .add_edge("tails", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn weighted_choice_is_seeded_and_recorded() {
    let g = weighted_graph();
    let mut tails = 0;
    for seed in 0..400u64 {
        let a = g
            .run_with(Trace::default(), RunConfig::new().seed(seed))
            .await
            .unwrap();
        let b = g
            .run_with(
                Trace::default(),
                RunConfig::new().seed(seed).mode(Mode::Sequential),
            )
            .await
            .unwrap();
        assert_eq!(a.log, b.log, "seed {seed} chose differently across runs");
        tails += usize::from(a.log == ["tails"]);
    }
    // Weights 1:3 over 400 seeds: about 300 tails (deterministic for these seeds).
    assert!((250..350).contains(&tails), "{tails} tails of 400");

    let run = g.run_with(Trace::default(), RunConfig::new().seed(9));
    let events = run.events();
    let chosen = run.await.unwrap().log;
    let choices: Vec<_> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::WeightedChoice {
                    from,
                    to,
                    weight,
                    step,
                } => Some((from, to, weight, step)),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(choices.len(), 1);
    assert_eq!(&*choices[0].0, START);
    assert_eq!(*choices[0].1, *chosen[0]);
    assert_eq!(choices[0].3, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_waits_for_every_branch_in_the_pass() {
    // a -> b -> b2 and a -> c; [b2, c] -> d: d waits for the longer branch.
    let mut b = GraphBuilder::new();
    for n in ["a", "b", "b2", "c", "d"] {
        logger(&mut b, n);
    }
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c"])
        .add_edge("b", "b2")
        .add_join(["b2", "c"], "d")
        .add_edge("d", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        let (state, steps) = steps(&g, Trace::default(), RunConfig::new().mode(mode)).await;
        assert_eq!(steps, [vec!["a"], vec!["b", "c"], vec!["b2"], vec!["d"]]);
        assert_eq!(state.unwrap().log, ["a", "b", "c", "b2", "d"]);
    }
}

#[tokio::test]
async fn join_does_not_hang_on_a_branch_not_taken() {
    let mut b = GraphBuilder::new();
    for n in ["a", "b", "c", "d"] {
        logger(&mut b, n);
    }
    b.add_edge(START, "a")
        .add_conditional_edges("a", ["b", "c", END], |s: &Trace| match s.count {
            0 => Route::to(["b"]),
            1 => Route::to(["b", "c"]),
            _ => Route::end(),
        })
        .add_join(["b", "c"], "d")
        .add_edge("d", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        let s = run(&g, mode).await.unwrap();
        assert_eq!(s.log, ["a", "b", "d"]);
        let s = g
            .run_with(
                Trace {
                    count: 1,
                    ..Default::default()
                },
                RunConfig::new().mode(mode),
            )
            .await
            .unwrap();
        assert_eq!(s.log, ["a", "b", "c", "d"]);
        // No branch taken: the join never fires.
        let s = g
            .run_with(
                Trace {
                    count: 2,
                    ..Default::default()
                },
                RunConfig::new().mode(mode),
            )
            .await
            .unwrap();
        assert_eq!(s.log, ["a"]);
    }
}

#[tokio::test]
async fn join_bookkeeping_resets_for_each_pass() {
    // A loop through a fan-out and a join: each pass waits for both branches again.
    let mut b = GraphBuilder::new();
    b.add_node("fan", |_, _| async {
        Ok(TraceUpdate::note("fan").count(1))
    });
    logger(&mut b, "fast");
    logger(&mut b, "slow1");
    logger(&mut b, "slow2");
    logger(&mut b, "join");
    b.add_edge(START, "fan")
        .add_edges("fan", ["fast", "slow1"])
        .add_edge("slow1", "slow2")
        .add_join(["fast", "slow2"], "join")
        .add_conditional_edges(
            "join",
            ["fan", END],
            |s: &Trace| if s.count < 3 { "fan" } else { END },
        );
    let g = b.compile().unwrap();
    for mode in MODES {
        let s = run(&g, mode).await.unwrap();
        let pass = ["fan", "fast", "slow1", "slow2", "join"];
        assert_eq!(s.log, [pass, pass, pass].concat());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_map_reduce_in_emission_order() {
    let mut b = GraphBuilder::new();
    logger(&mut b, "plan");
    b.add_node("work", |_, ctx: Context| async move {
        let (label, delay_ms): (String, u64) = ctx.input()?;
        // Later packets finish first.
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        Ok(TraceUpdate::note(label).count(1))
    });
    logger(&mut b, "reduce");
    b.add_edge(START, "plan")
        .add_conditional_edges("plan", ["work"], |_: &Trace| {
            Route::packets(
                (0..5u64).map(|i| Packet::new("work", &(format!("item{i}"), 50 - i * 10))),
            )
        })
        .add_join(["work"], "reduce")
        .add_edge("reduce", END);
    let g = b.compile().unwrap();
    for mode in MODES {
        let (state, steps) = steps(&g, Trace::default(), RunConfig::new().mode(mode)).await;
        let s = state.unwrap();
        assert_eq!(
            s.log,
            [
                "plan", "item0", "item1", "item2", "item3", "item4", "reduce"
            ]
        );
        assert_eq!(s.count, 5);
        assert_eq!(steps[1], vec!["work"; 5]);
    }
}

#[tokio::test]
async fn packet_input_errors_are_node_errors() {
    let mut b = GraphBuilder::new();
    b.add_node("needs_input", |_, ctx: Context| async move {
        let n: u64 = ctx.input()?;
        Ok(TraceUpdate::default().count(n))
    })
    .add_edge(START, "needs_input")
    .add_edge("needs_input", END);
    let e = run(&b.compile().unwrap(), Mode::Sequential)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::NodeFailed { node, step: 1, .. } if node == "needs_input"),
        "{e:?}"
    );
    assert!(e.to_string().contains("has no packet input"), "{e}");
}

#[tokio::test]
async fn goto_replaces_static_edges() {
    let mut b = GraphBuilder::new();
    b.add_node("decide", |s: Arc<Trace>, _| async move {
        let cmd = Command::new(TraceUpdate::note("decide"));
        Ok(if s.count > 0 {
            cmd.goto("special")
        } else {
            cmd
        })
    });
    logger(&mut b, "normal");
    logger(&mut b, "special");
    b.add_edge(START, "decide")
        .add_edge("decide", "normal")
        .add_goto_edges("decide", ["special"])
        .add_edge("normal", END)
        .add_edge("special", END);
    let g = b.compile().unwrap();
    assert_eq!(
        run(&g, Mode::Parallel).await.unwrap().log,
        ["decide", "normal"]
    );
    let s = g
        .run_with(
            Trace {
                count: 1,
                ..Default::default()
            },
            RunConfig::new(),
        )
        .await
        .unwrap();
    assert_eq!(s.log, ["decide", "special"]);
}

#[tokio::test]
async fn goto_must_be_declared() {
    let mut b = GraphBuilder::new();
    b.add_node("a", |_, _| async {
        Ok(Command::new(TraceUpdate::default()).goto("c"))
    })
    .add_node("b", |_, _| async {
        Ok(Command::new(TraceUpdate::default()).goto("c"))
    });
    logger(&mut b, "c");
    b.add_edge(START, "a")
        .add_goto_edges("a", ["b"])
        .add_edge("b", END)
        .add_edge("c", END)
        .add_edge("a", "c");
    let e = run(&b.compile().unwrap(), Mode::Sequential)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UndeclaredTarget { kind: "go-to", from, target, .. } if from == "a" && target == "c"),
        "{e:?}"
    );

    let mut b = GraphBuilder::new();
    b.add_node("a", |_, _| async {
        Ok(Command::new(TraceUpdate::default()).goto(END))
    })
    .add_edge(START, "a")
    .add_edge("a", END);
    let e = run(&b.compile().unwrap(), Mode::Sequential)
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::GotoNotDeclared(n) if n == "a"), "{e:?}");
}

#[tokio::test]
async fn loops_stop_at_the_recursion_limit_exactly() {
    let mut b = GraphBuilder::new();
    b.add_node("tick", |_, _| async { Ok(TraceUpdate::default().count(1)) })
        .add_edge(START, "tick")
        .add_conditional_edges("tick", ["tick", END], |s: &Trace| {
            if s.count < 5 { "tick" } else { END }
        });
    let g = b.compile().unwrap();
    // Five steps: a limit of 5 suffices, 4 does not.
    let s = g
        .run_with(Trace::default(), RunConfig::new().recursion_limit(5))
        .await
        .unwrap();
    assert_eq!(s.count, 5);
    let e = g
        .run_with(Trace::default(), RunConfig::new().recursion_limit(4))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { limit: 4 }), "{e:?}");
    assert!(e.to_string().contains("recursion_limit"), "{e}");
}

#[tokio::test]
async fn an_unbounded_loop_hits_the_default_limit() {
    let mut b = GraphBuilder::new();
    b.add_node("spin", |_, _| async { Ok(TraceUpdate::default()) })
        .add_edge(START, "spin")
        .add_conditional_edges("spin", ["spin", END], |_: &Trace| "spin");
    let e = invoke_err(b).await;
    assert!(
        matches!(e, Error::RecursionLimit { limit: 10_000 }),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_nodes_run_on_rayon_in_parallel() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let arrived = Arc::new(AtomicUsize::new(0));
    let mut b = GraphBuilder::new();
    for name in ["left", "right"] {
        let arrived = arrived.clone();
        b.add_cpu_node(name, move |_, _| {
            assert!(
                rayon::current_thread_index().is_some(),
                "not on the rayon pool"
            );
            // Both branches must be running at once to get past this point.
            arrived.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while arrived.load(Ordering::SeqCst) % 2 == 1 {
                if std::time::Instant::now() > deadline {
                    return Err::<TraceUpdate, BoxError>(
                        "the other branch never ran concurrently".into(),
                    );
                }
                std::hint::spin_loop();
            }
            Ok(TraceUpdate::note(name))
        });
    }
    b.add_edges(START, ["left", "right"])
        .add_edge("left", END)
        .add_edge("right", END);
    let g = b.compile().unwrap();
    let s = run(&g, Mode::Parallel).await.unwrap();
    assert_eq!(s.log, ["left", "right"]);
}

#[tokio::test]
async fn nested_joins_fire_inner_first_whatever_the_declaration_order() {
    for inner_first in [true, false] {
        let mut b = GraphBuilder::<Trace>::new();
        for n in ["a", "b", "c", "d", "e"] {
            logger(&mut b, n);
        }
        b.add_edges(START, ["a", "b", "c"]).add_edge("e", END);
        if inner_first {
            b.add_join(["a", "b"], "d").add_join(["d", "c"], "e");
        } else {
            b.add_join(["d", "c"], "e").add_join(["a", "b"], "d");
        }
        let g = b.compile().unwrap();
        for mode in [Mode::Sequential, Mode::Parallel] {
            let s = g
                .run_with(Trace::default(), RunConfig::new().mode(mode))
                .await
                .unwrap();
            assert_eq!(
                s.log,
                ["a", "b", "c", "d", "e"],
                "inner first: {inner_first}"
            );
        }
    }
}

#[tokio::test]
async fn joins_waiting_on_each_other_are_released_and_loop_like_any_cycle() {
    // d waits for a and e; e waits for b and d: each join's target is the other's predecessor.
    // Neither can fire first by the rule, so the first declared is released; then each firing
    // arms the other, which is a loop, bounded by the recursion limit like any other.
    let mut b = GraphBuilder::<Trace>::new();
    for n in ["a", "b", "d", "e"] {
        logger(&mut b, n);
    }
    b.add_edges(START, ["a", "b"])
        .add_join(["a", "e"], "d")
        .add_join(["b", "d"], "e")
        .add_edge("d", END)
        .add_edge("e", END);
    let g = b.compile().unwrap();
    let run = g.run_with(Trace::default(), RunConfig::new().recursion_limit(7));
    let events = run.events();
    let e = run.await.unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { limit: 7 }), "{e:?}");
    let steps: Vec<String> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::StepStarted { tasks, .. } => {
                    Some(tasks.iter().map(|t| t.node.to_string()).collect())
                }
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(steps, ["ab", "d", "e", "d", "e", "d", "e"]);
}

#[tokio::test]
async fn a_go_to_from_a_join_predecessor_still_arrives() {
    let mut b = GraphBuilder::<Trace>::new();
    logger(&mut b, "a");
    b.add_node("b", |_, _| async {
        Ok(Command::new(TraceUpdate::note("b")).goto("z"))
    });
    for n in ["c", "d", "z"] {
        logger(&mut b, n);
    }
    b.add_edge(START, "a")
        .add_conditional_edges("a", ["b", "c"], |_: &Trace| "b")
        .add_goto_edges("b", ["z"])
        .add_join(["b", "c"], "d")
        .add_edge("c", END)
        .add_edge("d", END)
        .add_edge("z", END);
    // b went to z and arrived at the join; c was not taken: d fires with z, merged in plan order.
    let s = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!(s.log, ["a", "b", "d", "z"]);
}
