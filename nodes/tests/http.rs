//! The HTTP request node against a small axum server: URL templates expanded and encoded, a secret
//! header read from the environment (and kept out of `Debug` and errors), retries on 503 and 429
//! honouring `Retry-After` with one idempotency key on every attempt, a timeout (not retried;
//! before the headers or in the body), statuses that fail or are accepted, and the node in a
//! checkpointed graph.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgraph_checkpoint::MemoryStore;
use agentgraph_engine::{CheckpointStore, END, Error, GraphBuilder, RunConfig, START};
use agentgraph_nodes::http::{HttpError, HttpNode};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
struct Trip {
    city: String,
    answer: String,
    status: u16,
}

/// The arrival times of the attempts, per idempotency key (`""` without one).
type Attempts = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// Records an attempt under its idempotency key; its key and how many attempts that key has
/// made, this one included.
fn arrive(attempts: &Attempts, headers: &HeaderMap) -> (String, usize) {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut a = attempts.lock().unwrap();
    let arrivals = a.entry(key.clone()).or_default();
    arrivals.push(Instant::now());
    (key, arrivals.len())
}

async fn server() -> (String, Attempts) {
    let attempts = Attempts::default();
    let app = Router::new()
        .route(
            "/weather/{city}",
            get(
                |Path(city): Path<String>,
                 Query(q): Query<HashMap<String, String>>,
                 headers: HeaderMap| async move {
                    let token = headers
                        .get("x-token")
                        .map(|v| v.to_str().unwrap().to_owned());
                    axum::Json(json!({ "city": city, "units": q.get("units"), "token": token }))
                },
            ),
        )
        .route(
            "/pay",
            post(
                |State(attempts): State<Attempts>, headers: HeaderMap, body: String| async move {
                    let (key, n) = arrive(&attempts, &headers);
                    if n < 3 {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "0")],
                            "busy",
                        )
                            .into_response();
                    }
                    axum::Json(json!({ "paid": body, "key": key, "attempt": n })).into_response()
                },
            ),
        )
        .route(
            "/limited",
            post(
                |State(attempts): State<Attempts>, headers: HeaderMap| async move {
                    let (key, n) = arrive(&attempts, &headers);
                    if n == 1 {
                        return (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            "slow down",
                        )
                            .into_response();
                    }
                    axum::Json(json!({ "key": key, "attempt": n })).into_response()
                },
            ),
        )
        .route(
            "/slow",
            get(
                |State(attempts): State<Attempts>, headers: HeaderMap| async move {
                    arrive(&attempts, &headers);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    "too late"
                },
            ),
        )
        .route(
            "/trickle",
            get(|| async {
                // The headers at once, then a byte every 100 ms for 2 s.
                let bytes = futures_util::stream::unfold(0u32, |n| async move {
                    if n == 20 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, std::io::Error>(vec![b'.']), n + 1))
                });
                axum::body::Body::from_stream(bytes)
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such thing") }),
        )
        .with_state(attempts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), attempts)
}

fn trip(city: &str) -> Trip {
    Trip {
        city: city.into(),
        ..Trip::default()
    }
}

/// Runs `node` once on `state` in a one-node graph; the final state.
async fn run(node: HttpNode<Trip>, state: Trip) -> Result<Trip, Error> {
    let mut b = GraphBuilder::<Trip>::new();
    b.add_node("http", node.into_node())
        .add_edge(START, "http")
        .add_edge("http", END);
    b.compile().unwrap().invoke(state).await
}

#[tokio::test]
async fn a_url_template_is_expanded_with_encoded_values_and_a_secret_header() {
    let (base, _) = server().await;
    let node = HttpNode::<Trip>::get(&format!("{base}/weather/{{city}}{{?units}}"))
        .unwrap()
        .vars(|t| {
            vec![
                ("city".into(), t.city.clone()),
                ("units".into(), "metric".into()),
            ]
        })
        // A variable every test process has: `set_var` is unsafe, and the workspace forbids it.
        .header_env("x-token", "Bearer ", "CARGO_PKG_NAME")
        .response(|_, r| {
            Ok(TripUpdate::new()
                .answer(r.text().into_owned())
                .status(r.status))
        });
    assert!(
        !format!("{node:?}").contains("agentgraph-nodes"),
        "no secret in Debug"
    );
    let state = run(node, trip("São Paulo")).await.unwrap();
    let answer: Value = serde_json::from_str(&state.answer).unwrap();
    assert_eq!(
        answer,
        json!({ "city": "São Paulo", "units": "metric", "token": "Bearer agentgraph-nodes" })
    );
    assert_eq!(state.status, 200);
}

#[tokio::test]
async fn a_missing_secret_fails_the_call_naming_the_variable() {
    let (base, _) = server().await;
    let node = HttpNode::<Trip>::get(&format!("{base}/weather/x"))
        .unwrap()
        .header_env("x-token", "", "AGENTGRAPH_TEST_SURELY_UNSET_VARIABLE");
    let e = run(node, trip("x")).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("AGENTGRAPH_TEST_SURELY_UNSET_VARIABLE") && text.contains("x-token"),
        "{text}"
    );
}

