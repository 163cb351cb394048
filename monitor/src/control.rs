//! The control API ([`Monitor::control`](crate::Monitor::control)): start runs of registered
//! graphs, give threads their next input, resume and cancel runs, in this process; and the
//! health routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use agentgraph_engine::{
    CancelHandle, DynResume, DynRun, Error as RunError, EventKind, GraphRegistry, RunConfig,
    StoreError,
};

use crate::api::{ApiError, ApiPath, check_run};
use crate::app::AppState;
use crate::auth::Scoped;

/// The graphs the control API runs, the configuration its runs start from, and the runs it
/// started that have not ended.
#[derive(Clone, Debug)]
pub(crate) struct Control {
    pub(crate) registry: GraphRegistry,
    pub(crate) config: RunConfig,
    active: Arc<Mutex<HashMap<String, CancelHandle>>>,
}

impl Control {
    pub(crate) fn new(registry: GraphRegistry, config: RunConfig) -> Self {
        Control {
            registry,
            config,
            active: Arc::default(),
        }
    }

    fn active(&self) -> MutexGuard<'_, HashMap<String, CancelHandle>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn control(state: &AppState) -> Result<&Control, ApiError> {
    state
        .control
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this monitor has no control API (Monitor::control)"))
}

/// A registered graph, as `GET /api/graphs` lists it.
#[derive(Serialize)]
struct GraphEntry<'a> {
    name: &'a str,
    /// 32 hex digits, as run records show it.
    fingerprint: String,
}

/// `GET /api/graphs`: the graphs this monitor runs.
pub(crate) async fn graphs(State(state): State<AppState>) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let list: Vec<GraphEntry<'_>> = control
        .registry
        .iter()
        .map(|(name, graph)| GraphEntry {
            name,
            fingerprint: format!("{:032x}", graph.fingerprint().as_u128()),
        })
        .collect();
    Ok(Json(list).into_response())
}

/// The body of `POST /api/graphs/{graph}/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    /// The state's JSON (fields left out keep their defaults); a thread's input is an
    /// update's JSON.
    #[serde(default = "empty_object")]
    input: Value,
    /// The run's id (a new UUID when left out); ignored with `thread`.
    #[serde(default)]
    run_id: Option<String>,
    /// Gives this thread its next input instead of starting a run.
    #[serde(default)]
    thread: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// What the control API answers when it started or resumed a run.
#[derive(Serialize)]
struct Started<'a> {
    run_id: &'a str,
    graph: &'a str,
    /// Where to follow it.
    url: String,
    /// Submitted to the queue of workers (left out for a run in this process).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    queued: bool,
}

/// 202, with where to follow the run (`Location` too).
fn accepted(run_id: &str, graph: &str, queued: bool) -> Response {
    let url = format!("/api/runs/{run_id}");
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&url) {
        headers.insert(header::LOCATION, location);
    }
    let body = Started {
        run_id,
        graph,
        url,
        queued,
    };
    (StatusCode::ACCEPTED, headers, Json(body)).into_response()
}

/// `POST /api/graphs/{graph}/runs`: starts a run of a registered graph, or gives a thread its
/// next input, in this process. Answers 202 once the run has started (its first event), with
/// its id; an error that stops it before (a busy thread, one waiting to be resumed, bad
/// input) is the answer instead. With a queue of workers, queues the job instead, as the
/// caller's tenant's and naming the caller ([`audit_name`]).
pub(crate) async fn start(
    State(all): State<AppState>,
    Scoped(state, caller): Scoped,
    ApiPath(graph_name): ApiPath<String>,
    body: Result<Json<StartBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    for id in [&body.run_id, &body.thread].into_iter().flatten() {
        check_run(id)?;
    }
    #[cfg(feature = "postgres")]
    if let Some(queue) = &state.queue {
        if let (Some(_), Some(thread)) = (caller.tenant(), &body.thread) {
            queued::thread_is_theirs(&all, &state, thread).await?;
        }
        return queued::start(&queued::for_caller(queue, &caller), &graph_name, body).await;
    }
    let _ = all;
    let control = control(&state)?;
    let graph = control.registry.get(&graph_name).ok_or_else(|| {
        ApiError::not_found(format!("no graph `{graph_name}` is registered here"))
    })?;
    let config = with_tenant(control.config.clone(), &caller);
    let run = match body.thread {
        Some(thread) => graph.invoke_thread(thread, body.input, config),
        None => {
            let config = match body.run_id {
                Some(id) => config.run_id(id),
                None => config,
            };
            graph.start(body.input, config)
        }
    }
    .map_err(run_error)?;
    launched(control, run, &graph_name).await
}

