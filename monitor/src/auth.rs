//! Who may call what: bearer tokens, each bound to a tenant (or to all) and a role
//! ([`Tokens`], [`TokenGrant`], [`Role`]); the check in front of every route but the page and
//! the health routes; and [`Caller`], what a handler learns of who called.

use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use agentgraph_checkpoint::{TenantId, TenantStore};
use agentgraph_engine::StoreInspector;

use crate::api::ApiError;
use crate::app::AppState;

/// What a token may do. Roles are ordered: each may do what the ones before it may.
///
/// # Examples
///
/// ```
/// use agentgraph_monitor::Role;
/// assert!(Role::Admin > Role::Operator && Role::Operator > Role::Reader);
/// assert_eq!(Role::Operator.as_str(), "operator");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads: runs, threads, checkpoints, states, events, memory, graphs.
    Reader,
    /// Reads, and controls runs: starts them, answers their interrupts (resume), cancels them.
    Operator,
    /// All of the above, and deletes and prunes runs.
    Admin,
}

impl Role {
    /// The role's name: `reader`, `operator`, `admin`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token grants: a [`Role`], over one tenant's runs and memory or over every
/// tenant's, and a name for logs and audit records (never the token itself).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::TenantId;
/// use agentgraph_monitor::{Role, TokenGrant};
///
/// let acme = TenantId::new("acme")?;
/// let grant = TokenGrant::new(Role::Operator).for_tenant(acme.clone()).named("acme-ops");
/// assert_eq!(grant.role(), Role::Operator);
/// assert_eq!(grant.tenant(), Some(&acme));
/// assert_eq!(grant.name(), Some("acme-ops"));
/// // Without a tenant, a grant is over every tenant's runs.
/// assert_eq!(TokenGrant::new(Role::Admin).tenant(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    role: Role,
    tenant: Option<TenantId>,
    name: Option<Arc<str>>,
}

impl TokenGrant {
    /// `role` over every tenant's runs, unnamed.
    pub fn new(role: Role) -> Self {
        TokenGrant {
            role,
            tenant: None,
            name: None,
        }
    }

    /// Binds the grant to `tenant`: its holder sees only the tenant's runs, threads, events
    /// and memory (another tenant's are not found: 404), and the runs it starts are the
    /// tenant's.
    #[must_use]
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Names the grant (`"ci"`, `"acme-ops"`): what logs and audit records say of the caller.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The tenant, or `None` for every tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// The name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// The tokens a monitor takes, each with its [`TokenGrant`]: give them to
/// [`Monitor::tokens`](crate::Monitor::tokens). Compared in constant time.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::TenantId;
/// use agentgraph_monitor::{Monitor, Role, TokenGrant, Tokens};
///
/// let acme = TenantId::new("acme")?;
/// let tokens = Tokens::new()
///     .add("acme-read-7f3a", TokenGrant::new(Role::Reader).for_tenant(acme.clone()))
///     .add("acme-ops-91bc", TokenGrant::new(Role::Operator).for_tenant(acme).named("acme-ops"))
///     .add("root-c0ff", TokenGrant::new(Role::Admin).named("root"));
/// assert_eq!(tokens.len(), 3);
/// # let store = std::sync::Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let monitor = Monitor::new(store).tokens(tokens);
/// # drop(monitor);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(Arc<str>, TokenGrant)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The grants, never the tokens.
        f.debug_list()
            .entries(self.entries.iter().map(|(_, g)| g))
            .finish()
    }
}

impl Tokens {
    /// No tokens.
    pub fn new() -> Self {
        Tokens::default()
    }

    /// Adds `token`, granting `grant`.
    #[must_use]
    pub fn add(mut self, token: impl Into<String>, grant: TokenGrant) -> Self {
        self.entries.push((Arc::from(token.into()), grant));
        self
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn extend(&mut self, other: Tokens) {
        self.entries.extend(other.entries);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Arc<str>, TokenGrant)> {
        self.entries.iter()
    }

    /// The grant of `given`, comparing it with every token (in time that depends on the
    /// tokens' lengths, not on which one matched or where they differ).
    fn grant(&self, given: &[u8]) -> Option<&TokenGrant> {
        let mut found = None;
        for (token, grant) in &self.entries {
            if same(given, token.as_bytes()) {
                found = Some(grant);
            }
        }
        found
    }
}

/// Who made a request: the grant of the token it carried (an all-tenants admin, unnamed, on a
/// monitor without tokens). Every route behind the token check finds it in the request's
/// extensions, for handlers and layers of an application's own (an audit record of who did
/// what): `axum::Extension<Caller>`.
///
/// # Examples
///
/// ```
/// use agentgraph_monitor::{Caller, Role};
///
/// async fn who(axum::Extension(caller): axum::Extension<Caller>) -> String {
///     format!("{} as {}", caller.name().unwrap_or("anonymous"), caller.role())
/// }
/// # let _ = who;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    grant: TokenGrant,
    authenticated: bool,
}

