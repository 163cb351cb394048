//! Runs that describe themselves (`RunConfig::monitored`): the stored graph, and JSON views
//! of the state that `StoreInspector::state_json` folds into the same state `GraphHistory::state`
//! decodes, at every checkpoint, across failures, crashes, edits and forks.

mod common;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, Durability, END, Error, EventKind,
    GraphBuilder, Mode, Resume, RunConfig, START, State, StoreInspector, ViewChange,
};
use common::{Trace, TraceUpdate, chain, stores};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// START -> a -> [b, c] -> join d -> (loop to a twice) -> END; `c` fails while `fail` is set.
fn graph(fail: &Arc<AtomicBool>) -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    for name in ["a", "b"] {
        b.add_node(name, move |_, _| async move {
            Ok(TraceUpdate::note(name).count(1))
        });
    }
    let fail = fail.clone();
    b.add_cpu_node("c", move |_, _| {
        if fail.load(Ordering::SeqCst) {
            return Err::<TraceUpdate, BoxError>("c is broken".into());
        }
        Ok(TraceUpdate::note("c").count(10))
    });
    b.add_node("d", |s: Arc<Trace>, _| async move {
        Ok(TraceUpdate::new().last(format!("d saw {} entries", s.log.len())))
    });
    b.add_edge(START, "a")
        .add_edges("a", ["b", "c"])
        .add_join(["b", "c"], "d")
        .add_conditional_edges(
            "d",
            ["a", END],
            |s: &Trace| {
                if s.count < 30 { "a" } else { END }
            },
        );
    b.compile().unwrap()
}

