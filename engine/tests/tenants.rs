//! Tenants (issue 16, item 5) in the engine: a run of a tenant carries it on its record (its
//! subgraphs' runs and forks too), is resumed and continued only by its tenant, and its nodes'
//! memory is the tenant's; a tenant's view of the store reads its runs whole and nothing of
//! another's.

mod common;

use std::sync::Arc;

use agentgraph_checkpoint::items::{ItemQuery, Namespace};
use agentgraph_checkpoint::{TenantId, TenantStore};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, Error, GraphBuilder, Resume, START,
    StoreInspector,
};
use common::{Trace, TraceUpdate, cfg, stores};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// `START -> sub -> ask -> END`: a subgraph, then an interrupt.
fn graph() -> CompiledGraph<Trace> {
    let mut b = GraphBuilder::<Trace>::new();
    b.add_subgraph(
        "sub",
        common::counting_chain(2),
        |_: &Trace| Trace::default(),
        |c: Trace| TraceUpdate::new().count(c.count),
    )
    .add_node("ask", |_, ctx: Context| async move {
        let said: String = ctx.interrupt(&"your message?")?;
        Ok::<_, BoxError>(TraceUpdate::note(said))
    })
    .add_edge(START, "sub")
    .add_edge("sub", "ask")
    .add_edge("ask", END);
    b.compile().unwrap()
}

#[tokio::test]
async fn a_tenants_run_is_its_own_and_resumed_only_by_it() {
    for (store, _dir) in stores() {
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let graph = graph();
        let e = graph
            .run_with(Trace::default(), cfg(&store, "r").tenant(acme.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Interrupted(_)), "{e:?}");
        let record = store.get_run("r").await.unwrap().unwrap();
        assert_eq!(record.tenant, Some(acme.clone()));
        let inspector = StoreInspector::new(store.clone());
        let children = inspector.subgraph_runs("r").await.unwrap();
        assert_eq!(children.len(), 1);
        let child = store.get_run(&children[0]).await.unwrap().unwrap();
        assert_eq!(
            child.tenant,
            Some(acme.clone()),
            "a subgraph's run is the tenant's"
        );

        // Another tenant does not find it, and changes nothing.
        let e = graph
            .resume_with(
                "r",
                Resume::value("hi"),
                cfg(&store, "r").tenant(globex.clone()),
            )
            .await
            .unwrap_err();
        assert!(matches!(&e, Error::RunNotFound(r) if r == "r"), "{e:?}");
        assert_eq!(store.get_run("r").await.unwrap().unwrap(), record);
        let as_globex = StoreInspector::new(TenantStore::new(store.clone(), globex.clone()));
        assert!(as_globex.run("r").await.unwrap().is_none());
        assert!(as_globex.runs().await.unwrap().is_empty());
        let not_found = |e: Error| matches!(e, Error::RunNotFound(_));
        assert!(
            as_globex
                .checkpoints("r")
                .await
                .map_or_else(not_found, |c| c.is_empty())
        );
        assert!(
            as_globex
                .interrupts("r")
                .await
                .map_or_else(not_found, |i| i.is_empty())
        );

        // Its own tenant reads it whole, and resumes it.
        let as_acme = StoreInspector::new(TenantStore::new(store.clone(), acme.clone()));
        assert_eq!(
            as_acme.runs().await.unwrap().len(),
            2,
            "the run and its subgraph's"
        );
        assert_eq!(as_acme.interrupts("r").await.unwrap().len(), 1);
        assert_eq!(as_acme.subgraph_runs("r").await.unwrap(), children);
        let done = graph
            .resume_with(
                "r",
                Resume::value("hi"),
                cfg(&store, "r").tenant(acme.clone()),
            )
            .await
            .unwrap();
        assert_eq!(done.log, ["hi"]);
        assert_eq!(
            store.get_run("r").await.unwrap().unwrap().tenant,
            Some(acme.clone())
        );

        // A fork is the tenant's too.
        graph
            .history(store.clone())
            .fork("r", 1, "r-fork", |_| {})
            .await
            .unwrap();
        assert_eq!(
            store.get_run("r-fork").await.unwrap().unwrap().tenant,
            Some(acme.clone())
        );
    }
}

#[tokio::test]
async fn a_resume_without_a_tenant_keeps_the_runs_and_a_run_of_none_is_no_tenants() {
    let store = common::memory();
    let graph = graph();
    let acme = tenant("acme");
    graph
        .run_with(Trace::default(), cfg(&store, "r").tenant(acme.clone()))
        .await
        .unwrap_err();
    graph
        .resume_with("r", Resume::value("hi"), cfg(&store, "r"))
        .await
        .unwrap();
    assert_eq!(
        store.get_run("r").await.unwrap().unwrap().tenant,
        Some(acme.clone())
    );

    // A run of no tenant is not a tenant's to resume.
    graph
        .run_with(Trace::default(), cfg(&store, "plain"))
        .await
        .unwrap_err();
    assert_eq!(store.get_run("plain").await.unwrap().unwrap().tenant, None);
    let e = graph
        .resume_with(
            "plain",
            Resume::value("hi"),
            cfg(&store, "plain").tenant(acme),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RunNotFound(_)), "{e:?}");
}

