//! `agentgraph show RUN`: one run in full.

use std::collections::HashSet;
use std::io::Write;

use agentgraph_engine::{BudgetKind, Fingerprint, Interrupt, PendingTask, RunStatus, RunUsage};
use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use super::runs::{RunJson, parent_of};
use crate::output::{self, BOLD, ago, status_style, timestamp};
use crate::store::engine_error;

/// A run as `show --json` prints it.
#[derive(Debug, Serialize)]
struct ShowJson<'a> {
    run: RunJson<'a>,
    checkpoints: usize,
    /// How many invocations the run has had: a thread's turns (its newest checkpoint's
    /// invocation, which pruning keeps); 1 for a run that is not a thread, `null` without a
    /// checkpoint.
    invocations: Option<u32>,
    /// How many events the run stored.
    events: u64,
    /// The sequence number of its newest stored event.
    last_event: Option<u64>,
    /// The interrupts it waits on.
    interrupts: Vec<Interrupt>,
    /// The tasks of the step it stopped in (or is running), as `pending` lists them.
    pending: Vec<PendingTask>,
    /// Its subgraph runs, and theirs.
    subgraph_runs: Vec<String>,
    /// The graph it stored (runs made with `RunConfig::monitored()`).
    graph: Option<GraphJson>,
    /// What it used, as stored with its newest checkpoint (steps, tokens, cost in
    /// nano-dollars, tool calls, wall time), and the budget that stopped it: `null` without a
    /// checkpoint (see `StoreInspector::usage`).
    usage: Option<RunUsage>,
}

/// The size of a stored graph.
#[derive(Debug, Serialize)]
struct GraphJson {
    fingerprint: String,
    nodes: usize,
    edges: usize,
}

