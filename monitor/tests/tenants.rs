//! Tenants and roles over HTTP (issue 16, item 5): every route of the monitor, tried with the
//! ids of another tenant's run, thread, subgraph run and memory, with a token of each role.
//! A tenant's token gets 404 for another tenant's runs on every route (their SSE streams and
//! controls too), lists show only its tenant's runs and memory, a role a route does not admit
//! is 403, and the routes that span tenants are 403 to a tenant's token. The list of routes is
//! the monitor's own (`agentgraph_monitor::routes`): a route added without a case here fails
//! the test. The walk is made twice: over an in-memory store with runs in the monitor's
//! process, and (feature `postgres`) over a PostgreSQL queue of workers, whose jobs carry their
//! tenant and caller.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use agentgraph_checkpoint::items::{Item, Namespace};
use agentgraph_checkpoint::{TenantId, TenantStore, WriteBatch};
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, END, GraphBuilder, GraphRegistry, RunConfig,
    START, StoreInspector,
};
use agentgraph_monitor::{Access, Monitor, Role, RouteInfo, Server, TokenGrant, Tokens, routes};
use common::{Doc, DocUpdate, store};
use metrics_exporter_prometheus::PrometheusBuilder;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ROOT: &str = "root-token";

/// `START -> sub -> ask -> END`: a subgraph (a child run), then an interrupt.
fn ask() -> CompiledGraph<Doc> {
    let mut inner = GraphBuilder::<Doc>::new();
    inner
        .add_node("inc", |_, _| async { Ok(DocUpdate::new().rounds(1)) })
        .add_edge(START, "inc")
        .add_edge("inc", END);
    let inner = inner.compile().unwrap();
    let mut b = GraphBuilder::<Doc>::new();
    b.named("ask")
        .add_subgraph(
            "sub",
            inner,
            |_: &Doc| Doc::default(),
            |c: Doc| DocUpdate::new().rounds(c.rounds),
        )
        .add_node("ask", |_, ctx: Context| async move {
            let answer: String = ctx.interrupt("title?")?;
            Ok::<_, BoxError>(DocUpdate::new().title(answer))
        })
        .add_edge(START, "sub")
        .add_edge("sub", "ask")
        .add_edge("ask", END);
    b.compile().unwrap()
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

fn token(tenant: &str, role: Role) -> String {
    format!("{tenant}-{role}-token")
}

/// A tenant's ids: its interrupted run (a thread too), that run's subgraph run, and a second
/// run.
struct Ids {
    run: String,
    child: String,
    spare: String,
}

/// Runs `tenant`'s runs `{prefix}-run` (interrupted, with a subgraph run) and
/// `{prefix}-spare` (interrupted), and puts an item of its own under `users/ann`.
async fn seed(store: &Arc<dyn CheckpointStore>, name: &str, prefix: &str) -> Ids {
    let graph = ask();
    let config = RunConfig::new()
        .store(store.clone())
        .monitored()
        .tenant(tenant(name));
    for id in [format!("{prefix}-run"), format!("{prefix}-spare")] {
        let e = graph
            .run_with(Doc::default(), config.clone().run_id(id))
            .await
            .unwrap_err();
        assert!(
            matches!(e, agentgraph_engine::Error::Interrupted(_)),
            "{e:?}"
        );
    }
    ids(store, name, prefix).await
}

/// Puts an item of `name`'s own under `users/ann`; the ids of its runs `{prefix}-run` (and its
/// subgraph run) and `{prefix}-spare`.
async fn ids(store: &Arc<dyn CheckpointStore>, name: &str, prefix: &str) -> Ids {
    let mut batch = WriteBatch::new();
    batch.put_item(Item::new(
        Namespace::new(["users", "ann"]),
        "secret",
        json!(format!("{name}-secret")),
    ));
    TenantStore::new(store.clone(), tenant(name))
        .commit(batch)
        .await
        .unwrap();
    let run = format!("{prefix}-run");
    let child = StoreInspector::new(store.clone())
        .subgraph_runs(&run)
        .await
        .unwrap()
        .remove(0);
    Ids {
        run,
        child,
        spare: format!("{prefix}-spare"),
    }
}

async fn serve(store: Arc<dyn CheckpointStore>) -> Server {
    monitor(store).serve().await.unwrap()
}

/// A monitor of `store` with both tenants' tokens of each role (named `{tenant}-{role}`), the
/// all-tenants admin's, and the control API over `ask`.
fn monitor(store: Arc<dyn CheckpointStore>) -> Monitor {
    let mut tokens = Tokens::new();
    for name in ["acme", "globex"] {
        for role in [Role::Reader, Role::Operator, Role::Admin] {
            tokens = tokens.add(
                token(name, role),
                TokenGrant::new(role)
                    .for_tenant(tenant(name))
                    .named(format!("{name}-{role}")),
            );
        }
    }
    let registry = GraphRegistry::new().with("ask", ask());
    Monitor::new(store)
        .bind(([127, 0, 0, 1], 0).into())
        .token(ROOT)
        .tokens(tokens)
        .prometheus(PrometheusBuilder::new().build_recorder().handle())
        .control(registry, RunConfig::new().monitored())
}

/// A request of `route`, aimed at `target`'s ids (the run, or its subgraph's run for the
/// reads of a run): its method, path and body.
fn request(route: &RouteInfo, target: &Ids, child: bool) -> (Method, String, Option<Value>) {
    let run = if child { &target.child } else { &target.run };
    let enc = run.replace('/', "%2F");
    let method = Method::from_bytes(route.method.as_bytes()).unwrap();
    let (path, body) = match (route.method, route.path) {
        ("GET", "/api/memory") => ("/api/memory?namespace=users".to_owned(), None),
        ("GET", "/api/memory/namespaces") => ("/api/memory/namespaces".to_owned(), None),
        // Another tenant's thread, given its next input.
        ("POST", "/api/graphs/{graph}/runs") => (
            "/api/graphs/ask/runs".to_owned(),
            Some(json!({ "thread": target.spare, "input": {} })),
        ),
        ("POST", "/api/runs/{run}/resume") => (
            format!("/api/runs/{enc}/resume"),
            Some(json!({ "value": "stolen" })),
        ),
        ("POST", "/api/runs/{run}/prune") => (format!("/api/runs/{enc}/prune?keep=1"), None),
        ("POST", "/api/runs/{run}/cancel") => (format!("/api/runs/{enc}/cancel"), None),
        (_, path) => (path.replace("{run}", &enc), None),
    };
    (method, path, body)
}

/// Sends `method path` with `token` (none: no header), and the body as JSON. The body of an
/// event stream that answered 200 is not read (it does not end).
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("http://{}{path}", server.local_addr()));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.unwrap();
    let status = response.status();
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if streaming {
        return (status, String::new());
    }
    (status, response.text().await.unwrap())
}

