//! Budgets and quotas: each limit (steps, tokens, cost, tool calls, wall time) stops a run
//! before a step with `Error::BudgetExceeded`, status `budget_exceeded` and a `BudgetExceeded`
//! event; resuming with a higher budget goes on without running a finished step again; the
//! counters are stored with the checkpoints (a resume from a reopened sled store counts on from
//! them); thread budgets count across a thread's invocations; a tenant's budget counts across
//! its runs and caps its runs in flight. A run lets go of its store before it returns, however
//! it ends: a sled store reopens at once (no retry).

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::SledStore;
use agentgraph_engine::{
    Budget, BudgetExceeded, BudgetKind, BudgetScope, CheckpointStore, CompiledGraph, Context,
    Durability, END, Error, EventKind, GraphBuilder, Mode, PendingStatus, PriceTable, Run,
    RunStatus, START, StoreInspector, TenantBudget,
};
use common::{Calls, Trace, TraceUpdate, cfg, memory};
use futures_util::StreamExt;
use std::future::IntoFuture;
use tokio::sync::Notify;

/// `START -> work -> work ... -> END`: `work` runs `steps` times, calling `report` with its
/// context each time.
fn looping<F>(steps: u64, calls: &Calls, report: F) -> CompiledGraph<Trace>
where
    F: Fn(&Context) + Clone + Send + Sync + 'static,
{
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("work", move |_, ctx: Context| {
        c.hit("work");
        let report = report.clone();
        async move {
            report(&ctx);
            Ok(TraceUpdate::note(ctx.step().to_string()).count(1))
        }
    })
    .add_edge(START, "work")
    .add_conditional_edges("work", ["work", END], move |t: &Trace| {
        if t.count < steps { "work" } else { END }
    });
    b.compile().unwrap()
}

/// The run's result and the `BudgetExceeded` events it emitted.
async fn run_with_events(run: Run<Trace>) -> (Result<Trace, Error>, Vec<EventKind>) {
    let events = run.events();
    let result = run.await;
    let kinds = events
        .filter_map(|e| async move {
            let kind = e.ok()?.kind;
            matches!(kind, EventKind::BudgetExceeded { .. }).then_some(kind)
        })
        .collect()
        .await;
    (result, kinds)
}

fn exceeded(result: Result<Trace, Error>) -> BudgetExceeded {
    match result {
        Err(Error::BudgetExceeded(stop)) => *stop,
        other => panic!("expected a budget stop, got {other:?}"),
    }
}

async fn status(store: &Arc<dyn CheckpointStore>, run: &str) -> RunStatus {
    store.get_run(run).await.unwrap().unwrap().status
}

/// Each counted limit stops the run before the step after the one that reached it, with the
/// typed error, its event and the stored status; a higher budget lets the run finish, every
/// step run once.
#[tokio::test]
async fn each_limit_stops_the_run_and_a_higher_one_resumes_it() {
    let prices = || PriceTable::new().price("m", 1.0, 3.0);
    // Per step: 80 prompt and 20 completion tokens of `m` ($0.00008 + $0.00006), 2 tool calls.
    let cases = [
        (Budget::new().max_steps(3), BudgetKind::Steps, 3, 3),
        (Budget::new().max_tokens(250), BudgetKind::Tokens, 250, 300),
        (
            Budget::new().max_cost(0.0003),
            BudgetKind::Cost,
            300_000,
            420_000,
        ),
        (Budget::new().max_tool_calls(5), BudgetKind::ToolCalls, 5, 6),
    ];
    for (budget, kind, limit, used) in cases {
        let store = memory();
        let calls = Calls::default();
        let graph = looping(6, &calls, |ctx| {
            ctx.record_model_usage("m", 80, 20);
            ctx.record_tool_calls(2);
        });
        let run = graph.run_with(
            Trace::default(),
            cfg(&store, "r").prices(prices()).budget(budget),
        );
        let (result, events) = run_with_events(run).await;
        let stop = exceeded(result);
        assert_eq!(
            (stop.scope, stop.budget, stop.limit, stop.used, stop.step),
            (BudgetScope::Run, kind, limit, used, 4),
            "{kind:?}"
        );
        assert!(stop.to_string().contains("raise it and resume"), "{stop}");
        assert_eq!(
            events,
            [EventKind::BudgetExceeded {
                step: 4,
                scope: BudgetScope::Run,
                budget: kind,
                limit,
                used
            }]
        );
        assert_eq!(status(&store, "r").await, RunStatus::BudgetExceeded);
        assert_eq!(calls.get("work"), 3);

        // The same budget stops it again at once; a higher one lets it finish from step 4.
        let again = graph
            .resume("r", cfg(&store, "r").prices(prices()).budget(budget))
            .await;
        assert_eq!(exceeded(again).used, used);
        assert_eq!(calls.get("work"), 3, "nothing ran over the budget");
        let done = graph
            .resume("r", cfg(&store, "r").prices(prices()).budget(Budget::new()))
            .await
            .unwrap();
        assert_eq!(done.count, 6);
        assert_eq!(done.log, ["1", "2", "3", "4", "5", "6"]);
        assert_eq!(calls.get("work"), 6, "every step ran once");
        assert_eq!(status(&store, "r").await, RunStatus::Completed);
    }
}

