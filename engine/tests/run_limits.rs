//! The limits on a run's steps: the recursion limit bounds each invocation (a fresh run, a
//! resume), so an interrupt-driven loop never reaches it however many times it is answered,
//! while a runaway loop stops at exactly N steps per invocation and resumes for N more; the
//! optional total-steps budget bounds the run across its invocations and can be raised on
//! resume; a run cut into invocations by the limit ends as the whole run does.

mod common;

use std::sync::Arc;

use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, Error, EventKind, GraphBuilder, Mode,
    Resume, Run, RunConfig, RunStatus, START,
};
use common::{Trace, TraceUpdate, cfg, memory, stopped};
use futures_util::StreamExt;

/// How many steps the run started before it ended, and how it ended.
async fn steps_of<T>(run: Run<Trace>, then: impl FnOnce(Result<Trace, Error>) -> T) -> (u64, T) {
    let events = run.events();
    let result = run.await;
    let started = events
        .filter(|e| {
            let started = matches!(e, Ok(e) if matches!(e.kind, EventKind::StepStarted { .. }));
            async move { started }
        })
        .count()
        .await;
    (started as u64, then(result))
}

/// The step of the run's last checkpoint.
async fn last_step(g: &CompiledGraph<Trace>, store: &Arc<dyn CheckpointStore>, run: &str) -> u64 {
    let checkpoints = g.history(store.clone()).checkpoints(run).await.unwrap();
    checkpoints.last().unwrap().step
}

/// START -> tick -> tick ... -> END: each step counts 1, and the run ends after `steps` steps
/// (never, with `u64::MAX`).
fn ticking(steps: u64) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::new();
    b.add_node("tick", |_, _| async { Ok(TraceUpdate::new().count(1)) })
        .add_edge(START, "tick")
        .add_conditional_edges("tick", ["tick", END], move |s: &Trace| {
            if s.count < steps { "tick" } else { END }
        });
    b.compile().unwrap()
}

/// START -> ask -> ask ... -> END: `ask` waits for a message at every step and notes it; the
/// message `bye` ends the run.
fn chat() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::new();
    b.add_node("ask", |_, ctx: Context| async move {
        let message: String = ctx.interrupt("your message?")?;
        Ok::<_, BoxError>(TraceUpdate::note(message).count(1))
    })
    .add_edge(START, "ask")
    .add_conditional_edges("ask", ["ask", END], |s: &Trace| {
        if s.log.last().is_some_and(|m| m == "bye") {
            END
        } else {
            "ask"
        }
    });
    b.compile().unwrap()
}

#[tokio::test]
async fn an_interrupt_driven_loop_is_answered_many_times_under_a_recursion_limit_of_3() {
    for mode in [Mode::Sequential, Mode::Parallel] {
        let store = memory();
        let g = chat();
        let config = || cfg(&store, "chat").mode(mode).recursion_limit(3);
        let mut waiting = stopped(g.run_with(Trace::default(), config()).await.unwrap_err());
        let messages = ["one", "two", "three", "four", "five", "bye"];
        for (turn, message) in messages.into_iter().enumerate() {
            let resume = Resume::new().answer(&waiting[0].id, message);
            // Each answer runs the step that asked, and the next one, which asks again.
            let (steps, result) = steps_of(g.resume_with("chat", resume, config()), |r| r).await;
            match result {
                Err(e) => {
                    assert_eq!(steps, 2, "answer {turn}");
                    waiting = stopped(e);
                }
                Ok(state) => {
                    assert_eq!(steps, 1, "the last answer ends the run");
                    assert_eq!(state.log, messages, "{mode:?}");
                }
            }
        }
        // The run took 6 steps in all, twice the limit: the limit counts each invocation.
        assert_eq!(last_step(&g, &store, "chat").await, 6);
        let record = g.history(store.clone()).run("chat").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
    }
}

