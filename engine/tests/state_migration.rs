//! State migration (issue 16): a run stored by an older version of its state type is upgraded
//! when it is resumed or read. The older type writes the run through a real store (sled), the
//! run stops mid-step (one task finished, its write pending; another waits at an interrupt),
//! and the newer type resumes it with its migrations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use agentgraph_checkpoint::{MemoryStore, RunStatus, SledStore};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, Error, GraphBuilder, MigrationError,
    Migrations, PendingStatus, Resume, RunConfig, START, State,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// The state type of the stored runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct StateV1 {
    #[reducer(append)]
    lines: Vec<String>,
    #[reducer(add)]
    words: u32,
    title: String,
}

/// The state type now: `lines` renamed `notes`, `words` a `u64`, `title` removed (its value
/// kept in `summary`), the fields reordered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine, version = 2)]
struct StateV2 {
    summary: String,
    #[reducer(append)]
    notes: Vec<String>,
    #[reducer(add)]
    words: u64,
}

/// A third version: the notes upper-cased, and a flag added.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine, version = 3)]
struct StateV3 {
    summary: String,
    #[reducer(append)]
    notes: Vec<String>,
    #[reducer(add)]
    words: u64,
    checked: bool,
}

/// Version 1 with a field added at the end, with a default: the same version, no migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct StateV1Plus {
    #[reducer(append)]
    lines: Vec<String>,
    #[reducer(add)]
    words: u32,
    title: String,
    #[serde(default = "seven")]
    #[reducer(add)]
    retries: u32,
    #[serde(default)]
    tags: Vec<String>,
}

fn seven() -> u32 {
    7
}

fn v1_to_v2(old: StateV1) -> StateV2 {
    StateV2 {
        summary: format!("about {}", old.title),
        notes: old.lines,
        words: old.words.into(),
    }
}

fn v1_to_v2_update(old: StateV1Update) -> StateV2Update {
    StateV2Update {
        summary: old.title.map(|t| format!("about {t}")),
        notes: old.lines,
        words: old.words.map(Into::into),
    }
}

fn v2_to_v3(old: StateV2) -> StateV3 {
    StateV3 {
        summary: old.summary,
        notes: old.notes.iter().map(|n| n.to_uppercase()).collect(),
        words: old.words,
        checked: false,
    }
}

fn v2_to_v3_update(old: StateV2Update) -> StateV3Update {
    StateV3Update {
        summary: old.summary,
        notes: old
            .notes
            .map(|n| n.iter().map(|n| n.to_uppercase()).collect()),
        words: old.words,
        checked: None,
    }
}

fn to_v2() -> Migrations<StateV2> {
    Migrations::new().step(v1_to_v2, v1_to_v2_update)
}

fn to_v3() -> Migrations<StateV3> {
    Migrations::new()
        .step(v1_to_v2, v1_to_v2_update)
        .step(v2_to_v3, v2_to_v3_update)
}

/// Counts the runs of the node `a`.
#[derive(Clone, Default)]
struct Runs(Arc<AtomicU32>);

