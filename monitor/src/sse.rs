//! `GET /api/runs/{run}/events`: a run's stored events as server-sent events, replayed, then
//! followed live by polling the store.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use agentgraph_checkpoint::RunStatus;
use agentgraph_engine::{Event, EventKind};

use crate::api::{self, ApiError, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::auth::Scoped;

/// Events read from the store per poll.
const PAGE: usize = 256;
/// How long a run in a final status must stay quiet before its stream ends, when its last
/// stored event is not a `run_finished` or `run_failed` (the engine stores `run_finished`
/// just after the checkpoint that marks the run completed; a crash between them would
/// otherwise keep the stream open forever).
const QUIET: Duration = Duration::from_secs(2);
/// The comment lines that keep an idle stream alive through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// Start after this sequence number (as `Last-Event-ID`, which wins when both are given).
    after: Option<String>,
}

/// Parses a sequence number from `Last-Event-ID` or `?after=`: a decimal `u64`, nothing else.
fn parse_seq(what: &str, text: &str) -> Result<u64, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "{what} must be an event sequence number (a decimal number below 2^64)"
        )));
    }
    text.parse().map_err(|_| {
        ApiError::bad_request(format!("{what} is too large for an event sequence number"))
    })
}

/// `GET /api/runs/{run}/events`.
pub(crate) async fn events(
    Scoped(state, _): Scoped,
    ApiPath(run): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = match headers.get("last-event-id") {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request("Last-Event-ID is not ASCII"))?;
            Some(parse_seq("Last-Event-ID", text)?)
        }
        None => match &q.after {
            Some(text) => Some(parse_seq("`after`", text)?),
            None => None,
        },
    };
    api::record(&state, &run).await?;
    let stream = follow(state, run, after);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// Where a stream stands.
struct Follow {
    state: AppState,
    run: String,
    /// The newest sequence number sent.
    after: Option<u64>,
    queue: VecDeque<SseEvent>,
    /// The last event sent ends a run (`run_finished`, `run_failed`).
    ended: bool,
    /// Since when the run has been in a final status with nothing new.
    quiet_since: Option<Instant>,
    /// When to read the store next (`None`: now).
    next_poll: Option<Instant>,
    /// The live tokens of this process's runs ([`LiveTokens`](crate::LiveTokens)).
    live: Option<broadcast::Receiver<Event>>,
    done: bool,
}

fn follow(
    state: AppState,
    run: String,
    after: Option<u64>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let live = state.live.as_ref().map(crate::live::LiveTokens::subscribe);
    let init = Follow {
        state,
        run,
        after,
        queue: VecDeque::new(),
        ended: false,
        quiet_since: None,
        next_poll: None,
        live,
        done: false,
    };
    stream::unfold(init, |mut f| async move {
        loop {
            if let Some(event) = f.queue.pop_front() {
                return Some((Ok(event), f));
            }
            if f.done {
                return None;
            }
            f.fill().await;
        }
    })
}

