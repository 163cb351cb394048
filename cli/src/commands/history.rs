//! `agentgraph history RUN`: a run's checkpoints.

use agentgraph_engine::CheckpointInfo;
use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::output::{self, Table, timestamp};
use crate::store::engine_error;

/// A checkpoint as `history --json` prints it.
#[derive(Debug, Serialize)]
struct CheckpointJson<'a> {
    step: u64,
    parent: Option<u64>,
    created_at_ms: u64,
    /// The fields the step wrote.
    written: Vec<&'a str>,
    /// The nodes the next step runs, one per task.
    next: &'a [String],
    /// The bytes of the values written with the checkpoint.
    bytes: u64,
}

impl<'a> From<&'a CheckpointInfo> for CheckpointJson<'a> {
    fn from(c: &'a CheckpointInfo) -> Self {
        CheckpointJson {
            step: c.step,
            parent: c.parent,
            created_at_ms: c.created_at_ms,
            written: c.written.iter().map(|w| w.as_ref()).collect(),
            next: &c.next,
            bytes: c.blob_bytes,
        }
    }
}

pub(crate) async fn run(ctx: &mut Ctx, run: &str) -> Result<()> {
    let store = ctx.open_store()?;
    store.run(run).await?;
    let checkpoints = store
        .inspector
        .checkpoints(run)
        .await
        .map_err(|e| engine_error(run, e))?;
    if ctx.json {
        let list: Vec<CheckpointJson<'_>> = checkpoints.iter().map(Into::into).collect();
        return Ok(output::json(&mut ctx.out, &list)?);
    }
    let mut table = Table::new(vec!["STEP", "PARENT", "TIME", "WRITTEN", "NEXT", "BYTES"]);
    for c in &checkpoints {
        table.row(vec![
            c.step.to_string(),
            c.parent.map_or("-".to_owned(), |p| p.to_string()),
            timestamp(c.created_at_ms),
            if c.written.is_empty() {
                "-".to_owned()
            } else {
                c.written.join(", ")
            },
            if c.next.is_empty() {
                "(end)".to_owned()
            } else {
                c.next.join(", ")
            },
            output::bytes(c.blob_bytes),
        ]);
    }
    table.print(&mut ctx.out)?;
    Ok(())
}
