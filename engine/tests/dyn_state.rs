//! `DynState`: a state whose schema is known when the program runs, checkpointed, resumed,
//! forked, viewed and driven with JSON like a derived one, with deterministic merges.

use std::sync::Arc;

use agentgraph_checkpoint::{CheckpointStore, MemoryStore};
use agentgraph_engine::{
    BoxError, Context, DynGraph, DynOutcome, DynResume, DynSchema, DynState, DynUpdate, END, Error,
    GraphBuilder, JsonReducer, JsonType, Mode, Resume, RunConfig, START,
};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

fn schema() -> Arc<DynSchema> {
    DynSchema::builder()
        .field("topic", JsonType::String, JsonReducer::Overwrite)
        .field("notes", JsonType::List, JsonReducer::Append)
        .field("count", JsonType::Integer, JsonReducer::Add)
        .field("seen", JsonType::Object, JsonReducer::Merge)
        .field("tags", JsonType::List, JsonReducer::Union)
        .field("best", JsonType::Number, JsonReducer::Max)
        .build()
        .unwrap()
}

/// Three writers in one step into every non-exclusive field, then an asking node.
fn graph(schema: &Arc<DynSchema>) -> agentgraph_engine::CompiledGraph<DynState> {
    let mut b = GraphBuilder::<DynState>::with_schema(schema.clone());
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        b.add_node(name, move |s: Arc<DynState>, _| async move {
            // Finishing out of order must not change the merge order.
            tokio::time::sleep(std::time::Duration::from_millis(3 * (3 - i as u64))).await;
            Ok::<_, BoxError>(
                s.update()
                    .set("notes", json!([name]))?
                    .set("count", 1)?
                    .set("seen", json!({ name: i, "last": name }))?
                    .set("tags", json!(["x", name]))?
                    .set("best", json!(i as f64 * 1.5))?,
            )
        });
    }
    b.add_node("ask", |s: Arc<DynState>, ctx: Context| async move {
        let answer: String = ctx.interrupt(&json!({ "question": "topic?" }))?;
        Ok::<_, BoxError>(s.update().set("topic", answer)?)
    });
    b.add_edge(START, "a")
        .add_edge(START, "b")
        .add_edge(START, "c")
        .add_edge("a", "ask")
        .add_edge("b", "ask")
        .add_edge("c", "ask")
        .add_edge("ask", END);
    b.compile().unwrap()
}

fn expected(topic: &str) -> Value {
    json!({
        "topic": topic,
        "notes": ["a", "b", "c"],
        "count": 3,
        "seen": { "a": 0, "b": 1, "c": 2, "last": "c" },
        "tags": ["x", "a", "b", "c"],
        "best": 3.0,
    })
}

#[tokio::test]
async fn merges_are_deterministic_in_both_modes() {
    let schema = schema();
    let g = graph(&schema);
    for mode in [Mode::Sequential, Mode::Parallel] {
        let store = MemoryStore::new();
        let config = || RunConfig::new().mode(mode).store(store.clone()).run_id("r");
        let err = g
            .run_with(DynState::new(&schema), config())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted(_)), "{err:?}");
        let out = g
            .resume_with("r", Resume::value("rust"), config())
            .await
            .unwrap();
        assert_eq!(out.to_json(), expected("rust"), "{mode:?}");
    }
}

#[tokio::test]
async fn a_resume_loads_the_state_from_its_checkpoints() {
    let schema = schema();
    let g = graph(&schema);
    let store = MemoryStore::new();
    let config = || RunConfig::new().store(store.clone()).run_id("r");
    g.run_with(DynState::new(&schema), config())
        .await
        .unwrap_err();

    // Another process: the same file, so the same schema built again.
    let again = self::schema();
    let g2 = graph(&again);
    assert_eq!(g.fingerprint(), g2.fingerprint());
    let history = g2.history(Arc::new(store.clone()) as Arc<dyn CheckpointStore>);
    let stopped = history.state("r", None).await.unwrap();
    assert_eq!(stopped.get("count"), Some(&json!(3)));
    let checkpoints = history.checkpoints("r").await.unwrap();
    let last = checkpoints.last().unwrap();
    assert!(last.written.iter().any(|f| f == "notes"), "{last:?}");

    let out = g2
        .resume_with("r", Resume::value("graphs"), config())
        .await
        .unwrap();
    assert_eq!(out.to_json(), expected("graphs"));

    // A fork with an edited state.
    history
        .fork("r", 1, "f", |s| {
            let edited = DynState::from_json(s.schema(), json!({ "topic": "forked" })).unwrap();
            *s = edited;
        })
        .await
        .unwrap();
    let forked = history.state("f", None).await.unwrap();
    assert_eq!(forked.get("topic"), Some(&json!("forked")));
    assert_eq!(forked.get("count"), Some(&json!(0)));
}

