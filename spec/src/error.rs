//! Errors of a graph file, each with its file, line and column, what it concerns (a node or
//! an edge), and a suggestion for a misspelt name.

use std::fmt;
use std::path::PathBuf;

use crate::format::Pos;

/// What an error concerns in the file.
///
/// # Examples
///
/// ```
/// use agentgraph_spec::Subject;
/// assert_eq!(Subject::Node("draft".into()).to_string(), "node `draft`");
/// assert_eq!(Subject::Edge(2).to_string(), "edge 3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subject {
    /// The file as a whole.
    File,
    /// A state field, by name.
    Field(String),
    /// A model, by name.
    Model(String),
    /// A node, by name.
    Node(String),
    /// An edge, by its index in `edges` (from 0; shown from 1).
    Edge(usize),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::File => f.write_str("the file"),
            Subject::Field(name) => write!(f, "field `{name}`"),
            Subject::Model(name) => write!(f, "model `{name}`"),
            Subject::Node(name) => write!(f, "node `{name}`"),
            Subject::Edge(i) => write!(f, "edge {}", i + 1),
        }
    }
}

/// One error in a graph file.
///
/// # Examples
///
/// ```
/// use agentgraph_spec::{Pos, SpecError, Subject};
/// let e = SpecError::new(Pos::new(4, 9), Subject::Node("a".into()), "unknown kind `modle`")
///     .in_file("graph.yaml")
///     .suggest(Some("model".into()));
/// assert_eq!(e.to_string(), "graph.yaml:4:9: node `a`: unknown kind `modle` (did you mean `model`?)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file (empty for text without one).
    pub file: PathBuf,
    /// Where in the file (unknown for an error of the file as a whole).
    pub pos: Pos,
    /// What it concerns.
    pub subject: Subject,
    /// What is wrong.
    pub message: String,
    /// A close name, for a misspelt one.
    pub suggestion: Option<String>,
}

impl SpecError {
    /// An error at `pos` about `subject`.
    pub fn new(pos: Pos, subject: Subject, message: impl Into<String>) -> Self {
        SpecError {
            file: PathBuf::new(),
            pos,
            subject,
            message: message.into(),
            suggestion: None,
        }
    }

    /// The same error, in `file`.
    #[must_use]
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = file.into();
        self
    }

    /// The same error, with a suggestion.
    #[must_use]
    pub fn suggest(mut self, suggestion: Option<String>) -> Self {
        self.suggestion = suggestion;
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.as_os_str().is_empty() {
            write!(f, "{}:", self.file.display())?;
        }
        if !self.pos.is_unknown() {
            write!(f, "{}: ", self.pos)?;
        } else if !self.file.as_os_str().is_empty() {
            f.write_str(" ")?;
        }
        if self.subject != Subject::File {
            write!(f, "{}: ", self.subject)?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// Every error found in a graph file, in the order of the file.
///
/// # Examples
///
/// ```
/// use agentgraph_spec::GraphSpec;
/// let errors = GraphSpec::from_yaml_str("g.yaml", "version: 1\nnodez: []\n").unwrap_err();
/// assert_eq!(errors.errors()[0].pos.line, 2);
/// assert!(errors.to_string().contains("did you mean `nodes`?"), "{errors}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub(crate) Vec<SpecError>);

impl SpecErrors {
    /// The errors.
    pub fn errors(&self) -> &[SpecError] {
        &self.0
    }

    /// The errors, owned.
    pub fn into_errors(self) -> Vec<SpecError> {
        self.0
    }

    pub(crate) fn one(e: SpecError) -> Self {
        SpecErrors(vec![e])
    }

    pub(crate) fn in_file(mut self, file: &std::path::Path) -> Self {
        for e in &mut self.0 {
            e.file = file.to_owned();
        }
        self
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        SpecErrors::one(e)
    }
}

/// The name among `names` closest to `name`, if one is close enough to be a misspelling.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_spec::did_you_mean("modle", ["model", "agent"]), Some("model".into()));
/// assert_eq!(agentgraph_spec::did_you_mean("zzz", ["model", "agent"]), None);
/// ```
pub fn did_you_mean<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    names
        .into_iter()
        .map(|n| (strsim::jaro_winkler(name, n), n))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.to_owned())
}
