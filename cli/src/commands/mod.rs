//! One module per command; [`run`] dispatches.

mod audit;
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
    /// Who runs the command, for the audit trails (`--as`, or the OS user).
    pub(crate) caller: String,
    /// `--tenant`.
    tenant: Option<agentgraph_checkpoint::TenantId>,
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
        if let Some(tenant) = &self.tenant {
            store.for_tenant(tenant.clone());
        }
        store.inspector = store.inspector.caller(self.caller.clone());
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
        caller: cli.caller.unwrap_or_else(os_user),
        tenant: cli.tenant,
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
        Command::Audit(args) => audit::run(&mut ctx, args).await,
    }
}

/// The OS user running the tool (`USER`, or `USERNAME` on Windows), or `unknown`.
fn os_user() -> String {
    ["USER", "USERNAME"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| agentgraph_checkpoint::audit::UNKNOWN_CALLER.to_owned())
}

pub(crate) use audit::Tampered;