/// The body of `POST /api/runs/{run}/resume`: a [`DynResume`] (`value`, `answers`, `update`).
/// `POST /api/runs/{run}/resume`: resumes a run of a registered graph (the graph its record
/// names), with answers to its interrupts and an update of its state.
pub(crate) async fn resume(
    Scoped(state, caller): Scoped,
    ApiPath(run): ApiPath<String>,
    body: Result<Json<DynResume>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    check_run(&run)?;
    let Json(resume) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    #[cfg(feature = "postgres")]
    if let Some(queue) = &state.queue {
        owned(&state, &caller, &run).await?;
        return queued::resume(&queued::for_caller(queue, &caller), &run, resume).await;
    }
    let control = control(&state)?;
    if control.active().contains_key(&run) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run `{run}` is running; resume it once it has stopped"),
        ));
    }
    let record = state
        .inspector
        .store()
        .get_run(&run)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no run `{run}` in this store")))?;
    let Some(graph_name) = record.graph else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "run `{run}` names no graph (its graph was built without `GraphBuilder::named`), \
                 so the control API cannot tell which to resume it with"
            ),
        ));
    };
    let graph = control.registry.get(&graph_name).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("run `{run}` is a run of graph `{graph_name}`, which is not registered here"),
        )
    })?;
    let run = graph
        .resume(run, resume, with_tenant(control.config.clone(), &caller))
        .map_err(run_error)?;
    launched(control, run, &graph_name).await
}

/// `POST /api/runs/{run}/cancel`: cancels a run this monitor started that is running. The
/// run stops at its next step boundary, checkpointed and resumable; its audit trail's
/// `cancelled` entry names the caller (see [`audit_name`]).
pub(crate) async fn cancel(
    Scoped(state, caller): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    check_run(&run)?;
    #[cfg(feature = "postgres")]
    if let Some(queue) = &state.queue {
        // A tenant's job queued and not run yet has no run in the store: the queue, which
        // knows the jobs' tenants, says whose it is.
        return queued::cancel(&state, &caller, &queued::for_caller(queue, &caller), &run).await;
    }
    owned(&state, &caller, &run).await?;
    let control = control(&state)?;
    let Some(handle) = control.active().get(&run).cloned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run `{run}` is not running in this process"),
        ));
    };
    handle.cancel_as(audit_name(&caller));
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run_id": run, "cancelled": true })),
    )
        .into_response())
}

/// Who a control request comes from, as the audit trails of the runs it starts and resumes
/// record it: the name of its token's grant ([`TokenGrant::named`](crate::TokenGrant::named)),
/// else `token` when it carried a token, else `anonymous` (a monitor without tokens).
pub(crate) fn audit_name(caller: &crate::Caller) -> String {
    match caller.name() {
        Some(name) => name.to_owned(),
        None if caller.authenticated() => "token".to_owned(),
        None => "anonymous".to_owned(),
    }
}

/// `config` for a run started or resumed by `caller`: a tenant's token runs the tenant's runs
/// only (the engine refuses another's as not found), and the run's audit trail records who
/// (see [`audit_name`]).
fn with_tenant(config: RunConfig, caller: &crate::Caller) -> RunConfig {
    let config = config.caller(audit_name(caller));
    match caller.tenant() {
        Some(tenant) => config.tenant(tenant.clone()),
        None => config,
    }
}

/// 404 unless `run` is a run the caller's tenant may see (any run for a caller over every
/// tenant).
async fn owned(state: &AppState, caller: &crate::Caller, run: &str) -> Result<(), ApiError> {
    if caller.tenant().is_none() {
        return Ok(());
    }
    crate::api::record(state, run).await.map(|_| ())
}

/// Waits until `run` has started (its first event) or ended, whichever comes first; keeps a
/// started run's cancel handle until it ends.
async fn launched(control: &Control, run: DynRun, graph: &str) -> Result<Response, ApiError> {
    let (run_id, mut events, cancel, outcome) = run.into_parts();
    let mut outcome = tokio::spawn(outcome);
    // A fresh run says `RunStarted` before it takes its id in the store (where a duplicate id
    // or a busy run stops it, saying `RunFailed`): it has started at an event other than
    // those two.
    let started = async {
        while let Some(event) = events.next().await {
            let opening = matches!(
                &event,
                Ok(e) if matches!(e.kind, EventKind::RunStarted { .. } | EventKind::RunFailed { .. })
            );
            if !opening {
                return;
            }
        }
        // The stream ended: the run did too; its outcome says how.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        biased;
        ended = &mut outcome => {
            match ended {
                Ok(Err(e)) => return Err(run_error(e)),
                Err(e) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the run's task ended: {e}"))),
                // It ran to its end already.
                Ok(Ok(_)) => {}
            }
        }
        () = started => {
            control.active().insert(run_id.clone(), cancel);
            let (active, id) = (control.active.clone(), run_id.clone());
            tokio::spawn(async move {
                if let Ok(Err(e)) = outcome.await {
                    tracing::info!(run = %id, error = %e, "monitor: a run it started stopped");
                }
                active.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            });
        }
    }
    Ok(accepted(&run_id, graph, false))
}

