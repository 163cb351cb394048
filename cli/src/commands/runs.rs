//! `agentgraph runs`: the runs of a store.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use agentgraph_engine::{RunFilter, RunRecord, StoreInspector};
use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::cli::RunsArgs;
use crate::output::{self, Table, ago, status_style, summary, until};

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

/// The runs `args` asks for, by status and metadata.
fn filter(args: &RunsArgs) -> RunFilter {
    let mut filter = RunFilter::new();
    filter.statuses.clone_from(&args.status);
    filter.user.clone_from(&args.user);
    filter.tags.clone_from(&args.tag);
    filter.labels = args.label.iter().cloned().collect();
    filter.title_contains.clone_from(&args.title);
    filter
}

pub(crate) async fn run(ctx: &mut Ctx, args: RunsArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let records = store.inspector.runs().await?;
    let ids: HashSet<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
    let filter = filter(&args);
    let shown: Vec<(&RunRecord, Option<String>)> = records
        .iter()
        .map(|r| (r, parent_of(&r.run_id, &ids)))
        .filter(|(r, parent)| (args.all || parent.is_none()) && filter.matches(r))
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
    // The session's columns only when a run shown has one.
    let sessions = shown
        .iter()
        .any(|(r, _)| !r.metadata.is_empty() || r.expires_at_ms.is_some());
    let mut header = vec!["RUN", "STATUS", "STEP", "UPDATED"];
    if sessions {
        header.extend(["USER", "TITLE", "TAGS", "EXPIRES"]);
    }
    header.push("ERROR");
    let mut table = Table::new(header);
    let mut stack: Vec<(&RunRecord, usize)> = roots.into_iter().rev().map(|r| (r, 0)).collect();
    while let Some((r, depth)) = stack.pop() {
        let mut row = vec![
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
        ];
        if sessions {
            let meta = &r.metadata;
            row.extend(
                [
                    meta.user().unwrap_or_default().to_owned(),
                    meta.title().map(|t| summary(t, 40)).unwrap_or_default(),
                    meta.tags().join(","),
                    r.expires_at_ms.map(|at| until(at, now)).unwrap_or_default(),
                ]
                .map(|cell| (cell, Default::default())),
            );
        }
        row.push((
            r.error
                .as_deref()
                .map(|e| summary(e, 120))
                .unwrap_or_default(),
            Default::default(),
        ));
        table.styled_row(row);
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
