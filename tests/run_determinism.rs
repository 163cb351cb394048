//! Determinism, by property: for random graphs and random node delays, sequential and parallel
//! runs give the same final state (or the same error), the same events per task and the same
//! checkpoints; the same seed always makes the same weighted choices; and a run stopped at any
//! step and resumed ends exactly as an uninterrupted one; a thread's invocations agree in both
//! modes too. The graphs may hold a join (of all its predecessors, a quorum of them, with or
//! without a timeout in steps) and a deferred node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agentgraph::graph::JoinPolicy;
use agentgraph::node::TaskId;
use agentgraph::prelude::*;
use agentgraph::{CompiledGraph, Error};
use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
struct Walk {
    #[reducer(append)]
    log: Vec<String>,
    #[reducer(add)]
    total: u64,
    #[reducer(max)]
    highest: u64,
    /// Overwritten by some nodes: two of them in one step is a conflict, which both modes must
    /// report the same way.
    last: String,
}

/// How a node leaves.
#[derive(Debug, Clone)]
enum Exit {
    /// Static edges to these later nodes (END when empty).
    Static(Vec<usize>),
    /// A weighted edge over these later nodes (or END for `None`).
    Weighted(Vec<(Option<usize>, u8)>),
    /// A conditional edge choosing by the running total.
    Conditional(Vec<usize>),
}

#[derive(Debug, Clone)]
struct NodeSpec {
    cpu: bool,
    delay_ms: u8,
    writes_last: bool,
    /// The node fails its first `fails` attempts (the graph retries up to 3).
    fails: u32,
    exit: Exit,
}

#[derive(Debug, Clone)]
struct GraphSpec {
    nodes: Vec<NodeSpec>,
    entry: Vec<usize>,
    /// (predecessors, target, policy): target after its predecessors, by the policy.
    join: Option<(Vec<usize>, usize, JoinPolicy)>,
    /// A node that waits, once triggered, until nothing else is left to run.
    deferred: Option<usize>,
}

fn later(i: usize, n: usize) -> impl Strategy<Value = Vec<usize>> {
    if i + 1 >= n {
        Just(Vec::new()).boxed()
    } else {
        proptest::collection::vec(i + 1..n, 0..3).boxed()
    }
}

fn node(i: usize, n: usize) -> impl Strategy<Value = NodeSpec> {
    let exit = prop_oneof![
        4 => later(i, n).prop_map(Exit::Static),
        2 => proptest::collection::vec(
            (proptest::option::of(if i + 1 >= n { (0..1usize).boxed() } else { (i + 1..n).boxed() }), 0u8..4),
            1..4
        )
        .prop_map(move |v| {
            let mut v: Vec<_> = v.into_iter().map(|(t, w)| (t.filter(|t| *t > i && *t < n), w)).collect();
            v.sort();
            v.dedup_by_key(|(t, _)| *t);
            if v.iter().all(|(_, w)| *w == 0) {
                v[0].1 = 1;
            }
            Exit::Weighted(v)
        }),
        2 => later(i, n).prop_map(Exit::Conditional),
    ];
    let fails = prop_oneof![6 => Just(0u32), 1 => Just(1u32), 1 => Just(2u32)];
    (
        any::<bool>(),
        0u8..3,
        proptest::bool::weighted(0.2),
        fails,
        exit,
    )
        .prop_map(|(cpu, delay_ms, writes_last, fails, exit)| NodeSpec {
            cpu,
            delay_ms,
            writes_last,
            fails,
            exit,
        })
}

fn graph_spec() -> impl Strategy<Value = GraphSpec> {
    (2usize..9).prop_flat_map(|n| {
        let nodes: Vec<_> = (0..n).map(|i| node(i, n).boxed()).collect();
        let join = proptest::option::weighted(
            0.8,
            (
                proptest::collection::vec(0..n - 1, 1..4),
                any::<prop::sample::Index>(),
                proptest::option::of(any::<prop::sample::Index>()),
                proptest::option::of(1u32..4),
            ),
        );
        let deferred = proptest::option::weighted(0.5, any::<prop::sample::Index>());
        (nodes, proptest::collection::vec(0..n, 1..3), join, deferred).prop_map(
            move |(nodes, entry, join, deferred)| {
                let join = join.map(|(mut preds, ix, quorum, timeout)| {
                    preds.sort();
                    preds.dedup();
                    let lowest = preds.iter().max().unwrap() + 1;
                    let policy = match quorum {
                        Some(k) => JoinPolicy::quorum(1 + k.index(preds.len())),
                        None => JoinPolicy::all(),
                    };
                    let policy = match timeout {
                        Some(t) => policy.timeout_steps(t),
                        None => policy,
                    };
                    (preds, lowest + ix.index(n - lowest), policy)
                });
                let deferred = deferred.map(|ix| ix.index(n));
                GraphSpec {
                    nodes,
                    entry,
                    join,
                    deferred,
                }
            },
        )
    })
}