/// Wall time counts the time the run ran, stored with its checkpoints: a resume with the same
/// limit stops at once, without running a step.
#[tokio::test]
async fn wall_time_stops_the_run_and_is_stored() {
    let store = memory();
    let calls = Calls::default();
    let graph = {
        let mut b = GraphBuilder::<Trace>::new();
        let c = calls.clone();
        b.add_node("work", move |_, _| {
            c.hit("work");
            async {
                tokio::time::sleep(Duration::from_millis(40)).await;
                Ok(TraceUpdate::new().count(1))
            }
        })
        .add_edge(START, "work")
        .add_conditional_edges("work", ["work", END], |t: &Trace| {
            if t.count < 100 { "work" } else { END }
        });
        b.compile().unwrap()
    };
    let budget = Budget::new().max_wall_time(Duration::from_millis(100));
    let (result, events) =
        run_with_events(graph.run_with(Trace::default(), cfg(&store, "w").budget(budget))).await;
    let stop = exceeded(result);
    assert_eq!((stop.budget, stop.limit), (BudgetKind::WallTime, 100));
    assert!(stop.used >= 100, "{stop:?}");
    assert_eq!(events.len(), 1);
    let ran = calls.get("work");
    assert!((1..100).contains(&ran), "{ran}");

    let again = exceeded(graph.resume("w", cfg(&store, "w").budget(budget)).await);
    assert_eq!(again.budget, BudgetKind::WallTime);
    assert!(again.used >= 100, "{again:?}");
    assert_eq!(
        calls.get("work"),
        ran,
        "the stored wall time stops it before a step"
    );
}

/// The counters are stored with the checkpoints: a run stopped for its tokens, resumed from a
/// reopened sled store, counts on from what it used, and its totals go on.
#[tokio::test]
async fn counters_survive_a_resume_from_a_reopened_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let graph = looping(5, &calls, |ctx| {
        ctx.record_model_usage("m", 60, 40);
        ctx.record_tool_calls(1);
    });
    let budget = |tokens| Budget::new().max_tokens(tokens);
    {
        let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
        let stop = exceeded(
            graph
                .run_with(Trace::default(), cfg(&store, "s").budget(budget(200)))
                .await,
        );
        assert_eq!((stop.used, stop.step), (200, 3));
        store.flush().await.unwrap();
    }
    // Nothing of the run holds the store once it returned (its lease's heartbeat is gone):
    // a blocking open on this current-thread runtime succeeds at once.
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    assert_eq!(status(&store, "s").await, RunStatus::BudgetExceeded);
    // The same budget: stopped again before step 3, from the stored count.
    let stop = exceeded(
        graph
            .resume("s", cfg(&store, "s").budget(budget(200)))
            .await,
    );
    assert_eq!((stop.used, stop.step), (200, 3));
    // Raised to 400: steps 3 and 4 run (400 used), then it stops before step 5; the tool
    // calls counted on too (4 of them by then).
    let stop = exceeded(
        graph
            .resume("s", cfg(&store, "s").budget(budget(400).max_tool_calls(10)))
            .await,
    );
    assert_eq!((stop.used, stop.step), (400, 5));
    let stop = exceeded(
        graph
            .resume(
                "s",
                cfg(&store, "s").budget(Budget::new().max_tool_calls(4)),
            )
            .await,
    );
    assert_eq!((stop.budget, stop.used), (BudgetKind::ToolCalls, 4));
    let done = graph
        .resume("s", cfg(&store, "s").budget(budget(1_000)))
        .await
        .unwrap();
    assert_eq!(done.count, 5);
    assert_eq!(calls.get("work"), 5);
}

