//! The bearer token check in front of the API and `/metrics`.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::api::ApiError;
use crate::app::AppState;

/// Lets the request through when no token is set, or when it carries the token:
/// `Authorization: Bearer <token>` on every protected route, or `?token=<token>` on the event
/// stream (a browser's `EventSource` cannot set headers). Otherwise 401.
pub(crate) async fn require(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
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
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this monitor needs its token: send `Authorization: Bearer <token>`",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
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
}
