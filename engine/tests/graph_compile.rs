//! Every error `compile()` (and the `try_add_*` methods) can report names the node or edge.

mod common;

use agentgraph_engine::{END, EdgeName, GraphBuilder, GraphError, START};
use common::{Trace, TraceUpdate};

fn builder(nodes: &[&str]) -> GraphBuilder<Trace> {
    let mut b = GraphBuilder::new();
    for n in nodes {
        b.add_node(*n, |_, _| async { Ok(TraceUpdate::default()) });
    }
    b
}

fn edge(from: &str, to: &str) -> EdgeName {
    EdgeName {
        from: from.into(),
        to: to.into(),
    }
}

#[test]
fn duplicate_and_reserved_names() {
    let mut b = builder(&["a"]);
    let e = b
        .try_add_node("a", |_, _| async { Ok(TraceUpdate::default()) })
        .unwrap_err();
    assert_eq!(e, GraphError::DuplicateNode("a".into()));
    assert!(e.to_string().contains("`a`"), "{e}");
    for reserved in [START, END, ""] {
        let e = b
            .try_add_cpu_node(reserved, |_, _| Ok(TraceUpdate::default()))
            .unwrap_err();
        assert_eq!(e, GraphError::ReservedName(reserved.into()));
    }
    // The non-try form keeps the first error for compile().
    b.add_node("a", |_, _| async { Ok(TraceUpdate::default()) })
        .add_node(START, |_, _| async { Ok(TraceUpdate::default()) })
        .add_edge(START, "a")
        .add_edge("a", END);
    assert_eq!(
        b.compile().unwrap_err(),
        GraphError::DuplicateNode("a".into())
    );
}

#[test]
fn unknown_endpoints_name_the_edge() {
    let mut b = builder(&["a"]);
    assert_eq!(
        b.try_add_edge("a", "nope").unwrap_err(),
        GraphError::UnknownNode {
            edge: edge("a", "nope"),
            missing: "nope".into()
        }
    );
    assert_eq!(
        b.try_add_edge("ghost", "a").unwrap_err(),
        GraphError::UnknownNode {
            edge: edge("ghost", "a"),
            missing: "ghost".into()
        }
    );
    let e = b.try_add_edges("a", ["a", "x"]).unwrap_err();
    assert!(matches!(e, GraphError::UnknownNode { ref missing, .. } if missing == "x"));
    let e = b
        .try_add_conditional_edges("a", ["y"], |_: &Trace| "y")
        .unwrap_err();
    assert!(matches!(e, GraphError::UnknownNode { ref missing, .. } if missing == "y"));
    let e = b.try_add_join(["a", "z"], "a").unwrap_err();
    assert!(matches!(e, GraphError::UnknownNode { ref missing, .. } if missing == "z"));
    let e = b.try_add_join(["a"], "w").unwrap_err();
    assert_eq!(
        e,
        GraphError::UnknownNode {
            edge: edge("a", "w"),
            missing: "w".into()
        }
    );
    let e = b.try_add_goto_edges("a", ["v"]).unwrap_err();
    assert!(matches!(e, GraphError::UnknownNode { ref missing, .. } if missing == "v"));
    assert!(e.to_string().contains("`v`"), "{e}");
}

#[test]
fn start_and_end_are_one_way() {
    let mut b = builder(&["a"]);
    assert_eq!(
        b.try_add_edge("a", START).unwrap_err(),
        GraphError::InvalidEndpoint(edge("a", START))
    );
    assert_eq!(
        b.try_add_edge(END, "a").unwrap_err(),
        GraphError::InvalidEndpoint(edge(END, "a"))
    );
    assert!(matches!(
        b.try_add_join(["a"], END),
        Err(GraphError::InvalidEndpoint(_))
    ));
    assert!(matches!(
        b.try_add_join([START], "a"),
        Err(GraphError::InvalidEndpoint(_))
    ));
}

#[test]
fn no_entry() {
    let mut b = builder(&["a"]);
    b.add_edge("a", END);
    assert_eq!(b.compile().unwrap_err(), GraphError::NoEntry);
}

#[test]
fn unreachable_node() {
    let mut b = builder(&["a", "island"]);
    b.add_edge(START, "a")
        .add_edge("a", END)
        .add_edge("island", END);
    let e = b.compile().unwrap_err();
    assert_eq!(e, GraphError::Unreachable("island".into()));
    assert!(
        e.to_string().contains("`island` is unreachable from START"),
        "{e}"
    );
}

#[test]
fn dead_end() {
    let mut b = builder(&["a", "b"]);
    b.add_edge(START, "a").add_edge("a", "b");
    let e = b.compile().unwrap_err();
    assert_eq!(e, GraphError::DeadEnd("b".into()));
    assert!(e.to_string().contains("END"), "{e}");
}

#[test]
fn goto_edges_and_joins_count_as_ways_out() {
    let mut b = builder(&["a", "b", "c"]);
    b.add_edge(START, "a")
        .add_goto_edges("a", ["b"])
        .add_join(["b"], "c")
        .add_edge("c", END);
    b.compile().unwrap();
}