/// The status a run's error answers with: the caller's mistakes are 4xx, the rest 500.
fn run_error(e: RunError) -> ApiError {
    let status = match &e {
        RunError::Json { .. }
        | RunError::UnknownInterrupt { .. }
        | RunError::AmbiguousResumeValue { .. }
        | RunError::NoInterruptToAnswer { .. }
        | RunError::AnswerEncode { .. }
        | RunError::ReservedRunId(_) => StatusCode::BAD_REQUEST,
        RunError::Store(StoreError::InvalidRunId { .. }) => StatusCode::BAD_REQUEST,
        e if e.is_busy() => StatusCode::CONFLICT,
        RunError::ThreadNotReady { .. }
        | RunError::GraphChanged { .. }
        | RunError::RunExists(_)
        | RunError::MissingNode { .. } => StatusCode::CONFLICT,
        RunError::RunNotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// `GET /api/queue`: the depth of the queue of workers (feature `postgres`): for a tenant's
/// token, the tenant's jobs only, with the tenant's cap on its jobs in flight when it has one
/// (`limit`: `max_in_flight`, `in_flight`, `queued`; `null` without).
pub(crate) async fn queue(Scoped(state, caller): Scoped) -> Result<Response, ApiError> {
    #[cfg(feature = "postgres")]
    if let Some(queue) = &state.queue {
        let queue = queued::for_caller(queue, &caller);
        let depth = queue.depth().await.map_err(store_error)?;
        let body = match caller.tenant() {
            Some(tenant) => {
                let limit = queue.tenant_limit(tenant).await.map_err(store_error)?;
                serde_json::json!({ "depth": depth, "limit": limit })
            }
            None => serde_json::json!({ "depth": depth }),
        };
        return Ok(Json(body).into_response());
    }
    let _ = (state, caller);
    Err(ApiError::not_found(
        "this monitor has no queue of workers (Monitor::queue)",
    ))
}

/// `GET /api/workers`: the workers of the queue (feature `postgres`), as they last told the
/// database.
pub(crate) async fn workers(State(state): State<AppState>) -> Result<Response, ApiError> {
    #[cfg(feature = "postgres")]
    if let Some(queue) = &state.queue {
        let workers = queue.workers().await.map_err(store_error)?;
        return Ok(Json(workers).into_response());
    }
    let _ = state;
    Err(ApiError::not_found(
        "this monitor has no queue of workers (Monitor::queue)",
    ))
}

/// The query of `GET /api/queue/jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobsQuery {
    /// Only the jobs with this status.
    status: Option<String>,
    /// The page after this job id.
    after: Option<i64>,
    /// At most this many (1 to 1000; 100 when left out).
    limit: Option<u32>,
}

/// The statuses a job may have.
const JOB_STATUSES: [&str; 6] = [
    "queued",
    "running",
    "done",
    "interrupted",
    "failed",
    "cancelled",
];

/// `GET /api/queue/jobs?status=&after=&limit=`: a page of the jobs of the queue of workers
/// (feature `postgres`), oldest first: for a tenant's token, the tenant's only.
pub(crate) async fn queue_jobs(
    Scoped(state, caller): Scoped,
    crate::api::ApiQuery(q): crate::api::ApiQuery<JobsQuery>,
) -> Result<Response, ApiError> {
    if let Some(status) = &q.status
        && !JOB_STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "`status` is one of {}",
            JOB_STATUSES.join(", ")
        )));
    }
    #[cfg(feature = "postgres")]
    if let Some(queue) = &state.queue {
        let limit = q
            .limit
            .unwrap_or(100)
            .clamp(1, crate::api::MAX_LIMIT as u32);
        let jobs = queued::for_caller(queue, &caller)
            .jobs(q.status.as_deref(), q.after.unwrap_or(0).max(0), limit)
            .await
            .map_err(store_error)?;
        let next = (jobs.len() == limit as usize)
            .then(|| jobs.last().map(|j| j.id))
            .flatten();
        return Ok(Json(serde_json::json!({ "jobs": jobs, "next": next })).into_response());
    }
    let _ = (state, caller, q.after, q.limit);
    Err(ApiError::not_found(
        "this monitor has no queue of workers (Monitor::queue)",
    ))
}