/// A thread budget counts every invocation of the thread; a run budget, one invocation.
#[tokio::test]
async fn thread_budgets_count_across_invocations() {
    let store = memory();
    let calls = Calls::default();
    // Each invocation: `work` twice (the count goes up by 2 per input of 0), 100 tokens each.
    let graph = {
        let mut b = GraphBuilder::<Trace>::new();
        let c = calls.clone();
        b.add_node("work", move |_, ctx: Context| {
            c.hit("work");
            async move {
                ctx.record_model_usage("m", 100, 0);
                Ok(TraceUpdate::new().count(1))
            }
        })
        .add_edge(START, "work")
        .add_conditional_edges("work", ["work", END], |t: &Trace| {
            if t.count % 2 == 1 { "work" } else { END }
        });
        b.compile().unwrap()
    };
    let config = || {
        cfg(&store, "t")
            .budget(Budget::new().max_tokens(250))
            .thread_budget(Budget::new().max_tokens(500))
    };
    // Two invocations of 200 tokens: under both budgets.
    for _ in 0..2 {
        graph
            .invoke_thread("t", TraceUpdate::new(), config())
            .await
            .unwrap();
    }
    // The third reaches the thread's 500 after its first step.
    let stop = exceeded(graph.invoke_thread("t", TraceUpdate::new(), config()).await);
    assert_eq!(
        (stop.scope, stop.budget, stop.limit, stop.used),
        (BudgetScope::Thread, BudgetKind::Tokens, 500, 500)
    );
    assert_eq!(calls.get("work"), 5);
    assert_eq!(status(&store, "t").await, RunStatus::BudgetExceeded);
    // A new input is refused until the stopped invocation is resumed.
    assert!(matches!(
        graph.invoke_thread("t", TraceUpdate::new(), config()).await,
        Err(Error::ThreadNotReady { .. })
    ));
    let done = graph
        .resume(
            "t",
            cfg(&store, "t").thread_budget(Budget::new().max_tokens(600)),
        )
        .await
        .unwrap();
    assert_eq!((done.count, calls.get("work")), (6, 6));
    // The run budget of the next invocation counts from its start: 250 allows its 200.
    let stop = exceeded(
        graph
            .invoke_thread(
                "t",
                TraceUpdate::new(),
                cfg(&store, "t")
                    .budget(Budget::new().max_tokens(250))
                    .thread_budget(Budget::new().max_tokens(700)),
            )
            .await,
    );
    assert_eq!((stop.scope, stop.used), (BudgetScope::Thread, 700));
}

/// A tenant's budget counts the tokens and steps of all its runs, in process.
#[tokio::test]
async fn tenant_budgets_count_across_runs() {
    let store = memory();
    let calls = Calls::default();
    let graph = looping(2, &calls, |ctx| ctx.record_model_usage("m", 100, 0));
    let tenant = TenantBudget::new(Budget::new().max_tokens(250));
    graph
        .run_with(
            Trace::default(),
            cfg(&store, "a").tenant_budget(tenant.clone()),
        )
        .await
        .unwrap();
    let (result, events) = run_with_events(graph.run_with(
        Trace::default(),
        cfg(&store, "b").tenant_budget(tenant.clone()),
    ))
    .await;
    let stop = exceeded(result);
    assert_eq!(
        (stop.scope, stop.budget, stop.used, stop.step),
        (BudgetScope::Tenant, BudgetKind::Tokens, 300, 2)
    );
    assert_eq!(events.len(), 1);
    let used = tenant.usage();
    assert_eq!((used.tokens, used.steps, tenant.in_flight()), (300, 3, 0));
    assert_eq!(status(&store, "b").await, RunStatus::BudgetExceeded);
}

