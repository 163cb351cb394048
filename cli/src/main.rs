//! `agentgraph`: the command-line tool of agentgraph. It reads the checkpoint store a program
//! wrote (a `SledStore` directory) without the program's types, and follows running runs
//! through the program's monitor.
//!
//! | command | what it does |
//! | --- | --- |
//! | `runs [--status S] [--all] [--user U] [--tag T] [--label K=V] [--title TEXT]` | the runs, with status, last step, last write, session and error |
//! | `show RUN` | one run: summary, last error, pending interrupts, counts, fingerprint, fork |
//! | `history RUN` | its checkpoints: step, parent, time, fields written, next nodes, bytes |
//! | `invocations RUN` | a thread's invocations: steps, checkpoints, start, input fields |
//! | `state RUN [--step N]` | its state as JSON (runs made with `RunConfig::monitored()`) |
//! | `events RUN [--after N] [--follow [--monitor URL]]` | its stored events, or live ones |
//! | `prune RUN --keep N`, `prune --all --keep N` | deletes old checkpoints |
//! | `delete RUN` | deletes a run and its subgraph runs |
//! | `sweep` | deletes the runs whose time to live is over (and expired memory items) |
//! | `memory list\|get\|search [--namespace NS]` | long-term memory: namespaces, an item, a filtered search |
//! | `dot FILE` | a graph description exported by a program, as Graphviz DOT |
//! | `new TEMPLATE [FILE]` | writes a starting graph file (`review`, `map-reduce`, `chat-agent`, `supervisor`) |
//! | `validate FILE` | checks a graph file: each error at its `FILE:LINE:COLUMN` |
//! | `run FILE [--input JSON\|@FILE] [--thread ID]` | runs a graph file, events printed live |
//! | `resume RUN --graph FILE [--answer V] [--answer-to ID=V] [--allow-changed]` | resumes a run of a graph file |
//! | `audit list [RUN]`, `audit verify [RUN] [--head HASH]` | audit trails: the entries, the hash chain checked (exit code 3 when broken) |
//!
//! The store comes from `--store PATH` or `AGENTGRAPH_STORE`. `--json` prints one JSON
//! document per command (JSON lines for `events`) for scripts. Errors go to stderr with exit
//! code 1 (2 for a command line that does not parse, 3 for a broken audit chain). `--as NAME`
//! names who runs the command in the audit trails (the OS user otherwise); Ctrl-C during `run`
//! or `resume` cancels the run as that caller.
//!
//! A sled store is open in one process at a time: while a program runs, the tool cannot open
//! its store and says so; follow the program's runs with
//! `agentgraph events RUN --follow --monitor URL` instead.
//!
//! Install it with `cargo install --path cli`, or run it from the workspace with
//! `cargo run -p agentgraph-cli -- --store PATH runs`.

mod cli;
mod commands;
mod output;
mod store;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::anyhow!(e).context("cannot start the async runtime")),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // A broken audit chain: reported already, exit code 3.
        Err(e) if e.downcast_ref::<commands::Tampered>().is_some() => {
            let _ = fail(&e);
            ExitCode::from(3)
        }
        Err(e) => fail(&e),
    }
}

/// Prints `error` and its causes on stderr; exit code 1.
fn fail(error: &anyhow::Error) -> ExitCode {
    let style = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    let mut err = anstream::stderr();
    let _ = writeln!(err, "{style}error:{style:#} {error:#}");
    ExitCode::FAILURE
}

/// Whether the error is stdout closed by its reader (`agentgraph events r | head`), which ends
/// the command quietly.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
