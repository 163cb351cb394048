//! The JSON API of long-term memory: `GET /api/memory` (the items under a namespace, filtered)
//! and `GET /api/memory/namespaces`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use agentgraph_engine::items::{Filter, Hit, ItemQuery, Namespace};

use crate::api::{ApiError, ApiQuery, MAX_LIMIT};
use crate::auth::Scoped;

/// Items listed when the request does not say.
const DEFAULT_LIMIT: usize = 20;

#[derive(Debug, Deserialize)]
pub(crate) struct MemoryQuery {
    /// The namespace prefix, segments joined by `/`.
    #[serde(default)]
    namespace: String,
    /// A [`Filter`] as JSON.
    filter: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Serialize)]
struct Items {
    items: Vec<Hit>,
}

#[derive(Serialize)]
struct Namespaces {
    namespaces: Vec<Namespace>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unsupported() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "this store keeps no memory items")
}

fn store_error(e: agentgraph_checkpoint::StoreError) -> ApiError {
    tracing::warn!(error = %e, "monitor: reading memory failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// `GET /api/memory?namespace=a/b&filter=JSON&limit=N&offset=N`: the items not expired under
/// the namespace, in namespace and key order, without their embeddings.
pub(crate) async fn items(
    Scoped(state, _): Scoped,
    ApiQuery(q): ApiQuery<MemoryQuery>,
) -> Result<Response, ApiError> {
    let store = state.inspector.store();
    if !store.supports_items() {
        return Err(unsupported());
    }
    let mut query = ItemQuery::new(Namespace::parse(&q.namespace))
        .limit(q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT))
        .offset(q.offset.unwrap_or(0))
        .at(now_ms());
    if let Some(filter) = &q.filter {
        let filter: Filter = serde_json::from_str(filter)
            .map_err(|e| ApiError::bad_request(format!("`filter` is not a filter: {e}")))?;
        query = query.filter(filter);
    }
    let mut items = store.search_items(&query).await.map_err(store_error)?;
    for hit in &mut items {
        hit.item.embedding = None;
    }
    Ok(Json(Items { items }).into_response())
}

/// `GET /api/memory/namespaces?namespace=a/b`: the namespaces under it that hold items.
pub(crate) async fn namespaces(
    Scoped(state, _): Scoped,
    ApiQuery(q): ApiQuery<MemoryQuery>,
) -> Result<Response, ApiError> {
    let store = state.inspector.store();
    if !store.supports_items() {
        return Err(unsupported());
    }
    let namespaces = store
        .list_namespaces(&Namespace::parse(&q.namespace), now_ms())
        .await
        .map_err(store_error)?;
    Ok(Json(Namespaces { namespaces }).into_response())
}
