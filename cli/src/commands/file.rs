//! Graphs declared in files: `validate FILE`, `run FILE`, `resume RUN --graph FILE`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use agentgraph_checkpoint::{CheckpointStore, StoreUrl, open_url};
use agentgraph_engine::{
    CompiledGraph, DynState, DynUpdate, Error, Resume, Run, RunConfig, RunOutcome,
};
use agentgraph_spec::{GraphSpec, NodeRegistry};
use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::Ctx;
use super::events::Printer;
use crate::cli::{NewArgs, ResumeArgs, RunFileArgs, ValidateArgs};
use crate::output;

/// The kinds a file may name from the command line.
fn registry() -> NodeRegistry {
    NodeRegistry::builtin()
}

/// The graph of `file`, or its errors, one per line, as `file:line:column: ...`.
pub(super) fn load(file: &Path) -> Result<CompiledGraph<DynState>> {
    GraphSpec::from_path(file, &registry()).map_err(|errors| {
        let n = errors.errors().len();
        anyhow!(
            "{errors}\n{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            file.display()
        )
    })
}

pub(crate) fn validate(ctx: &mut Ctx, args: &ValidateArgs) -> Result<()> {
    match GraphSpec::from_path(&args.file, &registry()) {
        Ok(graph) => {
            if ctx.json {
                output::json(
                    &mut ctx.out,
                    &json!({
                        "file": args.file,
                        "valid": true,
                        "nodes": graph.node_names().count(),
                        "fingerprint": graph.fingerprint().to_string(),
                    }),
                )?;
            } else {
                writeln!(
                    ctx.out,
                    "{}: valid ({} nodes)",
                    args.file.display(),
                    graph.node_names().count()
                )?;
            }
            Ok(())
        }
        Err(errors) if ctx.json => {
            let list: Vec<Value> = errors
                .errors()
                .iter()
                .map(|e| {
                    json!({
                        "file": e.file,
                        "line": e.pos.line,
                        "column": e.pos.column,
                        "subject": e.subject.to_string(),
                        "message": e.message,
                        "suggestion": e.suggestion,
                    })
                })
                .collect();
            output::json(
                &mut ctx.out,
                &json!({ "file": args.file, "valid": false, "errors": list }),
            )?;
            bail!("{} is not valid", args.file.display())
        }
        Err(errors) => {
            let n = errors.errors().len();
            bail!(
                "{errors}\n{n} error{} in {}",
                if n == 1 { "" } else { "s" },
                args.file.display()
            )
        }
    }
}

/// `store` wrapped with the keys of `--key-env`, if given.
fn encrypted(
    ctx: &Ctx,
    store: Option<Arc<dyn CheckpointStore>>,
) -> Result<Option<Arc<dyn CheckpointStore>>> {
    Ok(match (store, ctx.encryption()?) {
        (Some(store), Some(encryption)) => Some(encryption.wrap(store)),
        (store, _) => store,
    })
}

/// The store `--store` names, created when it is embedded and missing; none without one.
pub(super) async fn open_store(store: Option<&str>) -> Result<Option<Arc<dyn CheckpointStore>>> {
    let Some(text) = store else {
        return Ok(None);
    };
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let store = agentgraph_postgres::PostgresStore::connect(text)
            .await
            .map_err(|e| anyhow!(e).context("cannot open the PostgreSQL store"))?;
        return Ok(Some(Arc::new(store)));
    }
    let url = StoreUrl::parse(text)?;
    Ok(Some(open_url(&url).with_context(|| {
        format!("cannot open the store `{text}`")
    })?))
}

/// `--input JSON` or `--input @FILE`.
pub(super) fn input_json(input: Option<&str>) -> Result<Value> {
    let Some(text) = input else {
        return Ok(json!({}));
    };
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the input file `{path}`"))?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text).context("the input is not JSON")
}

pub(crate) async fn run(ctx: &mut Ctx, args: RunFileArgs) -> Result<()> {
    if args.watch {
        return super::watch::run(ctx, args).await;
    }
    let graph = load(&args.file)?;
    let store = encrypted(ctx, open_store(ctx.store.as_deref()).await?)?;
    let input = input_json(args.input.as_deref())?;
    let mut config = RunConfig::new().caller(ctx.caller.clone());
    if let Some(tenant) = &ctx.tenant {
        config = config.tenant(tenant.clone());
    }
    if let Some(store) = store {
        config = config.store(store).store_events(true);
    }
    if let Some(id) = &args.thread {
        config = config.run_id(id.clone());
    }
    let run = if args.thread.is_some() && ctx.store.is_some() {
        let update =
            DynUpdate::from_json(graph.schema(), input).map_err(|e| anyhow!("the input: {e}"))?;
        let thread = args.thread.clone().unwrap_or_default();
        graph.invoke_thread_from(thread, update, DynState::new(graph.schema()), config)
    } else {
        let state =
            DynState::from_json(graph.schema(), input).map_err(|e| anyhow!("the input: {e}"))?;
        graph.run_with(state, config)
    };
    follow(ctx, run).await
}