/// Every checkpoint's JSON state equals the typed state it decodes to.
async fn views_match<S: State>(g: &CompiledGraph<S>, store: &Arc<dyn CheckpointStore>, run: &str) {
    let history = g.history(store.clone());
    let inspector = StoreInspector::new(store.clone());
    let checkpoints = history.checkpoints(run).await.unwrap();
    assert!(!checkpoints.is_empty());
    for cp in checkpoints {
        let typed = serde_json::to_value(history.state(run, Some(cp.step)).await.unwrap()).unwrap();
        let json = inspector.state_json(run, Some(cp.step)).await.unwrap();
        assert_eq!(json, typed, "run {run}, step {}", cp.step);
    }
    let newest = serde_json::to_value(history.state(run, None).await.unwrap()).unwrap();
    assert_eq!(inspector.state_json(run, None).await.unwrap(), newest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_state_is_the_typed_state_at_every_checkpoint() {
    for (store, _dir) in stores() {
        for mode in [Mode::Sequential, Mode::Parallel] {
            let g = graph(&Arc::new(AtomicBool::new(false)));
            let id = format!("{mode:?}");
            let config = RunConfig::new()
                .store(store.clone())
                .run_id(&id)
                .mode(mode)
                .monitored();
            let input = Trace {
                last: "input <b>text</b>".into(),
                ..Trace::default()
            };
            g.run_with(input, config).await.unwrap();
            views_match(&g, &store, &id).await;

            // The graph is stored as the one that ran.
            let inspector = StoreInspector::new(store.clone());
            assert_eq!(inspector.graph(&id).await.unwrap(), Some(g.describe()));
            // The checkpoints name the fields they wrote.
            let cps = inspector.checkpoints(&id).await.unwrap();
            assert_eq!(cps[0].written, ["log", "count", "last"]);
            assert_eq!(cps[1].written, ["log", "count"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_list_is_sent_as_its_new_items() {
    let (store, _dir) = stores().remove(0);
    let g = chain(4, |_, ctx: Context| async move {
        Ok(TraceUpdate::note(format!("entry {}", ctx.step())))
    });
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("grow")
        .monitored();
    let run = g.run_with(Trace::default(), config);
    let events = run.events();
    run.await.unwrap();
    let views: Vec<(u64, ViewChange)> = events
        .filter_map(|e| async move {
            match e.unwrap().kind {
                EventKind::StateView { step, fields } => Some(
                    fields
                        .into_iter()
                        .filter(|f| f.field == "log")
                        .map(move |f| (step, f.change))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            }
        })
        .flat_map(futures_util::stream::iter)
        .collect()
        .await;
    assert_eq!(views[0], (0, ViewChange::Set(serde_json::json!([]))));
    for (step, change) in &views[1..] {
        assert_eq!(
            change,
            &ViewChange::Extend(serde_json::json!([format!("entry {step}")])),
            "step {step} sends only its item"
        );
    }
    assert_eq!(views.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_crashed_and_resumed_runs_keep_matching_views() {
    for (store, _dir) in stores() {
        // A failure, then a resume once the cause is fixed.
        let fail = Arc::new(AtomicBool::new(true));
        let g = graph(&fail);
        let config = || {
            RunConfig::new()
                .store(store.clone())
                .run_id("failed")
                .monitored()
        };
        assert!(g.run_with(Trace::default(), config()).await.is_err());
        views_match(&g, &store, "failed").await;
        fail.store(false, Ordering::SeqCst);
        g.resume("failed", config()).await.unwrap();
        views_match(&g, &store, "failed").await;

        // A run dropped mid-run (a crash of its process, as far as the store knows).
        let g = chain(30, |_, ctx: Context| async move {
            if ctx.step() == 8 {
                std::future::pending::<()>().await;
            }
            Ok(TraceUpdate::note(format!("s{}", ctx.step())).count(1))
        });
        let config = || {
            RunConfig::new()
                .store(store.clone())
                .run_id("crashed")
                .durability(Durability::Sync)
                .monitored()
        };
        let run = g.run_with(Trace::default(), config());
        let mut events = run.events();
        tokio::select! {
            r = run.into_future() => panic!("the run ended: {:?}", r.map(|s| s.count)),
            () = async {
                while let Some(Ok(e)) = events.next().await {
                    if matches!(e.kind, EventKind::NodeStarted { step: 8, .. }) {
                        return;
                    }
                }
            } => {}
        }
        views_match(&g, &store, "crashed").await;
        let g = chain(30, |_, ctx: Context| async move {
            Ok(TraceUpdate::note(format!("s{}", ctx.step())).count(1))
        });
        views_match(&g, &store, "crashed").await;
        let done = g.resume("crashed", config()).await.unwrap();
        assert_eq!(done.count, 30);
        views_match(&g, &store, "crashed").await;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Review {
    draft: String,
    approved: bool,
    #[reducer(append)]
    notes: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_forks_show_in_the_json_state() {
    for (store, _dir) in stores() {
        let mut b = GraphBuilder::<Review>::new();
        b.add_node("write", |_, _| async {
            Ok(ReviewUpdate::new()
                .draft("first draft".to_owned())
                .notes(vec!["written".into()]))
        })
        .add_node("review", |_, ctx: Context| async move {
            let ok: bool = ctx.interrupt("approve?")?;
            Ok(ReviewUpdate::new()
                .approved(ok)
                .notes(vec!["reviewed".into()]))
        })
        .add_edge(START, "write")
        .add_edge("write", "review")
        .add_edge("review", END);
        let g = b.compile().unwrap();
        let config = || {
            RunConfig::new()
                .store(store.clone())
                .run_id("doc")
                .monitored()
        };
        let Err(Error::Interrupted(stop)) = g.run_with(Review::default(), config()).await else {
            panic!("the run should wait at the review");
        };
        let inspector = StoreInspector::new(store.clone());
        assert_eq!(inspector.interrupts("doc").await.unwrap(), stop.interrupts);
        assert_eq!(
            inspector.interrupts("doc").await.unwrap(),
            g.history(store.clone()).interrupts("doc").await.unwrap()
        );

        let resume = Resume::new()
            .answer(&stop.interrupts[0].id, true)
            .update(ReviewUpdate::new().draft("edited draft".to_owned()));
        let done = g.resume_with("doc", resume, config()).await.unwrap();
        assert_eq!(done.draft, "edited draft");
        views_match(&g, &store, "doc").await;
        assert_eq!(
            inspector.state_json("doc", Some(1)).await.unwrap()["draft"],
            "edited draft"
        );

        // A fork starts from a copy of the state; resumed with views, it has its own.
        g.history(store.clone())
            .fork("doc", 1, "doc-fork", |s| s.notes.push("forked".into()))
            .await
            .unwrap();
        let config = RunConfig::new()
            .store(store.clone())
            .run_id("doc-fork")
            .monitored();
        // The fork's tasks have ids of their own: it asks again.
        let Err(Error::Interrupted(again)) = g.resume("doc-fork", config).await else {
            panic!("the fork should wait at the review");
        };
        assert_eq!(again.interrupts[0].payload, "approve?");
        views_match(&g, &store, "doc-fork").await;
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Odd {
    #[reducer(merge)]
    pairs: HashMap<(u32, u32), u32>,
    #[reducer(add)]
    n: u32,
}

#[tokio::test]
async fn fields_json_cannot_show_are_marked_and_runs_without_views_say_so() {
    let (store, _dir) = stores().remove(0);
    let mut b = GraphBuilder::<Odd>::new();
    b.add_node("one", |_, _| async {
        Ok(OddUpdate::new().pairs([((1, 2), 3)].into()).n(1))
    })
    .add_edge(START, "one")
    .add_edge("one", END);
    let g = b.compile().unwrap();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("odd")
        .monitored();
    g.run_with(Odd::default(), config).await.unwrap();
    let inspector = StoreInspector::new(store.clone());
    let json = inspector.state_json("odd", None).await.unwrap();
    assert_eq!(json["n"], 1);
    assert!(
        json["pairs"]
            .as_str()
            .is_some_and(|s| s.starts_with("<not representable as JSON")),
        "{json}"
    );

    let config = RunConfig::new()
        .store(store.clone())
        .run_id("plain")
        .store_events(true);
    g.run_with(Odd::default(), config).await.unwrap();
    let err = inspector.state_json("plain", None).await.unwrap_err();
    assert!(
        matches!(err, Error::NoStateViews(ref run) if run == "plain"),
        "{err}"
    );
    assert!(err.to_string().contains("RunConfig::monitored()"), "{err}");
    assert_eq!(inspector.graph("plain").await.unwrap(), None);
    assert!(matches!(
        inspector.state_json("plain", Some(99)).await,
        Err(Error::CheckpointNotFound { ref run, step: 99 }) if run == "plain"
    ));
    assert!(matches!(
        inspector.state_json("nope", None).await,
        Err(Error::RunNotFound(_))
    ));
}