fn name(i: usize) -> String {
    format!("n{i}")
}

fn build(spec: &GraphSpec) -> CompiledGraph<Walk> {
    let n = spec.nodes.len();
    let mut b = GraphBuilder::<Walk>::new();
    for (i, node) in spec.nodes.iter().enumerate() {
        let me = name(i);
        let writes_last = node.writes_last;
        let make = move |me: &str| {
            let u = WalkUpdate::new()
                .log(vec![me.to_owned()])
                .total(i as u64 + 1)
                .highest(i as u64);
            if writes_last {
                u.last(me.to_owned())
            } else {
                u
            }
        };
        let delay = Duration::from_millis(u64::from(node.delay_ms));
        let fails = node.fails;
        if node.cpu {
            b.add_cpu_node(me.clone(), move |_: &Walk, ctx: &Context| {
                if ctx.attempt() <= fails {
                    return Err(format!("flaky attempt {}", ctx.attempt()).into());
                }
                ctx.emit("work", &ctx.node());
                std::thread::sleep(delay);
                Ok(make(ctx.node()))
            });
        } else {
            b.add_node(me.clone(), move |_: Arc<Walk>, ctx: Context| {
                let u = make(ctx.node());
                async move {
                    if ctx.attempt() <= fails {
                        return Err(format!("flaky attempt {}", ctx.attempt()).into());
                    }
                    ctx.emit("work", &ctx.node());
                    tokio::time::sleep(delay).await;
                    ctx.emit("done", &1);
                    Ok(u)
                }
            });
        }
    }
    b.default_retry(
        RetryPolicy::new(3)
            .backoff(Duration::ZERO, Duration::ZERO)
            .jitter(false),
    );
    // Every node must be reachable: the entry, and for each node an edge from an earlier one.
    let mut reached = vec![false; n];
    for e in &spec.entry {
        reached[*e] = true;
        b.add_edge(START, &name(*e));
    }
    let names: Vec<String> = (0..n).map(name).collect();
    let target_name = |t: Option<usize>| t.map_or(END.to_owned(), name);
    for (i, node) in spec.nodes.iter().enumerate() {
        match &node.exit {
            Exit::Static(ts) if ts.is_empty() => {
                b.add_edge(&names[i], END);
            }
            Exit::Static(ts) => {
                for t in ts {
                    reached[*t] = true;
                    b.add_edge(&names[i], &names[*t]);
                }
            }
            Exit::Weighted(ts) => {
                let owned: Vec<(String, f64)> = ts
                    .iter()
                    .map(|(t, w)| (target_name(*t), f64::from(*w)))
                    .collect();
                for (t, _) in ts {
                    if let Some(t) = t {
                        reached[*t] = true;
                    }
                }
                b.add_weighted_edges(&names[i], owned.iter().map(|(t, w)| (t.as_str(), *w)));
            }
            Exit::Conditional(ts) => {
                let mut declared: Vec<String> = ts.iter().map(|t| name(*t)).collect();
                declared.push(END.to_owned());
                for t in ts {
                    reached[*t] = true;
                }
                let choices = declared.clone();
                b.add_conditional_edges(
                    &names[i],
                    declared.iter().map(String::as_str),
                    move |s: &Walk| choices[(s.total as usize) % choices.len()].clone(),
                );
            }
        }
    }
    for j in 0..n {
        if !reached[j] {
            // Any earlier node will do; START if none.
            let from = if j == 0 {
                START.to_owned()
            } else {
                name(j - 1)
            };
            b.add_edge(&from, &names[j]);
        }
    }
    if let Some((preds, target, policy)) = &spec.join {
        b.add_join_with(
            preds.iter().map(|p| names[*p].as_str()),
            &names[*target],
            *policy,
        );
    }
    if let Some(d) = spec.deferred {
        b.defer(&names[d]);
    }
    b.compile().expect("generated graphs are valid")
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A checkpoint without its timestamp: step, parent, fields written, next tasks, bytes.
type CheckpointSummary = (
    u64,
    Option<u64>,
    Vec<std::borrow::Cow<'static, str>>,
    Vec<String>,
    u64,
);

/// What a run produced, normalized for comparison: the outcome, the scheduler's own events in
/// order, and each task's events in order. Durations and the mode are left out.
#[derive(Debug, PartialEq)]
struct Observed {
    outcome: Result<Walk, String>,
    scheduler: Vec<String>,
    per_task: BTreeMap<TaskId, Vec<String>>,
    /// Every checkpoint but its timestamp: step, parent, fields written, next tasks, bytes.
    checkpoints: Vec<CheckpointSummary>,
    /// Every stored field value and delta, by field.
    blobs: Vec<Vec<(u64, Vec<u8>)>>,
}

fn observe(graph: &CompiledGraph<Walk>, mode: Mode, seed: u64) -> Observed {
    runtime().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let config = RunConfig::new()
            .mode(mode)
            .seed(seed)
            .run_id("prop")
            .recursion_limit(64)
            .store(store.clone());
        let run = graph.run_with(Walk::default(), config);
        let events = run.events();
        let outcome = run.await.map_err(|e: Error| e.to_string());
        let mut scheduler = Vec::new();
        let mut per_task: BTreeMap<TaskId, Vec<String>> = BTreeMap::new();
        let events: Vec<_> = events.collect().await;
        for e in events {
            let e = e.expect("no events missed");
            match e.kind {
                EventKind::NodeStarted {
                    task,
                    node,
                    step,
                    attempt,
                } => per_task
                    .entry(task)
                    .or_default()
                    .push(format!("start {node} {step} #{attempt}")),
                EventKind::RetryScheduled { task, attempt, .. } => per_task
                    .entry(task)
                    .or_default()
                    .push(format!("retry #{attempt}")),
                EventKind::NodeFinished { task, node, .. } => per_task
                    .entry(task)
                    .or_default()
                    .push(format!("finish {node}")),
                EventKind::NodeFailed {
                    task,
                    error,
                    attempt,
                    ..
                } => per_task
                    .entry(task)
                    .or_default()
                    .push(format!("failed #{attempt} {error}")),
                EventKind::Custom {
                    task,
                    name,
                    payload,
                    ..
                } => per_task
                    .entry(task)
                    .or_default()
                    .push(format!("{name} {payload}")),
                EventKind::RunStarted { seed, graph, .. } => {
                    scheduler.push(format!("run {seed} {graph}"))
                }
                EventKind::RunFinished { steps, .. } => scheduler.push(format!("finished {steps}")),
                other => scheduler.push(format!("{other:?}")),
            }
        }
        let checkpoints = graph
            .history(store.clone())
            .checkpoints("prop")
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.step, c.parent, c.written, c.next, c.blob_bytes))
            .collect();
        let mut blobs = Vec::new();
        for f in 0..Walk::FIELDS.len() as u32 {
            blobs.push(store.get_blobs("prop", f, 0, u64::MAX).await.unwrap());
        }
        Observed {
            outcome,
            scheduler,
            per_task,
            checkpoints,
            blobs,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn sequential_and_parallel_runs_agree(spec in graph_spec(), seed in any::<u64>()) {
        let graph = build(&spec);
        let sequential = observe(&graph, Mode::Sequential, seed);
        let parallel = observe(&graph, Mode::Parallel, seed);
        prop_assert_eq!(&sequential, &parallel);
        prop_assert!(!sequential.per_task.is_empty());
    }

    #[test]
    fn the_same_seed_makes_the_same_choices(spec in graph_spec(), seed in any::<u64>()) {
        let graph = build(&spec);
        let first = observe(&graph, Mode::Parallel, seed);
        let again = observe(&graph, Mode::Parallel, seed);
        prop_assert_eq!(first, again);
    }
}