/// A tenant's cap on runs in flight refuses a start over it, writing nothing; the place is
/// given back when a run ends.
#[tokio::test]
async fn runs_in_flight_are_capped() {
    let store = memory();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let graph = {
        let (entered, release) = (entered.clone(), release.clone());
        let mut b = GraphBuilder::<Trace>::new();
        b.add_node("wait", move |_, _| {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                Ok(TraceUpdate::new().count(1))
            }
        })
        .add_edge(START, "wait")
        .add_edge("wait", END);
        b.compile().unwrap()
    };
    let tenant = TenantBudget::new(Budget::new().max_runs_in_flight(1));
    let first = graph
        .run_with(
            Trace::default(),
            cfg(&store, "one").tenant_budget(tenant.clone()),
        )
        .spawn();
    entered.notified().await;
    assert_eq!(tenant.in_flight(), 1);

    let (result, events) = run_with_events(graph.run_with(
        Trace::default(),
        cfg(&store, "two").tenant_budget(tenant.clone()),
    ))
    .await;
    let stop = exceeded(result);
    assert_eq!(
        (stop.scope, stop.budget, stop.limit, stop.used, stop.step),
        (BudgetScope::Tenant, BudgetKind::RunsInFlight, 1, 1, 0)
    );
    assert_eq!(events.len(), 1);
    assert!(
        store.get_run("two").await.unwrap().is_none(),
        "nothing written"
    );

    release.notify_one();
    assert_eq!(first.await.unwrap().count, 1);
    assert_eq!(tenant.in_flight(), 0);
    let second = graph.run_with(
        Trace::default(),
        cfg(&store, "two").tenant_budget(tenant.clone()),
    );
    let waiter = tokio::spawn({
        let (entered, release) = (entered.clone(), release.clone());
        async move {
            entered.notified().await;
            release.notify_one();
        }
    });
    assert_eq!(second.await.unwrap().count, 1);
    waiter.await.unwrap();
    assert_eq!(tenant.in_flight(), 0);
}

/// A subgraph's child run reports its usage to its parent, whose budget stops it.
#[tokio::test]
async fn a_subgraph_counts_for_its_parent() {
    let child = {
        let mut b = GraphBuilder::<Trace>::new();
        b.add_node("ask", |_, ctx: Context| async move {
            ctx.record_model_usage("m", 70, 30);
            Ok(TraceUpdate::new().count(1))
        })
        .add_edge(START, "ask")
        .add_edge("ask", END);
        b.compile().unwrap()
    };
    let mut b = GraphBuilder::<Trace>::new();
    b.add_subgraph(
        "sub",
        child,
        |_: &Trace| Trace::default(),
        |child: Trace| TraceUpdate::new().count(child.count),
    )
    .add_edge(START, "sub")
    .add_conditional_edges(
        "sub",
        ["sub", END],
        |t: &Trace| {
            if t.count < 5 { "sub" } else { END }
        },
    );
    let graph = b.compile().unwrap();
    let store = memory();
    let stop = exceeded(
        graph
            .run_with(
                Trace::default(),
                cfg(&store, "p").budget(Budget::new().max_tokens(150)),
            )
            .await,
    );
    assert_eq!((stop.used, stop.step), (200, 3));
}

