//! `agentgraph events RUN`: a run's stored events, and `--follow` to keep printing them, from
//! the store or from the monitor of the program running the run ([`monitor`]).

mod monitor;

use std::io::{self, Write};
use std::time::Duration;

use agentgraph_engine::{Event, EventKind, RunStatus};
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
    let store = ctx.open_store()?;
    store.run(&args.run).await?;
    let mut after = args.after;
    let mut printed_any = false;
    loop {
        // Everything stored after `after`, a page at a time.
        let mut pages = store.inspector.event_pages(&args.run, after);
        while let Some(page) = pages.next_page().await? {
            for event in &page {
                print_event(&mut ctx.out, ctx.json, event)?;
                printed_any = true;
            }
        }
        after = pages.after();
        if !args.follow {
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
            return Ok(());
        }
        if store.exclusive {
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

/// Prints one event: its line for people, or one line of JSON.
pub(crate) fn print_event(out: &mut Out, json: bool, event: &Event) -> io::Result<()> {
    if json {
        output::json(out, event)?;
    } else {
        writeln!(out, "{event}")?;
    }
    out.flush()
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