#[tokio::test]
async fn another_schema_changes_the_fingerprint() {
    let g = graph(&schema());
    let other = DynSchema::builder()
        .field("topic", JsonType::String, JsonReducer::Overwrite)
        .field("notes", JsonType::List, JsonReducer::Union)
        .field("count", JsonType::Integer, JsonReducer::Add)
        .field("seen", JsonType::Object, JsonReducer::Merge)
        .field("tags", JsonType::List, JsonReducer::Union)
        .field("best", JsonType::Number, JsonReducer::Max)
        .build()
        .unwrap();
    assert_ne!(g.fingerprint(), graph(&other).fingerprint());
}

#[tokio::test]
async fn two_writers_of_an_overwrite_field_conflict() {
    let schema = schema();
    let mut b = GraphBuilder::<DynState>::with_schema(schema.clone());
    for name in ["a", "b"] {
        b.add_node(name, move |s: Arc<DynState>, _| async move {
            Ok::<_, BoxError>(s.update().set("topic", name)?)
        });
    }
    b.add_edge(START, "a")
        .add_edge(START, "b")
        .add_edge("a", END)
        .add_edge("b", END);
    let err = b
        .compile()
        .unwrap()
        .invoke(DynState::new(&schema))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { field: "topic", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_value_is_refused_where_it_is_set() {
    let schema = schema();
    let update = DynUpdate::of(&schema);
    let err = update.clone().set("count", "three").unwrap_err();
    assert_eq!(err.to_string(), "field `count` is integer, not a string");
    let err = update.set("cont", 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the state has no field `cont` (did you mean `count`?)"
    );
    assert!(DynUpdate::default().set("count", 1).is_err());
}

#[tokio::test]
async fn views_name_the_fields() {
    let schema = schema();
    let g = graph(&schema);
    let run = g.run_with(DynState::new(&schema), RunConfig::new().state_views(true));
    let mut events = run.events();
    let _ = run.await;
    let mut fields = Vec::new();
    while let Ok(Some(Ok(event))) =
        tokio::time::timeout(std::time::Duration::from_millis(50), events.next()).await
    {
        if let agentgraph_engine::EventKind::StateView { fields: f, .. } = &event.kind {
            fields.extend(f.iter().map(|v| v.field.to_string()));
        }
    }
    assert!(fields.iter().any(|f| f == "notes"), "{fields:?}");
}

#[tokio::test]
async fn the_registry_drives_it_with_json() {
    let schema = schema();
    let g: Arc<dyn DynGraph> = Arc::new(graph(&schema));
    let store = MemoryStore::new();
    let config = || RunConfig::new().store(store.clone()).run_id("j");
    let run = g.start(json!({ "topic": "start" }), config()).unwrap();
    let outcome = run.outcome().await.unwrap();
    assert!(
        matches!(outcome, DynOutcome::Interrupted { .. }),
        "{outcome:?}"
    );
    let resume = DynResume {
        value: Some(json!("json")),
        ..DynResume::default()
    };
    let DynOutcome::Completed { state } = g
        .resume("j".into(), resume, config())
        .unwrap()
        .outcome()
        .await
        .unwrap()
    else {
        panic!("not completed")
    };
    assert_eq!(state, expected("json"));

    let err = g.start(json!({ "topik": 1 }), config()).unwrap_err();
    assert!(err.to_string().contains("did you mean `topic`"), "{err}");
}

#[tokio::test]
async fn threads_start_from_the_schema_defaults() {
    let schema = DynSchema::builder()
        .field("log", JsonType::List, JsonReducer::Append)
        .build()
        .unwrap();
    let mut b = GraphBuilder::<DynState>::with_schema(schema.clone());
    b.add_node("echo", |s: Arc<DynState>, _| async move {
        let n = s.get("log").and_then(Value::as_array).map_or(0, Vec::len);
        Ok::<_, BoxError>(s.update().set("log", json!([format!("heard {n}")]))?)
    })
    .add_edge(START, "echo")
    .add_edge("echo", END);
    let g: Arc<dyn DynGraph> = Arc::new(b.compile().unwrap());
    let store = MemoryStore::new();
    for (i, word) in ["hi", "bye"].into_iter().enumerate() {
        let run = g
            .invoke_thread(
                "t".into(),
                json!({ "log": [word] }),
                RunConfig::new().store(store.clone()),
            )
            .unwrap();
        let DynOutcome::Completed { state } = run.outcome().await.unwrap() else {
            panic!()
        };
        assert_eq!(state["log"].as_array().unwrap().len(), 2 * (i + 1));
    }
}