/// A subgraph's task takes its tool calls from its parent's budget: refused there, the child
/// run stops, and so does the parent, in the subgraph's step, the parent's other task of that
/// step keeping its write; a resume with a higher budget resumes the child, whose refused
/// task runs once, and the parent's finished task does not run again. The thread's budget is
/// the one that refuses here (the run has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subgraph_task_is_refused_by_its_parents_budget() {
    let calls = Calls::default();
    let child = {
        let mut b = GraphBuilder::<Trace>::new();
        let c = calls.clone();
        b.add_node("search", move |_, ctx: Context| {
            c.hit("search");
            async move {
                ctx.charge_tool_calls(2)?;
                Ok(TraceUpdate::note("searched").count(2))
            }
        })
        .add_edge(START, "search")
        .add_edge("search", END);
        b.compile().unwrap()
    };
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_subgraph(
        "sub",
        child,
        |_: &Trace| Trace::default(),
        |child: Trace| TraceUpdate::new().log(child.log).count(child.count),
    )
    .add_node("side", move |_, _| {
        c.hit("side");
        async { Ok(TraceUpdate::note("side")) }
    })
    .add_edge(START, "sub")
    .add_edge(START, "side")
    .add_edge("sub", END)
    .add_edge("side", END);
    let graph = b.compile().unwrap();
    let store = memory();
    let config = |calls: u64| {
        cfg(&store, "p")
            .mode(Mode::Sequential)
            .thread_budget(Budget::new().max_tool_calls(calls))
    };
    let stop = exceeded(graph.run_with(Trace::default(), config(1)).await);
    assert_eq!(
        (
            stop.run_id.as_str(),
            stop.scope,
            stop.budget,
            stop.limit,
            stop.used,
            stop.step
        ),
        ("p", BudgetScope::Thread, BudgetKind::ToolCalls, 1, 0, 1)
    );
    assert_eq!((calls.get("search"), calls.get("side")), (1, 1));
    let done = graph.resume("p", config(2)).await.unwrap();
    let mut log = done.log.clone();
    log.sort();
    assert_eq!(log, ["searched", "side"]);
    assert_eq!(done.count, 2);
    assert_eq!((calls.get("search"), calls.get("side")), (2, 1));
}

/// However a run ends (completed, over its budget, failed, cancelled; sequential or parallel),
/// nothing it spawned holds its sled store once it returned: a blocking open right after it,
/// on this current-thread runtime that has not run anything since, succeeds.
#[tokio::test]
async fn a_run_lets_go_of_its_store_before_it_returns() {
    let calls = Calls::default();
    let graph = looping(3, &calls, |_| {});
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("fail", |_, _| async { Err::<TraceUpdate, _>("no".into()) })
        .add_edge(START, "fail")
        .add_edge("fail", END);
    let failing = b.compile().unwrap();
    let reached = Arc::new(Notify::new());
    let at_slow = reached.clone();
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("slow", move |_, _| {
        let at_slow = at_slow.clone();
        async move {
            at_slow.notify_one();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(TraceUpdate::new())
        }
    })
    .add_edge(START, "slow")
    .add_edge("slow", END);
    let slow = b.compile().unwrap();

    for mode in [Mode::Sequential, Mode::Parallel] {
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<dyn CheckpointStore> {
            Arc::new(SledStore::open(dir.path()).expect("the run let go of the store"))
        };
        let config = |store: &Arc<dyn CheckpointStore>, run: &str| cfg(store, run).mode(mode);

        let store = open();
        graph
            .run_with(Trace::default(), config(&store, "done"))
            .await
            .unwrap();
        drop(store);
        let store = open();
        let budget = Budget::new().max_steps(1);
        exceeded(
            graph
                .run_with(Trace::default(), config(&store, "over").budget(budget))
                .await,
        );
        drop(store);
        let store = open();
        assert!(
            failing
                .run_with(Trace::default(), config(&store, "failed"))
                .await
                .is_err()
        );
        drop(store);
        let store = open();
        let run = slow.run_with(Trace::default(), config(&store, "cancelled"));
        let cancel = run.cancel_handle();
        let handle = run.spawn();
        reached.notified().await;
        cancel.cancel();
        assert!(matches!(handle.await, Err(Error::Cancelled { .. })));
        drop(store);
        let store = open();
        for (run, want) in [
            ("done", RunStatus::Completed),
            ("over", RunStatus::BudgetExceeded),
            ("failed", RunStatus::Failed),
            ("cancelled", RunStatus::Cancelled),
        ] {
            assert_eq!(status(&store, run).await, want, "{run} ({mode:?})");
        }
    }
}

