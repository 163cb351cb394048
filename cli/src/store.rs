//! Opening the store a command reads, with errors that say what to do.

use agentgraph_checkpoint::{StoreUrl, UrlError, open_url};
use agentgraph_engine::{Error, RunRecord, StoreError, StoreInspector};
use anyhow::{Context as _, Result, anyhow, bail};
use std::path::{Path, PathBuf};

/// An open store.
#[derive(Debug)]
pub(crate) struct Store {
    /// The reader of its runs.
    pub(crate) inspector: StoreInspector,
    /// Whether this process is the only one that can write to it (a sled or redb store is open
    /// in one process at a time): a run marked running there is not advancing.
    pub(crate) exclusive: bool,
    /// The PostgreSQL store, when it is one (its queue of workers is read too).
    pub(crate) postgres: Option<agentgraph_postgres::PostgresStore>,
    /// Whether it is read as one tenant's (`--tenant`).
    pub(crate) tenant_bound: bool,
}

/// The environment variable read for keys without `--key-env`.
pub(crate) const KEYS_VAR: &str = "AGENTGRAPH_KEYS";

/// The files a sled database directory always has.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// Opens the store `store` names (from `--store` or `AGENTGRAPH_STORE`): `sled:PATH` or a
/// bare path (a sled store's directory), `redb:PATH` (a redb store's file),
/// `postgres://...` (a PostgreSQL store, shared with other processes). Never creates an
/// embedded store: a path that does not hold one is an error.
pub(crate) async fn open(store: Option<&str>) -> Result<Store> {
    let Some(text) = store else {
        bail!(
            "no store given: pass `--store PATH` (the directory of the program's SledStore, `redb:FILE` for a RedbStore, `postgres://...` for a PostgresStore) or set AGENTGRAPH_STORE"
        );
    };
    let url = StoreUrl::parse(text)?;
    if matches!(url.scheme(), "postgres" | "postgresql") {
        // Shared with other processes: no lock to take, and a run marked running may be
        // advancing in another one. The URL may hold a password: never printed.
        let store = agentgraph_postgres::PostgresStore::connect(text)
            .await
            .map_err(|e| anyhow!(e).context("cannot open the PostgreSQL store"))?;
        return Ok(Store {
            inspector: StoreInspector::new(std::sync::Arc::new(store.clone())),
            exclusive: false,
            postgres: Some(store),
            tenant_bound: false,
        });
    }
    // Each embedded scheme's store.
    let (path, kind) = match url.scheme() {
        "sled" => {
            let path = url.path().expect("sled URLs are paths");
            check_is_store(path)?;
            (path, "a sled store")
        }
        "redb" => {
            let path = url.path().expect("redb URLs are paths");
            check_is_redb_store(path)?;
            (path, "a redb store")
        }
        scheme => bail!(
            "unknown store scheme `{scheme}` in `{text}`: give `sled:PATH` (or a bare path) for a sled store, `redb:PATH` for a redb store, or `postgres://...` for a PostgreSQL store"
        ),
    };
    let store = open_url(&url).map_err(|e| match e {
        UrlError::Store(StoreError::Locked { .. }) => anyhow!(
            "the store at {} is in use by a running program ({kind} is open in one process at a time); \
             follow its runs through that program's monitor instead \
             (`agentgraph events RUN --follow --monitor URL`), or wait for it to exit",
            path.display()
        ),
        other => anyhow!(other).context(format!("cannot open the store at {}", path.display())),
    })?;
    Ok(Store {
        inspector: StoreInspector::new(store),
        exclusive: true,
        postgres: None,
        tenant_bound: false,
    })
}

/// Fails unless `path` is a file that may hold a redb store (it exists and is not empty; the
/// store checks the rest when it opens).
fn check_is_redb_store(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "no store at {}: the path does not exist or cannot be read",
            path.display()
        )
    })?;
    if !meta.is_file() || meta.len() == 0 {
        bail!(
            "{} is not a redb store: it is {}, and a redb store is the file a program opened with `RedbStore::open`",
            path.display(),
            if meta.is_file() {
                "an empty file"
            } else {
                "a directory"
            }
        );
    }
    Ok(())
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
            "{} is not a store: it is a file, and a store is the directory a program opened with `SledStore::open` (give a RedbStore's file as `redb:PATH`)",
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
    /// Reads and writes only `tenant`'s runs and memory from now on (through a
    /// [`TenantStore`](agentgraph_checkpoint::TenantStore)); the queue of workers, which spans
    /// tenants, is no longer read.
    pub(crate) fn for_tenant(&mut self, tenant: agentgraph_checkpoint::TenantId) {
        let view = agentgraph_checkpoint::TenantStore::new(self.inspector.store().clone(), tenant);
        self.inspector = StoreInspector::new(view);
        self.tenant_bound = true;
    }

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
