//! Malformed and hostile requests get a 4xx (never a panic, never a 5xx), and the token is
//! enforced.

mod common;

use std::time::Duration;

use agentgraph_engine::RunConfig;
use agentgraph_monitor::{Error, Monitor};
use common::{Doc, Gate, demo, store, url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a raw HTTP/1.1 request (no client normalizes its path) and returns the status.
async fn raw(addr: std::net::SocketAddr, target: &str, headers: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .expect("an answer")
        .unwrap();
    let head = String::from_utf8_lossy(&head);
    head[9..12].parse().unwrap()
}

async fn finished_run() -> std::sync::Arc<dyn agentgraph_engine::CheckpointStore> {
    let store = store();
    let config = RunConfig::new()
        .store(store.clone())
        .run_id("ok")
        .monitored();
    demo(&Gate::open())
        .run_with(Doc::default(), config)
        .await
        .unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx() {
    let server = common::monitor(finished_run().await).await;
    let addr = server.local_addr();
    let long = "x".repeat(10 * 1024);
    let cases: Vec<(String, &str, u16)> = vec![
        // Path tricks: dots are run ids like any other (unknown), never a way out.
        ("/api/runs/%2e%2e".into(), "", 404),
        ("/api/runs/%2e%2e/state".into(), "", 404),
        ("/api/runs/%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(), "", 404),
        ("/api/runs/../../etc/passwd".into(), "", 404),
        ("/api/runs/..%2f..%2fmetrics/graph".into(), "", 404),
        ("/app.js/../../Cargo.toml".into(), "", 404),
        ("/assets/app.js".into(), "", 404),
        // Bad run ids: too long, control characters, invalid UTF-8.
        (format!("/api/runs/{long}"), "", 400),
        (format!("/api/runs/{long}/events"), "", 400),
        (format!("/api/runs?after={long}"), "", 400),
        ("/api/runs/a%00b".into(), "", 400),
        ("/api/runs/a%0Ab/events".into(), "", 400),
        ("/api/runs/%FF%FE".into(), "", 400),
        // Unknown runs and steps.
        ("/api/runs/nope".into(), "", 404),
        ("/api/runs/nope/events".into(), "", 404),
        ("/api/runs/nope/graph.dot".into(), "", 404),
        ("/api/runs/ok/state?step=999".into(), "", 404),
        (format!("/api/runs/ok/state?step={}", u64::MAX), "", 404),
        ("/api/runs/ok/state?step=-1".into(), "", 400),
        ("/api/runs/ok/state?step=abc".into(), "", 400),
        (
            "/api/runs/ok/state?step=99999999999999999999999".into(),
            "",
            400,
        ),
        ("/api/runs?limit=-5".into(), "", 400),
        // Sequence numbers that are not.
        (
            "/api/runs/ok/events".into(),
            "Last-Event-ID: 99999999999999999999999\r\n",
            400,
        ),
        ("/api/runs/ok/events".into(), "Last-Event-ID: -1\r\n", 400),
        ("/api/runs/ok/events".into(), "Last-Event-ID: abc\r\n", 400),
        ("/api/runs/ok/events".into(), "Last-Event-ID: 1e3\r\n", 400),
        (
            "/api/runs/ok/events".into(),
            "Last-Event-ID: \u{00e9}\r\n",
            400,
        ),
        (format!("/api/runs/ok/events?after={long}"), "", 400),
        ("/api/runs/ok/events?after=-1".into(), "", 400),
        // Other methods.
        ("/nothing-here".into(), "", 404),
    ];
    for (target, headers, want) in cases {
        let got = raw(addr, &target, headers).await;
        let shown: String = target.chars().take(80).collect();
        assert_eq!(got, want, "GET {shown} with {headers:?}");
    }
    // A body on a GET, and another method. No pooled connections: the server closes the
    // connection of a refused body, and a request sent on it after would be cut.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let big = client
        .get(url(addr, "/api/runs"))
        .body(vec![b'x'; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413, "a request body is refused by its size");
    let post = client.post(url(addr, "/api/runs")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    // The server still answers normally after all that.
    assert_eq!(raw(addr, "/api/runs/ok", "").await, 200);
    assert_eq!(
        raw(addr, "/api/runs/ok/events", "Last-Event-ID: 3\r\n").await,
        200
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_the_api_and_metrics() {
    let server = Monitor::new(finished_run().await)
        .bind(([127, 0, 0, 1], 0).into())
        .token("s3cret-token")
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr();
    let client = reqwest::Client::new();
    let status = |path: &'static str, auth: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut request = client.get(url(addr, path));
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    for path in [
        "/api/runs",
        "/api/runs/ok",
        "/api/runs/ok/state",
        "/api/runs/ok/graph.dot",
        "/api/runs/ok/events",
        "/metrics",
    ] {
        assert_eq!(status(path, None).await, 401, "{path} without a token");
        assert_eq!(status(path, Some("Bearer wrong")).await, 401, "{path}");
        assert_eq!(
            status(path, Some("Bearer s3cret-token2")).await,
            401,
            "{path}"
        );
        assert_eq!(
            status(path, Some("Basic s3cret-token")).await,
            401,
            "{path}"
        );
        assert_eq!(
            status(path, Some("Bearer s3cret-token")).await,
            200,
            "{path}"
        );
    }
    // Unauthorized answers say how to authenticate.
    let response = client.get(url(addr, "/api/runs")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // The event stream also takes the token in its query (EventSource sets no headers);
    // other routes do not.
    assert_eq!(
        status("/api/runs/ok/events?token=s3cret-token", None).await,
        200
    );
    assert_eq!(status("/api/runs/ok/events?token=wrong", None).await, 401);
    assert_eq!(status("/api/runs?token=s3cret-token", None).await, 401);
    // The page's files hold no data and stay public.
    assert_eq!(status("/", None).await, 200);
    assert_eq!(status("/app.js", None).await, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn serving_beyond_loopback_needs_a_token() {
    let err = Monitor::new(store())
        .bind(([0, 0, 0, 0], 0).into())
        .serve()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exposed { .. }), "{err}");
    assert!(err.to_string().contains("Monitor::token"), "{err}");
    let err = agentgraph_monitor::serve("[::]:0".parse().unwrap(), store())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exposed { .. }));
    // With a token it serves (on every interface, port chosen by the system).
    let server = Monitor::new(store())
        .bind(([0, 0, 0, 0], 0).into())
        .token("long-enough-token")
        .serve()
        .await
        .unwrap();
    server.shutdown().await.unwrap();
    // A token a header cannot carry is refused.
    for bad in ["", "has space", "new\nline"] {
        let err = Monitor::new(store()).token(bad).router().unwrap_err();
        assert!(matches!(err, Error::InvalidToken), "{bad:?}");
    }
    // A port in use is a clear error.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = agentgraph_monitor::serve(taken.local_addr().unwrap(), store())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_a_content_security_policy() {
    let server = common::monitor(store()).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let response = reqwest::get(url(server.local_addr(), path)).await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    // The page's script never writes HTML from data.
    let script = reqwest::get(url(server.local_addr(), "/app.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "app.js uses {sink}");
    }
    server.shutdown().await.unwrap();
}
