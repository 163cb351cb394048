//! Following a run through the monitor server of the program that runs it: its SSE stream
//! `GET {URL}/api/runs/{run}/events`, one message per event (`id: <seq>`, `event: <type>`,
//! `data: <Event JSON>`).
//!
//! When the connection drops, the follower connects again with `Last-Event-ID` set to the
//! last event it printed, so that the server sends what came after: nothing is missed, and an
//! event sent twice is printed once (events are numbered without gaps, so anything at or
//! below the last number printed is a repeat). It stops at the run's last event (finished,
//! failed, interrupted), or when the server ends the stream (its `end` message, sent when
//! the run has ended or was deleted, or the end of the response); an `end` with status
//! `shutdown` (the server is stopping) counts as a drop. A `stream_error` message (the server
//! could not read the store) is an error.

use std::time::Duration;

use agentgraph_engine::Event;
use anyhow::{Context as _, Result, anyhow, bail};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::{StatusCode, Url, header};

use super::{Printer, is_last, last_seq};
use crate::commands::Ctx;

/// Connection attempts in a row, without an event between them, before giving up.
const ATTEMPTS: u32 = 8;
/// The wait before the first reconnection; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// The SSE address of `run`'s events on the monitor at `base`.
fn events_url(base: &str, run: &str) -> Result<Url> {
    let mut url = Url::parse(base).with_context(|| {
        format!("`{base}` is not a monitor URL (give one like http://127.0.0.1:7070)")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("`{base}` is not an http or https URL");
    }
    url.path_segments_mut()
        .map_err(|()| anyhow!("`{base}` cannot be a monitor URL"))?
        .pop_if_empty()
        .extend(["api", "runs", run, "events"]);
    Ok(url)
}

/// How one connection ended.
enum End {
    /// The run's last event was printed, or the server ended the stream.
    Done,
    /// The connection failed or dropped.
    Dropped(anyhow::Error),
}

pub(super) async fn follow(
    ctx: &mut Ctx,
    base: &str,
    run: &str,
    token: Option<&str>,
    after: Option<u64>,
) -> Result<()> {
    let url = events_url(base, run)?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("cannot make an HTTP client")?;
    let mut last = after;
    let mut printer = Printer::default();
    let mut failures = 0;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let before = last;
        let end = connect(ctx, &mut printer, &client, &url, run, token, &mut last).await;
        printer.close(&mut ctx.out)?;
        match end? {
            End::Done => return Ok(()),
            End::Dropped(error) => {
                if last != before {
                    failures = 0;
                    backoff = FIRST_BACKOFF;
                }
                failures += 1;
                if failures >= ATTEMPTS {
                    return Err(error.context(format!(
                        "lost the monitor at {base} ({failures} attempts in a row failed)"
                    )));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection: prints the events it brings after `last`, moving `last` on. Errors that
/// another attempt cannot fix (a refused token, an unknown run) are returned as errors.
async fn connect(
    ctx: &mut Ctx,
    printer: &mut Printer,
    client: &reqwest::Client,
    url: &Url,
    run: &str,
    token: Option<&str>,
    last: &mut Option<u64>,
) -> Result<End> {
    let mut request = client
        .get(url.clone())
        .header(header::ACCEPT, "text/event-stream");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(seq) = last {
        request = request.header("Last-Event-ID", seq.to_string());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return Ok(End::Dropped(
                anyhow!(e).context(format!("cannot reach {url}")),
            ));
        }
    };
    match response.status() {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
            "the monitor refused the request ({}): give its token with `--token` or AGENTGRAPH_TOKEN",
            response.status()
        ),
        StatusCode::NOT_FOUND => bail!("the monitor has no run `{run}` ({url} is not found)"),
        status if status.is_server_error() => {
            return Ok(End::Dropped(anyhow!("the monitor answered {status}")));
        }
        status => bail!("the monitor answered {status} for {url}"),
    }
    let mut stream = response.bytes_stream().eventsource();
    while let Some(message) = stream.next().await {
        let message = match message {
            Ok(message) => message,
            Err(e) => return Ok(End::Dropped(anyhow!("the event stream broke: {e}"))),
        };
        // The monitor's own messages: the stream's end (with the run's status), or a failure
        // on its side.
        match message.event.as_str() {
            "end" => {
                let detail: serde_json::Value =
                    serde_json::from_str(&message.data).unwrap_or_default();
                // A monitor that shuts down mid-run may be back in a moment.
                return Ok(if detail["status"] == "shutdown" {
                    End::Dropped(anyhow!("the monitor shut down"))
                } else {
                    End::Done
                });
            }
            "stream_error" => {
                let detail: serde_json::Value =
                    serde_json::from_str(&message.data).unwrap_or_default();
                bail!(
                    "the monitor could not read the run's events: {}",
                    detail["error"].as_str().unwrap_or(&message.data)
                );
            }
            "live_token" => {
                // A token while its node runs (a monitor with `LiveTokens`): shown, but not
                // a stored event, so `last` stays.
                if let Ok(event) = serde_json::from_str::<Event>(&message.data)
                    && last.is_none_or(|seen| event.seq > seen)
                {
                    printer.print_live(&mut ctx.out, ctx.json, &event)?;
                }
                continue;
            }
            _ => {}
        }
        let event: Event = match serde_json::from_str(&message.data) {
            Ok(event) => event,
            Err(e) => {
                eprintln!(
                    "warning: skipped a message of the monitor that is not an event ({}): {e}",
                    message.event
                );
                continue;
            }
        };
        match *last {
            Some(seen) if event.seq <= seen => continue,
            Some(seen) if event.seq > seen + 1 => eprintln!(
                "warning: the monitor skipped events #{} to #{}",
                seen + 1,
                event.seq - 1
            ),
            None if event.seq > 0 => eprintln!(
                "warning: the monitor's events start at #{} (the earlier ones were not stored)",
                event.seq
            ),
            _ => {}
        }
        printer.print(&mut ctx.out, ctx.json, &event)?;
        *last = Some(last_seq(&event));
        if is_last(&event.kind) {
            return Ok(End::Done);
        }
    }
    Ok(End::Done)
}

#[cfg(test)]
mod tests {
    use super::events_url;

    #[test]
    fn run_ids_are_one_path_segment() {
        let url = events_url("http://127.0.0.1:7070", "r/sub/1f").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/api/runs/r%2Fsub%2F1f/events"
        );
        let url = events_url("http://host:1/base/", "r").unwrap();
        assert_eq!(url.as_str(), "http://host:1/base/api/runs/r/events");
        assert!(events_url("not a url", "r").is_err());
        assert!(events_url("file:///tmp", "r").is_err());
    }
}