pub(crate) async fn resume(ctx: &mut Ctx, args: ResumeArgs) -> Result<()> {
    let graph = load(&args.graph)?;
    let Some(store) = encrypted(ctx, open_store(ctx.store.as_deref()).await?)? else {
        bail!("`resume` needs the store the run was written to: pass `--store`");
    };
    let parse = |text: &str| serde_json::from_str(text).unwrap_or_else(|_| json!(text));
    let mut resume = match &args.answer {
        Some(answer) => Resume::value(parse(answer)),
        None => Resume::new(),
    };
    for pair in &args.answer_to {
        let (id, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("`--answer-to {pair}` is not ID=VALUE"))?;
        resume = resume.answer(id, parse(value));
    }
    let mut config = RunConfig::new()
        .caller(ctx.caller.clone())
        .store(store)
        .store_events(true)
        .allow_graph_change(args.allow_changed);
    if let Some(tenant) = &ctx.tenant {
        config = config.tenant(tenant.clone());
    }
    let run = graph.resume_with(args.run.clone(), resume, config);
    follow(ctx, run).await.map_err(|e| match e.downcast_ref::<Error>() {
        Some(Error::GraphChanged { .. }) => e.context(format!(
            "{} changed since the run started: resume with the file it started from, or pass --allow-changed",
            args.graph.display()
        )),
        _ => e,
    })
}

/// Prints the run's events as they come, then how it ended: its state, or the interrupts it
/// waits on.
pub(super) async fn follow(ctx: &mut Ctx, run: Run<DynState>) -> Result<()> {
    let mut events = run.events();
    let handle = run.spawn();
    let run_id = handle.run_id().to_owned();
    let mut printer = Printer::default();
    // Ctrl-C cancels the run as the caller (`--as`, the OS user): it stops at its next step
    // boundary, checkpointed and resumable, and its audit trail says who cancelled it. A
    // second Ctrl-C quits at once.
    // Polled first, so that Ctrl-C is caught from before the first event is printed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        tokio::select! {
            biased;
            signal = &mut ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                if interrupted {
                    std::process::exit(130);
                }
                interrupted = true;
                eprintln!(
                    "cancelling run {run_id} as {} (Ctrl-C again to quit at once)",
                    ctx.caller
                );
                handle.cancel_as(ctx.caller.clone());
                ctrl_c.set(tokio::signal::ctrl_c());
            }
            event = events.next() => match event {
                Some(Ok(event)) => printer.print(&mut ctx.out, ctx.json, &event)?,
                Some(Err(_)) => {}
                None => break,
            },
        }
    }
    printer.close(&mut ctx.out)?;
    let outcome = handle.outcome().await?;
    match outcome {
        RunOutcome::Completed(state) => {
            if ctx.json {
                output::json(
                    &mut ctx.out,
                    &json!({ "run": run_id, "status": "completed", "state": state.to_json() }),
                )?;
            } else {
                writeln!(ctx.out, "run {run_id} completed")?;
                writeln!(
                    ctx.out,
                    "{}",
                    serde_json::to_string_pretty(&state.to_json())?
                )?;
            }
        }
        RunOutcome::Interrupted(stop) => {
            if ctx.json {
                output::json(
                    &mut ctx.out,
                    &json!({ "run": run_id, "status": "interrupted", "interrupts": stop.interrupts }),
                )?;
            } else {
                writeln!(ctx.out, "run {run_id} waits at step {}:", stop.step)?;
                for i in &stop.interrupts {
                    writeln!(ctx.out, "  {} ({}): {}", i.id, i.node, i.payload)?;
                }
                writeln!(
                    ctx.out,
                    "resume it with: agentgraph resume {run_id} --graph FILE --answer VALUE"
                )?;
            }
        }
        RunOutcome::RetryScheduled(retry) => {
            if ctx.json {
                output::json(
                    &mut ctx.out,
                    &json!({ "run": run_id, "status": "retry_scheduled", "due_at_ms": retry.due_at_ms, "step": retry.step }),
                )?;
            } else {
                writeln!(
                    ctx.out,
                    "run {run_id} stopped at step {} until a retry is due (at {} ms since the epoch)",
                    retry.step, retry.due_at_ms
                )?;
                writeln!(
                    ctx.out,
                    "continue it then with: agentgraph resume {run_id} --graph FILE"
                )?;
            }
        }
    }
    ctx.out.flush()?;
    Ok(())
}

/// The templates of `new`, by name.
const TEMPLATES: [(&str, &str); 4] = [
    ("review", include_str!("../../templates/review.yaml")),
    (
        "map-reduce",
        include_str!("../../templates/map-reduce.yaml"),
    ),
    (
        "chat-agent",
        include_str!("../../templates/chat-agent.yaml"),
    ),
    (
        "supervisor",
        include_str!("../../templates/supervisor.yaml"),
    ),
];

pub(crate) fn new(ctx: &mut Ctx, args: &NewArgs) -> Result<()> {
    let Some((name, text)) = TEMPLATES.iter().find(|(n, _)| *n == args.template) else {
        let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
        let hint = agentgraph_spec::did_you_mean(&args.template, names.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        bail!(
            "no template `{}`{hint}: the templates are {}",
            args.template,
            names.join(", ")
        );
    };
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| format!("{name}.yaml").into());
    if path.exists() && !args.force {
        bail!("{} exists: pass --force to replace it", path.display());
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(ctx.out, "wrote {} (template `{name}`)", path.display())?;
    Ok(())
}
