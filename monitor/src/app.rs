//! The router: routes, shared state and the layers around them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use agentgraph_engine::StoreInspector;

use crate::auth::{Access, Role};
use crate::{api, auth, control, page, sse};

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) inspector: StoreInspector,
    pub(crate) poll: Duration,
    /// The tokens and their grants (none: every request is an all-tenants admin's).
    pub(crate) tokens: Arc<auth::Tokens>,
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

/// A route of the monitor: its method, its path (axum's syntax: `{run}` is a parameter) and
/// who may call it. [`routes`] lists them all; the router is built from the same list.
///
/// # Examples
///
/// ```
/// use agentgraph_monitor::{Access, Role, routes};
/// let delete = routes()
///     .into_iter()
///     .find(|r| r.method == "DELETE" && r.path == "/api/runs/{run}")
///     .unwrap();
/// assert_eq!(delete.access, Access::Tenant(Role::Admin));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteInfo {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// The path, with its parameters in braces.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

/// Whether a route takes a control request's body (a run's input), or only a small one.
#[derive(Clone, Copy)]
enum Body {
    Small,
    Control,
}

/// Every route: method, path, access, body size and handler. The one list the router and
/// [`routes`] are built from.
fn table() -> Vec<(
    &'static str,
    &'static str,
    Access,
    Body,
    MethodRouter<AppState>,
)> {
    use Access::{AllTenants, Public, Tenant};
    use Body::{Control, Small};
    use Role::{Admin, Operator, Reader};
    vec![
        ("GET", "/", Public, Small, get(page::index)),
        ("GET", "/app.js", Public, Small, get(page::script)),
        ("GET", "/app.css", Public, Small, get(page::style)),
        ("GET", "/healthz", Public, Small, get(control::healthz)),
        ("GET", "/readyz", Public, Small, get(control::readyz)),
        ("GET", "/openapi.json", Public, Small, get(control::openapi)),
        ("GET", "/api/runs", Tenant(Reader), Small, get(api::runs)),
        (
            "GET",
            "/api/runs/{run}",
            Tenant(Reader),
            Small,
            get(api::run),
        ),
        (
            "GET",
            "/api/runs/{run}/checkpoints",
            Tenant(Reader),
            Small,
            get(api::checkpoints),
        ),
        (
            "GET",
            "/api/runs/{run}/pending",
            Tenant(Reader),
            Small,
            get(api::pending),
        ),
        (
            "GET",
            "/api/runs/{run}/state",
            Tenant(Reader),
            Small,
            get(api::state_at),
        ),
        (
            "GET",
            "/api/runs/{run}/graph",
            Tenant(Reader),
            Small,
            get(api::graph),
        ),
        (
            "GET",
            "/api/runs/{run}/graph.dot",
            Tenant(Reader),
            Small,
            get(api::graph_dot),
        ),
        (
            "GET",
            "/api/runs/{run}/events",
            Tenant(Reader),
            Small,
            get(sse::events),
        ),
        (
            "GET",
            "/api/memory",
            Tenant(Reader),
            Small,
            get(crate::memory::items),
        ),
        (
            "GET",
            "/api/memory/namespaces",
            Tenant(Reader),
            Small,
            get(crate::memory::namespaces),
        ),
        (
            "GET",
            "/metrics",
            AllTenants(Reader),
            Small,
            get(api::metrics),
        ),
        (
            "GET",
            "/api/graphs",
            Tenant(Reader),
            Control,
            get(control::graphs),
        ),
        (
            "POST",
            "/api/graphs/{graph}/runs",
            Tenant(Operator),
            Control,
            post(control::start),
        ),
        (
            "POST",
            "/api/runs/{run}/resume",
            Tenant(Operator),
            Control,
            post(control::resume),
        ),
        (
            "POST",
            "/api/runs/{run}/cancel",
            Tenant(Operator),
            Control,
            post(control::cancel),
        ),
        (
            "GET",
            "/api/queue",
            Tenant(Reader),
            Control,
            get(control::queue),
        ),
        (
            "GET",
            "/api/workers",
            AllTenants(Reader),
            Control,
            get(control::workers),
        ),
        (
            "DELETE",
            "/api/runs/{run}",
            Tenant(Admin),
            Small,
            delete(api::delete_run),
        ),
        (
            "POST",
            "/api/runs/{run}/prune",
            Tenant(Admin),
            Small,
            post(api::prune_run),
        ),
        (
            "GET",
            "/api/queue/jobs",
            Tenant(Reader),
            Small,
            get(control::queue_jobs),
        ),
        (
            "GET",
            "/api/queue/jobs/{run}",
            Tenant(Reader),
            Small,
            get(control::queue_job),
        ),
    ]
}

/// Every route the monitor serves, with who may call it: for tests that must cover them all,
/// and for documentation.
///
/// # Examples
///
/// ```
/// use agentgraph_monitor::{Access, Role, routes};
/// let routes = routes();
/// assert!(routes.iter().any(|r| r.path == "/api/runs/{run}/events"));
/// // Answering interrupts takes an operator.
/// let resume = routes.iter().find(|r| r.path == "/api/runs/{run}/resume").unwrap();
/// assert_eq!(resume.access, Access::Tenant(Role::Operator));
/// ```
pub fn routes() -> Vec<RouteInfo> {
    table()
        .into_iter()
        .map(|(method, path, access, _, _)| RouteInfo {
            method,
            path,
            access,
        })
        .collect()
}

pub(crate) fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (_, path, access, body, handler) in table() {
        let handler = match access {
            Access::Public => handler,
            _ => handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), access),
                auth::require,
            )),
        };
        let limit = match body {
            Body::Small => BODY_LIMIT,
            Body::Control => CONTROL_BODY_LIMIT,
        };
        router = router.route(path, handler.layer(RequestBodyLimitLayer::new(limit)));
    }
    router
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
