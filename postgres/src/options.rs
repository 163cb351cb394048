//! Where the store connects and how: [`PostgresOptions`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use agentgraph_checkpoint::{Result, StoreError};
use tokio_postgres::Config;

use crate::error::ConfigError;

/// The schema the store's tables live in when none is chosen.
///
/// # Examples
///
/// ```
/// use agentgraph_postgres::{DEFAULT_SCHEMA, PostgresOptions};
/// assert_eq!(PostgresOptions::new("postgres://localhost/app")?.schema(), DEFAULT_SCHEMA);
/// # Ok::<(), agentgraph_checkpoint::StoreError>(())
/// ```
pub const DEFAULT_SCHEMA: &str = "agentgraph";

/// How a [`PostgresStore`](crate::PostgresStore) connects: the server (a `postgres://` URL or
/// a `key=value` connection string, as libpq reads them), the schema its tables live in, and
/// the size of its connection pool.
///
/// The password is kept for connecting and never shown: not by `Debug`, not in errors.
///
/// # Examples
///
/// ```
/// use agentgraph_postgres::PostgresOptions;
///
/// let options = PostgresOptions::new("postgres://ann:secret@db.example:5433/app?schema=runs_v1")?
///     .max_connections(8);
/// assert_eq!(options.schema(), "runs_v1");
/// assert_eq!(options.get_max_connections(), 8);
/// let shown = format!("{options:?}");
/// assert!(shown.contains("db.example") && !shown.contains("secret"));
/// # Ok::<(), agentgraph_checkpoint::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    pub(crate) config: Config,
    pub(crate) schema: String,
    pub(crate) max_connections: usize,
    pub(crate) wait_timeout: Duration,
    pub(crate) group_ops: bool,
    pub(crate) deleted_item_retention: Duration,
}

impl PostgresOptions {
    /// Options for the server that `url` names: `postgres://user:password@host:port/dbname`
    /// (or `postgresql://`, or a `key=value` string such as `host=/run/postgresql
    /// user=app`). One parameter of the URL's query is the store's own, not libpq's:
    /// `schema=NAME` chooses the schema (default [`DEFAULT_SCHEMA`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when `url` does not parse or the schema name is not a plain
    /// identifier; the message never repeats the URL (it may hold a password).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::new("postgres://localhost/app")?.schema(), "agentgraph");
    /// let err = PostgresOptions::new("postgres://ann:hunter2@host:notaport/db").unwrap_err();
    /// assert!(!err.to_string().contains("hunter2"));
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn new(url: &str) -> Result<Self> {
        let (url, schema) = take_schema(url);
        let mut config = Config::from_str(&url).map_err(|e| {
            // The parser's messages name options, not values; still, say only what kind of
            // error it was.
            StoreError::Backend(Box::new(ConfigError(format!(
                "the PostgreSQL connection URL does not parse ({e})"
            ))))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("agentgraph");
        }
        let options = PostgresOptions {
            config,
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: 16,
            wait_timeout: Duration::from_secs(30),
            group_ops: true,
            deleted_item_retention: Duration::from_secs(3600),
        };
        match schema {
            Some(schema) => options.with_schema(&schema),
            None => Ok(options),
        }
    }

    /// Puts the store's tables in `schema` (created at connect if missing): several stores
    /// share one database in different schemas.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] unless `schema` is 1 to 63 lowercase ASCII letters, digits and
    /// underscores, not starting with a digit.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_postgres::PostgresOptions;
    /// let options = PostgresOptions::new("postgres://localhost/app")?.with_schema("tenant_7")?;
    /// assert_eq!(options.schema(), "tenant_7");
    /// assert!(PostgresOptions::new("postgres://localhost/app")?.with_schema("Robert'); --").is_err());
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn with_schema(mut self, schema: &str) -> Result<Self> {
        let plain = !schema.is_empty()
            && schema.len() <= 63
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(StoreError::Backend(Box::new(ConfigError(format!(
                "schema name {schema:?}: use 1 to 63 lowercase letters, digits and underscores, not starting with a digit"
            )))));
        }
        self.schema = schema.to_owned();
        Ok(self)
    }

