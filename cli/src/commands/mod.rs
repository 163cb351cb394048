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
    /// `--key-env`.
    key_env: Option<String>,
}

impl Ctx {
    /// Opens the store the command line names (read through the keys of `--key-env`).
    pub(crate) async fn open_store(&self) -> Result<Store> {
        let mut store = store::open(self.store.as_deref()).await?;
        if let Some(encryption) = self.encryption()? {
            let wrapped = encryption.wrap(store.inspector.store().clone());
            store.inspector = agentgraph_engine::StoreInspector::new(wrapped);
        }
        Ok(store)
    }

    /// The keys of `--key-env` (or `AGENTGRAPH_KEYS`), if given.
    pub(crate) fn encryption(
        &self,
    ) -> Result<Option<agentgraph_checkpoint::encryption::Encryption>> {
        use agentgraph_checkpoint::encryption::{Encryption, EnvKeys};
        let var = match &self.key_env {
            Some(var) => var.as_str(),
            None if std::env::var_os(store::KEYS_VAR).is_some() => store::KEYS_VAR,
            None => return Ok(None),
        };
        let keys = EnvKeys::from_var(var)
            .map_err(|e| anyhow::anyhow!(e).context(format!("cannot read the keys in {var}")))?;
        Ok(Some(Encryption::new(keys)))
    }
}

/// Runs the command `cli` asks for.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let mut ctx = Ctx {
        out: output::stdout(),
        json: cli.json,
        store: cli.store,
        key_env: cli.key_env,
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