/// `START -> [a, b, c] -> END` in one step, run in parallel: `a` and `b` take one tool call
/// each, `c` (once both finished) takes `c_calls`. Each notes its name.
fn charging(calls: &Calls, c_calls: u64) -> CompiledGraph<Trace> {
    let both = Arc::new(tokio::sync::Semaphore::new(0));
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b"] {
        let (calls, both) = (calls.clone(), both.clone());
        b.add_node(name, move |_, ctx: Context| {
            calls.hit(name);
            let both = both.clone();
            async move {
                ctx.charge_tool_calls(1)?;
                both.add_permits(1);
                Ok(TraceUpdate::note(name).count(1))
            }
        });
    }
    let (c, both) = (calls.clone(), both.clone());
    b.add_node("c", move |_, ctx: Context| {
        c.hit("c");
        let both = both.clone();
        async move {
            // After `a` and `b` have taken their calls (once they have, the permits stay: a
            // resumed run, which does not run them again, does not wait).
            if both.available_permits() < 2 {
                drop(both.acquire_many(2).await);
            }
            ctx.charge_tool_calls(c_calls)?;
            Ok(TraceUpdate::note("c").count(c_calls))
        }
    });
    b.add_edge(START, "a")
        .add_edge(START, "b")
        .add_edge(START, "c")
        .add_edge("a", END)
        .add_edge("b", END)
        .add_edge("c", END);
    b.compile().unwrap()
}

/// A task refused by the budget of tool calls ends its step as an interrupt does: the other
/// tasks of the step finish and keep their writes, the run stops at the step with the typed
/// error, its event and status; a resume with the same budget runs nothing (what the finished
/// tasks used is kept with the refused task); one with a higher budget runs the refused task
/// only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_refused_by_its_budget_stops_the_step_and_runs_alone_on_resume() {
    let cases = [
        (Mode::Parallel, Durability::Async),
        (Mode::Sequential, Durability::Sync),
        (Mode::Parallel, Durability::Exit),
    ];
    for (mode, durability) in cases {
        let store = memory();
        let calls = Calls::default();
        let graph = charging(&calls, 3);
        let config = |calls: u64| {
            cfg(&store, "r")
                .mode(mode)
                .durability(durability)
                .store_events(true)
                .budget(Budget::new().max_tool_calls(calls))
        };
        let run = graph.run_with(Trace::default(), config(2));
        let (result, events) = run_with_events(run).await;
        let stop = exceeded(result);
        assert_eq!(
            (stop.scope, stop.budget, stop.limit, stop.used, stop.step),
            (BudgetScope::Run, BudgetKind::ToolCalls, 2, 2, 1),
            "{mode:?}"
        );
        assert_eq!(
            events,
            [EventKind::BudgetExceeded {
                step: 1,
                scope: BudgetScope::Run,
                budget: BudgetKind::ToolCalls,
                limit: 2,
                used: 2
            }]
        );
        assert_eq!(status(&store, "r").await, RunStatus::BudgetExceeded);
        let pending = graph.history(store.clone()).pending("r").await.unwrap();
        let standing: Vec<_> = pending
            .iter()
            .map(|p| (p.node.as_str(), p.status))
            .collect();
        assert_eq!(
            standing,
            [
                ("a", PendingStatus::Done),
                ("b", PendingStatus::Done),
                ("c", PendingStatus::OverBudget)
            ]
        );
        let usage = StoreInspector::new(store.clone())
            .usage("r")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(usage.total.tool_calls, 2, "what a and b took is stored");
        assert_eq!(usage.stopped_by.map(|s| s.step), Some(1));

        // The same budget: a and b used it, so the run stops before the step, running nothing.
        let again = exceeded(graph.resume("r", config(2)).await);
        assert_eq!((again.used, again.step), (2, 1));
        // Still too little for c's 3 calls: refused again, nothing else runs.
        let again = exceeded(graph.resume("r", config(4)).await);
        assert_eq!((again.limit, again.used, again.step), (4, 2, 1));
        assert_eq!((calls.get("a"), calls.get("b"), calls.get("c")), (1, 1, 2));

        let done = graph.resume("r", config(5)).await.unwrap();
        let mut log = done.log.clone();
        log.sort();
        assert_eq!(log, ["a", "b", "c"], "{mode:?}");
        assert_eq!(done.count, 5);
        assert_eq!(
            (calls.get("a"), calls.get("b"), calls.get("c")),
            (1, 1, 3),
            "only the refused task ran again"
        );
        let usage = StoreInspector::new(store.clone())
            .usage("r")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(usage.total.tool_calls, 5);
        assert_eq!(status(&store, "r").await, RunStatus::Completed);
    }
}

