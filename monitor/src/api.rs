//! The JSON API: runs, a run, its checkpoints, its stopped step's pending tasks, its state at a
//! step, its graph.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use agentgraph_checkpoint::{MAX_RUN_ID_LEN, RunFilter, RunRecord, RunStatus};
use agentgraph_engine::{Error as EngineError, Interrupt, PendingTask};

use crate::app::AppState;
use crate::auth::Scoped;

/// Runs listed per page when the request does not say.
const DEFAULT_LIMIT: usize = 100;
/// The most runs one page lists.
pub(crate) const MAX_LIMIT: usize = 1000;

/// An error answer: a status and a message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// A query string, refused as a JSON [`ApiError`] (400) when it does not parse.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Path parameters, refused as a JSON [`ApiError`] (400) when they do not decode.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::RunNotFound(_) | EngineError::CheckpointNotFound { .. } => {
                ApiError::not_found(e.to_string())
            }
            EngineError::NoStateViews(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            _ => {
                tracing::warn!(error = %e, "monitor: reading the store failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (
            self.status,
            Json(Body {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Checks a run id taken from a request: 1 to 512 bytes, no control characters (so `%00` or a
/// newline in a path never reaches the store or a log line).
pub(crate) fn check_run(run: &str) -> Result<(), ApiError> {
    if agentgraph_checkpoint::check_run_id(run).is_err() {
        return Err(ApiError::bad_request(format!(
            "a run id has 1 to {MAX_RUN_ID_LEN} bytes, this one has {}",
            run.len()
        )));
    }
    if run.chars().any(char::is_control) {
        return Err(ApiError::bad_request("a run id has no control characters"));
    }
    Ok(())
}

/// The record of `run`, or 404.
pub(crate) async fn record(state: &AppState, run: &str) -> Result<RunRecord, ApiError> {
    check_run(run)?;
    state
        .inspector
        .run(run)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{run}` in the store")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunsQuery {
    after: Option<String>,
    limit: Option<usize>,
    /// Only the runs of this user.
    user: Option<String>,
    /// Only the runs with these tags (comma-separated: every one).
    tag: Option<String>,
    /// Only the runs with this label, `key=value`.
    label: Option<String>,
    /// Only the runs whose title contains this, ignoring case.
    title: Option<String>,
}

/// The longest filter value a query may give.
const MAX_FILTER_LEN: usize = 1024;

impl RunsQuery {
    /// The filter the query asks for (empty without `user`, `tag`, `label` or `title`).
    fn filter(&self) -> Result<RunFilter, ApiError> {
        let mut filter = RunFilter::new();
        for (name, value) in [
            ("user", &self.user),
            ("tag", &self.tag),
            ("label", &self.label),
            ("title", &self.title),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_FILTER_LEN) {
                return Err(ApiError::bad_request(format!(
                    "`{name}` has more than {MAX_FILTER_LEN} bytes"
                )));
            }
        }
        filter.user.clone_from(&self.user);
        if let Some(tags) = &self.tag {
            filter.tags = tags
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(label) = &self.label {
            let Some((key, value)) = label.split_once('=') else {
                return Err(ApiError::bad_request(format!(
                    "`label` is `key=value`, not `{label}`"
                )));
            };
            filter.labels.insert(key.to_owned(), value.to_owned());
        }
        filter.title_contains.clone_from(&self.title);
        Ok(filter)
    }
}

#[derive(Debug, Serialize)]
struct RunsPage {
    runs: Vec<RunRecord>,
    /// The `after` of the next page, when this one is full.
    next: Option<String>,
}

/// `GET /api/runs?after=&limit=&user=&tag=&label=&title=`: a page of the runs (those the
/// filters take: `tag=a,b` is both tags, `label=key=value`).
pub(crate) async fn runs(
    Scoped(state, _): Scoped,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Response, ApiError> {
    if let Some(after) = &q.after {
        check_run(after)?;
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = q.filter()?;
    let page = if filter.is_empty() {
        state.inspector.runs_page(q.after.as_deref(), limit).await?
    } else {
        state
            .inspector
            .runs_matching(&filter, q.after.as_deref(), limit)
            .await?
    };
    let next = (page.len() == limit)
        .then(|| page.last().map(|r| r.run_id.clone()))
        .flatten();
    Ok(Json(RunsPage { runs: page, next }).into_response())
}

#[derive(Debug, Serialize)]
struct RunDetail {
    #[serde(flatten)]
    run: RunRecord,
    /// The interrupts the run waits on.
    interrupts: Vec<Interrupt>,
    /// The sequence number of its newest stored event.
    last_event: Option<u64>,
    /// The nodes of the step after its newest checkpoint that will run (running now, if the
    /// run is): not those that finished.
    next: Vec<String>,
    /// The nodes of that step whose tasks finished: their writes are saved, not committed.
    finished: Vec<String>,
    /// What each task of that step that began came to (empty unless the run stopped, or is
    /// running, in the middle of it): as `/api/runs/{run}/pending` lists them.
    pending: Vec<PendingTask>,
    /// How many checkpoints it has.
    checkpoints: usize,
    /// How many invocations it has had: a thread's turns (its newest checkpoint's
    /// invocation, which pruning keeps); 1 for a run that is not a thread, `null` without a
    /// checkpoint.
    invocations: Option<u32>,
    /// What it used, as stored with its newest checkpoint (steps, tokens, cost, tool calls,
    /// wall time), and the budget that stopped it: `null` without a checkpoint or for a
    /// checkpoint written before usage was stored.
    usage: Option<agentgraph_engine::RunUsage>,
}

/// `GET /api/runs/{run}`.
pub(crate) async fn run(
    Scoped(state, _): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    let record = record(&state, &run).await?;
    let interrupts = if record.status == RunStatus::Interrupted {
        state.inspector.interrupts(&run).await?
    } else {
        Vec::new()
    };
    let last_event = state.inspector.last_event(&run).await?;
    let checkpoints = state.inspector.checkpoints(&run).await?;
    let (next, finished) = checkpoints
        .last()
        .map(|c| (c.next.clone(), c.finished.clone()))
        .unwrap_or_default();
    let invocations = checkpoints.last().map(|c| c.invocation);
    let usage = if checkpoints.is_empty() {
        None
    } else {
        state.inspector.usage(&run).await?
    };
    let pending = if record.status == RunStatus::Completed || checkpoints.is_empty() {
        Vec::new()
    } else {
        state.inspector.pending(&run).await?
    };
    Ok(Json(RunDetail {
        run: record,
        interrupts,
        last_event,
        next,
        finished,
        pending,
        checkpoints: checkpoints.len(),
        invocations,
        usage,
    })
    .into_response())
}

/// `GET /api/runs/{run}/checkpoints`.
pub(crate) async fn checkpoints(
    Scoped(state, _): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    record(&state, &run).await?;
    Ok(Json(state.inspector.checkpoints(&run).await?).into_response())
}

/// `GET /api/runs/{run}/pending`: what the tasks of the step after the run's newest
/// checkpoint came to (finished with a saved write, retrying, failed, interrupted).
pub(crate) async fn pending(
    Scoped(state, _): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    let record = record(&state, &run).await?;
    if record.last_step.is_none() {
        return Ok(Json(Vec::<PendingTask>::new()).into_response());
    }
    Ok(Json(state.inspector.pending(&run).await?).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct StateQuery {
    step: Option<u64>,
}

/// `GET /api/runs/{run}/state?step=N`.
pub(crate) async fn state_at(
    Scoped(state, _): Scoped,
    ApiPath(run): ApiPath<String>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> Result<Response, ApiError> {
    record(&state, &run).await?;
    Ok(Json(state.inspector.state_json(&run, q.step).await?).into_response())
}

/// `GET /api/runs/{run}/graph`.
pub(crate) async fn graph(
    Scoped(state, _): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    record(&state, &run).await?;
    match state.inspector.graph(&run).await? {
        Some(graph) => Ok(Json(graph).into_response()),
        None => Err(no_graph(&run)),
    }
}

/// `GET /api/runs/{run}/graph.dot`.
pub(crate) async fn graph_dot(
    Scoped(state, _): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    record(&state, &run).await?;
    match state.inspector.graph(&run).await? {
        Some(graph) => Ok((
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            graph.to_dot(),
        )
            .into_response()),
        None => Err(no_graph(&run)),
    }
}

fn no_graph(run: &str) -> ApiError {
    ApiError::not_found(format!(
        "run `{run}` stored no graph: run it with `RunConfig::monitored()`"
    ))
}

/// A run's error as an answer: a busy run is 409 (it is running: stop it first).
fn busy_or(e: EngineError) -> ApiError {
    if e.is_busy() {
        ApiError::new(StatusCode::CONFLICT, e.to_string())
    } else {
        ApiError::from(e)
    }
}

/// `DELETE /api/runs/{run}`: deletes the run and everything stored for it, with its subgraphs'
/// runs (an admin's). 409 while it runs.
pub(crate) async fn delete_run(
    Scoped(state, caller): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    record(&state, &run).await?;
    let inspector = state
        .inspector
        .clone()
        .caller(crate::control::audit_name(&caller));
    inspector.delete(&run).await.map_err(busy_or)?;
    tracing::info!(run = %run, caller = caller.name().unwrap_or("-"), "monitor: run deleted");
    Ok(Json(serde_json::json!({ "run_id": run, "deleted": true })).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PruneQuery {
    /// How many of the newest checkpoints to keep (at least 1; 1 when left out).
    keep: Option<usize>,
}

/// `POST /api/runs/{run}/prune?keep=N`: keeps the run's newest `N` checkpoints and deletes the
/// older ones (an admin's). 409 while it runs.
pub(crate) async fn prune_run(
    Scoped(state, caller): Scoped,
    ApiPath(run): ApiPath<String>,
    ApiQuery(q): ApiQuery<PruneQuery>,
) -> Result<Response, ApiError> {
    record(&state, &run).await?;
    let keep = q.keep.unwrap_or(1).max(1);
    let inspector = state
        .inspector
        .clone()
        .caller(crate::control::audit_name(&caller));
    let deleted = inspector.prune(&run, keep).await.map_err(busy_or)?;
    tracing::info!(run = %run, keep, deleted, caller = caller.name().unwrap_or("-"), "monitor: run pruned");
    Ok(Json(serde_json::json!({ "run_id": run, "deleted": deleted })).into_response())
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &state.prometheus else {
        return Err(ApiError::not_found(
            "this monitor serves no metrics (`Monitor::metrics(false)`)",
        ));
    };
    handle.run_upkeep();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}

/// Anything else: 404.
pub(crate) async fn fallback() -> ApiError {
    ApiError::not_found("no such page")
}
