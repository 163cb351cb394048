//! The command line, as clap parses it.

use std::path::PathBuf;
use std::time::Duration;

use agentgraph_engine::RunStatus;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

/// Inspect, follow, prune and serve the runs of an agentgraph checkpoint store.
///
/// Most commands read a store, given with `--store` or the `AGENTGRAPH_STORE` environment
/// variable: the directory of a `SledStore` (`sled:PATH` or just `PATH`), the file of a
/// `RedbStore` (`redb:PATH`), or a PostgreSQL store (`postgres://USER@HOST/DB?schema=NAME`).
/// An embedded store is open in one process at a time: while a program runs on it, read its
/// runs through that program's monitor instead (`agentgraph events RUN --follow --monitor
/// URL`). A PostgreSQL store is shared: its runs are read, and followed, while others run them.
#[derive(Debug, Parser)]
#[command(name = "agentgraph", version, propagate_version = true)]
#[command(after_help = "Examples:
  agentgraph --store ./runs.db runs
  agentgraph --store redb:./runs.redb runs
  agentgraph --store postgres://app@db/app events run-42 --follow
  agentgraph --store ./runs.db runs --user ann --tag billing --label channel=email
  agentgraph --store ./runs.db show run-42
  agentgraph --store ./runs.db invocations chat-7
  agentgraph --store ./runs.db pending run-42 --json
  agentgraph --store ./runs.db state run-42 --step 3 --json
  agentgraph --store ./runs.db memory search --namespace users/ann --filter '{\"eq\": [\"kind\", \"note\"]}'
  agentgraph events run-42 --follow --monitor http://127.0.0.1:7070
  agentgraph dot graph.json | dot -Tsvg > graph.svg")]
pub(crate) struct Cli {
    /// The store an agentgraph program wrote: `PATH` or `sled:PATH` (a sled store's
    /// directory), `redb:PATH` (a redb store's file), `postgres://...` (a PostgreSQL store;
    /// its password is never printed).
    #[arg(long, global = true, env = "AGENTGRAPH_STORE", value_name = "STORE")]
    pub(crate) store: Option<String>,