/// What the routes that list show must not show of `other`.
fn leaks(body: &str, other: &str) -> bool {
    body.contains(&format!("{other}-run"))
        || body.contains(&format!("{other}-spare"))
        || body.contains(other)
}

/// Whether a route reads or writes one run (its path names it, or it continues a thread).
fn names_a_run(route: &RouteInfo) -> bool {
    route.path.contains("{run}") || route.path == "/api/graphs/{graph}/runs"
}

/// The routes the walk covers: every route the monitor serves, no more, no less.
fn check_coverage() {
    let covered: BTreeSet<(&str, &str)> = [
        ("GET", "/"),
        ("GET", "/app.js"),
        ("GET", "/app.css"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("GET", "/api/runs"),
        ("GET", "/api/runs/{run}"),
        ("GET", "/api/runs/{run}/checkpoints"),
        ("GET", "/api/runs/{run}/pending"),
        ("GET", "/api/runs/{run}/state"),
        ("GET", "/api/runs/{run}/graph"),
        ("GET", "/api/runs/{run}/graph.dot"),
        ("GET", "/api/runs/{run}/events"),
        ("GET", "/api/memory"),
        ("GET", "/api/memory/namespaces"),
        ("GET", "/metrics"),
        ("GET", "/api/graphs"),
        ("POST", "/api/graphs/{graph}/runs"),
        ("POST", "/api/runs/{run}/resume"),
        ("POST", "/api/runs/{run}/cancel"),
        ("GET", "/api/queue"),
        ("GET", "/api/workers"),
        ("DELETE", "/api/runs/{run}"),
        ("POST", "/api/runs/{run}/prune"),
        ("GET", "/api/queue/jobs"),
        ("GET", "/api/queue/jobs/{run}"),
    ]
    .into_iter()
    .collect();
    let served: BTreeSet<(&str, &str)> = routes().iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(
        served, covered,
        "a route was added or removed: give it its case in this test"
    );
}

/// Whether a route reads the queue of workers (404 on a monitor without a queue).
fn reads_jobs(route: &RouteInfo) -> bool {
    route.path == "/api/queue" || route.path.starts_with("/api/queue/jobs")
}

/// Tries every route with each tenant's tokens on the other tenant's ids, and the tenants'
/// readers on their own; `queued`: the monitor has a queue of workers. Returns how many
/// requests it made.
async fn walk(server: &Server, acme: &Ids, globex: &Ids, queued: bool) -> usize {
    let mut tried = 0;
    for route in routes() {
        for (me, mine, other, theirs) in [
            ("acme", acme, "globex", globex),
            ("globex", globex, "acme", acme),
        ] {
            // Without a token, or with a wrong one: 401 (the page and health routes are
            // public).
            let (method, path, body) = request(&route, theirs, false);
            for bad in [None, Some("not-a-token")] {
                let (status, _) = send(server, method.clone(), &path, bad, body.clone()).await;
                if route.access == Access::Public {
                    assert!(status.is_success(), "{path}: {status}");
                } else {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {path}", route.method);
                }
            }
            for role in [Role::Reader, Role::Operator, Role::Admin] {
                let token = token(me, role);
                for child in [false, true] {
                    if child && !route.path.contains("{run}") {
                        continue;
                    }
                    let (method, path, body) = request(&route, theirs, child);
                    let (status, text) =
                        send(server, method.clone(), &path, Some(&token), body).await;
                    tried += 1;
                    let what = format!("{} {path} as {me}'s {role}: {status} {text}", route.method);
                    match route.access {
                        Access::Public => assert!(status.is_success(), "{what}"),
                        Access::AllTenants(_) => {
                            assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                        }
                        Access::Tenant(needed) if role < needed => {
                            assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                        }
                        Access::Tenant(_) if names_a_run(&route) => {
                            assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
                            assert!(!text.contains(other), "{what}");
                        }
                        // No queue: nothing to list.
                        Access::Tenant(_) if reads_jobs(&route) && !queued => {
                            assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
                        }
                        Access::Tenant(_) => {
                            assert_eq!(status, StatusCode::OK, "{what}");
                            assert!(!leaks(&text, other), "{what}");
                        }
                        _ => unreachable!("an access this test does not know: {what}"),
                    }
                }
                // The event stream takes its token as `?token=` too: the same 404.
                if route.path == "/api/runs/{run}/events" {
                    let path = format!("/api/runs/{}/events?token={token}", theirs.run);
                    let (status, _) = send(server, Method::GET, &path, None, None).await;
                    assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
                }
            }
            // The tenant's own: its reader reads its runs (the 404s above are not everyone's).
            if route.method == "GET"
                && route.access == Access::Tenant(Role::Reader)
                && (queued || !reads_jobs(&route))
            {
                let (method, path, body) = request(&route, mine, false);
                let (status, text) =
                    send(server, method, &path, Some(&token(me, Role::Reader)), body).await;
                assert_eq!(status, StatusCode::OK, "{path} as {me}: {text}");
                match route.path {
                    "/api/runs" | "/api/memory" | "/api/queue/jobs" => {
                        assert!(leaks(&text, me), "{path} as {me} shows its own: {text}");
                    }
                    "/api/memory/namespaces" => assert!(text.contains("ann"), "{text}"),
                    _ => {}
                }
            }
        }
        // The all-tenants admin (`Monitor::token`) is let through everywhere.
        let (method, path, body) = request(&route, globex, false);
        let method_is_write = method != Method::GET;
        if !method_is_write {
            let (status, _) = send(server, method, &path, Some(ROOT), body).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{path} as root: {status}"
            );
        }
    }
    tried
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_keeps_tenants_apart_and_roles_in_their_place() {
    let store = store();
    let acme = seed(&store, "acme", "a").await;
    let globex = seed(&store, "globex", "g").await;
    let server = serve(store.clone()).await;
    let before = StoreInspector::new(store.clone()).runs().await.unwrap();

    check_coverage();
    let tried = walk(&server, &acme, &globex, false).await;
    assert!(tried > 100, "{tried} requests");

    // Nothing of either tenant changed: no run resumed, pruned, deleted or continued.
    let after = StoreInspector::new(store.clone()).runs().await.unwrap();
    assert_eq!(
        after
            .iter()
            .map(|r| (&r.run_id, r.status, r.last_step))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|r| (&r.run_id, r.status, r.last_step))
            .collect::<Vec<_>>()
    );

    // A tenant's memory is its own, under the names it gave, whatever namespace it asks for.
    let (_, items) = send(
        &server,
        Method::GET,
        "/api/memory?namespace=users/ann",
        Some(&token("acme", Role::Reader)),
        None,
    )
    .await;
    let items: Value = serde_json::from_str(&items).unwrap();
    assert_eq!(items["items"].as_array().unwrap().len(), 1);
    assert_eq!(items["items"][0]["value"], "acme-secret");
    assert_eq!(items["items"][0]["namespace"], json!(["users", "ann"]));
    let (_, spoofed) = send(
        &server,
        Method::GET,
        "/api/memory?namespace=@tenant/globex/users",
        Some(&token("acme", Role::Reader)),
        None,
    )
    .await;
    assert!(!spoofed.contains("globex-secret"), "{spoofed}");
    // The all-tenants admin sees both tenants' runs.
    let (_, all) = send(&server, Method::GET, "/api/runs", Some(ROOT), None).await;
    assert!(all.contains("a-run") && all.contains("g-run"));

    // A tenant's operator and admin act on its own runs.
    let (status, text) = send(
        &server,
        Method::POST,
        &format!("/api/runs/{}/prune?keep=1", acme.spare),
        Some(&token("acme", Role::Admin)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = send(
        &server,
        Method::DELETE,
        &format!("/api/runs/{}", acme.spare),
        Some(&token("acme", Role::Admin)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(store.get_run(&acme.spare).await.unwrap().is_none());
    let (status, text) = send(
        &server,
        Method::POST,
        "/api/graphs/ask/runs",
        Some(&token("acme", Role::Operator)),
        Some(json!({ "run_id": "a-new", "input": {} })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let (status, text) = send(
        &server,
        Method::POST,
        &format!("/api/runs/{}/resume", acme.run),
        Some(&token("acme", Role::Operator)),
        Some(json!({ "value": "mine" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    // The run it started is the tenant's.
    for _ in 0..500 {
        if store.get_run("a-new").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.get_run("a-new").await.unwrap().unwrap().tenant,
        Some(tenant("acme"))
    );
    assert!(store.get_run(&globex.spare).await.unwrap().is_some());
    server.shutdown().await.unwrap();
}

/// The same walk over a PostgreSQL queue of workers (`Monitor::queue`): the tenants' runs were
/// queued as theirs and run by a worker; a tenant's token queues, lists, resumes and cancels
/// its tenant's jobs only, and its jobs run as the tenant's, naming the token in their audit
/// trails.
#[cfg(feature = "postgres")]
mod over_the_queue {
    use std::time::Duration;

    use agentgraph_checkpoint::audit::AuditAction;
    use agentgraph_engine::RunStatus;
    use agentgraph_postgres::worker::{Queue, Worker};
    use agentgraph_postgres::{PostgresOptions, PostgresStore};

    use super::common::control::until_status;
    use super::*;

    async fn fresh_store() -> PostgresStore {
        let base = std::env::var("AGENTGRAPH_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "AGENTGRAPH_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL server. \
                 Run it with ./scripts/test (which starts one), or start one with `scripts/postgres \
                 start DIR` and export AGENTGRAPH_TEST_POSTGRES_URL=<the URL it prints>"
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!("mon_tenants_{}_{nanos}", std::process::id());
        let options = PostgresOptions::new(&base)
            .unwrap()
            .with_schema(&schema)
            .unwrap();
        PostgresStore::connect_with(options).await.unwrap()
    }

    /// Queues `name`'s runs `{prefix}-run` and `{prefix}-spare` as the tenant's; waits until
    /// the worker has run them to their interrupts.
    async fn seed_queued(
        pg: &PostgresStore,
        store: &Arc<dyn CheckpointStore>,
        name: &str,
        prefix: &str,
    ) -> Ids {
        let queue = Queue::new(pg).tenant(tenant(name)).caller("seed");
        for id in [format!("{prefix}-run"), format!("{prefix}-spare")] {
            assert!(queue.submit_with_id("ask", &id, json!({})).await.unwrap());
            until_status(&**store, &id, RunStatus::Interrupted).await;
            // The run's record says interrupted before the worker ends its job: wait for the
            // job too, so that the jobs the test compares before and after are settled.
            until_job_status(&queue, &id, "interrupted").await;
            assert_eq!(
                store.get_run(&id).await.unwrap().unwrap().tenant,
                Some(tenant(name))
            );
        }
        ids(store, name, prefix).await
    }

    /// Waits (up to a minute) until the newest job of `run` has `status`.
    async fn until_job_status(queue: &Queue, run: &str, status: &str) {
        for _ in 0..6000 {
            if let Some(job) = queue.job(run).await.unwrap()
                && job.status == status
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the job of `{run}` never reached {status}");
    }

    /// The actions and callers of `run`'s audit trail.
    async fn trail(store: &Arc<dyn CheckpointStore>, run: &str) -> Vec<(AuditAction, String)> {
        store
            .audit(run)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.record.action, e.record.caller))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_route_keeps_tenants_apart_over_the_queue_of_workers() {
        let pg = fresh_store().await;
        let store: Arc<dyn CheckpointStore> = Arc::new(pg.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(pg.clone(), GraphRegistry::new().with("ask", ask()), "tw")
            .poll_interval(Duration::from_millis(50))
            .shutdown_timeout(Duration::from_secs(5))
            .run_config(|| RunConfig::new().monitored());
        let worker = tokio::spawn(worker.run_until(async move {
            let _ = stopped.await;
        }));
        let acme = seed_queued(&pg, &store, "acme", "a").await;
        let globex = seed_queued(&pg, &store, "globex", "g").await;
        let server = monitor(store.clone())
            .queue(Queue::new(&pg))
            .serve()
            .await
            .unwrap();
        let all = Queue::new(&pg);
        let jobs_before = all.jobs(None, 0, 1000).await.unwrap();
        let runs_before = StoreInspector::new(store.clone()).runs().await.unwrap();

        check_coverage();
        let tried = walk(&server, &acme, &globex, true).await;
        assert!(tried > 100, "{tried} requests");

        // Nothing was queued, cancelled, resumed or run by the other tenant's requests.
        assert_eq!(all.jobs(None, 0, 1000).await.unwrap(), jobs_before);
        let runs_after = StoreInspector::new(store.clone()).runs().await.unwrap();
        assert_eq!(
            runs_after
                .iter()
                .map(|r| (&r.run_id, r.status, r.last_step))
                .collect::<Vec<_>>(),
            runs_before
                .iter()
                .map(|r| (&r.run_id, r.status, r.last_step))
                .collect::<Vec<_>>()
        );

        // acme's operator queues a run: the job and the run are acme's, and name the token.
        let operator = token("acme", Role::Operator);
        let (status, text) = send(
            &server,
            Method::POST,
            "/api/graphs/ask/runs",
            Some(&operator),
            Some(json!({ "run_id": "a-new", "input": {} })),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        assert!(text.contains("\"queued\":true"), "{text}");
        until_status(&*store, "a-new", RunStatus::Interrupted).await;
        assert_eq!(
            store.get_run("a-new").await.unwrap().unwrap().tenant,
            Some(tenant("acme"))
        );
        assert_eq!(
            trail(&store, "a-new").await[0],
            (AuditAction::Started, "acme-operator".to_owned())
        );
        let (status, text) = send(
            &server,
            Method::GET,
            "/api/queue/jobs/a-new",
            Some(&token("acme", Role::Reader)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let job: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (&job["tenant"], &job["caller"], &job["status"]),
            (
                &json!("acme"),
                &json!("acme-operator"),
                &json!("interrupted")
            )
        );
        let (status, _) = send(
            &server,
            Method::GET,
            "/api/queue/jobs/a-new",
            Some(&token("globex", Role::Admin)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // acme's operator answers its interrupt through the queue: the trail names it.
        let (status, text) = send(
            &server,
            Method::POST,
            "/api/runs/a-new/resume",
            Some(&operator),
            Some(json!({ "value": "mine" })),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        until_status(&*store, "a-new", RunStatus::Completed).await;
        let actions = trail(&store, "a-new").await;
        assert!(
            actions.contains(&(AuditAction::Resumed, "acme-operator".to_owned())),
            "{actions:?}"
        );

        // A job no worker runs yet (no run in the store): globex's operator gets 404 for it,
        // acme's cancels it.
        let (status, text) = send(
            &server,
            Method::POST,
            "/api/graphs/idle/runs",
            Some(&operator),
            Some(json!({ "run_id": "a-idle" })),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        for (method, path) in [
            (Method::POST, "/api/runs/a-idle/cancel"),
            (Method::GET, "/api/queue/jobs/a-idle"),
        ] {
            let (status, text) = send(
                &server,
                method,
                path,
                Some(&token("globex", Role::Admin)),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {text}");
        }
        assert_eq!(all.job("a-idle").await.unwrap().unwrap().status, "queued");
        // The queue's depth, as each tenant sees it: its own jobs only (acme's `a-idle`), and
        // its cap on jobs in flight when it has one.
        all.set_tenant_limit(&tenant("acme"), 3).await.unwrap();
        for (who, depth) in [("acme", 1), ("globex", 0)] {
            let (status, text) = send(
                &server,
                Method::GET,
                "/api/queue",
                Some(&token(who, Role::Reader)),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["depth"], depth, "{who}: {text}");
            if who == "acme" {
                assert_eq!(
                    body["limit"],
                    json!({ "max_in_flight": 3, "in_flight": 0, "queued": 1 })
                );
            } else {
                assert_eq!(body["limit"], Value::Null, "{text}");
            }
        }
        all.clear_tenant_limit(&tenant("acme")).await.unwrap();
        let (status, text) = send(
            &server,
            Method::POST,
            "/api/runs/a-idle/cancel",
            Some(&operator),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        assert_eq!(
            all.job("a-idle").await.unwrap().unwrap().status,
            "cancelled"
        );

        // The all-tenants admin lists every tenant's jobs.
        let (status, text) = send(&server, Method::GET, "/api/queue/jobs", Some(ROOT), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.contains("a-run") && text.contains("g-run"), "{text}");

        let _ = stop.send(());
        worker.await.unwrap().unwrap();
        server.shutdown().await.unwrap();
    }
}