#[tokio::test]
async fn busy_answers_are_retried_with_one_idempotency_key() {
    let (base, attempts) = server().await;
    let node = HttpNode::<Trip>::post(&format!("{base}/pay"))
        .unwrap()
        .json_body(|t| json!({ "city": t.city }))
        .idempotency_header("Idempotency-Key")
        .retries(2, Duration::from_millis(1))
        .response(|_, r| {
            let v: Value = r.json()?;
            Ok(TripUpdate::new().answer(v["key"].as_str().unwrap_or_default().to_owned()))
        });
    let state = run(node, trip("Oslo")).await.unwrap();
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        1,
        "one key for the three attempts: {attempts:?}"
    );
    assert_eq!(attempts.get(&state.answer).map(Vec::len), Some(3));
    assert!(!state.answer.is_empty());

    // With fewer retries, the last 503 fails the call.
    let node = HttpNode::<Trip>::post(&format!("{base}/pay"))
        .unwrap()
        .idempotency_header("Idempotency-Key")
        .retries(1, Duration::from_millis(1));
    let mut b = GraphBuilder::<Trip>::new();
    b.add_node("pay", node.into_node())
        .add_edge(START, "pay")
        .add_edge("pay", END);
    let e = b.compile().unwrap().invoke(trip("Rome")).await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_with_the_same_key() {
    let (base, attempts) = server().await;
    let node = HttpNode::<Trip>::post(&format!("{base}/limited"))
        .unwrap()
        .idempotency_header("Idempotency-Key")
        // The backoff alone would wait about 10 ms.
        .retries(2, Duration::from_millis(10))
        .response(|_, r| {
            let v: Value = r.json()?;
            Ok(TripUpdate::new()
                .answer(v["key"].as_str().unwrap_or_default().to_owned())
                .status(r.status))
        });
    let state = run(node, trip("Oslo")).await.unwrap();
    assert_eq!(state.status, 200);
    assert!(!state.answer.is_empty(), "an idempotency key was sent");
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.keys().collect::<Vec<_>>(),
        [&state.answer],
        "one key for both attempts"
    );
    let arrivals = &attempts[&state.answer];
    assert_eq!(arrivals.len(), 2);
    // The server's `retry-after: 1` is honoured.
    let waited = arrivals[1] - arrivals[0];
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
}

/// The HTTP error a failed run ends with.
fn http_error(e: &Error) -> &HttpError {
    match e {
        Error::NodeFailed { source, .. } => source
            .downcast_ref::<HttpError>()
            .unwrap_or_else(|| panic!("not an HTTP error: {source:?}")),
        other => panic!("expected a node failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_timeout_fails_the_call_without_a_retry() {
    let (base, attempts) = server().await;
    // Retries are allowed, but they are for 429, 5xx and connection failures only.
    let node = HttpNode::<Trip>::get(&format!("{base}/slow?page=1"))
        .unwrap()
        .timeout(Duration::from_millis(200))
        .retries(2, Duration::from_millis(1));
    let started = Instant::now();
    let e = run(node, trip("x")).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(190));
    match http_error(&e) {
        timeout @ HttpError::Timeout {
            method, url, after, ..
        } => {
            assert_eq!(method, "GET");
            assert_eq!(url, &format!("{base}/slow"), "the URL without its query");
            assert_eq!(*after, Duration::from_millis(200));
            assert_eq!(
                timeout.to_string(),
                format!("GET {base}/slow timed out after 200ms")
            );
        }
        other => panic!("{other:?}"),
    }
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.get("").map(Vec::len),
        Some(1),
        "one attempt: {attempts:?}"
    );
}

#[tokio::test]
async fn a_body_still_arriving_at_the_timeout_is_a_timeout() {
    let (base, _) = server().await;
    let node = HttpNode::<Trip>::get(&format!("{base}/trickle"))
        .unwrap()
        .timeout(Duration::from_millis(300));
    let e = run(node, trip("x")).await.unwrap_err();
    assert!(
        matches!(
            http_error(&e),
            HttpError::Timeout { after, .. } if *after == Duration::from_millis(300)
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_status_fails_the_call_unless_it_is_accepted() {
    let (base, _) = server().await;
    let failing = HttpNode::<Trip>::get(&format!("{base}/missing")).unwrap();
    let e = run(failing, trip("x")).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("404") && text.contains("no such thing"),
        "{text}"
    );

    let accepting = HttpNode::<Trip>::get(&format!("{base}/missing"))
        .unwrap()
        .accept(|s| s == 404)
        .response(|_, r| Ok(TripUpdate::new().status(r.status)));
    assert_eq!(run(accepting, trip("x")).await.unwrap().status, 404);
}

#[tokio::test]
async fn the_node_is_checkpointed_like_any_task() {
    let (base, _) = server().await;
    let node = HttpNode::<Trip>::get(&format!("{base}/weather/{{city}}"))
        .unwrap()
        .vars(|t| vec![("city".into(), t.city.clone())])
        .response(|_, r| Ok(TripUpdate::new().status(r.status)));
    let mut b = GraphBuilder::<Trip>::new();
    b.add_node("http", node.into_node())
        .add_edge(START, "http")
        .add_edge("http", END);
    let graph = b.compile().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let config = RunConfig::new().store(store.clone()).run_id("trip");
    graph.run_with(trip("Lima"), config).await.unwrap();
    let history = graph.history(store);
    assert_eq!(history.state("trip", None).await.unwrap().status, 200);
    assert_eq!(history.checkpoints("trip").await.unwrap().len(), 2);
}

#[test]
fn a_bad_template_is_refused_when_the_node_is_made() {
    let e = HttpNode::<Trip>::get("http://h/{unclosed").unwrap_err();
    assert!(matches!(e, HttpError::Template { .. }), "{e}");
}
