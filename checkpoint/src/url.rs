//! Where a store is, as a URL: `sled:PATH`, `redb:PATH`, or a bare path (a sled store).
//!
//! Tools (the command-line tool, a program's configuration) take a store as one string.
//! [`StoreUrl::parse`] splits off its scheme; [`open_url`] opens the embedded stores this
//! crate has. A scheme served by another crate (a database server's store) is parsed the
//! same way, and its crate opens it: a caller matches on [`StoreUrl::scheme`] first and hands
//! the rest to `open_url`, which names the schemes it knows when it is given another.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::error::StoreError;
use crate::store::CheckpointStore;

/// A store's location, parsed: its scheme and what follows it.
///
/// A string starting with a scheme (two or more of ASCII letters, digits, `+`, `-`, `.`,
/// starting with a letter) and a colon is a URL of that scheme, lowercased: `sled:./runs`,
/// `redb:/var/lib/app/runs.redb`, `postgres://host/db`. Anything else is a path to a sled
/// store, as the tools took before they took URLs (a one-letter scheme is a Windows drive,
/// `C:\runs`, so a path too). Write `sled:` before a path that contains a colon.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::StoreUrl;
///
/// let url = StoreUrl::parse("redb:/var/lib/app/runs.redb").unwrap();
/// assert_eq!(url.scheme(), "redb");
/// assert_eq!(url.rest(), "/var/lib/app/runs.redb");
/// assert_eq!(url.path().unwrap(), std::path::Path::new("/var/lib/app/runs.redb"));
///
/// let bare = StoreUrl::parse("./runs").unwrap();
/// assert_eq!((bare.scheme(), bare.rest()), ("sled", "./runs"));
///
/// let pg = StoreUrl::parse("postgres://user@db/agents").unwrap();
/// assert_eq!(pg.scheme(), "postgres");
/// assert_eq!(pg.as_str(), "postgres://user@db/agents");
/// assert_eq!(pg.path(), None); // not a file store
///
/// assert!(StoreUrl::parse("redb:").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    text: String,
    scheme: String,
    /// Where the rest starts in `text`.
    rest: usize,
}

/// The schemes of the embedded stores, whose rest is a path.
const FILE_SCHEMES: [&str; 2] = ["sled", "redb"];

/// Why a store URL cannot be parsed or opened.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{StoreUrl, UrlError};
/// let err = StoreUrl::parse("redb:").unwrap_err();
/// assert!(matches!(err, UrlError::Empty { .. }));
/// assert!(err.to_string().contains("write `redb:PATH`"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL has a scheme but nothing after it.
    #[error("the store URL `{url}` has nothing after `{scheme}:` (write `{scheme}:PATH`)")]
    Empty {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// No store of this build has the scheme.
    #[error("unknown store scheme `{scheme}` in `{url}`: the stores are {known}")]
    UnknownScheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
        /// The schemes known, for the message (`sled:PATH`, ...).
        known: String,
    },
    /// The scheme's store is not built in: its cargo feature is off.
    #[error("the store URL `{url}` needs the `{feature}` feature of agentgraph")]
    NotBuilt {
        /// The URL.
        url: String,
        /// The feature that builds its store.
        feature: &'static str,
    },
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StoreUrl {
    /// Parses a store's location (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`UrlError::Empty`] for an empty string or a scheme with nothing after it.
    pub fn parse(text: &str) -> Result<StoreUrl, UrlError> {
        let (scheme, rest) = match split_scheme(text) {
            Some((scheme, _)) => (scheme.to_ascii_lowercase(), scheme.len() + 1),
            None => ("sled".to_owned(), 0),
        };
        if text[rest..].is_empty() {
            return Err(UrlError::Empty {
                url: text.to_owned(),
                scheme,
            });
        }
        Ok(StoreUrl {
            text: text.to_owned(),
            scheme,
            rest,
        })
    }

    /// The scheme, lowercase (`sled` for a bare path).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::StoreUrl;
    /// assert_eq!(StoreUrl::parse("REDB:x.redb").unwrap().scheme(), "redb");
    /// assert_eq!(StoreUrl::parse("runs").unwrap().scheme(), "sled");
    /// ```
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// What follows the scheme and its colon (the whole string for a bare path).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::StoreUrl;
    /// assert_eq!(StoreUrl::parse("sled:a:b").unwrap().rest(), "a:b");
    /// ```
    pub fn rest(&self) -> &str {
        &self.text[self.rest..]
    }

    /// The string parsed, as given.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::StoreUrl;
    /// let url = StoreUrl::parse("postgres://db/runs").unwrap();
    /// assert_eq!(url.as_str(), "postgres://db/runs");
    /// assert_eq!(url.to_string(), "postgres://db/runs");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The store's path, for the schemes of the embedded stores (`sled`, `redb`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use agentgraph_checkpoint::StoreUrl;
    /// assert_eq!(StoreUrl::parse("redb:a.redb").unwrap().path(), Some(Path::new("a.redb")));
    /// assert_eq!(StoreUrl::parse("postgres://db").unwrap().path(), None);
    /// ```
    pub fn path(&self) -> Option<&Path> {
        FILE_SCHEMES
            .contains(&self.scheme.as_str())
            .then(|| Path::new(self.rest()))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreUrl::parse(s)
    }
}

