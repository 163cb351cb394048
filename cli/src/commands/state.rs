//! `agentgraph state RUN [--step N]`: a run's state as JSON.

use std::io::Write;

use agentgraph_engine::Error;
use anyhow::{Result, anyhow};

use super::Ctx;
use crate::output;
use crate::store::engine_error;

pub(crate) async fn run(ctx: &mut Ctx, run: &str, step: Option<u64>) -> Result<()> {
    let store = ctx.open_store().await?;
    let record = store.run(run).await?;
    let state = match store.inspector.state_json(run, step).await {
        Ok(state) => state,
        Err(Error::NoStateViews(_)) => {
            return Err(anyhow!(
                "run `{run}` stored no JSON views of its state, so its state cannot be read without \
                 its program; run it with `RunConfig::monitored()` to make them, or read it in the \
                 program with `History::state`"
            ));
        }
        Err(Error::CheckpointNotFound { step, .. }) => {
            return Err(match record.last_step {
                Some(last) => anyhow!(
                    "run `{run}` has no checkpoint at step {step} (its last step is {last}; \
                     `agentgraph history {run}` lists its checkpoints, some may have been pruned)"
                ),
                None => anyhow!("run `{run}` has no checkpoint yet, so it has no state"),
            });
        }
        // The run is in the store (read above): it has no checkpoint.
        Err(Error::RunNotFound(missing)) if missing == run => {
            return Err(match record.last_step {
                None => anyhow!("run `{run}` has no checkpoint yet, so it has no state"),
                Some(_) => anyhow!("run `{run}` has no checkpoint"),
            });
        }
        Err(e) => return Err(engine_error(run, e)),
    };
    if ctx.json {
        output::json(&mut ctx.out, &state)?;
    } else {
        serde_json::to_writer_pretty(&mut ctx.out, &state)?;
        writeln!(ctx.out)?;
    }
    Ok(())
}
