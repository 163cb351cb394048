//! `agentgraph jobs` and `agentgraph workers`: the queue of workers of a PostgreSQL store.

use std::io::Write;

use agentgraph_postgres::worker::Queue;
use anyhow::{Result, bail};
use serde::Serialize;

use super::Ctx;
use crate::cli::JobsArgs;
use crate::output;

/// The queue of the store the command line names, which must be a PostgreSQL store: with
/// `--tenant`, the tenant's jobs only (`Queue::tenant`). (No command queues jobs, so `--as`
/// names no one here.)
/// `spans_tenants`: the command reads what serves every tenant, and refuses `--tenant`.
async fn queue(ctx: &Ctx, command: &str, spans_tenants: bool) -> Result<Queue> {
    let store = ctx.open_store().await?;
    if store.tenant_bound && spans_tenants {
        bail!(
            "`{command}` reads the workers of the queue, which serve every tenant: run it without `--tenant`"
        );
    }
    let Some(postgres) = &store.postgres else {
        bail!(
            "`{command}` reads the queue of workers, which only a PostgreSQL store has: pass `--store postgres://...`"
        );
    };
    let queue = Queue::new(postgres);
    Ok(match &ctx.tenant {
        Some(tenant) => queue.tenant(tenant.clone()),
        None => queue,
    })
}

/// A job as `jobs --json` prints it.
#[derive(Debug, Serialize)]
struct JobJson {
    id: i64,
    kind: String,
    graph: String,
    run_id: String,
    status: String,
    worker: Option<String>,
    attempts: i32,
    cancel_requested: bool,
    error: Option<String>,
    /// When it may be claimed (ms since the Unix epoch): in the future for a queued job
    /// whose run waits for a retry.
    available_at_ms: i64,
    /// The tenant whose run it is.
    tenant: Option<String>,
    /// Who queued it.
    caller: Option<String>,
    /// Queued, and its tenant has no place left under its cap on jobs in flight.
    held_by_tenant_cap: bool,
}

pub(crate) async fn jobs(ctx: &mut Ctx, args: JobsArgs) -> Result<()> {
    let queue = queue(ctx, "jobs", false).await?;
    let jobs = queue
        .jobs(args.status.as_deref(), args.after, args.limit)
        .await?;
    if ctx.json {
        let list: Vec<JobJson> = jobs
            .into_iter()
            .map(|j| JobJson {
                id: j.id,
                kind: j.kind,
                graph: j.graph,
                run_id: j.run,
                status: j.status,
                worker: j.worker,
                attempts: j.attempts,
                cancel_requested: j.cancel_requested,
                error: j.error,
                available_at_ms: j.available_at_ms,
                tenant: j.tenant.map(|t| t.as_str().to_owned()),
                caller: j.caller,
                held_by_tenant_cap: j.held_by_tenant_cap,
            })
            .collect();
        return Ok(output::json(&mut ctx.out, &list)?);
    }
    if jobs.is_empty() {
        writeln!(ctx.out, "no job")?;
        return Ok(());
    }
    writeln!(
        ctx.out,
        "{:<8} {:<11} {:<7} {:<16} {:<24} {:<12} {:<5} {:<10} {:<12} READY",
        "JOB", "STATUS", "KIND", "GRAPH", "RUN", "WORKER", "TRIES", "TENANT", "BY"
    )?;
    let now = output::now_ms();
    for j in &jobs {
        // A queued job waits until its time (a run waiting for a retry, a busy run), or for
        // a place under its tenant's cap on jobs in flight.
        let ready = if j.held_by_tenant_cap {
            "tenant cap".to_owned()
        } else {
            match u64::try_from(j.available_at_ms) {
                Ok(at) if j.status == "queued" && at > now => {
                    format!("in {:.1} s", (at - now) as f64 / 1000.0)
                }
                _ if j.status == "queued" => "now".to_owned(),
                _ => "-".to_owned(),
            }
        };
        writeln!(
            ctx.out,
            "{:<8} {:<11} {:<7} {:<16} {:<24} {:<12} {:<5} {:<10} {:<12} {}",
            j.id,
            j.status,
            j.kind,
            j.graph,
            j.run,
            j.worker.as_deref().unwrap_or("-"),
            j.attempts,
            j.tenant.as_ref().map_or("-", |t| t.as_str()),
            j.caller.as_deref().unwrap_or("-"),
            ready
        )?;
    }
    Ok(())
}

pub(crate) async fn workers(ctx: &mut Ctx) -> Result<()> {
    let queue = queue(ctx, "workers", true).await?;
    let workers = queue.workers().await?;
    if ctx.json {
        return Ok(output::json(&mut ctx.out, &workers)?);
    }
    if workers.is_empty() {
        writeln!(ctx.out, "no worker has registered")?;
        return Ok(());
    }
    let now = output::now_ms();
    writeln!(
        ctx.out,
        "{:<16} {:<8} {:>4} {:>4}  {:<14} GRAPHS",
        "WORKER", "STATE", "JOBS", "CAP", "LAST SEEN"
    )?;
    for w in &workers {
        let ago = now.saturating_sub(u64::try_from(w.last_seen_ms).unwrap_or(0)) / 1000;
        writeln!(
            ctx.out,
            "{:<16} {:<8} {:>4} {:>4}  {:<14} {}",
            w.id,
            if w.stopped { "stopped" } else { "running" },
            w.running,
            w.concurrency,
            format!("{ago} s ago"),
            w.graphs.join(",")
        )?;
    }
    Ok(())
}