#[tokio::test]
async fn a_runaway_loop_stops_at_exactly_n_steps_per_invocation_and_resumes_for_n_more() {
    let store = memory();
    let g = ticking(u64::MAX);
    let config = || cfg(&store, "spin").recursion_limit(4);
    let (steps, e) = steps_of(g.run_with(Trace::default(), config()), Result::unwrap_err).await;
    assert!(matches!(e, Error::RecursionLimit { limit: 4 }), "{e:?}");
    assert_eq!(steps, 4);
    // Its fourth step is checkpointed, and the run is failed, resumably.
    assert_eq!(last_step(&g, &store, "spin").await, 4);
    let history = g.history(store.clone());
    assert_eq!(history.state("spin", None).await.unwrap().count, 4);
    let record = history.run("spin").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);

    for round in 2..=3 {
        let (steps, e) = steps_of(g.resume("spin", config()), Result::unwrap_err).await;
        assert!(matches!(e, Error::RecursionLimit { limit: 4 }), "{e:?}");
        assert_eq!(steps, 4, "resume {round}");
        assert_eq!(last_step(&g, &store, "spin").await, 4 * round);
        assert_eq!(history.state("spin", None).await.unwrap().count, 4 * round);
    }
    // A resume may set another limit: it holds for that invocation.
    let (steps, e) = steps_of(
        g.resume("spin", config().recursion_limit(1)),
        Result::unwrap_err,
    )
    .await;
    assert!(matches!(e, Error::RecursionLimit { limit: 1 }), "{e:?}");
    assert_eq!((steps, last_step(&g, &store, "spin").await), (1, 13));
}

#[tokio::test]
async fn an_invocation_that_finishes_in_exactly_n_steps_succeeds() {
    let store = memory();
    // Eight steps: the first invocation runs four and stops, the resume finishes in four.
    let g = ticking(8);
    let config = || cfg(&store, "eight").recursion_limit(4);
    let e = g.run_with(Trace::default(), config()).await.unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { limit: 4 }), "{e:?}");
    let (steps, state) = steps_of(g.resume("eight", config()), Result::unwrap).await;
    assert_eq!((steps, state.count), (4, 8));
    // A fresh run of four steps under a limit of 4 finishes too.
    let state = ticking(4)
        .run_with(Trace::default(), RunConfig::new().recursion_limit(4))
        .await
        .unwrap();
    assert_eq!(state.count, 4);
}

#[tokio::test]
async fn a_limit_of_0_runs_no_step_and_leaves_the_run_resumable() {
    let store = memory();
    let g = ticking(3);
    let e = g
        .run_with(Trace::default(), cfg(&store, "zero").recursion_limit(0))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { limit: 0 }), "{e:?}");
    assert_eq!(last_step(&g, &store, "zero").await, 0);
    let e = g
        .resume("zero", cfg(&store, "zero").recursion_limit(0))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { limit: 0 }), "{e:?}");
    assert_eq!(
        g.resume("zero", cfg(&store, "zero")).await.unwrap().count,
        3
    );
}

#[tokio::test]
async fn the_total_steps_budget_stops_a_run_and_can_be_raised_on_resume() {
    let store = memory();
    let g = ticking(10);
    let history = g.history(store.clone());
    let config = || cfg(&store, "budget");
    let (steps, e) = steps_of(
        g.run_with(Trace::default(), config().max_total_steps(4)),
        Result::unwrap_err,
    )
    .await;
    assert!(matches!(e, Error::TotalStepsLimit { limit: 4 }), "{e:?}");
    assert!(e.to_string().contains("max_total_steps"), "{e}");
    assert_eq!((steps, last_step(&g, &store, "budget").await), (4, 4));
    let record = history.run("budget").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);

    // The same budget: the run is spent, and no step runs.
    let (steps, e) = steps_of(g.resume("budget", config().max_total_steps(4)), |r| {
        r.unwrap_err()
    })
    .await;
    assert!(matches!(e, Error::TotalStepsLimit { limit: 4 }), "{e:?}");
    assert_eq!((steps, last_step(&g, &store, "budget").await), (0, 4));

    // Raised: the run goes on to the new budget, counted from its start.
    let (steps, e) = steps_of(g.resume("budget", config().max_total_steps(7)), |r| {
        r.unwrap_err()
    })
    .await;
    assert!(matches!(e, Error::TotalStepsLimit { limit: 7 }), "{e:?}");
    assert_eq!((steps, last_step(&g, &store, "budget").await), (3, 7));

    // A budget the run needs exactly is enough.
    let state = g
        .resume("budget", config().max_total_steps(10))
        .await
        .unwrap();
    assert_eq!(state.count, 10);
    let record = history.run("budget").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Completed);
}