/// The scheme of `text` and what follows its colon, if it starts with one.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    let valid = first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (valid && scheme.len() > 1).then_some((scheme, rest))
}

/// Opens the embedded store `url` names (`sled:PATH`, `redb:PATH`, a bare path), creating it
/// if there is none. A caller that also opens stores of other crates matches on
/// [`StoreUrl::scheme`] before it calls this.
///
/// # Errors
///
/// [`UrlError::UnknownScheme`] for a scheme that is not an embedded store's (the message lists
/// them), [`UrlError::NotBuilt`] when the store's feature is off, [`UrlError::Store`] when
/// it fails to open ([`StoreError::Locked`], [`StoreError::Corrupt`], ...).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{StoreUrl, UrlError, open_url};
///
/// # fn main() -> Result<(), UrlError> {
/// let dir = tempfile::tempdir().unwrap();
/// let url = StoreUrl::parse(&format!("sled:{}", dir.path().join("runs").display()))?;
/// let store = open_url(&url)?;
/// # drop(store);
/// let unknown = StoreUrl::parse("mongodb://db/runs")?;
/// assert!(matches!(open_url(&unknown), Err(UrlError::UnknownScheme { .. })));
/// # Ok(())
/// # }
/// ```
pub fn open_url(url: &StoreUrl) -> Result<Arc<dyn CheckpointStore>, UrlError> {
    match url.scheme() {
        "sled" => open_sled(url),
        "redb" => open_redb(url),
        scheme => Err(UrlError::UnknownScheme {
            url: url.to_string(),
            scheme: scheme.to_owned(),
            known: "`sled:PATH` (or a bare path), `redb:PATH`".to_owned(),
        }),
    }
}

#[cfg(feature = "sled")]
fn open_sled(url: &StoreUrl) -> Result<Arc<dyn CheckpointStore>, UrlError> {
    Ok(Arc::new(crate::SledStore::open(url.rest())?))
}

#[cfg(not(feature = "sled"))]
fn open_sled(url: &StoreUrl) -> Result<Arc<dyn CheckpointStore>, UrlError> {
    Err(UrlError::NotBuilt {
        url: url.to_string(),
        feature: "sled",
    })
}

#[cfg(feature = "redb")]
fn open_redb(url: &StoreUrl) -> Result<Arc<dyn CheckpointStore>, UrlError> {
    Ok(Arc::new(crate::RedbStore::open(url.rest())?))
}

#[cfg(not(feature = "redb"))]
fn open_redb(url: &StoreUrl) -> Result<Arc<dyn CheckpointStore>, UrlError> {
    Err(UrlError::NotBuilt {
        url: url.to_string(),
        feature: "redb",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_paths() {
        for (text, scheme, rest) in [
            ("sled:runs", "sled", "runs"),
            ("SLED:runs", "sled", "runs"),
            ("redb:./a:b.redb", "redb", "./a:b.redb"),
            ("runs", "sled", "runs"),
            ("/var/runs", "sled", "/var/runs"),
            ("./x:y", "sled", "./x:y"),
            ("C:\\runs", "sled", "C:\\runs"),
            ("postgres://u@h:5432/db", "postgres", "//u@h:5432/db"),
            ("1x:y", "sled", "1x:y"),
        ] {
            let url = StoreUrl::parse(text).unwrap();
            assert_eq!((url.scheme(), url.rest()), (scheme, rest), "{text}");
            assert_eq!(url.as_str(), text);
        }
        assert!(matches!(StoreUrl::parse(""), Err(UrlError::Empty { .. })));
        assert!(matches!(
            StoreUrl::parse("sled:"),
            Err(UrlError::Empty { .. })
        ));
    }
}
