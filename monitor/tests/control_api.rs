//! The control API over HTTP: start runs of registered graphs and give threads their input,
//! resume an interrupted run with answers, cancel a running one; bad requests answered with
//! what is wrong; a token required; the health routes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{CheckpointStore, RunConfig, RunStatus};
use agentgraph_monitor::{Error, Monitor, Server};
use common::control::{TOKEN, get, post, registry, until_status};
use common::{store, url};
use serde_json::{Value, json};

async fn serve(store: Arc<dyn CheckpointStore>) -> Server {
    Monitor::new(store)
        .bind(([127, 0, 0, 1], 0).into())
        .token(TOKEN)
        .metrics(false)
        .control(registry(), RunConfig::new().monitored())
        .serve()
        .await
        .unwrap()
}

/// Waits (up to a minute) until `run`'s newest state, as the monitor shows it, has `field`
/// equal to `value`.
async fn until_state(server: &Server, run: &str, field: &str, value: Value) {
    let mut last = Value::Null;
    for _ in 0..6000 {
        let (status, state) = get(server, &format!("/api/runs/{run}/state")).await;
        if status == 200 && state[field] == value {
            return;
        }
        last = state;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run `{run}` never had {field} = {value}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_start_threads_go_on_and_interrupted_runs_resume() {
    let store = store();
    let server = serve(store.clone()).await;

    let (status, graphs) = get(&server, "/api/graphs").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = graphs
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["count", "review", "slow"]);
    assert_eq!(graphs[0]["fingerprint"].as_str().unwrap().len(), 32);

    // A run, from the state's JSON (fields left out keep their defaults).
    let (status, started) = post(
        &server,
        "/api/graphs/count/runs",
        json!({ "input": { "rounds": 4 }, "run_id": "c1" }),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["run_id"], "c1");
    assert_eq!(started["url"], "/api/runs/c1");
    until_status(&*store, "c1", RunStatus::Completed).await;
    until_state(&server, "c1", "rounds", json!(5)).await;

    // A thread, twice.
    for turn in 1..=2 {
        let (status, started) = post(
            &server,
            "/api/graphs/count/runs",
            json!({ "thread": "t1", "input": { "rounds": 10 } }),
        )
        .await;
        assert_eq!(status, 202, "{started}");
        until_state(&server, "t1", "rounds", json!(11 * turn)).await;
        until_status(&*store, "t1", RunStatus::Completed).await;
    }

    // An interrupt, answered through the API.
    let (status, _) = post(
        &server,
        "/api/graphs/review/runs",
        json!({ "run_id": "r1" }),
    )
    .await;
    assert_eq!(status, 202);
    until_status(&*store, "r1", RunStatus::Interrupted).await;
    let (_, run) = get(&server, "/api/runs/r1").await;
    let id = run["interrupts"][0]["id"].as_str().unwrap().to_owned();
    let (status, resumed) = post(
        &server,
        "/api/runs/r1/resume",
        json!({ "answers": { id: "approved" }, "update": { "title": "edited" } }),
    )
    .await;
    assert_eq!(status, 202, "{resumed}");
    until_status(&*store, "r1", RunStatus::Completed).await;
    until_state(&server, "r1", "notes", json!(["approved"])).await;
    until_state(&server, "r1", "title", json!("edited")).await;
    // Audited, as the monitor's token: started, resumed, answered, edited.
    let trail: Vec<(String, String)> = store
        .audit("r1")
        .await
        .unwrap()
        .iter()
        .map(|e| (e.record.caller.clone(), e.record.action.to_string()))
        .collect();
    let trail: Vec<(&str, &str)> = trail.iter().map(|(c, a)| (&**c, &**a)).collect();
    assert_eq!(
        trail,
        [
            ("token", "started"),
            ("token", "resumed"),
            ("token", "interrupt_answered"),
            ("token", "state_edited"),
        ]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_cancelled_and_bad_requests_say_what_is_wrong() {
    let store = store();
    let server = serve(store.clone()).await;
    let (status, _) = post(&server, "/api/graphs/slow/runs", json!({ "run_id": "s1" })).await;
    assert_eq!(status, 202);
    // Running: a second start of the same id is busy, a resume is refused.
    let (status, busy) = post(&server, "/api/graphs/slow/runs", json!({ "run_id": "s1" })).await;
    assert_eq!(status, 409, "{busy}");
    let (status, _) = post(&server, "/api/runs/s1/resume", json!({})).await;
    assert_eq!(status, 409);
    let (status, cancelled) = post(&server, "/api/runs/s1/cancel", json!({})).await;
    assert_eq!(status, 202, "{cancelled}");
    until_status(&*store, "s1", RunStatus::Cancelled).await;
    for _ in 0..600 {
        let (status, _) = post(&server, "/api/runs/s1/cancel", json!({})).await;
        if status == 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = post(&server, "/api/runs/s1/cancel", json!({})).await;
    assert_eq!(status, 409, "a cancelled run is no longer running here");

    let cases = [
        ("/api/graphs/nope/runs", json!({}), 404, "no graph `nope`"),
        (
            "/api/graphs/count/runs",
            json!({ "input": { "rounds": "x" } }),
            400,
            "the run's input",
        ),
        (
            "/api/graphs/count/runs",
            json!({ "inptu": {} }),
            400,
            "unknown field",
        ),
        ("/api/runs/ghost/resume", json!({}), 404, "no run `ghost`"),
        (
            "/api/runs/s1/resume",
            json!({ "answer": 1 }),
            400,
            "unknown field",
        ),
    ];
    for (path, body, want, says) in cases {
        let (status, answer) = post(&server, path, body.clone()).await;
        assert_eq!(status, want, "{path} {body}: {answer}");
        assert!(answer.to_string().contains(says), "{path} {body}: {answer}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_needs_the_token_and_health_routes_do_not() {
    let store = store();
    let server = serve(store.clone()).await;
    let client = reqwest::Client::new();
    let no_token = client
        .post(url(server.local_addr(), "/api/graphs/count/runs"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
    assert!(store.list_runs(None, 10).await.unwrap().is_empty());
    for path in ["/healthz", "/readyz"] {
        let response = client
            .get(url(server.local_addr(), path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    server.shutdown().await.unwrap();

    let without = Monitor::new(store)
        .bind(([127, 0, 0, 1], 0).into())
        .metrics(false)
        .control(registry(), RunConfig::new())
        .serve()
        .await;
    assert!(matches!(without, Err(Error::ControlWithoutToken)));
}

/// The `cancelled` entry of a run's audit trail names who cancelled it (the cancelling
/// token's name), not who started it; the starter is in its details as `invoked_by`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_is_audited_as_the_cancelling_token() {
    use agentgraph_monitor::{Role, TokenGrant, Tokens};
    let store = store();
    let tokens = Tokens::new()
        .add("starter-token", TokenGrant::new(Role::Operator).named("ci"))
        .add(
            "stopper-token",
            TokenGrant::new(Role::Operator).named("on-call"),
        );
    let server = Monitor::new(store.clone())
        .bind(([127, 0, 0, 1], 0).into())
        .tokens(tokens)
        .metrics(false)
        .control(registry(), RunConfig::new().monitored())
        .serve()
        .await
        .unwrap();
    let send = |path: &str, token: &str| {
        reqwest::Client::new()
            .post(url(server.local_addr(), path))
            .bearer_auth(token)
            .json(&json!({ "run_id": "s2" }))
            .send()
    };
    let started = send("/api/graphs/slow/runs", "starter-token")
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 202);
    let cancelled = send("/api/runs/s2/cancel", "stopper-token").await.unwrap();
    assert_eq!(cancelled.status().as_u16(), 202);
    until_status(&*store, "s2", RunStatus::Cancelled).await;
    let trail = store.audit("s2").await.unwrap();
    let who: Vec<(&str, String)> = trail
        .iter()
        .map(|e| (e.record.caller.as_str(), e.record.action.to_string()))
        .collect();
    assert_eq!(
        who,
        [
            ("ci", "started".to_owned()),
            ("on-call", "cancelled".to_owned())
        ]
    );
    assert_eq!(trail[1].record.details["invoked_by"], "ci");
    server.shutdown().await.unwrap();
}