#[tokio::test]
async fn the_budget_counts_the_steps_of_every_invocation_and_the_recursion_limit_each_one() {
    // The chat loop: every invocation is short, but the budget counts them all.
    let store = memory();
    let g = chat();
    let config = || cfg(&store, "chat").recursion_limit(3).max_total_steps(3);
    let mut waiting = stopped(g.run_with(Trace::default(), config()).await.unwrap_err());
    for message in ["one", "two"] {
        let resume = Resume::new().answer(&waiting[0].id, message);
        waiting = stopped(g.resume_with("chat", resume, config()).await.unwrap_err());
    }
    // Step 3 asks; answering it runs step 3 again (counted once), then step 4 is past the
    // budget.
    let resume = Resume::new().answer(&waiting[0].id, "three");
    let e = g.resume_with("chat", resume, config()).await.unwrap_err();
    assert!(matches!(e, Error::TotalStepsLimit { limit: 3 }), "{e:?}");
    let state = g.history(store.clone()).state("chat", None).await.unwrap();
    assert_eq!(state.log, ["one", "two", "three"]);

    // Both limits at once: the recursion limit stops the first invocation, the budget the
    // second.
    let store = memory();
    let g = ticking(10);
    let config = || cfg(&store, "both").recursion_limit(2).max_total_steps(3);
    let e = g.run_with(Trace::default(), config()).await.unwrap_err();
    assert!(matches!(e, Error::RecursionLimit { limit: 2 }), "{e:?}");
    let (steps, e) = steps_of(g.resume("both", config()), Result::unwrap_err).await;
    assert!(matches!(e, Error::TotalStepsLimit { limit: 3 }), "{e:?}");
    assert_eq!(steps, 1);
}

/// START -> a -> [b, c], [b, c] -> d, d -> a or e (weighted 2:1), e -> a or END: a loop with
/// a fan-out, a join and seeded draws, which ends once 12 passes are counted.
fn weave() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b", "c", "d", "e"] {
        b.add_node(name, move |_, ctx: Context| async move {
            let note = format!("{name}@{}", ctx.step());
            let update = TraceUpdate::note(note);
            Ok(if name == "a" { update.count(1) } else { update })
        });
    }
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c"])
        .add_join(["b", "c"], "d")
        .add_weighted_edges("d", [("a", 2.0), ("e", 1.0)])
        .add_conditional_edges(
            "e",
            ["a", END],
            |s: &Trace| {
                if s.count < 12 { "a" } else { END }
            },
        );
    b.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_into_invocations_by_the_limit_ends_as_the_whole_run_does() {
    let g = weave();
    for seed in [0, 1, 7] {
        let whole_store = memory();
        let whole = g
            .run_with(Trace::default(), cfg(&whole_store, "w").seed(seed))
            .await
            .unwrap();
        let whole_history = g.history(whole_store.clone());
        let checkpoints = whole_history.checkpoints("w").await.unwrap();
        for mode in [Mode::Sequential, Mode::Parallel] {
            for limit in 1..=3 {
                let store = memory();
                let config = || {
                    cfg(&store, "cut")
                        .seed(seed)
                        .mode(mode)
                        .recursion_limit(limit)
                };
                let mut result = g.run_with(Trace::default(), config()).await;
                let mut invocations = 1;
                while let Err(e) = result {
                    assert!(matches!(e, Error::RecursionLimit { .. }), "{e:?}");
                    // Each resume makes progress: a few hundred of them finish any of these.
                    assert!(invocations < 500, "the resumes make no progress");
                    result = g.resume("cut", config()).await;
                    invocations += 1;
                }
                let what = format!("seed {seed}, {mode:?}, limit {limit}");
                assert_eq!(result.unwrap(), whole, "{what}");
                let steps = checkpoints.len() as u64 - 1;
                assert_eq!(invocations, steps.div_ceil(limit).max(1), "{what}");
                // The same checkpoints, with the same states.
                let history = g.history(store.clone());
                let cut = history.checkpoints("cut").await.unwrap();
                assert_eq!(cut.len(), checkpoints.len(), "{what}");
                for cp in &checkpoints {
                    assert_eq!(
                        history.state("cut", Some(cp.step)).await.unwrap(),
                        whole_history.state("w", Some(cp.step)).await.unwrap(),
                        "{what}, step {}",
                        cp.step
                    );
                }
            }
        }
    }
}