pub(crate) async fn run(ctx: &mut Ctx, run: &str) -> Result<()> {
    let store = ctx.open_store().await?;
    let record = store.run(run).await?;
    let inspector = &store.inspector;
    let checkpoints = inspector
        .checkpoints(run)
        .await
        .map_err(|e| engine_error(run, e))?;
    let interrupts = if checkpoints.is_empty() {
        Vec::new()
    } else {
        inspector
            .interrupts(run)
            .await
            .map_err(|e| engine_error(run, e))?
    };
    let pending = if checkpoints.is_empty() || record.status == RunStatus::Completed {
        Vec::new()
    } else {
        inspector
            .pending(run)
            .await
            .map_err(|e| engine_error(run, e))?
    };
    let first_event = inspector.events(run, None, 1).await?.first().map(|e| e.seq);
    let last_event = inspector.last_event(run).await?;
    let events = match (first_event, last_event) {
        (Some(first), Some(last)) => last - first + 1,
        _ => 0,
    };
    let graph = inspector.graph(run).await?.map(|g| GraphJson {
        fingerprint: g.fingerprint.to_string(),
        nodes: g.nodes.len(),
        edges: g.edges.len(),
    });
    let usage = if checkpoints.is_empty() {
        None
    } else {
        inspector
            .usage(run)
            .await
            .map_err(|e| engine_error(run, e))?
    };
    let all = inspector.runs().await?;
    let ids: HashSet<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    let subgraph_runs = inspector.subgraph_runs(run).await?;
    let show = ShowJson {
        run: RunJson::new(&record, parent_of(run, &ids)),
        checkpoints: checkpoints.len(),
        invocations: checkpoints.last().map(|c| c.invocation),
        events,
        last_event,
        interrupts,
        pending,
        subgraph_runs,
        graph,
        usage,
    };
    if ctx.json {
        return Ok(output::json(&mut ctx.out, &show)?);
    }

    let out = &mut ctx.out;
    let now = output::now_ms();
    let label = |out: &mut output::Out, name: &str| write!(out, "{BOLD}{name:<13}{BOLD:#}");
    label(out, "run")?;
    writeln!(out, "{}", record.run_id)?;
    if let Some(parent) = &show.run.parent {
        label(out, "subgraph of")?;
        writeln!(out, "{parent}")?;
    }
    let style = status_style(record.status);
    label(out, "status")?;
    writeln!(out, "{style}{}{style:#}", record.status.as_str())?;
    label(out, "last step")?;
    writeln!(
        out,
        "{}",
        record
            .last_step
            .map_or("none (no checkpoint)".to_owned(), |s| s.to_string())
    )?;
    // A thread invoked more than once (a run that is not a thread has one invocation).
    if let Some(invocations) = show.invocations.filter(|&n| n > 1) {
        label(out, "invocations")?;
        writeln!(out, "{invocations}")?;
    }
    label(out, "created")?;
    writeln!(
        out,
        "{} ({})",
        timestamp(record.created_at_ms),
        ago(record.created_at_ms, now)
    )?;
    label(out, "updated")?;
    writeln!(
        out,
        "{} ({})",
        timestamp(record.updated_at_ms),
        ago(record.updated_at_ms, now)
    )?;
    let meta = &record.metadata;
    if let Some(user) = meta.user() {
        label(out, "user")?;
        writeln!(out, "{user}")?;
    }
    if let Some(title) = meta.title() {
        label(out, "title")?;
        writeln!(out, "{}", output::summary(title, 200))?;
    }
    if !meta.tags().is_empty() {
        label(out, "tags")?;
        writeln!(out, "{}", meta.tags().join(", "))?;
    }
    if !meta.labels().is_empty() {
        label(out, "labels")?;
        let labels: Vec<String> = meta
            .labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(out, "{}", labels.join(", "))?;
    }
    if let (Some(ttl), Some(at)) = (record.ttl_ms, record.expires_at_ms) {
        label(out, "expires")?;
        writeln!(
            out,
            "{} ({}; kept {} after its last write)",
            timestamp(at),
            output::until(at, now),
            humantime::format_duration(std::time::Duration::from_millis(ttl))
        )?;
    }
    label(out, "checkpoints")?;
    writeln!(out, "{}", show.checkpoints)?;
    label(out, "events")?;
    match (first_event, last_event) {
        (Some(first), Some(last)) => writeln!(out, "{events} stored (#{first} to #{last})")?,
        _ => writeln!(
            out,
            "none stored (run with `RunConfig::store_events(true)` or `monitored()` to keep them)"
        )?,
    }
    label(out, "fingerprint")?;
    writeln!(out, "{}", Fingerprint::from_u128(record.fingerprint))?;
    if let Some(graph) = &show.graph {
        label(out, "graph")?;
        writeln!(out, "{} nodes, {} edges", graph.nodes, graph.edges)?;
    }
    if let Some(usage) = &show.usage {
        let total = &usage.total;
        label(out, "usage")?;
        writeln!(
            out,
            "{} steps, {} tokens, {}, {} tool calls, {} running",
            total.steps,
            total.tokens,
            amount(BudgetKind::Cost, total.cost_nanos),
            total.tool_calls,
            amount(BudgetKind::WallTime, total.wall_ms)
        )?;
        if let Some(stop) = &usage.stopped_by {
            label(out, "stopped by")?;
            writeln!(
                out,
                "its {} budget of {} ({} used), before step {}",
                stop.scope.as_str(),
                amount(stop.budget, stop.limit),
                amount(stop.budget, stop.used),
                stop.step
            )?;
        }
    }
    if let Some((from, step)) = &record.forked_from {
        label(out, "forked from")?;
        writeln!(out, "{from} at step {step}")?;
    }
    if let Some(error) = &record.error {
        label(out, "error")?;
        writeln!(out, "{error}")?;
    }
    if !show.interrupts.is_empty() {
        writeln!(out, "{BOLD}waiting on{BOLD:#}")?;
        for i in &show.interrupts {
            let path = if i.path.is_empty() {
                String::new()
            } else {
                format!(" in {}", i.path.join(" > "))
            };
            writeln!(
                out,
                "  {} at step {} ({:?}{path}): id {}",
                i.node, i.step, i.kind, i.id
            )?;
            if !i.payload.is_null() {
                writeln!(out, "    payload: {}", i.payload)?;
            }
        }
    }
    if !show.pending.is_empty() {
        writeln!(
            out,
            "{BOLD}stopped in step {} (done tasks' writes are saved, not committed){BOLD:#}",
            show.pending[0].step
        )?;
        super::pending::print(out, &show.pending, "  ")?;
    }
    if !show.subgraph_runs.is_empty() {
        writeln!(out, "{BOLD}subgraph runs{BOLD:#}")?;
        for child in &show.subgraph_runs {
            writeln!(out, "  {child}")?;
        }
    }
    Ok(())
}

/// An amount of `kind` for people: `$0.000450` for a cost, `1.5s` for a wall time,
/// `300 tokens`.
fn amount(kind: BudgetKind, n: u64) -> String {
    match kind {
        BudgetKind::Cost => format!("${:.6}", n as f64 / 1e9),
        BudgetKind::WallTime => {
            humantime::format_duration(std::time::Duration::from_millis(n)).to_string()
        }
        BudgetKind::Steps => format!("{n} steps"),
        BudgetKind::Tokens => format!("{n} tokens"),
        BudgetKind::ToolCalls => format!("{n} tool calls"),
        _ => format!("{n} {}", kind.as_str().replace('_', " ")),
    }
}