    /// At most `n` connections to the server (at least 1; default 16). Each commit and each
    /// read takes one for its duration.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_postgres::PostgresOptions;
    /// let options = PostgresOptions::new("postgres://localhost/app")?.max_connections(0);
    /// assert_eq!(options.get_max_connections(), 1);
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Names the store's connections on the server (`application_name`, shown by
    /// `pg_stat_activity`; default `agentgraph`).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_postgres::PostgresOptions;
    /// let options = PostgresOptions::new("postgres://localhost/app")?.application_name("worker-3");
    /// assert!(format!("{options:?}").contains("worker-3"));
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// How long an operation waits for a free connection, or for a new one to connect, before
    /// failing with [`StoreError::Unavailable`] (default 30 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_postgres::PostgresOptions;
    /// let options = PostgresOptions::new("postgres://localhost/app")?
    ///     .wait_timeout(Duration::from_secs(5));
    /// # let _ = options;
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self.config.connect_timeout(timeout);
        self
    }

    /// Whether a commit groups consecutive operations of one kind into one statement over
    /// arrays (the default), or sends one statement per operation (both pipelined in one
    /// round trip). For the benchmark that compares them.
    #[doc(hidden)]
    pub fn group_ops(mut self, group: bool) -> Self {
        self.group_ops = group;
        self
    }

    /// The schema of the store's tables.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::new("postgres://h/app?schema=s2")?.schema(), "s2");
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The most connections the store opens.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::new("postgres://h/app")?.get_max_connections(), 16);
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn get_max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long the record of a deleted item (a tombstone) is kept for other processes'
    /// handles to catch up with the deletion before
    /// [`prune_deleted_items`](agentgraph_checkpoint::CheckpointStore::prune_deleted_items)
    /// (which every sweep calls) removes it; default one hour. A handle that has not caught up
    /// with a removed tombstone reads every item again at its next semantic search, so this
    /// trades the table's size against such full reads.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_postgres::PostgresOptions;
    /// let options = PostgresOptions::new("postgres://localhost/app")?
    ///     .deleted_item_retention(Duration::from_secs(600));
    /// assert_eq!(options.get_deleted_item_retention(), Duration::from_secs(600));
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn deleted_item_retention(mut self, retention: Duration) -> Self {
        self.deleted_item_retention = retention;
        self
    }

    /// How long deleted items' tombstones are kept (see
    /// [`deleted_item_retention`](PostgresOptions::deleted_item_retention)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_postgres::PostgresOptions;
    /// let options = PostgresOptions::new("postgres://localhost/app")?;
    /// assert_eq!(options.get_deleted_item_retention(), Duration::from_secs(3600));
    /// # Ok::<(), agentgraph_checkpoint::StoreError>(())
    /// ```
    pub fn get_deleted_item_retention(&self) -> Duration {
        self.deleted_item_retention
    }

    /// The connection configuration with the session settings the store needs.
    pub(crate) fn session_config(&self) -> Config {
        let mut config = self.config.clone();
        let mut opts = config.get_options().unwrap_or("").to_owned();
        if !opts.is_empty() {
            opts.push(' ');
        }
        // The schema name is a plain identifier (checked): no quoting or escaping needed.
        opts.push_str(&format!("-c search_path={}", self.schema));
        config.options(opts);
        config
    }
}

/// Takes the store's own `schema=` parameter out of a URL's query.
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("server", &Server(&self.config))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The server a configuration names, without its password: `user@host:port/dbname`.
pub(crate) struct Server<'a>(pub(crate) &'a Config);

impl fmt::Debug for Server<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
        write!(
            f,
            "\"{}@{}:{}/{} ({})\"",
            c.get_user().unwrap_or(""),
            hosts.join(","),
            ports.join(","),
            c.get_dbname().unwrap_or(""),
            c.get_application_name().unwrap_or(""),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_the_stores() {
        assert_eq!(
            take_schema("postgres://h/db?schema=s1&sslmode=disable"),
            (
                "postgres://h/db?sslmode=disable".to_owned(),
                Some("s1".to_owned())
            )
        );
        assert_eq!(
            take_schema("postgres://h/db"),
            ("postgres://h/db".to_owned(), None)
        );
        let o = PostgresOptions::new("postgres://u:pw@h/db?schema=s1&sslmode=disable").unwrap();
        assert_eq!(o.schema(), "s1");
        assert!(
            o.session_config()
                .get_options()
                .unwrap()
                .contains("search_path=s1")
        );
    }
}