    /// Print JSON for scripts instead of text: one document per command on stdout (JSON
    /// lines for `events`), no colours, no progress bars.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Act as tenant `ID` (`RunConfig::tenant`): every command reads and writes only the
    /// tenant's runs, threads, events and memory (another tenant's run is not found), and the
    /// runs `run` starts are the tenant's. Without it, every tenant's runs.
    #[arg(long, global = true, env = "AGENTGRAPH_TENANT", value_name = "ID")]
    pub(crate) tenant: Option<agentgraph_checkpoint::TenantId>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Who runs the command, as the audit trails of the runs it starts, resumes, cancels
    /// (Ctrl-C during `run` or `resume`), prunes or deletes record it (`agentgraph audit list
    /// RUN`); the OS user when left out.
    #[arg(
        long = "as",
        global = true,
        env = "AGENTGRAPH_CALLER",
        value_name = "NAME"
    )]
    pub(crate) caller: Option<String>,
    /// The environment variable holding the keys of encrypted runs (`RunConfig::encryption`):
    /// `ID=KEY` entries separated by commas, each key 64 hex digits or 32 bytes in base64,
    /// the current key first. Records are decrypted when read and, by `run` and `resume`,
    /// encrypted under the current key. Without it, `AGENTGRAPH_KEYS` is read when it is set.
    #[arg(long, global = true, value_name = "VAR")]
    pub(crate) key_env: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the runs of the store: status, last step, when each was last written, and the
    /// error of failed runs; with the user, title, tags and expiry of runs that have them
    /// (`RunConfig::metadata`, `RunConfig::ttl`). Subgraph runs (`{run}/@{node}/{task}`) are
    /// hidden unless `--all` is given, which shows them indented under their parents.
    Runs(RunsArgs),
    /// Show one run: its status, times, last step, how many invocations a thread has had, last
    /// error, the interrupts it waits on (with their ids and payloads), the tasks of the step
    /// it stopped in (as `pending` lists them), how many checkpoints and events it stored, its
    /// graph's fingerprint, the run it was forked from and its subgraph runs.
    Show(RunArg),
    /// List a run's checkpoints, oldest first: step, parent step, time, the fields the step
    /// wrote, the nodes the next step runs (for a run stopped in that step, those still to
    /// run, then `(done: ...)` those that finished), and the bytes of values written with it.
    /// A thread invoked more than once lists them under an `invocation N` heading per
    /// invocation (`--json` gives each checkpoint's `invocation`).
    History(RunArg),
    /// List a thread's invocations (its turns, see `CompiledGraph::invoke_thread`), oldest
    /// first: number, first and last step, checkpoints, when it started and the fields its
    /// input wrote (every field for the first, whose checkpoint holds the whole state). A run
    /// that is not a thread has one. After `prune`, the oldest invocation
    /// listed may have lost its first checkpoints: its start and input show as pruned.
    Invocations(RunArg),
    /// Print a run's state as JSON: after its newest checkpoint, or after `--step N`. Needs a
    /// run made with `RunConfig::monitored()` (it stores JSON views of its state).
    State(StateArgs),
    /// Print a run's stored events (runs made with `RunConfig::store_events(true)` or
    /// `monitored()`), one per line, or as JSON lines with `--json`.
    ///
    /// With `--follow`, keep printing new events until the run finishes, fails or stops at an
    /// interrupt. A program that is running a run holds its (sled) store, so follow such a run
    /// through the program's monitor with `--monitor URL`; without `--monitor`, the events are
    /// read from the store.
    Events(EventsArgs),
    /// Delete old checkpoints: keep the newest `--keep N` of one run, or of every run with
    /// `--all`. Events, and the values the kept checkpoints need, stay.
    Prune(PruneArgs),
    /// List the tasks of the step a run stopped in (or is running): the step after its newest
    /// checkpoint. For each: node, task id, attempts, and where it stands: `done` (its write is
    /// saved, not committed; a resume applies it without running the task again), `retrying`,
    /// `failed` or `interrupted`. Empty for a run that stopped between steps.
    Pending(RunArg),
    /// Delete a run and everything stored for it, with its subgraph runs.
    Delete(RunArg),
    /// Delete the runs whose time to live (`RunConfig::ttl`) is over, with their subgraph
    /// runs, once, and list them: what a program's `Sweeper` does periodically. A run in use
    /// is never deleted.
    Sweep,
    /// Read the store's long-term memory (what nodes wrote with `Context::memory`):
    /// `memory list` the namespaces, `memory get NAMESPACE KEY` one item's value,
    /// `memory search` the items under a namespace, filtered on their JSON fields. Namespaces
    /// are written as segments joined by `/` (`users/ann`).
    Memory(MemoryArgs),
    /// List the jobs of the queue of workers (a PostgreSQL store's): runs to start, threads'
    /// inputs and answers, oldest first, with their status, graph, run, worker, tenant and who
    /// queued them (with `--tenant`, the tenant's jobs only).
    Jobs(JobsArgs),
    /// List the workers of the queue (a PostgreSQL store's): the graphs each runs, when it was
    /// last seen, how many jobs it holds, whether it stopped.
    Workers,
    /// Print a graph as Graphviz DOT, from the JSON of its description that a program
    /// exported (`serde_json::to_string(&graph.describe())`).
    Dot(DotArgs),
    /// Check a graph file (YAML or JSON): its format, then everything compiling it checks.
    /// Each error is printed as `FILE:LINE:COLUMN: node or edge: message`, with a suggestion
    /// for a misspelt name; exit code 1 when there is any.
    Validate(ValidateArgs),
    /// Run a graph file: `--input` is the state's JSON (or, with `--thread`, the thread's next
    /// input), events are printed as they come (JSON lines with `--json`), then the final state
    /// or the interrupts the run waits on. With `--store`, the run is checkpointed there (an
    /// embedded store is created when missing) and can be resumed. Ctrl-C cancels the run as
    /// `--as` (it stops at its next step boundary, checkpointed, resumable, and its audit
    /// trail names who cancelled it); a second Ctrl-C quits at once.
    Run(RunFileArgs),
    /// Resume a run of a graph file that stopped at interrupts (or failed): `--answer` answers
    /// its only interrupt, `--answer-to ID=VALUE` one of several (a value that is not JSON is
    /// taken as a string). A file changed since the run started is refused unless
    /// `--allow-changed` is given.
    Resume(ResumeArgs),
    /// Write a starting graph file from a template: `review` (a draft, a human review, then
    /// publishing), `map-reduce` (one task per document, then a join), `chat-agent` (an agent
    /// with an HTTP tool) or `supervisor` (a supervisor model and two worker agents). Refuses
    /// to replace a file unless `--force` is given.
    New(NewArgs),
    /// Serve the monitor over the store: the live web page, the JSON API, each run's events
    /// over SSE and Prometheus metrics, for runs no program is running any more (a program
    /// serves its own runs with `agentgraph::monitor`). Runs until Ctrl-C.
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
    /// Read and check the runs' audit trails (who started, resumed, answered, edited,
    /// forked, pruned, deleted or cancelled a run, hash-chained): `audit list` the runs that
    /// have one, `audit list RUN` a run's entries, `audit verify [RUN]` recompute the chain of
    /// one run (or of every run) and report the first broken link with its number; exit code
    /// 3 when a chain is broken. A deleted run's trail is kept.
    Audit(AuditArgs),
}