impl Caller {
    /// The caller's role.
    pub fn role(&self) -> Role {
        self.grant.role
    }

    /// The caller's tenant, or `None` for a caller over every tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.grant.tenant.as_ref()
    }

    /// The name of the caller's token ([`TokenGrant::named`]).
    pub fn name(&self) -> Option<&str> {
        self.grant.name()
    }

    /// The grant of the caller's token.
    pub fn grant(&self) -> &TokenGrant {
        &self.grant
    }

    /// Whether the caller showed a token (`false` on a monitor without tokens).
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }
}

/// Who may call a route.
///
/// # Examples
///
/// ```
/// use agentgraph_monitor::{Access, Role};
/// let memory = agentgraph_monitor::routes()
///     .into_iter()
///     .find(|r| r.path == "/api/memory")
///     .unwrap();
/// assert_eq!(memory.access, Access::Tenant(Role::Reader));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Anyone: the page and the health routes (no data).
    Public,
    /// A token with at least this role; a tenant's token sees only that tenant's runs and
    /// memory (another's: 404).
    Tenant(Role),
    /// A token with at least this role over every tenant: what a route shows spans tenants
    /// (`/metrics`, the queue, the workers). A tenant's token gets 403.
    AllTenants(Role),
}

/// The caller's grant on a monitor without tokens.
fn anonymous() -> Caller {
    Caller {
        grant: TokenGrant::new(Role::Admin),
        authenticated: false,
    }
}

/// Checks the request's token against the route's `access`: 401 without a known token, 403
/// for a role (or a tenant-bound token) the route does not admit; otherwise the request goes
/// on with its [`Caller`] in its extensions. The token comes as `Authorization: Bearer
/// <token>`, or as `?token=<token>` on the event stream (a browser's `EventSource` cannot set
/// headers).
pub(crate) async fn require(
    State((state, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = if state.tokens.is_empty() {
        anonymous()
    } else {
        let from_header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let from_query = if req.uri().path().ends_with("/events") {
            query_token(req.uri())
        } else {
            None
        };
        let given = from_header.map(str::to_owned).or(from_query);
        match given.and_then(|g| state.tokens.grant(g.as_bytes()).cloned()) {
            Some(grant) => Caller {
                grant,
                authenticated: true,
            },
            None => return unauthorized(),
        }
    };
    let refused = match access {
        Access::Public => None,
        Access::Tenant(role) => (caller.role() < role).then(|| format!("needs the {role} role")),
        Access::AllTenants(role) => {
            if caller.role() < role {
                Some(format!("needs the {role} role"))
            } else if caller.tenant().is_some() {
                Some("spans every tenant: a tenant's token may not read it".to_owned())
            } else {
                None
            }
        }
    };
    if let Some(why) = refused {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token may not do that: the route {why}"),
        )
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn unauthorized() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this monitor needs a token: send `Authorization: Bearer <token>`",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The app's state as the caller sees it: the store through the caller's tenant
/// ([`TenantStore`]) for a tenant-bound token, whole otherwise. What every handler that reads
/// or writes runs or memory takes, so that none reads past the caller's tenant.
pub(crate) struct Scoped(pub(crate) AppState, pub(crate) Caller);

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(caller) = parts.extensions.get::<Caller>().cloned() else {
            // A route without the token check: a mistake in the router, refused whole.
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this route has no access check",
            ));
        };
        let mut scoped = state.clone();
        if let Some(tenant) = caller.tenant() {
            let view = TenantStore::new(state.inspector.store().clone(), tenant.clone());
            scoped.inspector = StoreInspector::new(view);
        }
        Ok(Scoped(scoped, caller))
    }
}

/// The `token` parameter of the query string, percent-decoded.
fn query_token(uri: &Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    Query::<TokenQuery>::try_from_uri(uri).ok()?.0.token
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && bool::from(given.ct_eq(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secreT", b"secret"));
        assert!(!same(b"secret2", b"secret"));
        assert!(!same(b"", b"secret"));
    }

    #[test]
    fn the_query_token_is_decoded() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            query_token(&uri("/e?after=3&token=a%2Bb")).as_deref(),
            Some("a+b")
        );
        assert_eq!(query_token(&uri("/e?after=3")), None);
        assert_eq!(query_token(&uri("/e")), None);
    }

    #[test]
    fn a_token_finds_its_grant() {
        let tokens = Tokens::new()
            .add("aaa", TokenGrant::new(Role::Reader).named("a"))
            .add("bbb", TokenGrant::new(Role::Admin).named("b"));
        assert_eq!(tokens.grant(b"bbb").and_then(TokenGrant::name), Some("b"));
        assert_eq!(
            tokens.grant(b"aaa").map(TokenGrant::role),
            Some(Role::Reader)
        );
        assert!(tokens.grant(b"ccc").is_none());
        assert!(!format!("{tokens:?}").contains("aaa"));
    }
}