#[test]
fn conditional_edges_need_targets() {
    let mut b = builder(&["a"]);
    let e = b
        .try_add_conditional_edges("a", [], |_: &Trace| END)
        .unwrap_err();
    assert_eq!(
        e,
        GraphError::NoTargets {
            kind: "conditional",
            from: "a".into()
        }
    );
    let e = b.try_add_goto_edges("a", []).unwrap_err();
    assert!(matches!(e, GraphError::NoTargets { kind: "go-to", .. }));
}

#[test]
fn weights_are_checked() {
    let mut b = builder(&["a", "b"]);
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        let e = b
            .try_add_weighted_edges("a", [("b", 1.0), (END, bad)])
            .unwrap_err();
        match e {
            GraphError::InvalidWeight {
                edge: ref ed,
                weight,
            } => {
                assert_eq!(*ed, edge("a", END));
                assert!(weight.is_nan() == bad.is_nan());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        b.try_add_weighted_edges("a", [("b", 0.0), (END, 0.0)])
            .unwrap_err(),
        GraphError::ZeroWeights("a".into())
    );
    assert!(matches!(
        b.try_add_weighted_edges("a", []),
        Err(GraphError::NoTargets {
            kind: "weighted",
            ..
        })
    ));
}

#[test]
fn join_predecessor_that_can_never_arrive() {
    // `c` is only reachable through the join's target `d`: it can never arrive before `d`.
    let mut b = builder(&["a", "b", "c", "d"]);
    b.add_edge(START, "a")
        .add_edge("a", "b")
        .add_join(["b", "c"], "d")
        .add_edge("d", "c")
        .add_edge("d", END);
    let e = b.compile().unwrap_err();
    assert_eq!(
        e,
        GraphError::JoinUnreachable {
            target: "d".into(),
            predecessor: "c".into()
        }
    );
    assert!(
        e.to_string().contains("`c`") && e.to_string().contains("`d`"),
        "{e}"
    );
}

#[test]
fn empty_join() {
    let mut b = builder(&["a"]);
    assert_eq!(
        b.try_add_join([], "a").unwrap_err(),
        GraphError::EmptyJoin("a".into())
    );
}

#[test]
fn cycles_are_allowed() {
    let mut b = builder(&["a", "b"]);
    b.add_edge(START, "a")
        .add_edge("a", "b")
        .add_conditional_edges(
            "b",
            ["a", END],
            |s: &Trace| if s.count > 3 { END } else { "a" },
        );
    b.compile().unwrap();
}

#[test]
fn fingerprint_is_stable_and_structural() {
    let make = |target: &'static str| {
        let mut b = builder(&["a", "b"]);
        b.add_edge(START, "a")
            .add_edge("a", target)
            .add_edge("b", END);
        if target == END {
            b.add_edge("a", "b");
        }
        b.compile().unwrap()
    };
    assert_eq!(make("b").fingerprint(), make("b").fingerprint());
    assert_ne!(make("b").fingerprint(), make(END).fingerprint());
}

#[test]
fn dot_export_shows_every_edge_kind() {
    let mut b = builder(&["a", "b", "c", "d"]);
    b.add_cpu_node("heavy \"q\"", |_, _| Ok(TraceUpdate::default()))
        .add_edge(START, "a")
        .add_weighted_edges("a", [("b", 0.25), ("c", 0.75)])
        .add_conditional_edges("b", ["d", END], |_: &Trace| "d")
        .add_join(["c", "d"], "heavy \"q\"")
        .add_goto_edges("heavy \"q\"", [END])
        .add_edge("c", END)
        .add_edge("d", END);
    let dot = b.compile().unwrap().to_dot();
    assert!(dot.starts_with("digraph agentgraph {"), "{dot}");
    assert!(dot.contains("label=\"START\""), "{dot}");
    assert!(
        dot.contains("label=\"heavy \\\"q\\\"\", shape=box3d"),
        "{dot}"
    );
    assert!(dot.contains("label=\"0.25\""), "{dot}");
    assert!(dot.contains("style=bold, label=\"join\""), "{dot}");
    assert!(dot.contains("style=dotted"), "{dot}");
    assert!(dot.contains("style=dashed]"), "{dot}");
    assert_eq!(dot.matches("->").count(), 10, "{dot}");
}

#[test]
fn large_chain_compiles() {
    let mut b = GraphBuilder::<Trace>::new();
    let names: Vec<String> = (0..20_000).map(|i| format!("n{i}")).collect();
    for n in &names {
        b.add_node(n.clone(), |_, _| async { Ok(TraceUpdate::default()) });
    }
    b.add_edge(START, &names[0]);
    for w in names.windows(2) {
        b.add_edge(&w[0], &w[1]);
    }
    b.add_edge(names.last().unwrap(), END);
    assert_eq!(b.compile().unwrap().node_names().len(), 20_000);
}