/// A thread of one tenant cannot be continued by another.
#[tokio::test]
async fn threads_are_continued_only_by_their_tenant() {
    let store = common::memory();
    let graph = common::counting_chain(1);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let config = |t: &TenantId| {
        agentgraph_engine::RunConfig::new()
            .store(store.clone())
            .tenant(t.clone())
    };
    graph
        .invoke_thread("chat", TraceUpdate::new(), config(&acme))
        .await
        .unwrap();
    let e = graph
        .invoke_thread("chat", TraceUpdate::new(), config(&globex))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RunNotFound(_)), "{e:?}");
    let done = graph
        .invoke_thread("chat", TraceUpdate::new(), config(&acme))
        .await
        .unwrap();
    assert_eq!(done.count, 2);
}

/// The same namespace, named by nodes of two tenants' runs, is two tenants' items; a run of
/// no tenant sees neither under that name.
#[tokio::test]
async fn memory_is_the_tenants() {
    for (store, _dir) in stores() {
        let mut b = GraphBuilder::<Trace>::new();
        b.add_node("remember", |_, ctx: Context| async move {
            let memory = ctx.memory();
            let ns = Namespace::new(["users", "ann"]);
            let seen = memory
                .get(&ns, "visits")
                .await?
                .map_or(0, |i| i.value.as_u64().unwrap_or(0));
            memory.put(ns.clone(), "visits", &(seen + 1))?;
            // The buffered write reads back under the name the node gave.
            let mine = memory.get(&ns, "visits").await?.unwrap();
            assert_eq!(mine.namespace, ns);
            let found = memory
                .search(ItemQuery::new(Namespace::new(["users"])).limit(10))
                .await?;
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].item.namespace, ns);
            Ok::<_, BoxError>(TraceUpdate::new().count(seen + 1))
        })
        .add_edge(START, "remember")
        .add_edge("remember", END);
        let graph = b.compile().unwrap();
        let run = |id: &str, t: Option<&str>| {
            let config = cfg(&store, id);
            let config = match t {
                Some(t) => config.tenant(tenant(t)),
                None => config,
            };
            graph.run_with(Trace::default(), config)
        };
        assert_eq!(run("a1", Some("acme")).await.unwrap().count, 1);
        assert_eq!(run("a2", Some("acme")).await.unwrap().count, 2);
        assert_eq!(run("g1", Some("globex")).await.unwrap().count, 1);
        assert_eq!(run("p1", None).await.unwrap().count, 1);

        let ns = Namespace::new(["users", "ann"]);
        let visits = |t: &str| {
            let view = TenantStore::new(store.clone(), tenant(t));
            let ns = ns.clone();
            async move {
                view.get_item(&ns, "visits", 0)
                    .await
                    .unwrap()
                    .unwrap()
                    .value
            }
        };
        assert_eq!(visits("acme").await, 2);
        assert_eq!(visits("globex").await, 1);
        assert_eq!(
            store
                .get_item(&ns, "visits", 0)
                .await
                .unwrap()
                .unwrap()
                .value,
            1
        );
        assert_eq!(
            store
                .get_item(&tenant("acme").scope(&ns), "visits", 0)
                .await
                .unwrap()
                .unwrap()
                .value,
            2
        );
    }
}

/// The tenant's view of a store reads everything the inspector reads of its runs: states,
/// events.
#[tokio::test]
async fn a_tenants_view_reads_its_runs_whole() {
    let store: Arc<dyn CheckpointStore> = common::memory();
    let graph = common::counting_chain(3);
    let acme = tenant("acme");
    graph
        .run_with(
            Trace::default(),
            cfg(&store, "r").tenant(acme.clone()).monitored(),
        )
        .await
        .unwrap();
    let raw = StoreInspector::new(store.clone());
    let as_acme = StoreInspector::new(TenantStore::new(store.clone(), acme));
    assert_eq!(
        as_acme.state_json("r", None).await.unwrap(),
        raw.state_json("r", None).await.unwrap()
    );
    assert_eq!(
        as_acme.events("r", None, 1000).await.unwrap().len(),
        raw.events("r", None, 1000).await.unwrap().len()
    );
    let as_globex = StoreInspector::new(TenantStore::new(store.clone(), tenant("globex")));
    assert!(as_globex.events("r", None, 1000).await.unwrap().is_empty());
    assert!(as_globex.state_json("r", None).await.is_err());
    assert!(as_globex.delete("r").await.is_err());
    assert!(store.get_run("r").await.unwrap().is_some());
}
