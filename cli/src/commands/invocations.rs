//! `agentgraph invocations RUN`: a thread's invocations (its turns), one line each, from its
//! checkpoints.

use std::borrow::Cow;

use agentgraph_engine::CheckpointInfo;
use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::output::{self, Table, timestamp};
use crate::store::engine_error;

/// One invocation as `invocations --json` prints it.
#[derive(Debug, PartialEq, Serialize)]
struct InvocationJson<'a> {
    /// Its number, from 1.
    invocation: u32,
    /// The step of its first checkpoint kept: its input's, unless `pruned`.
    first_step: u64,
    /// The step of its newest checkpoint.
    last_step: u64,
    /// How many of its checkpoints the store keeps.
    checkpoints: usize,
    /// The fields its first checkpoint wrote: its input's (every field for a thread's first
    /// invocation, whose first checkpoint stores the whole state); `null` when its first
    /// checkpoints were pruned.
    input: Option<&'a [Cow<'static, str>]>,
    /// When it started: when its input was checkpointed (`null` when pruned).
    started_at_ms: Option<u64>,
    /// When its newest checkpoint was written.
    updated_at_ms: u64,
    /// Whether its first checkpoints were pruned (`agentgraph prune` keeps the newest).
    pruned: bool,
}

/// The invocations of `checkpoints` (oldest first), grouped by their number. Only the oldest
/// group can miss its first checkpoints: pruning deletes the oldest. The run was pruned when
/// its oldest checkpoint kept has a parent (step 0, a run's input, has none).
fn invocations(checkpoints: &[CheckpointInfo]) -> Vec<InvocationJson<'_>> {
    let pruned = checkpoints.first().is_some_and(|c| c.parent.is_some());
    checkpoints
        .chunk_by(|a, b| a.invocation == b.invocation)
        .enumerate()
        .map(|(i, group)| {
            let (first, last) = (&group[0], &group[group.len() - 1]);
            let pruned = pruned && i == 0;
            InvocationJson {
                invocation: first.invocation,
                first_step: first.step,
                last_step: last.step,
                checkpoints: group.len(),
                input: (!pruned).then_some(&first.written[..]),
                started_at_ms: (!pruned).then_some(first.created_at_ms),
                updated_at_ms: last.created_at_ms,
                pruned,
            }
        })
        .collect()
}

pub(crate) async fn run(ctx: &mut Ctx, run: &str) -> Result<()> {
    let store = ctx.open_store().await?;
    store.run(run).await?;
    let checkpoints = store
        .inspector
        .checkpoints(run)
        .await
        .map_err(|e| engine_error(run, e))?;
    let invocations = invocations(&checkpoints);
    if ctx.json {
        return Ok(output::json(&mut ctx.out, &invocations)?);
    }
    let mut table = Table::new(vec![
        "INVOCATION",
        "STEPS",
        "CHECKPOINTS",
        "STARTED",
        "INPUT",
    ]);
    for i in &invocations {
        let (started, input) = match i.input {
            None => ("-".to_owned(), "(pruned)".to_owned()),
            Some([]) => (timestamp(i.started_at_ms.unwrap_or(0)), "-".to_owned()),
            Some(fields) => (timestamp(i.started_at_ms.unwrap_or(0)), fields.join(", ")),
        };
        table.row(vec![
            i.invocation.to_string(),
            format!("{}-{}", i.first_step, i.last_step),
            i.checkpoints.to_string(),
            started,
            input,
        ]);
    }
    table.print(&mut ctx.out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use agentgraph_engine::CheckpointInfo;
    use serde_json::json;

    use super::invocations;

    /// A checkpoint of `step` in `invocation`, written at `step` seconds.
    fn checkpoint(step: u64, invocation: u32, written: &[&str]) -> CheckpointInfo {
        serde_json::from_value(json!({
            "step": step, "parent": step.checked_sub(1), "created_at_ms": step * 1000,
            "written": written, "next": [], "blob_bytes": 0, "invocation": invocation,
        }))
        .unwrap()
    }

    #[test]
    fn checkpoints_group_by_invocation_and_pruning_hides_a_start() {
        let all = [
            checkpoint(0, 1, &["log"]),
            checkpoint(1, 1, &["log", "n"]),
            checkpoint(2, 2, &["log"]),
            checkpoint(3, 2, &[]),
            checkpoint(4, 3, &["log"]),
        ];
        let listed = invocations(&all);
        let summary: Vec<_> = listed
            .iter()
            .map(|i| {
                (
                    i.invocation,
                    i.first_step,
                    i.last_step,
                    i.checkpoints,
                    i.pruned,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, 0, 1, 2, false),
                (2, 2, 3, 2, false),
                (3, 4, 4, 1, false)
            ]
        );
        assert_eq!(listed[1].input.unwrap(), ["log"]);
        assert_eq!(listed[1].started_at_ms, Some(2000));
        assert_eq!(listed[1].updated_at_ms, 3000);

        // Pruned to the newest 2: invocation 2 lost its input checkpoint.
        let listed = invocations(&all[3..]);
        assert_eq!(listed.len(), 2);
        assert!(listed[0].pruned && !listed[1].pruned);
        assert_eq!((listed[0].input, listed[0].started_at_ms), (None, None));
        assert_eq!(listed[1].input.unwrap(), ["log"]);
        assert!(invocations(&[]).is_empty());
    }
}
