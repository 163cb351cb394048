//! `agentgraph pending RUN`: the tasks of the step a run stopped in.

use std::io::Write;

use agentgraph_engine::{PendingStatus, PendingTask};
use anyhow::Result;

use super::Ctx;
use crate::output::{Out, Table, timestamp};
use crate::store::engine_error;

pub(crate) async fn run(ctx: &mut Ctx, run: &str) -> Result<()> {
    let store = ctx.open_store().await?;
    let record = store.run(run).await?;
    let tasks = if record.last_step.is_none() {
        Vec::new()
    } else {
        store
            .inspector
            .pending(run)
            .await
            .map_err(|e| engine_error(run, e))?
    };
    if ctx.json {
        return Ok(crate::output::json(&mut ctx.out, &tasks)?);
    }
    if tasks.is_empty() {
        writeln!(
            ctx.out,
            "run `{run}` has no task of a stopped step: it stopped between steps"
        )?;
        return Ok(());
    }
    print(&mut ctx.out, &tasks, "")?;
    Ok(())
}

/// Prints `tasks` as a table, each line after `indent`.
pub(crate) fn print(out: &mut Out, tasks: &[PendingTask], indent: &str) -> Result<()> {
    let mut table = Table::new(vec!["STEP", "NODE", "STATUS", "ATTEMPTS", "TASK", "DETAIL"]);
    for t in tasks {
        let detail = match t.status {
            PendingStatus::Done => "write saved, not committed".to_owned(),
            PendingStatus::Retrying => format!(
                "next attempt {}: {}",
                t.retry_at_ms.map_or("-".to_owned(), timestamp),
                t.error.as_deref().unwrap_or("")
            ),
            PendingStatus::Interrupted => format!("waiting on {}", t.interrupts.join(", ")),
            PendingStatus::OverBudget => {
                "refused by a budget: runs on a resume with a higher one".to_owned()
            }
            _ => t.error.clone().unwrap_or_default(),
        };
        table.row(vec![
            t.step.to_string(),
            t.node.clone(),
            t.status.as_str().to_owned(),
            t.attempts.to_string(),
            t.task.to_string(),
            detail,
        ]);
    }
    let mut text = Vec::new();
    table.print(&mut text)?;
    for line in String::from_utf8_lossy(&text).lines() {
        writeln!(out, "{indent}{line}")?;
    }
    Ok(())
}