/// `check_budget` refuses a task once the run used its tokens, though the step began within
/// budget: `spend` reports 100 tokens, then `ask`, in the same step, is refused before its
/// (model) call; resumed with more tokens, `ask` runs and `spend` does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_budget_refuses_a_call_once_the_tokens_are_used() {
    let store = memory();
    let calls = Calls::default();
    let spent = Arc::new(Notify::new());
    let mut b = GraphBuilder::<Trace>::new();
    let (c, s) = (calls.clone(), spent.clone());
    b.add_node("spend", move |_, ctx: Context| {
        c.hit("spend");
        let s = s.clone();
        async move {
            ctx.record_model_usage("m", 80, 20);
            s.notify_one();
            Ok(TraceUpdate::note("spend"))
        }
    });
    let (c, s) = (calls.clone(), spent.clone());
    b.add_node("ask", move |_, ctx: Context| {
        // The first run's `ask` waits for `spend`'s tokens; the resumed one does not.
        let first = c.hit("ask") == 1;
        let s = s.clone();
        async move {
            if first {
                s.notified().await;
            }
            ctx.check_budget(BudgetKind::Tokens)?;
            ctx.check_budget(BudgetKind::Cost)?;
            ctx.record_model_usage("m", 30, 10);
            Ok(TraceUpdate::note("ask"))
        }
    });
    b.add_edge(START, "spend")
        .add_edge(START, "ask")
        .add_edge("spend", END)
        .add_edge("ask", END);
    let graph = b.compile().unwrap();
    let config = |tokens: u64| {
        cfg(&store, "t")
            .mode(Mode::Parallel)
            .budget(Budget::new().max_tokens(tokens))
    };
    let stop = exceeded(graph.run_with(Trace::default(), config(100)).await);
    assert_eq!(
        (stop.scope, stop.budget, stop.limit, stop.used, stop.step),
        (BudgetScope::Run, BudgetKind::Tokens, 100, 100, 1)
    );
    let done = graph.resume("t", config(1_000)).await.unwrap();
    assert_eq!(done.log, ["spend", "ask"]);
    assert_eq!((calls.get("spend"), calls.get("ask")), (1, 2));
    let usage = StoreInspector::new(store)
        .usage("t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(usage.total.tokens, 140);
}

/// A tenant's budget of tool calls is taken from atomically by the runs that share it: two
/// runs, each asking for 3 calls in 3 parallel tasks, under a tenant limit of 4: 4 calls are
/// made in all, and the runs stop with the tenant named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_budget_of_tool_calls_is_shared_exactly() {
    let tenant = TenantBudget::new(Budget::new().max_tool_calls(4));
    let made = Calls::default();
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["x", "y", "z"] {
        let made = made.clone();
        b.add_node(name, move |_, ctx: Context| {
            let made = made.clone();
            async move {
                ctx.charge_tool_calls(1)?;
                made.hit("call");
                Ok(TraceUpdate::note(name))
            }
        });
        b.add_edge(START, name).add_edge(name, END);
    }
    let graph = b.compile().unwrap();
    let store = memory();
    let runs = ["r1", "r2"].map(|id| {
        graph.run_with(
            Trace::default(),
            cfg(&store, id)
                .mode(Mode::Parallel)
                .tenant_budget(tenant.clone()),
        )
    });
    let [r1, r2] = runs;
    let (r1, r2) = tokio::join!(r1.into_future(), r2.into_future());
    assert_eq!(made.get("call"), 4);
    assert_eq!(tenant.usage().tool_calls, 4);
    let stopped: Vec<_> = [r1, r2]
        .into_iter()
        .filter_map(|r| r.err())
        .map(|e| match e {
            Error::BudgetExceeded(b) => (b.scope, b.budget, b.limit),
            other => panic!("expected a budget stop, got {other:?}"),
        })
        .collect();
    assert!(!stopped.is_empty());
    assert!(
        stopped
            .iter()
            .all(|s| *s == (BudgetScope::Tenant, BudgetKind::ToolCalls, 4))
    );
}