impl Runs {
    fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The updates the nodes of one state type write.
trait Nodes: State {
    /// `first`: step 1.
    fn first() -> Self::Update;
    /// `a`: finishes in step 2.
    fn a() -> Self::Update;
    /// `b`: waits at an interrupt in step 2, then writes its answer.
    fn b(answer: String) -> Self::Update;
    /// `c`: step 3.
    fn c() -> Self::Update;
}

impl Nodes for StateV1 {
    fn first() -> StateV1Update {
        StateV1Update::new()
            .lines(vec!["first".into()])
            .words(1)
            .title("cats".into())
    }
    fn a() -> StateV1Update {
        StateV1Update::new().lines(vec!["a".into()]).words(10)
    }
    fn b(answer: String) -> StateV1Update {
        StateV1Update::new().lines(vec![answer])
    }
    fn c() -> StateV1Update {
        StateV1Update::new().lines(vec!["c".into()])
    }
}

impl Nodes for StateV1Plus {
    fn first() -> StateV1PlusUpdate {
        StateV1PlusUpdate::new()
            .lines(vec!["first".into()])
            .words(1)
            .title("cats".into())
    }
    fn a() -> StateV1PlusUpdate {
        StateV1PlusUpdate::new().lines(vec!["a".into()]).words(10)
    }
    fn b(answer: String) -> StateV1PlusUpdate {
        StateV1PlusUpdate::new().lines(vec![answer]).retries(1)
    }
    fn c() -> StateV1PlusUpdate {
        StateV1PlusUpdate::new()
            .lines(vec!["c".into()])
            .tags(vec!["done".into()])
    }
}

impl Nodes for StateV2 {
    fn first() -> StateV2Update {
        StateV2Update::new()
            .notes(vec!["first".into()])
            .words(1)
            .summary("about cats".into())
    }
    fn a() -> StateV2Update {
        StateV2Update::new().notes(vec!["a".into()]).words(10)
    }
    fn b(answer: String) -> StateV2Update {
        StateV2Update::new().notes(vec![answer])
    }
    fn c() -> StateV2Update {
        StateV2Update::new().notes(vec!["c".into()]).words(100)
    }
}

impl Nodes for StateV3 {
    fn first() -> StateV3Update {
        StateV3Update::new().notes(vec!["FIRST".into()])
    }
    fn a() -> StateV3Update {
        StateV3Update::new().notes(vec!["A".into()])
    }
    fn b(answer: String) -> StateV3Update {
        StateV3Update::new().notes(vec![answer])
    }
    fn c() -> StateV3Update {
        StateV3Update::new().checked(true)
    }
}

/// `START -> first -> {a, b} -> c -> END`, over `S`, the same graph for every state type: `a`
/// finishes in step 2, `b` waits at an interrupt there.
fn graph<S: Nodes<Schema = ()>>(runs: &Runs, migrations: Migrations<S>) -> CompiledGraph<S>
where
    S::Update: agentgraph_engine::IntoCommand<S>,
{
    let mut b = GraphBuilder::<S>::new();
    let a_runs = runs.clone();
    b.add_node("first", |_, _| async { Ok::<_, BoxError>(S::first()) })
        .add_node("a", move |_, _| {
            a_runs.0.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(S::a()) }
        })
        .add_node("b", |_, ctx: Context| async move {
            let answer: String = ctx.interrupt("name?")?;
            Ok::<_, BoxError>(S::b(answer))
        })
        .add_node("c", |_, _| async { Ok::<_, BoxError>(S::c()) })
        .add_edge(START, "first")
        .add_edge("first", "a")
        .add_edge("first", "b")
        .add_join(["a", "b"], "c")
        .add_edge("c", END)
        .migrations(migrations);
    b.compile().unwrap()
}

fn sled() -> (tempfile::TempDir, Arc<dyn CheckpointStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    (dir, store)
}

fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new().run_id("r").store(store.clone())
}

/// Runs the graph over `S` until `b` waits at its interrupt (after `a` finished): returns the
/// interrupt's id.
async fn stop_mid_step<S: Nodes<Schema = ()> + Default>(
    store: &Arc<dyn CheckpointStore>,
    runs: &Runs,
) -> String
where
    S::Update: agentgraph_engine::IntoCommand<S>,
{
    let g = graph::<S>(runs, Migrations::new());
    let Err(Error::Interrupted(stop)) = g.run_with(S::default(), config(store)).await else {
        panic!("the run should stop at `b`'s interrupt");
    };
    assert_eq!(runs.count(), 1);
    stop.interrupts[0].id.clone()
}

