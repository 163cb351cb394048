//! `run FILE --watch`: run, then run again with the same input each time the file changes.
//!
//! A "new run" is the same command run again: the same input, a fresh run (its own id, in
//! the store when there is one). Runs go one at a time: a run going on when the file changes
//! finishes on the graph it started with, then the next one starts on the new file. An edit
//! that does not validate is reported, and the last good graph is kept (no run starts until
//! the file is valid again). A save that leaves the text as it was starts nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentgraph_engine::{CompiledGraph, DynState, RunConfig};
use anyhow::{Context as _, Result, anyhow};
use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

use super::Ctx;
use super::file::{follow, input_json, load, open_store};
use crate::cli::RunFileArgs;

/// How long the file must stay unchanged before it is read again (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(200);

pub(crate) async fn run(ctx: &mut Ctx, args: RunFileArgs) -> Result<()> {
    let file = absolute(&args.file)?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // The folder is watched, not the file: editors that save by replacing the file would
    // leave a watch on the old one.
    let (tx, mut changes) = mpsc::unbounded_channel::<()>();
    let watched = file.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
        if let Ok(events) = result
            && events.iter().any(|e| e.path == watched)
        {
            let _ = tx.send(());
        }
    })
    .context("cannot watch the file")?;
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;

    let store = open_store(ctx.store.as_deref()).await?;
    let input = input_json(args.input.as_deref())?;
    let shown = args.file.display().to_string();
    eprintln!("watching {shown}: each change runs it again with the same input (Ctrl-C stops)");

    let mut text = std::fs::read_to_string(&file).ok();
    let mut graph: Option<CompiledGraph<DynState>> = report(load(&args.file), &shown, None);
    let mut runs = 0u64;
    loop {
        if let Some(g) = &graph {
            runs += 1;
            if runs > 1 {
                eprintln!("{shown} changed: run {runs}, on the new graph");
            }
            let outcome = match DynState::from_json(g.schema(), input.clone()) {
                Ok(state) => {
                    let mut config = RunConfig::new();
                    if let Some(store) = &store {
                        config = config.store(store.clone()).store_events(true);
                    }
                    follow(ctx, g.run_with(state, config)).await
                }
                Err(e) => Err(anyhow!("the input: {e}")),
            };
            if let Err(e) = outcome {
                eprintln!("error: {e:#}");
            }
            ctx.out.flush()?;
        }
        // The next change that alters the text (changes made during the run count).
        loop {
            tokio::select! {
                change = changes.recv() => {
                    if change.is_none() {
                        return Ok(());
                    }
                }
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
            // Let a burst of writes settle, and take them as one change.
            while changes.try_recv().is_ok() {}
            let now = std::fs::read_to_string(&file).ok();
            if now == text {
                continue;
            }
            text = now;
            match report(load(&args.file), &shown, graph.as_ref()) {
                Some(new) => {
                    graph = Some(new);
                    break;
                }
                None => continue,
            }
        }
    }
}

/// The graph just loaded, or `None` with its errors printed (and whether the last good graph
/// is kept).
fn report(
    loaded: Result<CompiledGraph<DynState>>,
    shown: &str,
    kept: Option<&CompiledGraph<DynState>>,
) -> Option<CompiledGraph<DynState>> {
    match loaded {
        Ok(graph) => Some(graph),
        Err(e) => {
            eprintln!("{e:#}");
            if kept.is_some() {
                eprintln!("{shown} is not valid: the last good graph is kept until it is fixed");
            } else {
                eprintln!("{shown} is not valid: waiting for it to be fixed");
            }
            None
        }
    }
}

/// `file` from the root (event paths are absolute), its folder resolved.
fn absolute(file: &Path) -> Result<PathBuf> {
    let name = file
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file", file.display()))?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot find the folder of {}", file.display()))?;
    Ok(dir.join(name))
}
