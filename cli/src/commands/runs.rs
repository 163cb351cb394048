//! `agentgraph runs`: the runs of a store.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use agentgraph_engine::{RunRecord, StoreInspector};
use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::cli::RunsArgs;
use crate::output::{self, Table, ago, status_style, summary};

/// A run as `--json` prints it: the engine's [`RunRecord`] (the API's shape, as the monitor
/// serves it) and the run whose subgraph node made it.
#[derive(Debug, Serialize)]
pub(crate) struct RunJson<'a> {
    #[serde(flatten)]
    run: &'a RunRecord,
    /// The run whose subgraph node made this run.
    pub(crate) parent: Option<String>,
}

impl<'a> RunJson<'a> {
    /// The JSON of `record`, whose parent run (for a subgraph run) is `parent`.
    pub(crate) fn new(run: &'a RunRecord, parent: Option<String>) -> Self {
        RunJson { run, parent }
    }
}

/// The run whose subgraph made `run`, among `ids`: subgraph runs are named
/// `{parent}/@{node}/{task}` (see [`StoreInspector::parent_run`]).
pub(crate) fn parent_of(run: &str, ids: &HashSet<&str>) -> Option<String> {
    let parent = StoreInspector::parent_run(run)?;
    ids.contains(parent).then(|| parent.to_owned())
}

pub(crate) async fn run(ctx: &mut Ctx, args: RunsArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let records = store.inspector.runs().await?;
    let ids: HashSet<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
    let shown: Vec<(&RunRecord, Option<String>)> = records
        .iter()
        .map(|r| (r, parent_of(&r.run_id, &ids)))
        .filter(|(r, parent)| {
            (args.all || parent.is_none())
                && (args.status.is_empty() || args.status.contains(&r.status))
        })
        .collect();

    if ctx.json {
        let runs: Vec<RunJson> = shown
            .iter()
            .map(|(r, parent)| RunJson::new(r, parent.clone()))
            .collect();
        return Ok(output::json(&mut ctx.out, &runs)?);
    }
    if shown.is_empty() {
        let what = if records.is_empty() {
            "the store has no runs"
        } else {
            "no run matches"
        };
        writeln!(ctx.out, "{what}")?;
        return Ok(());
    }

    // Subgraph runs under their parents (when the parent is shown too), depth first.
    let shown_ids: HashSet<&str> = shown.iter().map(|(r, _)| r.run_id.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (r, parent) in &shown {
        match parent.as_deref().filter(|p| shown_ids.contains(p)) {
            Some(p) => children.entry(p).or_default().push(r),
            None => roots.push(*r),
        }
    }
    let now = output::now_ms();
    let mut table = Table::new(vec!["RUN", "STATUS", "STEP", "UPDATED", "ERROR"]);
    let mut stack: Vec<(&RunRecord, usize)> = roots.into_iter().rev().map(|r| (r, 0)).collect();
    while let Some((r, depth)) = stack.pop() {
        table.styled_row(vec![
            (
                format!("{}{}", "  ".repeat(depth), r.run_id),
                Default::default(),
            ),
            (r.status.as_str().to_owned(), status_style(r.status)),
            (
                r.last_step.map_or("-".to_owned(), |s| s.to_string()),
                Default::default(),
            ),
            (ago(r.updated_at_ms, now), Default::default()),
            (
                r.error
                    .as_deref()
                    .map(|e| summary(e, 120))
                    .unwrap_or_default(),
                Default::default(),
            ),
        ]);
        if let Some(kids) = children.get(r.run_id.as_str()) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    table.print(&mut ctx.out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgraph_runs_find_their_parents() {
        let ids: HashSet<&str> = ["a", "a/@sub/1f", "a/@sub/1f/@inner/2e", "x/y", "a/b/c"]
            .into_iter()
            .collect();
        assert_eq!(parent_of("a", &ids), None);
        assert_eq!(parent_of("a/@sub/1f", &ids).as_deref(), Some("a"));
        assert_eq!(
            parent_of("a/@sub/1f/@inner/2e", &ids).as_deref(),
            Some("a/@sub/1f")
        );
        // A run id with slashes is a run of its own, whether its prefix is a run or not.
        assert_eq!(parent_of("x/y", &ids), None);
        assert_eq!(parent_of("a/b/c", &ids), None);
    }
}