/// Three invocations of one thread, each with its own input: every invocation's outcome, and
/// the thread's checkpoints (with their invocation) and stored values.
type ThreadObserved = (
    Vec<Result<Walk, String>>,
    Vec<(CheckpointSummary, u32)>,
    Vec<Vec<(u64, Vec<u8>)>>,
);

fn observe_thread(graph: &CompiledGraph<Walk>, mode: Mode, seed: u64) -> ThreadObserved {
    runtime().block_on(async {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let mut outcomes = Vec::new();
        for turn in 0..3u64 {
            let config = RunConfig::new()
                .mode(mode)
                .seed(seed)
                .recursion_limit(64)
                .store(store.clone());
            let input = WalkUpdate::new()
                .log(vec![format!("input {turn}")])
                .total(turn);
            let outcome = graph.invoke_thread("prop", input, config).await;
            outcomes.push(outcome.map_err(|e| e.to_string()));
        }
        let checkpoints = graph
            .history(store.clone())
            .checkpoints("prop")
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                let invocation = c.invocation;
                (
                    (c.step, c.parent, c.written, c.next, c.blob_bytes),
                    invocation,
                )
            })
            .collect();
        let mut blobs = Vec::new();
        for f in 0..Walk::FIELDS.len() as u32 {
            blobs.push(store.get_blobs("prop", f, 0, u64::MAX).await.unwrap());
        }
        (outcomes, checkpoints, blobs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A thread's invocations are as deterministic as a run: both modes give the same
    /// outcomes, checkpoints and stored values, turn after turn.
    #[test]
    fn a_threads_invocations_agree_in_both_modes(spec in graph_spec(), seed in any::<u64>()) {
        let graph = build(&spec);
        let sequential = observe_thread(&graph, Mode::Sequential, seed);
        let parallel = observe_thread(&graph, Mode::Parallel, seed);
        prop_assert_eq!(&sequential, &parallel);
        let invocations: Vec<u32> = sequential.1.iter().map(|(_, i)| *i).collect();
        prop_assert!(invocations.windows(2).all(|w| w[0] <= w[1]), "{:?}", invocations);
        prop_assert_eq!(invocations.first().copied(), Some(1));
    }
}

#[test]
fn different_seeds_can_choose_differently() {
    let mut b = GraphBuilder::<Walk>::new();
    for n in ["a", "b"] {
        b.add_node(n, move |_: Arc<Walk>, _| async move {
            Ok(WalkUpdate::new().log(vec![n.to_owned()]))
        });
        b.add_edge(n, END);
    }
    b.add_weighted_edges(START, [("a", 1.0), ("b", 1.0)]);
    let g = b.compile().unwrap();
    let logs: std::collections::BTreeSet<Vec<String>> = (0..32)
        .map(|seed| observe(&g, Mode::Parallel, seed).outcome.unwrap().log)
        .collect();
    assert_eq!(logs.len(), 2, "32 seeds all chose the same branch");
}

/// A run stopped at a step (by a recursion limit) and resumed ends as an uninterrupted run
/// ends: same outcome, same stored values, JSON views equal to the typed state. Run with an
/// explicit runner so that it can count the cases that really stopped and resumed (a stop
/// past the run's last step stops nothing), and require a good share of them.
#[test]
fn a_run_stopped_at_any_step_resumes_to_the_same_result() {
    const CASES: u32 = 40;
    let cases = AtomicU32::new(0);
    let resumed_cases = AtomicU32::new(0);
    let config = ProptestConfig {
        source_file: Some(file!()),
        ..ProptestConfig::with_cases(CASES)
    };
    let strategy = (graph_spec(), any::<u64>(), 0u64..12);
    let result = TestRunner::new(config).run(&strategy, |(spec, seed, stop_at)| {
        cases.fetch_add(1, Ordering::Relaxed);
        let graph = build(&spec);
        let whole = observe(&graph, Mode::Parallel, seed);
        // A stop within the run: a limit past its last step would stop nothing.
        let stop_at = stop_at % (whole.checkpoints.len() as u64).max(1);
        let resumed = runtime().block_on(async {
            let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
            // Monitored, so that the JSON views of the state are checked across the stop too.
            let config = || {
                RunConfig::new()
                    .seed(seed)
                    .run_id("prop")
                    .store(store.clone())
                    .monitored()
            };
            let first = graph
                .run_with(Walk::default(), config().recursion_limit(stop_at))
                .await;
            let outcome = match first {
                Err(Error::RecursionLimit { .. }) => {
                    resumed_cases.fetch_add(1, Ordering::Relaxed);
                    graph
                        .resume("prop", config().recursion_limit(64))
                        .await
                        .map_err(|e| e.to_string())
                }
                other => other.map_err(|e| e.to_string()),
            };
            let mut blobs = Vec::new();
            for f in 0..Walk::FIELDS.len() as u32 {
                blobs.push(store.get_blobs("prop", f, 0, u64::MAX).await.unwrap());
            }
            // The JSON state a monitor reads is the typed state at every checkpoint.
            let history = graph.history(store.clone());
            let inspector = history.inspector();
            let mut views = Vec::new();
            for cp in history.checkpoints("prop").await.unwrap() {
                let typed = history.state("prop", Some(cp.step)).await.unwrap();
                let json = inspector.state_json("prop", Some(cp.step)).await.unwrap();
                views.push((cp.step, serde_json::to_value(typed).unwrap(), json));
            }
            (outcome, blobs, views)
        });
        for (step, typed, json) in &resumed.2 {
            prop_assert_eq!(json, typed, "the JSON state after step {}", step);
        }
        // A run that fails (a conflict) fails the same way; one that finishes ends the same, and
        // stores the same values.
        prop_assert_eq!(&resumed.0, &whole.outcome);
        if whole.outcome.is_ok() {
            prop_assert_eq!(&resumed.1, &whole.blobs);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (cases, resumed_cases) = (cases.into_inner(), resumed_cases.into_inner());
    assert!(
        resumed_cases * 3 >= cases,
        "only {resumed_cases} of {cases} generated cases stopped and resumed (at least a third must)"
    );
}