/// `GET /api/queue/jobs/{run}`: the newest job of a run (or thread) in the queue of workers
/// (feature `postgres`); 404 when it has none (for a tenant's token: none of the tenant's).
pub(crate) async fn queue_job(
    Scoped(state, caller): Scoped,
    ApiPath(run): ApiPath<String>,
) -> Result<Response, ApiError> {
    check_run(&run)?;
    #[cfg(feature = "postgres")]
    if let Some(queue) = &state.queue {
        return match queued::for_caller(queue, &caller)
            .job(&run)
            .await
            .map_err(store_error)?
        {
            Some(job) => Ok(Json(job).into_response()),
            None => Err(ApiError::not_found(format!(
                "run `{run}` has no job in the queue"
            ))),
        };
    }
    let _ = (state, caller);
    Err(ApiError::not_found(
        "this monitor has no queue of workers (Monitor::queue)",
    ))
}

/// The control API over a PostgreSQL queue: jobs submitted, answered and cancelled in the
/// database, for the workers.
#[cfg(feature = "postgres")]
mod queued {
    use super::*;
    use agentgraph_postgres::worker::{NotQueued, Queue};

    fn queue_error(e: StoreError) -> ApiError {
        match &e {
            StoreError::Backend(source) if source.downcast_ref::<NotQueued>().is_some() => {
                ApiError::not_found(e.to_string())
            }
            StoreError::NotInTenant { .. } => ApiError::not_found(e.to_string()),
            _ => store_error(e),
        }
    }

    /// The queue as `caller` acts on it: the caller's tenant's jobs only (every job for a
    /// caller over every tenant), and the jobs it queues naming the caller ([`audit_name`]).
    pub(super) fn for_caller(queue: &Queue, caller: &crate::Caller) -> Queue {
        let queue = queue.clone().caller(audit_name(caller));
        match caller.tenant() {
            Some(tenant) => queue.tenant(tenant.clone()),
            None => queue,
        }
    }

    /// 404 when `thread` is a run in the store that the tenant's view of it (`scoped`) does
    /// not show: another tenant's (or no tenant's). A thread not in the store yet is anyone's
    /// to start (the queue refuses one whose jobs are another tenant's).
    pub(super) async fn thread_is_theirs(
        all: &AppState,
        scoped: &AppState,
        thread: &str,
    ) -> Result<(), ApiError> {
        let mine = scoped
            .inspector
            .store()
            .get_run(thread)
            .await
            .map_err(store_error)?;
        if mine.is_none()
            && all
                .inspector
                .store()
                .get_run(thread)
                .await
                .map_err(store_error)?
                .is_some()
        {
            return Err(ApiError::not_found(format!(
                "no run `{thread}` in the store"
            )));
        }
        Ok(())
    }

    pub(super) async fn start(
        queue: &Queue,
        graph: &str,
        body: StartBody,
    ) -> Result<Response, ApiError> {
        if let Some(thread) = body.thread {
            queue
                .submit_thread(graph, &thread, body.input)
                .await
                .map_err(queue_error)?;
            return Ok(accepted(&thread, graph, true));
        }
        let run = match body.run_id {
            Some(run) => {
                let queued = queue
                    .submit_with_id(graph, &run, body.input)
                    .await
                    .map_err(queue_error)?;
                if !queued {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("run `{run}` was submitted already"),
                    ));
                }
                run
            }
            None => queue.submit(graph, body.input).await.map_err(queue_error)?,
        };
        Ok(accepted(&run, graph, true))
    }

    pub(super) async fn resume(
        queue: &Queue,
        run: &str,
        resume: DynResume,
    ) -> Result<Response, ApiError> {
        queue.resume(run, resume).await.map_err(queue_error)?;
        let graph = queue
            .job(run)
            .await
            .map_err(queue_error)?
            .map(|job| job.graph)
            .unwrap_or_default();
        Ok(accepted(run, &graph, true))
    }

    pub(super) async fn cancel(
        state: &AppState,
        caller: &crate::Caller,
        queue: &Queue,
        run: &str,
    ) -> Result<Response, ApiError> {
        if queue.cancel(run).await.map_err(queue_error)? {
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "run_id": run, "cancelled": true })),
            )
                .into_response())
        } else if caller.tenant().is_some()
            && queue.job(run).await.map_err(queue_error)?.is_none()
            && state
                .inspector
                .store()
                .get_run(run)
                .await
                .map_err(store_error)?
                .is_none()
        {
            // Neither a job nor a run of the tenant's.
            Err(ApiError::not_found(format!("no run `{run}` in the store")))
        } else {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("run `{run}` has no job that is queued or running"),
            ))
        }
    }
}

/// `GET /healthz`: the server answers.
pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
}

/// `GET /readyz`: the store answers a read; 503 with its error otherwise.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.inspector.store().list_runs(None, 1).await {
        Ok(_) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// The API's OpenAPI 3.1 document (`monitor/openapi.json`).
pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /openapi.json`: the API's OpenAPI document.
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
