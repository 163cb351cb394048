//! The router: routes, shared state and the layers around them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use agentgraph_engine::StoreInspector;

use crate::{api, auth, control, page, sse};

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) inspector: StoreInspector,
    pub(crate) poll: Duration,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) prometheus: Option<PrometheusHandle>,
    /// Cancelled when the server shuts down, so that open event streams end and a graceful
    /// shutdown does not wait for them forever.
    pub(crate) shutdown: CancellationToken,
    /// Tokens of this process's runs, sent to event streams as they come.
    pub(crate) live: Option<crate::live::LiveTokens>,
    /// The control API's graphs and runs, when it is on.
    pub(crate) control: Option<control::Control>,
    /// The queue of workers the control API submits to, when it is set.
    #[cfg(feature = "postgres")]
    pub(crate) queue: Option<std::sync::Arc<agentgraph_postgres::worker::Queue>>,
}

/// The page's policy: its own scripts, styles and connections only; nothing inline, nothing
/// framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// How long a request may take to produce its response head (an event stream's head comes
/// at once; its body is not limited).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request body accepted by the read-only routes (all `GET`s).
const BODY_LIMIT: usize = 4096;

/// The largest body of a control request (a run's input, a resume's answers).
const CONTROL_BODY_LIMIT: usize = 1 << 20;

pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{run}", get(api::run))
        .route("/api/runs/{run}/checkpoints", get(api::checkpoints))
        .route("/api/runs/{run}/pending", get(api::pending))
        .route("/api/runs/{run}/state", get(api::state_at))
        .route("/api/runs/{run}/graph", get(api::graph))
        .route("/api/runs/{run}/graph.dot", get(api::graph_dot))
        .route("/api/runs/{run}/events", get(sse::events))
        .route("/api/memory", get(crate::memory::items))
        .route("/api/memory/namespaces", get(crate::memory::namespaces))
        .route("/metrics", get(api::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    let control = Router::new()
        .route("/api/graphs", get(control::graphs))
        .route("/api/graphs/{graph}/runs", post(control::start))
        .route("/api/runs/{run}/resume", post(control::resume))
        .route("/api/runs/{run}/cancel", post(control::cancel))
        .route("/api/queue", get(control::queue))
        .route("/api/workers", get(control::workers))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(RequestBodyLimitLayer::new(CONTROL_BODY_LIMIT));
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(control::healthz))
        .route("/openapi.json", get(control::openapi))
        .route("/readyz", get(control::readyz))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .merge(protected)
        .merge(control)
        .fallback(api::fallback)
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
}