/// `validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The graph file (`.yaml`, `.yml` or `.json`).
    pub(crate) file: PathBuf,
}

/// `run`.
#[derive(Debug, Args)]
pub(crate) struct RunFileArgs {
    /// The graph file.
    pub(crate) file: PathBuf,
    /// The input: JSON, or `@FILE` to read it from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    pub(crate) input: Option<String>,
    /// The run's id; with a store, the thread whose next invocation this is.
    #[arg(long, value_name = "ID")]
    pub(crate) thread: Option<String>,
    /// Run, then run again with the same input each time the file changes (a development
    /// loop): each run uses the file as it was when it started, a run going on when the file
    /// changes finishes on its graph, and an edit that does not validate is reported while
    /// the last good graph is kept. Stop it with Ctrl-C.
    #[arg(long, conflicts_with = "thread")]
    pub(crate) watch: bool,
}

/// `resume`.
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The run's id.
    pub(crate) run: String,
    /// The graph file the run was started from.
    #[arg(long, value_name = "FILE")]
    pub(crate) graph: PathBuf,
    /// The answer to the run's only interrupt (JSON, or a string).
    #[arg(long, value_name = "VALUE")]
    pub(crate) answer: Option<String>,
    /// The answer to the interrupt `ID` (repeat it for several).
    #[arg(long, value_name = "ID=VALUE")]
    pub(crate) answer_to: Vec<String>,
    /// Resume even when the graph file changed since the run started.
    #[arg(long)]
    pub(crate) allow_changed: bool,
}

/// `new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The template: `review`, `map-reduce`, `chat-agent` (an agent with an HTTP tool) or
    /// `supervisor` (a supervisor model and two worker agents).
    pub(crate) template: String,
    /// Where to write it (`TEMPLATE.yaml` when left out).
    pub(crate) file: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

/// A command about one run.
#[derive(Debug, Args)]
pub(crate) struct RunArg {
    /// The run's id (as `agentgraph runs` lists it).
    pub(crate) run: String,
}

/// `runs`.
#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    /// Only runs with this status (repeat it for several).
    #[arg(long, value_name = "STATUS", value_parser = status_parser())]
    pub(crate) status: Vec<RunStatus>,
    /// Also list subgraph runs, indented under their parents.
    #[arg(long)]
    pub(crate) all: bool,
    /// Only the runs of this user (`RunMetadata::with_user`).
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Only runs with this tag (repeat it for runs with every one of several).
    #[arg(long, value_name = "TAG")]
    pub(crate) tag: Vec<String>,
    /// Only runs with this label (repeat it for runs with every one of several).
    #[arg(long, value_name = "KEY=VALUE", value_parser = label_parser)]
    pub(crate) label: Vec<(String, String)>,
    /// Only runs whose title contains this text, ignoring case.
    #[arg(long, value_name = "TEXT")]
    pub(crate) title: Option<String>,
}

/// `--label KEY=VALUE`.
fn label_parser(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// `state`.
#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    /// The run's id.
    pub(crate) run: String,
    /// The state after this step's checkpoint (0 is the input) instead of the newest.
    #[arg(long, value_name = "N")]
    pub(crate) step: Option<u64>,
}

