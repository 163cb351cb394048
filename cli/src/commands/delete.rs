//! `agentgraph delete RUN`: a run and its subgraph runs, gone.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::output;
use crate::store::engine_error;

/// What `delete --json` prints.
#[derive(Debug, Serialize)]
struct DeletedJson {
    /// The runs deleted: the run, then its subgraph runs.
    deleted: Vec<String>,
}

pub(crate) async fn run(ctx: &mut Ctx, run: &str) -> Result<()> {
    let store = ctx.open_store().await?;
    store.run(run).await?;
    let mut deleted = vec![run.to_owned()];
    deleted.extend(store.inspector.subgraph_runs(run).await?);
    store
        .inspector
        .delete(run)
        .await
        .map_err(|e| engine_error(run, e))?;
    if ctx.json {
        return Ok(output::json(&mut ctx.out, &DeletedJson { deleted })?);
    }
    match deleted.len() - 1 {
        0 => writeln!(ctx.out, "deleted run `{run}`")?,
        1 => writeln!(ctx.out, "deleted run `{run}` and its subgraph run")?,
        n => writeln!(ctx.out, "deleted run `{run}` and its {n} subgraph runs")?,
    }
    Ok(())
}
