//! One module per command; [`run`] dispatches.

mod delete;
mod dot;
mod events;
mod file;
mod history;
mod invocations;
mod memory;
mod pending;
mod prune;
mod queue;
mod runs;
#[cfg(feature = "serve")]
mod serve;
mod show;
mod state;
mod sweep;
mod watch;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::output::{self, Out};
use crate::store::{self, Store};

/// What every command gets: where to print, how, and where the store is.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Standard output.
    pub(crate) out: Out,
    /// `--json`.
    pub(crate) json: bool,
    store: Option<String>,
}

impl Ctx {
    /// Opens the store the command line names.
    pub(crate) async fn open_store(&self) -> Result<Store> {
        store::open(self.store.as_deref()).await
    }
}

/// Runs the command `cli` asks for.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let mut ctx = Ctx {
        out: output::stdout(),
        json: cli.json,
        store: cli.store,
    };
    match cli.command {
        Command::Runs(args) => runs::run(&mut ctx, args).await,
        Command::Show(args) => show::run(&mut ctx, &args.run).await,
        Command::History(args) => history::run(&mut ctx, &args.run).await,
        Command::Invocations(args) => invocations::run(&mut ctx, &args.run).await,
        Command::State(args) => state::run(&mut ctx, &args.run, args.step).await,
        Command::Events(args) => events::run(&mut ctx, args).await,
        Command::Prune(args) => prune::run(&mut ctx, args).await,
        Command::Pending(args) => pending::run(&mut ctx, &args.run).await,
        Command::Delete(args) => delete::run(&mut ctx, &args.run).await,
        Command::Sweep => sweep::run(&mut ctx).await,
        Command::Memory(args) => memory::run(&mut ctx, args).await,
        Command::Jobs(args) => queue::jobs(&mut ctx, args).await,
        Command::Workers => queue::workers(&mut ctx).await,
        Command::Dot(args) => dot::run(&mut ctx, &args.file),
        Command::Validate(args) => file::validate(&mut ctx, &args),
        Command::Run(args) => file::run(&mut ctx, args).await,
        Command::Resume(args) => file::resume(&mut ctx, args).await,
        Command::New(args) => file::new(&mut ctx, &args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(&mut ctx, args).await,
    }
}
