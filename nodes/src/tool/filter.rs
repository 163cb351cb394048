//! Allow and deny lists of tools, by exact name and by glob pattern.

use std::collections::BTreeSet;
use std::fmt;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Which tools may be offered and called: allow and deny lists, each of exact names and of
/// glob patterns (`*`, `?`, `[abc]`, `{a,b}`, as the `globset` crate reads them).
///
/// - **Deny wins**: a tool matching a deny rule is refused, whatever allows it.
/// - **An empty allow list allows everything**; once it has a rule, only the tools matching
///   one are allowed.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{Refusal, ToolFilter};
///
/// let filter = ToolFilter::new()
///     .allow_pattern("fs_*")?
///     .allow("search")
///     .deny("fs_delete")
///     .deny_pattern("*_admin")?;
/// assert!(filter.permits("fs_read"));
/// assert!(filter.permits("search"));
/// assert!(!filter.permits("fs_delete")); // denied by name, though `fs_*` allows it
/// assert!(!filter.permits("fs_admin")); // denied by pattern
/// assert_eq!(filter.check("shell"), Err(Refusal::NotAllowed));
/// assert_eq!(filter.check("fs_delete"), Err(Refusal::Denied { rule: "fs_delete".into() }));
///
/// assert!(ToolFilter::new().permits("anything"));
/// # Ok::<(), agentgraph_nodes::tool::PatternError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ToolFilter {
    allow: Rules,
    deny: Rules,
}

/// Names and patterns of one list.
#[derive(Debug, Clone, Default)]
struct Rules {
    names: BTreeSet<String>,
    patterns: Vec<String>,
    set: GlobSet,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.patterns.is_empty()
    }

    fn add_pattern(&mut self, pattern: &str) -> Result<(), PatternError> {
        let mut builder = GlobSetBuilder::new();
        for p in self.patterns.iter().map(String::as_str).chain([pattern]) {
            builder.add(Glob::new(p).map_err(|source| PatternError {
                pattern: p.to_owned(),
                source,
            })?);
        }
        self.set = builder.build().map_err(|source| PatternError {
            pattern: pattern.to_owned(),
            source,
        })?;
        self.patterns.push(pattern.to_owned());
        Ok(())
    }

    /// The first rule matching `name`: the name itself, or the first pattern (in the order
    /// they were added) that matches it.
    fn matching(&self, name: &str) -> Option<&str> {
        if let Some(exact) = self.names.get(name) {
            return Some(exact);
        }
        if self.patterns.is_empty() {
            return None;
        }
        let hits = self.set.matches(name);
        hits.first().map(|&i| self.patterns[i].as_str())
    }
}

impl ToolFilter {
    /// A filter that allows every tool.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_nodes::tool::ToolFilter::new().permits("x"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows the tool with exactly this name.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolFilter;
    /// let f = ToolFilter::new().allow("search");
    /// assert!(f.permits("search"));
    /// assert!(!f.permits("search2"));
    /// ```
    #[must_use]
    pub fn allow(mut self, name: impl Into<String>) -> Self {
        self.allow.names.insert(name.into());
        self
    }

    /// Denies the tool with exactly this name.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolFilter;
    /// assert!(!ToolFilter::new().deny("shell").permits("shell"));
    /// ```
    #[must_use]
    pub fn deny(mut self, name: impl Into<String>) -> Self {
        self.deny.names.insert(name.into());
        self
    }

    /// Allows the tools whose names match a glob pattern.
    ///
    /// # Errors
    ///
    /// [`PatternError`] when the pattern is not a valid glob (an unclosed `[`, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolFilter;
    /// let f = ToolFilter::new().allow_pattern("github.{issues,pulls}.*")?;
    /// assert!(f.permits("github.issues.list"));
    /// assert!(!f.permits("github.repos.delete"));
    /// assert!(ToolFilter::new().allow_pattern("[oops").is_err());
    /// # Ok::<(), agentgraph_nodes::tool::PatternError>(())
    /// ```
    pub fn allow_pattern(mut self, pattern: &str) -> Result<Self, PatternError> {
        self.allow.add_pattern(pattern)?;
        Ok(self)
    }

    /// Denies the tools whose names match a glob pattern.
    ///
    /// # Errors
    ///
    /// [`PatternError`] when the pattern is not a valid glob.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolFilter;
    /// let f = ToolFilter::new().deny_pattern("*delete*")?;
    /// assert!(!f.permits("file_delete"));
    /// assert!(f.permits("file_read"));
    /// # Ok::<(), agentgraph_nodes::tool::PatternError>(())
    /// ```
    pub fn deny_pattern(mut self, pattern: &str) -> Result<Self, PatternError> {
        self.deny.add_pattern(pattern)?;
        Ok(self)
    }

    /// Whether the tool named `name` may be offered and called.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolFilter;
    /// assert!(!ToolFilter::new().allow("a").permits("b"));
    /// ```
    pub fn permits(&self, name: &str) -> bool {
        self.check(name).is_ok()
    }

    /// Whether the tool named `name` may be offered and called, and if not, which rule
    /// refuses it.
    ///
    /// # Errors
    ///
    /// [`Refusal::Denied`] naming the first deny rule that matches (exact names first), or
    /// [`Refusal::NotAllowed`] when the allow list has rules and none matches.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{Refusal, ToolFilter};
    /// let f = ToolFilter::new().deny_pattern("rm*")?;
    /// assert_eq!(f.check("rmdir"), Err(Refusal::Denied { rule: "rm*".into() }));
    /// # Ok::<(), agentgraph_nodes::tool::PatternError>(())
    /// ```
    pub fn check(&self, name: &str) -> Result<(), Refusal> {
        if let Some(rule) = self.deny.matching(name) {
            return Err(Refusal::Denied {
                rule: rule.to_owned(),
            });
        }
        if self.allow.is_empty() || self.allow.matching(name).is_some() {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }
}

/// Why a [`ToolFilter`] refuses a tool.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::Refusal;
/// assert_eq!(Refusal::NotAllowed.to_string(), "it is not in the allow list");
/// assert_eq!(Refusal::Denied { rule: "rm*".into() }.to_string(), "it is denied by `rm*`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A deny rule matches it.
    Denied {
        /// The name or pattern of the rule, as it was given.
        rule: String,
    },
    /// The allow list has rules and none matches it.
    NotAllowed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Denied { rule } => write!(f, "it is denied by `{rule}`"),
            Refusal::NotAllowed => f.write_str("it is not in the allow list"),
        }
    }
}

/// A glob pattern that does not parse.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::ToolFilter;
/// let e = ToolFilter::new().deny_pattern("a[").unwrap_err();
/// assert_eq!(e.pattern, "a[");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid tool name pattern `{pattern}`: {source}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What globset says.
    pub source: globset::Error,
}
