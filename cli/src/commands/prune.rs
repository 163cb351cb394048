//! `agentgraph prune`: old checkpoints of one run, or of every run, deleted.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Ctx;
use crate::cli::PruneArgs;
use crate::output;
use crate::store::engine_error;

/// What `prune --json` prints.
#[derive(Debug, Serialize)]
struct PrunedJson {
    /// The runs pruned, each with the checkpoints deleted from it.
    runs: Vec<RunPruned>,
    /// The checkpoints deleted in all.
    deleted: usize,
}

/// One run pruned.
#[derive(Debug, Serialize)]
struct RunPruned {
    run_id: String,
    deleted: usize,
}

pub(crate) async fn run(ctx: &mut Ctx, args: PruneArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let keep = usize::try_from(args.keep).unwrap_or(usize::MAX);
    let runs: Vec<String> = match &args.run {
        Some(run) => {
            store.run(run).await?;
            vec![run.clone()]
        }
        None => store
            .inspector
            .runs()
            .await?
            .into_iter()
            .map(|r| r.run_id)
            .collect(),
    };

    let bar = if args.all && !ctx.json && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(runs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} pruning {bar:30} {pos}/{len} runs {wide_msg}")
                .context("progress bar template")?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut pruned = Vec::with_capacity(runs.len());
    for run in runs {
        bar.set_message(run.clone());
        let deleted = store
            .inspector
            .prune(&run, keep)
            .await
            .map_err(|e| engine_error(&run, e))
            .with_context(|| format!("pruning run `{run}`"))?;
        pruned.push(RunPruned {
            run_id: run,
            deleted,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let total = pruned.iter().map(|p| p.deleted).sum();
    if ctx.json {
        let json = PrunedJson {
            runs: pruned,
            deleted: total,
        };
        return Ok(output::json(&mut ctx.out, &json)?);
    }
    let checkpoints = |n: usize| if n == 1 { "checkpoint" } else { "checkpoints" };
    match &args.run {
        Some(run) => writeln!(
            ctx.out,
            "deleted {total} {} of run `{run}` (kept the newest {keep})",
            checkpoints(total)
        )?,
        None => {
            let touched = pruned.iter().filter(|p| p.deleted > 0).count();
            writeln!(
                ctx.out,
                "deleted {total} {} from {touched} of {} runs (kept the newest {keep} of each)",
                checkpoints(total),
                pruned.len()
            )?
        }
    }
    Ok(())
}
