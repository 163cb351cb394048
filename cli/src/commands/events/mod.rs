//! `agentgraph events RUN`: a run's stored events, and `--follow` to keep printing them, from
//! the store or from the monitor of the program running the run ([`monitor`]).

mod monitor;

use std::io::{self, Write};
use std::time::Duration;

use agentgraph_engine::{Event, EventKind, RunStatus, TaskId};
use anyhow::Result;

use super::Ctx;
use crate::cli::EventsArgs;
use crate::output::{self, Out};

/// How long to wait before looking for new events in a store again.
const POLL: Duration = Duration::from_millis(500);

pub(crate) async fn run(ctx: &mut Ctx, args: EventsArgs) -> Result<()> {
    if let Some(url) = &args.monitor {
        return monitor::follow(ctx, url, &args.run, args.token.as_deref(), args.after).await;
    }
    let store = ctx.open_store().await?;
    store.run(&args.run).await?;
    let mut after = args.after;
    let mut printed_any = false;
    let mut printer = Printer::default();
    loop {
        // Everything stored after `after`, a page at a time.
        let mut pages = store.inspector.event_pages(&args.run, after);
        while let Some(page) = pages.next_page().await? {
            for event in &page {
                printer.print(&mut ctx.out, ctx.json, event)?;
                printed_any = true;
            }
        }
        after = pages.after();
        if !args.follow {
            printer.close(&mut ctx.out)?;
            if !printed_any && !ctx.json && store.inspector.last_event(&args.run).await?.is_none() {
                eprintln!(
                    "run `{}` stored no events (run it with `RunConfig::store_events(true)` or `monitored()` to keep them)",
                    args.run
                );
            }
            return Ok(());
        }
        let record = store.run(&args.run).await?;
        if !matches!(record.status, RunStatus::Running | RunStatus::Pending) {
            printer.close(&mut ctx.out)?;
            return Ok(());
        }
        if store.exclusive {
            printer.close(&mut ctx.out)?;
            // No other process can write to a store this one holds: the run is not advancing.
            eprintln!(
                "run `{}` is marked {} but no program is running it (this command holds its store): \
                 it crashed or was killed after step {}; resume it from its program, and follow it \
                 then with `--monitor URL`",
                args.run,
                record.status.as_str(),
                record
                    .last_step
                    .map_or("none".to_owned(), |s| s.to_string())
            );
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints events: a line each for people, or one line of JSON each. For people, the
/// streamed tokens of one task's attempt that come one after another are one line, the text
/// growing as they come (`#12     writer streams: Once upon a time.`); tokens a monitor sends
/// live ([`print_live`](Printer::print_live)) are not printed again when their stored event
/// comes.
#[derive(Debug, Default)]
pub(crate) struct Printer {
    /// The line of tokens being written: its task, attempt and the index it expects next.
    open: Option<(TaskId, u32, u64)>,
    /// The task, attempt and end of the tokens printed last.
    shown: Option<(TaskId, u32, u64)>,
}

impl Printer {
    /// Prints one event.
    pub(crate) fn print(&mut self, out: &mut Out, json: bool, event: &Event) -> io::Result<()> {
        if json {
            output::json(out, event)?;
            return out.flush();
        }
        if let EventKind::Token { .. } = event.kind {
            return self.token(out, event);
        }
        self.close(out)?;
        writeln!(out, "{event}")?;
        out.flush()
    }

    /// Prints a token the monitor sent while its node runs (for people only: `--json` prints
    /// the stored events, which follow).
    pub(crate) fn print_live(
        &mut self,
        out: &mut Out,
        json: bool,
        event: &Event,
    ) -> io::Result<()> {
        if json || !matches!(event.kind, EventKind::Token { .. }) {
            return Ok(());
        }
        self.token(out, event)
    }

    fn token(&mut self, out: &mut Out, event: &Event) -> io::Result<()> {
        let EventKind::Token {
            node,
            task,
            attempt,
            index,
            count,
            text,
            ..
        } = &event.kind
        else {
            return Ok(());
        };
        let next = *index + u64::from(*count).max(1);
        if let Some((t, a, end)) = self.shown
            && (t, a) == (*task, *attempt)
            && next <= end
        {
            // Printed already, as it came live.
            return Ok(());
        }
        if self.open == Some((*task, *attempt, *index)) {
            write!(out, "{}", escape(text))?;
        } else {
            self.close(out)?;
            write!(out, "#{:<4}   {node} streams: {}", event.seq, escape(text))?;
        }
        self.open = Some((*task, *attempt, next));
        self.shown = Some((*task, *attempt, next));
        out.flush()
    }

    /// Ends the line of tokens being written, if any.
    pub(crate) fn close(&mut self, out: &mut Out) -> io::Result<()> {
        if self.open.take().is_some() {
            writeln!(out)?;
            out.flush()?;
        }
        Ok(())
    }
}

/// A token's text on one line: its line breaks and other control characters escaped.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| match c {
                '\n' => "\\n".to_owned(),
                c if c.is_control() => c.escape_default().to_string(),
                c => c.to_string(),
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// The sequence number of the last event `event` stands for: a stored token event holds the
/// numbers of the tokens coalesced into it.
pub(crate) fn last_seq(event: &Event) -> u64 {
    match &event.kind {
        EventKind::Token { count, .. } => event.seq + u64::from(*count).max(1) - 1,
        _ => event.seq,
    }
}

/// Whether `kind` ends a run's events for a follower: it finished, failed or stopped at an
/// interrupt.
pub(crate) fn is_last(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::RunFinished { .. }
            | EventKind::RunFailed { .. }
            | EventKind::RunInterrupted { .. }
    )
}