/// `START -> warm -> [t0 .. t{n-1}] -> END`: `warm` takes `used` tool calls, then each `t`
/// task takes one, in parallel, and counts its run in `ran`.
fn fan_of_calls(n: usize, used: u64, ran: &Calls) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("warm", move |_, ctx: Context| async move {
        ctx.charge_tool_calls(used)?;
        Ok(TraceUpdate::new())
    })
    .add_edge(START, "warm");
    for i in 0..n {
        let name = format!("t{i}");
        let (ran, node) = (ran.clone(), name.clone());
        b.add_node(name.clone(), move |_, ctx: Context| {
            let (ran, node) = (ran.clone(), node.clone());
            async move {
                ctx.charge_tool_calls(1)?;
                ran.hit(&node);
                Ok(TraceUpdate::note(node).count(1))
            }
        })
        .add_edge("warm", &name)
        .add_edge(&name, END);
    }
    b.compile().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// For any limit `L`, `used <= L` calls taken before, and `N` parallel calls: exactly
    /// `min(L - used, N)` calls run before the run stops (none stops it when all fit), each
    /// resume with a limit raised by `raises[i]` runs exactly as many more as fit, and once
    /// the run ends every call ran exactly once.
    #[test]
    fn parallel_calls_run_as_far_as_the_budget_goes_and_each_once(
        n in 1usize..7,
        limit in 0u64..9,
        used in 0u64..9,
        raises in proptest::collection::vec(1u64..4, 8),
    ) {
        let used = used.min(limit);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = memory();
            let ran = Calls::default();
            let graph = fan_of_calls(n, used, &ran);
            let config = |limit: u64| {
                cfg(&store, "p")
                    .mode(Mode::Parallel)
                    .budget(Budget::new().max_tool_calls(limit))
            };
            let total = |ran: &Calls| (0..n).map(|i| ran.get(&format!("t{i}"))).sum::<u32>() as u64;
            let mut limit = limit;
            let mut result = graph.run_with(Trace::default(), config(limit)).await;
            let mut raises = raises.into_iter();
            loop {
                let fit = (limit - used).min(n as u64);
                assert_eq!(total(&ran), fit, "limit {limit}, used {used}, {n} calls");
                match result {
                    Ok(done) => {
                        assert_eq!(done.count, n as u64);
                        break;
                    }
                    Err(Error::BudgetExceeded(stop)) => {
                        assert_eq!(stop.budget, BudgetKind::ToolCalls);
                        assert!(fit < n as u64, "stopped though all {n} calls fit in {limit}");
                        // Whatever is raised, it fits all in the end.
                        limit += raises.next().unwrap_or(n as u64);
                        result = graph.resume("p", config(limit)).await;
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            for i in 0..n {
                assert_eq!(ran.get(&format!("t{i}")), 1, "t{i} ran once");
            }
        });
    }
}

/// `check_budget` checks what tasks use (tokens, cost, tool calls); steps and wall time are
/// the scheduler's, checked before each step: a task's check of them passes, even in the step
/// that reaches its tenant's limit on steps (which would stop the run before a next one).
#[tokio::test]
async fn check_budget_leaves_steps_and_wall_time_to_the_scheduler() {
    let tenant = TenantBudget::new(Budget::new().max_steps(1));
    let mut b = GraphBuilder::<Trace>::new();
    b.add_node("only", |_, ctx: Context| async move {
        ctx.check_budget(BudgetKind::Steps)?;
        ctx.check_budget(BudgetKind::WallTime)?;
        ctx.check_budget(BudgetKind::RunsInFlight)?;
        ctx.check_budget(BudgetKind::ToolCalls)?;
        Ok(TraceUpdate::note("ran"))
    })
    .add_edge(START, "only")
    .add_edge("only", END);
    let done = b
        .compile()
        .unwrap()
        .run_with(
            Trace::default(),
            agentgraph_engine::RunConfig::new().tenant_budget(tenant.clone()),
        )
        .await
        .unwrap();
    assert_eq!(done.log, ["ran"]);
    assert_eq!(tenant.usage().steps, 1);
}