impl Follow {
    /// Queues what comes next: new events, an `end`, a `stream_error`, or (after a poll interval)
    /// nothing yet.
    async fn fill(&mut self) {
        if self.next_poll.is_none_or(|at| Instant::now() >= at) {
            if self.poll_store().await {
                return;
            }
            self.next_poll = Some(Instant::now() + self.state.poll);
        }
        let at = self.next_poll.unwrap_or_else(Instant::now);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = self.state.shutdown.cancelled() => self.end("shutdown"),
            event = next_live(&mut self.live) => {
                if let Some(event) = event {
                    self.push_live(&event);
                }
            }
        }
    }

    /// Reads the store: queues its new events, or ends the stream; `true` when it queued
    /// something (then it reads again at once).
    async fn poll_store(&mut self) -> bool {
        // The status first, then the events: a final status read before an empty page means
        // the run wrote nothing after it.
        let status = match self.state.inspector.run(&self.run).await {
            Ok(Some(record)) => Some(record.status),
            Ok(None) => None,
            Err(e) => {
                self.fail(&e.to_string());
                return true;
            }
        };
        let page = match self
            .state
            .inspector
            .events(&self.run, self.after, PAGE)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                self.fail(&e.to_string());
                return true;
            }
        };
        if !page.is_empty() {
            self.quiet_since = None;
            for event in page {
                self.push(&event);
            }
            return true;
        }
        let Some(status) = status else {
            // Deleted while followed.
            self.end("deleted");
            return true;
        };
        if is_final(status) {
            if !self.ended && self.quiet_since.is_none() {
                // A client that starts past the last event (or saw it before reconnecting)
                // ends at once too when that event ends the run.
                self.ended = self.last_stored_ends_run().await;
            }
            let now = Instant::now();
            let since = *self.quiet_since.get_or_insert(now);
            if self.ended || now - since >= QUIET {
                self.end(status.as_str());
                return true;
            }
        } else {
            self.quiet_since = None;
        }
        false
    }

    /// Whether the newest stored event is a `run_finished` or `run_failed` that this stream
    /// is past.
    async fn last_stored_ends_run(&self) -> bool {
        let Ok(Some(last)) = self.state.inspector.last_event(&self.run).await else {
            return false;
        };
        if self.after.is_none_or(|after| after < last) {
            return false;
        }
        match self
            .state
            .inspector
            .events(&self.run, last.checked_sub(1), 1)
            .await
        {
            Ok(page) => page.first().is_some_and(|e| ends_run(&e.kind)),
            Err(_) => false,
        }
    }

    fn push(&mut self, event: &Event) {
        self.after = Some(event.seq);
        self.ended = ends_run(&event.kind);
        let value = match serde_json::to_value(event) {
            Ok(value) => value,
            Err(e) => return self.fail(&format!("event {} does not serialize: {e}", event.seq)),
        };
        let name = kind_name(&value);
        self.queue.push_back(
            SseEvent::default()
                .id(event.seq.to_string())
                .event(name)
                .data(value.to_string()),
        );
    }

    /// Queues a live token of this run that the store has not given yet, as a `live_token`
    /// event without an id (`Last-Event-ID` stays the last stored event's).
    fn push_live(&mut self, event: &Event) {
        if *event.run_id != *self.run || self.after.is_some_and(|after| event.seq <= after) {
            return;
        }
        if let Ok(value) = serde_json::to_value(event) {
            self.queue.push_back(
                SseEvent::default()
                    .event("live_token")
                    .data(value.to_string()),
            );
        }
    }

    /// Ends the stream with an `end` event saying why: the run's status, `deleted` or
    /// `shutdown`.
    fn end(&mut self, why: &str) {
        let data = serde_json::json!({ "status": why }).to_string();
        self.queue
            .push_back(SseEvent::default().event("end").data(data));
        self.done = true;
    }

    /// Ends the stream with a `stream_error` event (`{"error": "..."}`; not `error`, which `EventSource` uses for its own connection errors).
    fn fail(&mut self, message: &str) {
        tracing::warn!(run = %self.run, error = message, "monitor: an event stream failed");
        let data = serde_json::json!({ "error": message }).to_string();
        self.queue
            .push_back(SseEvent::default().event("stream_error").data(data));
        self.done = true;
    }
}

/// The next live token, skipping what a lagging receiver lost (the store has it); pending
/// for ever without a feed.
async fn next_live(live: &mut Option<broadcast::Receiver<Event>>) -> Option<Event> {
    let Some(rx) = live else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(event) => return Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                *live = None;
                return None;
            }
        }
    }
}

fn ends_run(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::RunFinished { .. } | EventKind::RunFailed { .. }
    )
}

/// Statuses in which a stream ends once every event is sent. An interrupted run keeps its
/// stream open: it waits for an answer, and its resume is usually soon and worth watching. A
/// run stopped for its budget waits for someone to raise it, like a failed one.
fn is_final(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled | RunStatus::BudgetExceeded
    )
}

/// The event's `type` tag, read from its JSON (`{"kind":{"type":"node_started",...}}`).
fn kind_name(event: &serde_json::Value) -> &str {
    // SSE field values end at a line break; the tag is snake_case, but be sure.
    event["kind"]["type"]
        .as_str()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or("event")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_decimal_u64s() {
        assert_eq!(parse_seq("x", "0").unwrap(), 0);
        assert_eq!(parse_seq("x", " 42 ").unwrap(), 42);
        assert_eq!(parse_seq("x", &u64::MAX.to_string()).unwrap(), u64::MAX);
        for bad in [
            "",
            "-1",
            "+1",
            "abc",
            "1.5",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert!(parse_seq("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kind_names_come_from_the_tag() {
        let event = serde_json::json!({ "seq": 1, "kind": { "type": "node_started" } });
        assert_eq!(kind_name(&event), "node_started");
        assert_eq!(
            kind_name(&serde_json::json!({ "kind": { "type": "a\nb" } })),
            "event"
        );
        assert_eq!(kind_name(&serde_json::json!(null)), "event");
    }
}
