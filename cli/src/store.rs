//! Opening the store a command reads, with errors that say what to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentgraph_checkpoint::SledStore;
use agentgraph_engine::{CheckpointStore, Error, RunRecord, StoreError, StoreInspector};
use anyhow::{Context as _, Result, anyhow, bail};

/// An open store.
#[derive(Debug)]
pub(crate) struct Store {
    /// The reader of its runs.
    pub(crate) inspector: StoreInspector,
    /// Whether this process is the only one that can write to it (a sled store is open in one
    /// process at a time): a run marked running there is not advancing.
    pub(crate) exclusive: bool,
}

/// The files a sled database directory always has.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// Opens the store at `path` (from `--store` or `AGENTGRAPH_STORE`). Never creates one: a
/// path that does not hold a store is an error.
pub(crate) fn open(path: Option<&Path>) -> Result<Store> {
    let Some(path) = path else {
        bail!(
            "no store given: pass `--store PATH` (the directory of the program's SledStore) or set AGENTGRAPH_STORE"
        );
    };
    check_is_store(path)?;
    let store = SledStore::open(path).map_err(|e| match e {
        StoreError::Locked { .. } => anyhow!(
            "the store at {} is in use by a running program (a sled store is open in one process at a time); \
             follow its runs through that program's monitor instead \
             (`agentgraph events RUN --follow --monitor URL`), or wait for it to exit",
            path.display()
        ),
        other => anyhow!(other).context(format!("cannot open the store at {}", path.display())),
    })?;
    let store: Arc<dyn CheckpointStore> = Arc::new(store);
    Ok(Store {
        inspector: StoreInspector::new(store),
        exclusive: true,
    })
}

/// Fails unless `path` is a directory that holds a sled database.
fn check_is_store(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "no store at {}: the path does not exist or cannot be read",
            path.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "{} is not a store: it is a file, and a store is the directory a program opened with `SledStore::open`",
            path.display()
        );
    }
    if let Some(missing) = SLED_FILES
        .iter()
        .map(|f| path.join(f))
        .find(|f| !f.is_file())
    {
        bail!(
            "{} is not a store: it has no {} (a store is the directory a program opened with `SledStore::open`)",
            path.display(),
            file_name(&missing)
        );
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| PathBuf::from(path).display().to_string())
}

impl Store {
    /// The record of `run`, or the error that says it is not in the store.
    pub(crate) async fn run(&self, run: &str) -> Result<RunRecord> {
        self.inspector.run(run).await?.ok_or_else(|| not_found(run))
    }
}

/// The error for a run the store does not have.
pub(crate) fn not_found(run: &str) -> anyhow::Error {
    anyhow!("no run `{run}` in the store (list them with `agentgraph runs`)")
}

/// An engine error, with [`Error::RunNotFound`] of `run` said the command-line way.
pub(crate) fn engine_error(run: &str, e: Error) -> anyhow::Error {
    match e {
        Error::RunNotFound(missing) if missing == run => not_found(run),
        other => anyhow!(other),
    }
}
