//! `agentgraph history RUN`: a run's checkpoints; a thread's under a heading per invocation.

use anyhow::Result;

use super::Ctx;
use crate::output::{self, Table, timestamp};
use crate::store::engine_error;

pub(crate) async fn run(ctx: &mut Ctx, run: &str) -> Result<()> {
    let store = ctx.open_store().await?;
    store.run(run).await?;
    let checkpoints = store
        .inspector
        .checkpoints(run)
        .await
        .map_err(|e| engine_error(run, e))?;
    if ctx.json {
        return Ok(output::json(&mut ctx.out, &checkpoints)?);
    }
    // A thread invoked more than once (see `CompiledGraph::invoke_thread`): its checkpoints
    // under a heading per invocation, in one table so that the columns line up. A pruned
    // thread keeps only its newest checkpoints, so its first heading may be a later turn.
    let thread = checkpoints.iter().any(|c| c.invocation > 1);
    let mut invocation = None;
    let mut table = Table::new(vec!["STEP", "PARENT", "TIME", "WRITTEN", "NEXT", "BYTES"]);
    for c in &checkpoints {
        if thread && invocation != Some(c.invocation) {
            invocation = Some(c.invocation);
            table.heading(format!("invocation {}", c.invocation));
        }
        table.row(vec![
            c.step.to_string(),
            c.parent.map_or("-".to_owned(), |p| p.to_string()),
            timestamp(c.created_at_ms),
            if c.written.is_empty() {
                "-".to_owned()
            } else {
                c.written.join(", ")
            },
            match (c.next.is_empty(), c.finished.is_empty()) {
                (true, true) => "(end)".to_owned(),
                (_, true) => c.next.join(", "),
                // The tasks of a stopped step that finished: saved, not committed.
                (_, false) => format!("{} (done: {})", c.next.join(", "), c.finished.join(", "))
                    .trim_start()
                    .to_owned(),
            },
            output::bytes(c.blob_bytes),
        ]);
    }
    table.print(&mut ctx.out)?;
    Ok(())
}
