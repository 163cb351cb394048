//! `agentgraph sweep`: the runs whose time to live is over, deleted.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::output;

/// What `sweep --json` prints.
#[derive(Debug, Serialize)]
struct SweptJson {
    /// The runs deleted, in id order (each with its subgraph runs).
    deleted: Vec<String>,
}

pub(crate) async fn run(ctx: &mut Ctx) -> Result<()> {
    let store = ctx.open_store().await?;
    let deleted = store
        .inspector
        .store()
        .sweep_expired(output::now_ms())
        .await?;
    if ctx.json {
        return Ok(output::json(&mut ctx.out, &SweptJson { deleted })?);
    }
    match deleted.len() {
        0 => writeln!(ctx.out, "no run has expired")?,
        1 => writeln!(ctx.out, "deleted 1 expired run:")?,
        n => writeln!(ctx.out, "deleted {n} expired runs:")?,
    }
    for run in &deleted {
        writeln!(ctx.out, "  {run}")?;
    }
    Ok(())
}