/// `events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// The run's id.
    pub(crate) run: String,
    /// Only events after sequence number N.
    #[arg(long, value_name = "N")]
    pub(crate) after: Option<u64>,
    /// Keep printing events as they come until the run ends or stops at an interrupt.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Follow through the monitor server of the program running the run (for example
    /// `http://127.0.0.1:7070`) instead of the store. Reconnects when the connection drops,
    /// resuming after the last event printed.
    #[arg(long, value_name = "URL", requires = "follow")]
    pub(crate) monitor: Option<String>,
    /// The monitor's bearer token.
    #[arg(
        long,
        env = "AGENTGRAPH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// How often to look for new events when following a store.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub(crate) poll: Duration,
}

/// `prune`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["run", "all"]))]
pub(crate) struct PruneArgs {
    /// The run to prune.
    pub(crate) run: Option<String>,
    /// Prune every run of the store (subgraph runs too).
    #[arg(long)]
    pub(crate) all: bool,
    /// How many of the newest checkpoints to keep (at least 1; `agentgraph delete` removes a
    /// whole run).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) keep: u64,
}

/// `dot`.
#[derive(Debug, Args)]
pub(crate) struct DotArgs {
    /// The JSON file of a graph description, or `-` to read it from stdin.
    pub(crate) file: PathBuf,
}

/// `serve`.
#[cfg(feature = "serve")]
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free one). An address other than loopback
    /// needs `--token`.
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
    pub(crate) addr: std::net::SocketAddr,
    /// A bearer token that clients must send (`Authorization: Bearer TOKEN`); the page asks
    /// for it.
    #[arg(
        long,
        env = "AGENTGRAPH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
}

/// `--status`: the names of [`RunStatus`] (its `as_str`), offered as the possible values.
fn status_parser() -> impl TypedValueParser<Value = RunStatus> {
    PossibleValuesParser::new(RunStatus::ALL.map(RunStatus::as_str))
        .try_map(|name| name.parse::<RunStatus>())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// `memory`.
#[derive(Debug, Args)]
pub(crate) struct MemoryArgs {
    /// What to read.
    #[command(subcommand)]
    pub(crate) command: MemoryCommand,
}

/// The `memory` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum MemoryCommand {
    /// The namespaces that hold items (not expired) under `--namespace`.
    List {
        /// The namespace prefix (`users/ann`); every namespace without it.
        #[arg(long, default_value = "")]
        namespace: String,
    },
    /// One item's value (`--json`: the whole item).
    Get {
        /// Its namespace (`users/ann`).
        namespace: String,
        /// Its key.
        key: String,
    },
    /// The items under `--namespace`, in namespace and key order, filtered.
    Search {
        /// The namespace prefix (`users/ann`); every namespace without it.
        #[arg(long, default_value = "")]
        namespace: String,
        /// A filter on the items' JSON values, as JSON: `{"eq": ["team", "red"]}`,
        /// `{"gte": ["age", 30]}`, `{"exists": "email"}`, `{"and": [..]}`, `{"or": [..]}`,
        /// `{"not": ..}`.
        #[arg(long, value_name = "JSON")]
        filter: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
}

/// `jobs`: which jobs.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Only the jobs with this status: `queued`, `running`, `done`, `interrupted`, `failed`,
    /// `cancelled`.
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// The page after this job id.
    #[arg(long, default_value_t = 0)]
    pub(crate) after: i64,
    /// At most this many (1 to 10000).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u32,
}

/// `audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: AuditCommand,
}

/// The `audit` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// The runs with an audit trail (deleted ones too), or one run's entries, oldest first:
    /// number, time, caller, action and details.
    List {
        /// The run; every run with a trail when left out.
        run: Option<String>,
    },
    /// Recompute the hash chain of a run's trail (of every run's without RUN): each entry
    /// numbered after the one before, linked to its hash, its own hash that of its content.
    /// Prints each chain's entries and head hash, or its first broken link.
    Verify {
        /// The run; every run with a trail when left out.
        run: Option<String>,
        /// A head hash printed by an earlier `verify` (64 hex digits): that entry must still
        /// be in the chain, which shows that no entry was removed from its end since.
        #[arg(long, value_name = "HASH", requires = "run")]
        head: Option<String>,
    },
}
