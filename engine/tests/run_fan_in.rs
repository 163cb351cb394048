//! Deferred nodes, quorum joins and timeout joins: in both modes, and stopped after every step
//! and resumed (their bookkeeping is checkpointed).

mod common;

use agentgraph_engine::{
    CompiledGraph, END, Error, EventKind, GraphBuilder, GraphError, JoinPolicy, Mode, RunConfig,
    START,
};
use common::{Calls, Trace, TraceUpdate, cfg, stores};
use futures_util::StreamExt;

const MODES: [Mode; 2] = [Mode::Sequential, Mode::Parallel];

/// A builder with `names` as nodes, each noting its name and counting its calls in `calls`.
fn nodes(names: &[&'static str], calls: &Calls) -> GraphBuilder<Trace> {
    let mut b = GraphBuilder::new();
    for &name in names {
        let calls = calls.clone();
        b.add_node(name, move |_, _| {
            calls.hit(name);
            async move { Ok(TraceUpdate::note(name)) }
        });
    }
    b
}

/// The nodes of each step, in merge order, and the final state.
async fn steps(g: &CompiledGraph<Trace>, config: RunConfig) -> (Trace, Vec<Vec<String>>) {
    let run = g.run_with(Trace::default(), config);
    let events = run.events();
    let state = run.await.unwrap();
    let steps = events
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
    (state, steps)
}

/// Stops a run of `g` after each of its steps in turn (by a recursion limit), resumes it, and
/// checks that it ends as `whole` did, each node of `once` having run exactly once in all.
async fn stop_and_resume_everywhere(
    whole: &Trace,
    steps: u64,
    build: impl Fn(&Calls) -> CompiledGraph<Trace>,
    once: &[&str],
) {
    for mode in MODES {
        for (store, _dir) in stores() {
            for stop in 0..steps {
                let calls = Calls::default();
                let g = build(&calls);
                let id = format!("stop{stop}");
                let config = || cfg(&store, &id).mode(mode);
                let e = g
                    .run_with(Trace::default(), config().recursion_limit(stop))
                    .await
                    .unwrap_err();
                assert!(matches!(e, Error::RecursionLimit { .. }), "{e:?}");
                let resumed = g.resume(&id, config()).await.unwrap();
                assert_eq!(&resumed, whole, "{mode:?}, stopped after step {stop}");
                for node in once {
                    assert_eq!(calls.get(node), 1, "{node}: {mode:?}, stopped after {stop}");
                }
            }
        }
    }
}

const DEFERRED: [&str; 5] = ["a", "b", "b2", "c", "d"];

/// `a -> [b, c]; b -> b2 -> d; c -> d`, `d` deferred.
fn deferred_graph(calls: &Calls) -> CompiledGraph<Trace> {
    let mut b = nodes(&DEFERRED, calls);
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c"])
        .add_edge("b", "b2")
        .add_edge("b2", "d")
        .add_edge("c", "d")
        .add_edge("d", END)
        .defer("d");
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_node_runs_once_after_the_longest_branch() {
    for mode in MODES {
        let calls = Calls::default();
        let g = deferred_graph(&calls);
        let (state, steps) = steps(&g, RunConfig::new().mode(mode)).await;
        assert_eq!(steps, [vec!["a"], vec!["b", "c"], vec!["b2"], vec!["d"]]);
        assert_eq!(state.log, ["a", "b", "c", "b2", "d"]);
        assert_eq!(calls.get("d"), 1);
    }
    // Without the deferral, `d` runs twice: with `b2`, then after it.
    let mut b = nodes(&DEFERRED, &Calls::default());
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c"])
        .add_edge("b", "b2")
        .add_edge("b2", "d")
        .add_edge("c", "d")
        .add_edge("d", END);
    let plain = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!(plain.log, ["a", "b", "c", "b2", "d", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_deferral_survives_a_stop_after_any_step() {
    let whole = deferred_graph(&Calls::default())
        .invoke(Trace::default())
        .await
        .unwrap();
    stop_and_resume_everywhere(&whole, 4, deferred_graph, &["a", "b2", "d"]).await;
}

#[tokio::test]
async fn a_deferred_node_waits_for_packets_and_joins_wait_for_it() {
    // `d` and the packets to `work` are held while the branch through `c` runs; the join
    // [d, c2] -> e waits for the held `d`.
    let calls = Calls::default();
    let mut b = nodes(&["a", "c", "c2", "c3", "d", "e"], &calls);
    b.add_node("work", |_, ctx: agentgraph_engine::Context| async move {
        let n: u64 = ctx.input()?;
        Ok(TraceUpdate::note(format!("work{n}")))
    });
    b.add_edge(START, "a")
        .add_conditional_edges("a", ["work", "d", "c"], |_: &Trace| {
            agentgraph_engine::Route::packets(
                (0..2u64).map(|i| agentgraph_engine::Packet::new("work", &i)),
            )
            .and("d")
            .and("c")
        })
        .add_edge("work", END)
        .add_edge("c", "c2")
        .add_edge("c2", "c3")
        .add_edge("c3", END)
        .add_join(["d", "c2"], "e")
        .add_edge("e", END)
        .defer("d")
        .defer("work");
    let g = b.compile().unwrap();
    for mode in MODES {
        let (state, steps) = steps(&g, RunConfig::new().mode(mode)).await;
        assert_eq!(
            steps,
            [
                vec!["a"],
                vec!["c"],
                vec!["c2"],
                vec!["c3"],
                vec!["d", "work", "work"],
                vec!["e"]
            ]
        );
        assert_eq!(
            state.log,
            ["a", "c", "c2", "c3", "d", "work0", "work1", "e"]
        );
    }
}

const QUORUM: [&str; 7] = ["a", "x", "y", "z", "q", "z2", "z3"];

/// `a -> [x, y, z]; z -> z2 -> z3`; `q` after 2 of [x, y, z3].
fn quorum_graph(calls: &Calls) -> CompiledGraph<Trace> {
    let mut b = nodes(&QUORUM, calls);
    b.add_edge(START, "a")
        .add_edges("a", ["x", "y", "z"])
        .add_edge("z", "z2")
        .add_edge("z2", "z3")
        .add_edge("x", END)
        .add_edge("y", END)
        .add_edge("z3", END)
        .add_join_with(["x", "y", "z3"], "q", JoinPolicy::quorum(2))
        .add_edge("q", END);
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_join_fires_once_on_two_of_three() {
    for mode in MODES {
        let calls = Calls::default();
        let g = quorum_graph(&calls);
        let (state, steps) = steps(&g, RunConfig::new().mode(mode)).await;
        // `q` fires with `x` and `y`; `z3` runs on, and its arrival is ignored.
        assert_eq!(
            steps,
            [vec!["a"], vec!["x", "y", "z"], vec!["q", "z2"], vec!["z3"]]
        );
        assert_eq!(state.log, ["a", "x", "y", "z", "q", "z2", "z3"]);
        assert_eq!(calls.get("q"), 1);
    }
    let whole = quorum_graph(&Calls::default())
        .invoke(Trace::default())
        .await
        .unwrap();
    stop_and_resume_everywhere(&whole, 4, quorum_graph, &["q", "z3"]).await;
}

#[tokio::test]
async fn a_quorum_not_reachable_fires_like_an_ordinary_join() {
    // Only `x` can arrive (`y` is routed away): the join fires with it when no more can.
    let calls = Calls::default();
    let mut b = nodes(&["a", "x", "y", "q"], &calls);
    b.add_edge(START, "a")
        .add_conditional_edges("a", ["x", "y"], |_: &Trace| "x")
        .add_edge("x", END)
        .add_edge("y", END)
        .add_join_with(["x", "y"], "q", JoinPolicy::quorum(2))
        .add_edge("q", END);
    let s = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!(s.log, ["a", "x", "q"]);
}

#[tokio::test]
async fn a_quorum_join_in_a_loop_fires_once_per_pass() {
    // Each round fans out to three branches of lengths 1, 1 and 2; `q` fires on the first two.
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("fan", |_, _| async {
        Ok(TraceUpdate::note("fan").count(1))
    });
    for name in ["x", "y", "z", "z2", "q"] {
        b.add_node(name, move |_, _| async move { Ok(TraceUpdate::note(name)) });
    }
    b.add_edge(START, "fan")
        .add_edges("fan", ["x", "y", "z"])
        .add_edge("z", "z2")
        .add_edge("x", END)
        .add_edge("y", END)
        .add_edge("z2", END)
        .add_join_with(["x", "y", "z2"], "q", JoinPolicy::quorum(2))
        .add_conditional_edges(
            "q",
            ["fan", END],
            |s: &Trace| {
                if s.count < 2 { "fan" } else { END }
            },
        );
    let g = b.compile().unwrap();
    for mode in MODES {
        let s = g
            .run_with(Trace::default(), RunConfig::new().mode(mode))
            .await
            .unwrap();
        let round = ["fan", "x", "y", "z", "z2", "q"];
        assert_eq!(s.log, [&round[..], &round[..]].concat(), "{mode:?}");
    }
}

const TIMEOUT: [&str; 5] = ["quick", "slow", "report", "slower", "slowest"];

/// `START -> [quick, slow]; slow -> slower -> slowest`; `report` after [quick, slowest], at
/// most one step after `quick`.
fn timeout_graph(calls: &Calls) -> CompiledGraph<Trace> {
    let mut b = nodes(&TIMEOUT, calls);
    b.add_edges(START, ["quick", "slow"])
        .add_edge("slow", "slower")
        .add_edge("slower", "slowest")
        .add_edge("quick", END)
        .add_edge("slowest", END)
        .add_join_with(
            ["quick", "slowest"],
            "report",
            JoinPolicy::all().timeout_steps(1),
        )
        .add_edge("report", END);
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_join_fires_after_its_steps_with_what_arrived() {
    for mode in MODES {
        let calls = Calls::default();
        let g = timeout_graph(&calls);
        let (state, steps) = steps(&g, RunConfig::new().mode(mode)).await;
        assert_eq!(
            steps,
            [
                vec!["quick", "slow"],
                vec!["slower"],
                vec!["report", "slowest"]
            ]
        );
        assert_eq!(state.log, ["quick", "slow", "slower", "report", "slowest"]);
        assert_eq!(calls.get("report"), 1);
    }
    let whole = timeout_graph(&Calls::default())
        .invoke(Trace::default())
        .await
        .unwrap();
    stop_and_resume_everywhere(&whole, 3, timeout_graph, &["report"]).await;

    // With time enough, the join waits for both.
    let mut b = nodes(&TIMEOUT, &Calls::default());
    b.add_edges(START, ["quick", "slow"])
        .add_edge("slow", "slower")
        .add_edge("slower", "slowest")
        .add_edge("quick", END)
        .add_edge("slowest", END)
        .add_join_with(
            ["quick", "slowest"],
            "report",
            JoinPolicy::all().timeout_steps(2),
        )
        .add_edge("report", END);
    let s = b.compile().unwrap().invoke(Trace::default()).await.unwrap();
    assert_eq!(s.log, ["quick", "slow", "slower", "slowest", "report"]);
}

#[test]
fn bad_quorums_timeouts_and_deferrals_name_the_node() {
    let build = || nodes(&["a", "b", "c"], &Calls::default());
    for k in [0, 3] {
        let e = build()
            .try_add_join_with(["a", "b"], "c", JoinPolicy::quorum(k))
            .map(drop)
            .unwrap_err();
        assert_eq!(
            e,
            GraphError::InvalidQuorum {
                target: "c".into(),
                predecessors: "a, b".into(),
                quorum: k,
            }
        );
        assert!(e.to_string().contains("[a, b] -> `c`"), "{e}");
    }
    // Duplicates count once: two distinct predecessors.
    assert!(
        build()
            .try_add_join_with(["a", "a", "b"], "c", JoinPolicy::quorum(3))
            .is_err()
    );
    let mut b = build();
    b.add_join_with(["a", "b"], "c", JoinPolicy::all().timeout_steps(0));
    assert_eq!(
        b.compile().map(drop).unwrap_err(),
        GraphError::InvalidJoinTimeout {
            target: "c".into(),
            predecessors: "a, b".into(),
        }
    );
    let mut b = build();
    b.defer("nowhere");
    assert_eq!(
        b.compile().map(drop).unwrap_err(),
        GraphError::NoSuchNode {
            setting: "defer",
            node: "nowhere".into(),
        }
    );
}

#[test]
fn deferral_and_join_policies_change_the_fingerprint_only_when_set() {
    let plain = || {
        let mut b = nodes(&["a", "b", "c"], &Calls::default());
        b.add_edges(START, ["a", "b"]).add_edge("c", END);
        b
    };
    let mut b = plain();
    b.add_join(["a", "b"], "c");
    let ordinary = b.compile().unwrap().fingerprint();
    let mut b = plain();
    b.add_join_with(["a", "b"], "c", JoinPolicy::quorum(2));
    assert_eq!(
        b.compile().unwrap().fingerprint(),
        ordinary,
        "a quorum of all is all"
    );
    let mut b = plain();
    b.add_join_with(["a", "b"], "c", JoinPolicy::quorum(1));
    assert_ne!(b.compile().unwrap().fingerprint(), ordinary);
    let mut b = plain();
    b.add_join_with(["a", "b"], "c", JoinPolicy::all().timeout_steps(2));
    assert_ne!(b.compile().unwrap().fingerprint(), ordinary);
    let mut b = plain();
    b.add_join(["a", "b"], "c").defer("c");
    let g = b.compile().unwrap();
    assert_ne!(g.fingerprint(), ordinary);
    let description = g.describe();
    assert!(description.nodes[2].deferred);
    assert_eq!(description.joins[0].quorum, 2);
    let json = serde_json::to_string(&description).unwrap();
    assert_eq!(
        serde_json::from_str::<agentgraph_engine::GraphDescription>(&json).unwrap(),
        description
    );
}