#[tokio::test]
async fn a_run_of_an_older_state_type_resumes_upgraded() {
    let (_dir, store) = sled();
    let runs = Runs::default();
    let id = stop_mid_step::<StateV1>(&store, &runs).await;

    let v2 = graph::<StateV2>(&runs, to_v2());
    let history = v2.history(store.clone());
    // Read before the resume: the stored state and the pending write, upgraded.
    let at_first = StateV2 {
        summary: "about cats".into(),
        notes: vec!["first".into()],
        words: 1,
    };
    assert_eq!(history.state("r", None).await.unwrap(), at_first);
    assert_eq!(
        history.state("r", Some(0)).await.unwrap(),
        StateV2 {
            summary: "about ".into(),
            ..StateV2::default()
        }
    );
    let pending = history.pending("r").await.unwrap();
    // The checkpoints stored by version 1 name its fields.
    let checkpoints = history.checkpoints("r").await.unwrap();
    assert_eq!(checkpoints[1].written, ["lines", "words", "title"]);
    let a = pending.iter().find(|p| p.node == "a").unwrap();
    assert_eq!(a.status, PendingStatus::Done);
    assert_eq!(
        a.written.as_deref(),
        Some(&["notes".into(), "words".into()][..])
    );
    let tentative = history.pending_state("r").await.unwrap();
    assert_eq!(tentative.state.notes, ["first", "a"]);
    assert_eq!(tentative.state.words, 11);

    // Resume: `a` is not run again, its upgraded write is applied.
    let resume = Resume::new().answer(&id, "b");
    let done = v2.resume_with("r", resume, config(&store)).await.unwrap();
    assert_eq!(runs.count(), 1, "the finished task ran again");
    assert_eq!(
        done,
        StateV2 {
            summary: "about cats".into(),
            notes: vec!["first".into(), "a".into(), "b".into(), "c".into()],
            words: 111,
        }
    );
    let record = store.get_run("r").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(record.fingerprint, v2.fingerprint().as_u128());

    // The migration was applied once: the checkpoint it resumed from is stored as version 2,
    // so a graph without migrations reads it and every later one; only the older checkpoint
    // needs the step.
    let plain = graph::<StateV2>(&runs, Migrations::new()).history(store.clone());
    assert_eq!(plain.state("r", Some(1)).await.unwrap(), at_first);
    assert_eq!(plain.state("r", None).await.unwrap(), done);
    let Err(Error::Migration { run, error }) = plain.state("r", Some(0)).await else {
        panic!("the checkpoint of step 0 is of version 1");
    };
    assert_eq!(run, "r");
    assert_eq!(error, MigrationError::MissingStep { from: 1, to: 2 });
    assert_eq!(history.state("r", Some(0)).await.unwrap().summary, "about ");

    // A fork of the older checkpoint is stored upgraded, as a run of this graph.
    history
        .fork("r", 0, "f", |s| s.summary = "forked".into())
        .await
        .unwrap();
    assert_eq!(plain.state("f", Some(0)).await.unwrap().summary, "forked");
    let forked = v2.resume("f", config(&store)).await;
    assert!(matches!(forked, Err(Error::Interrupted(_))), "{forked:?}");
    assert_eq!(plain.state("f", None).await.unwrap().notes, ["first"]);
}

#[tokio::test]
async fn migrations_chain_across_versions() {
    let (_dir, store) = sled();
    let runs = Runs::default();
    let id = stop_mid_step::<StateV1>(&store, &runs).await;

    let v3 = graph::<StateV3>(&runs, to_v3());
    let resume = Resume::new().answer(&id, "B");
    let done = v3.resume_with("r", resume, config(&store)).await.unwrap();
    assert_eq!(runs.count(), 1, "the finished task ran again");
    assert_eq!(
        done,
        StateV3 {
            summary: "about cats".into(),
            notes: vec!["FIRST".into(), "A".into(), "B".into()],
            words: 11,
            checked: true,
        }
    );
}

