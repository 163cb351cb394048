//! `agentgraph serve`: the monitor over a store no program is running.

use std::io::Write;

use agentgraph_monitor::Monitor;
use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Ctx;
use crate::cli::ServeArgs;
use crate::output;

/// What `serve --json` prints once it listens.
#[derive(Debug, Serialize)]
struct ServingJson {
    url: String,
    addr: String,
}

pub(crate) async fn run(ctx: &mut Ctx, args: ServeArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let mut monitor = Monitor::new(store.inspector.store().clone()).bind(args.addr);
    if let Some(token) = args.token {
        monitor = monitor.token(token);
    }
    let server = monitor.serve().await?;
    let url = server.url();
    if ctx.json {
        let serving = ServingJson {
            url: url.clone(),
            addr: server.local_addr().to_string(),
        };
        output::json(&mut ctx.out, &serving)?;
    } else {
        writeln!(ctx.out, "serving the monitor at {url} (Ctrl-C stops it)")?;
    }
    ctx.out.flush()?;
    tokio::select! {
        result = server.wait() => result.context("the monitor stopped")?,
        signal = tokio::signal::ctrl_c() => signal.context("cannot listen for Ctrl-C")?,
    }
    Ok(())
}