#[tokio::test]
async fn a_field_added_with_a_default_needs_no_migration() {
    let (_dir, store) = sled();
    let runs = Runs::default();
    let id = stop_mid_step::<StateV1>(&store, &runs).await;

    // The same version, two fields added at the end with defaults: no migration.
    let plus = graph::<StateV1Plus>(&runs, Migrations::new());
    let history = plus.history(store.clone());
    assert_eq!(history.state("r", None).await.unwrap().retries, 7);
    assert_eq!(history.pending_state("r").await.unwrap().state.words, 11);
    let resume = Resume::new().answer(&id, "b");
    let done = plus.resume_with("r", resume, config(&store)).await.unwrap();
    assert_eq!(runs.count(), 1, "the finished task ran again");
    assert_eq!(
        done,
        StateV1Plus {
            lines: vec!["first".into(), "a".into(), "b".into(), "c".into()],
            words: 11,
            title: "cats".into(),
            retries: 8,
            tags: vec!["done".into()],
        }
    );
}

#[tokio::test]
async fn a_field_added_without_a_default_is_incompatible() {
    #[derive(Clone, Debug, Default, Serialize, Deserialize, agentgraph_macros::State)]
    #[state(crate = agentgraph_engine)]
    struct NoDefault {
        #[reducer(append)]
        lines: Vec<String>,
        #[reducer(add)]
        words: u32,
        title: String,
        more: u32,
    }
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let runs = Runs::default();
    stop_mid_step::<StateV1>(&store, &runs).await;
    let mut b = GraphBuilder::<NoDefault>::new();
    b.add_node("n", |_, _| async { Ok(NoDefaultUpdate::new()) })
        .add_edge(START, "n")
        .add_edge("n", END);
    let history = b.compile().unwrap().history(store.clone());
    let result = history.state("r", None).await;
    assert!(
        matches!(&result, Err(Error::Incompatible { reason, .. }) if reason.contains("`more` has no default")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_state_stored_by_a_newer_version_is_an_error() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let runs = Runs::default();
    let id = stop_mid_step::<StateV2>(&store, &runs).await;

    // Version 1 reads a run of version 2: a typed error, nothing changed.
    let v1 = graph::<StateV1>(&runs, Migrations::new());
    let newer = MigrationError::Newer {
        stored: 2,
        current: 1,
    };
    for result in [
        v1.history(store.clone()).state("r", None).await.err(),
        v1.history(store.clone()).pending_state("r").await.err(),
        v1.history(store.clone()).pending("r").await.err(),
        v1.resume_with("r", Resume::new().answer(&id, "b"), config(&store))
            .await
            .err(),
    ] {
        let Some(Error::Migration { run, error }) = result else {
            panic!("expected a migration error, got {result:?}");
        };
        assert_eq!((run.as_str(), &error), ("r", &newer));
        assert!(error.to_string().contains("version 2"), "{error}");
    }
    let record = store.get_run("r").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Interrupted);

    // The version that wrote it still resumes it.
    let v2 = graph::<StateV2>(&runs, Migrations::new());
    let done = v2
        .resume_with("r", Resume::new().answer(&id, "b"), config(&store))
        .await
        .unwrap();
    assert_eq!(done.notes, ["first", "a", "b", "c"]);
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_missing_step_is_an_error_naming_the_versions() {
    let (_dir, store) = sled();
    let runs = Runs::default();
    let id = stop_mid_step::<StateV1>(&store, &runs).await;

    // No step at all, then only the step from 1: the step from 2 is missing.
    let cases = [
        (
            Migrations::new(),
            MigrationError::MissingStep { from: 1, to: 3 },
        ),
        (
            Migrations::new().step(v1_to_v2, v1_to_v2_update),
            MigrationError::MissingStep { from: 2, to: 3 },
        ),
    ];
    for (migrations, expected) in cases {
        let v3 = graph::<StateV3>(&runs, migrations);
        let result = v3
            .resume_with("r", Resume::new().answer(&id, "b"), config(&store))
            .await;
        let Err(Error::Migration { run, error }) = result else {
            panic!("expected a migration error, got {result:?}");
        };
        assert_eq!((run.as_str(), &error), ("r", &expected));
        assert!(error.to_string().contains("version"), "{error}");
        let Err(Error::Migration { error, .. }) = v3.history(store.clone()).state("r", None).await
        else {
            panic!("reading should fail the same way");
        };
        assert_eq!(error, expected);
    }
    // Nothing was written: the full chain still resumes the run from where it stopped.
    assert_eq!(
        store.get_run("r").await.unwrap().unwrap().status,
        RunStatus::Interrupted
    );
    let v3 = graph::<StateV3>(&runs, to_v3());
    let done = v3
        .resume_with("r", Resume::new().answer(&id, "B"), config(&store))
        .await
        .unwrap();
    assert_eq!(done.notes, ["FIRST", "A", "B"]);
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_failing_migration_leaves_the_run_as_stored() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let runs = Runs::default();
    let id = stop_mid_step::<StateV1>(&store, &runs).await;
    let failing = Migrations::<StateV2>::new().try_step(
        |_: StateV1| Err::<StateV2, BoxError>("no".into()),
        |u: StateV1Update| Ok(v1_to_v2_update(u)),
    );
    let result = graph::<StateV2>(&runs, failing)
        .resume_with("r", Resume::new().answer(&id, "b"), config(&store))
        .await;
    let Err(Error::Migration { error, .. }) = result else {
        panic!("expected a migration error, got {result:?}");
    };
    assert_eq!(
        error,
        MigrationError::Failed {
            from: 1,
            to: 2,
            reason: "no".into()
        }
    );
    let done = graph::<StateV2>(&runs, to_v2())
        .resume_with("r", Resume::new().answer(&id, "b"), config(&store))
        .await
        .unwrap();
    assert_eq!(done.words, 111);
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn the_state_views_of_an_upgraded_run_have_the_new_fields_only() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let runs = Runs::default();
    let g = graph::<StateV1>(&runs, Migrations::new());
    let Err(Error::Interrupted(stop)) = g
        .run_with(StateV1::default(), config(&store).monitored())
        .await
    else {
        panic!("the run should stop");
    };
    let inspector = g.history(store.clone()).inspector();
    let before = inspector.state_json("r", None).await.unwrap();
    assert_eq!(before["title"], "cats");
    let resume = Resume::new().answer(&stop.interrupts[0].id, "b");
    graph::<StateV2>(&runs, to_v2())
        .resume_with("r", resume, config(&store).monitored())
        .await
        .unwrap();
    let after = inspector.state_json("r", None).await.unwrap();
    assert_eq!(
        after,
        serde_json::json!({
            "summary": "about cats",
            "notes": ["first", "a", "b", "c"],
            "words": 111,
        })
    );
    // The checkpoint the run resumed from is stored upgraded, and viewed so; the views of
    // the older steps still show the state as it was stored.
    let at_resume = inspector.state_json("r", Some(1)).await.unwrap();
    assert_eq!(at_resume["summary"], "about cats");
    assert!(at_resume.get("title").is_none());
    let at_start = inspector.state_json("r", Some(0)).await.unwrap();
    assert_eq!(at_start["title"], "");
    assert!(at_start.get("summary").is_none());
}

/// Version 2 of another line: `StateV1` without its title.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine, version = 2)]
struct Smaller {
    #[reducer(append)]
    lines: Vec<String>,
    #[reducer(add)]
    words: u32,
}

impl Nodes for Smaller {
    fn first() -> SmallerUpdate {
        SmallerUpdate::new()
    }
    fn a() -> SmallerUpdate {
        SmallerUpdate::new()
    }
    fn b(answer: String) -> SmallerUpdate {
        SmallerUpdate::new().lines(vec![answer])
    }
    fn c() -> SmallerUpdate {
        SmallerUpdate::new().words(1)
    }
}

#[tokio::test]
async fn pruning_an_upgraded_run_drops_the_values_of_removed_fields() {
    let (_dir, store) = sled();
    let runs = Runs::default();
    let id = stop_mid_step::<StateV1>(&store, &runs).await;
    let g = graph::<Smaller>(
        &runs,
        Migrations::new().step(
            |old: StateV1| Smaller {
                lines: old.lines,
                words: old.words,
            },
            |old: StateV1Update| SmallerUpdate {
                lines: old.lines,
                words: old.words,
            },
        ),
    );
    let done = g
        .resume_with("r", Resume::new().answer(&id, "b"), config(&store))
        .await
        .unwrap();
    assert_eq!((done.lines.len(), done.words), (3, 12));
    // The title (field 2) is stored up to the checkpoint the run resumed from (step 1).
    assert!(!store.get_blobs("r", 2, 0, 1).await.unwrap().is_empty());
    let history = g.history(store.clone());
    let kept = history.checkpoints("r").await.unwrap().len() - 2;
    assert!(history.prune("r", kept).await.unwrap() == 2);
    assert!(
        store
            .get_blobs("r", 2, 0, u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(history.state("r", None).await.unwrap(), done);
}

/// A version 1 state from the proptest's values.
fn v1(lines: Vec<String>, words: u32, title: String) -> StateV1 {
    StateV1 {
        lines,
        words,
        title,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A chain of migrations is the composition of its steps, for states and updates alike,
    /// and a state stored by version 1 reads as version 3 through the chain.
    #[test]
    fn a_chain_of_migrations_is_their_composition(
        lines in prop::collection::vec("[a-z]{0,6}", 0..5),
        words in any::<u32>(),
        title in "[a-z ]{0,8}",
        write in any::<[bool; 3]>(),
    ) {
        let old = v1(lines.clone(), words, title.clone());
        let expected = v2_to_v3(v1_to_v2(old.clone()));
        prop_assert_eq!(to_v3().upgrade(old.clone()).unwrap(), expected.clone());
        prop_assert_eq!(to_v2().upgrade(old.clone()).unwrap(), v1_to_v2(old.clone()));

        let mut update = StateV1Update::new();
        if write[0] { update.lines = Some(lines.clone()); }
        if write[1] { update.words = Some(words); }
        if write[2] { update.title = Some(title.clone()); }
        let chained = to_v3().upgrade_update::<StateV1>(update).unwrap();
        let mut composed_update = StateV1Update::new();
        if write[0] { composed_update.lines = Some(lines.clone()); }
        if write[1] { composed_update.words = Some(words); }
        if write[2] { composed_update.title = Some(title.clone()); }
        let composed = v2_to_v3_update(v1_to_v2_update(composed_update));
        prop_assert_eq!(chained.notes, composed.notes);
        prop_assert_eq!(chained.words, composed.words);
        prop_assert_eq!(chained.summary, composed.summary);
        prop_assert_eq!(chained.checked, composed.checked);

        // Through a store: version 1 writes the state, version 3 reads it.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = rt.block_on(async {
            let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
            let mut b = GraphBuilder::<StateV1>::new();
            b.add_node("n", |_, _| async { Ok(StateV1Update::new()) })
                .add_edge(START, "n")
                .add_edge("n", END);
            b.compile().unwrap().run_with(old.clone(), config(&store)).await.unwrap();
            let mut b = GraphBuilder::<StateV3>::new();
            b.add_node("n", |_, _| async { Ok(StateV3Update::new()) })
                .add_edge(START, "n")
                .add_edge("n", END)
                .migrations(to_v3());
            b.compile().unwrap().history(store).state("r", None).await.unwrap()
        });
        prop_assert_eq!(read, expected);
    }
}

#[test]
fn upgrade_checks_the_types_of_the_steps() {
    // A state of version 1 that is not the type the step from 1 reads.
    let wrong = to_v2().upgrade(StateV1Plus::default());
    assert_eq!(
        wrong,
        Err(MigrationError::Mismatch {
            version: 1,
            expected: std::any::type_name::<StateV1>(),
        })
    );
    // A state of the current version is itself.
    let same = StateV2 {
        words: 3,
        ..StateV2::default()
    };
    assert_eq!(to_v2().upgrade(same.clone()), Ok(same));
    assert_eq!(
        Migrations::<StateV1>::new().upgrade(StateV2::default()),
        Err(MigrationError::Newer {
            stored: 2,
            current: 1
        })
    );
    assert_eq!(StateV1::VERSION, 1);
    assert_eq!(StateV3::VERSION, 3);
}
