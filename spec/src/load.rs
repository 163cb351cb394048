//! Reading a graph file: YAML or JSON (JSON is read as YAML's subset, so both carry
//! positions), its format version, and its digest.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{SpecError, SpecErrors, Subject, did_you_mean};
use crate::format::{FORMAT_VERSION, GraphSpec, Pos};

/// The largest file read (a graph file is small; a huge one is refused before parsing).
pub const MAX_FILE_BYTES: usize = 8 << 20;

impl GraphSpec {
    /// Reads a graph from YAML text (JSON too: it is YAML's subset). `file` names it in
    /// errors.
    ///
    /// # Errors
    ///
    /// [`SpecErrors`] with the line and column of what does not parse, an unknown key (with
    /// the closest known one), or an unsupported format version.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_spec::GraphSpec;
    /// let err = GraphSpec::from_yaml_str("g.yaml", "version: 2\n").unwrap_err();
    /// assert_eq!(err.to_string(), "g.yaml:1:10: format version 2 is not supported (this build reads 1)");
    /// ```
    pub fn from_yaml_str(file: impl AsRef<Path>, text: &str) -> Result<Self, SpecErrors> {
        let file = file.as_ref();
        if text.len() > MAX_FILE_BYTES {
            return Err(SpecErrors::one(SpecError::new(
                Pos::UNKNOWN,
                Subject::File,
                format!("the file is larger than {MAX_FILE_BYTES} bytes"),
            ))
            .in_file(file));
        }
        let spec: GraphSpec = serde_saphyr::from_str(text)
            .map_err(|e| SpecErrors::one(parse_error(&e)).in_file(file))?;
        if spec.version.value != FORMAT_VERSION {
            return Err(SpecErrors::one(SpecError::new(
                spec.version.pos,
                Subject::File,
                format!(
                    "format version {} is not supported (this build reads {FORMAT_VERSION})",
                    spec.version.value
                ),
            ))
            .in_file(file));
        }
        Ok(spec)
    }

    /// Reads a graph file (`.yaml`, `.yml` or `.json`).
    ///
    /// # Errors
    ///
    /// As [`from_yaml_str`](GraphSpec::from_yaml_str); an unreadable file is an error of
    /// the file.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("agentgraph-spec-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("g.json");
    /// std::fs::write(&path, r#"{"version": 1, "nodes": []}"#).unwrap();
    /// let spec = agentgraph_spec::GraphSpec::read(&path)?;
    /// assert!(spec.nodes.is_empty());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), agentgraph_spec::SpecErrors>(())
    /// ```
    pub fn read(path: impl AsRef<Path>) -> Result<Self, SpecErrors> {
        let path = path.as_ref();
        let text = read_text(path)?;
        GraphSpec::from_yaml_str(path, &text)
    }

    /// The graph as canonical JSON (pretty, fields in declaration order).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_spec::GraphSpec;
    /// let spec = GraphSpec::from_yaml_str("g.yaml", "version: 1\n")?;
    /// assert_eq!(spec.to_json(), "{\n  \"version\": 1\n}");
    /// # Ok::<(), agentgraph_spec::SpecErrors>(())
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The text of a file, as an error of the file when it cannot be read.
pub(crate) fn read_text(path: &Path) -> Result<String, SpecErrors> {
    let error = |message: String| {
        SpecErrors::one(SpecError::new(Pos::UNKNOWN, Subject::File, message)).in_file(path)
    };
    let meta = std::fs::metadata(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(error(format!(
            "the file is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| error(format!("cannot read it: {e}")))
}

/// The digest of a file's text, as the graph's fingerprint takes it (`sha256:` and hex).
///
/// # Examples
///
/// ```
/// let d = agentgraph_spec::digest("version: 1\n");
/// assert!(d.starts_with("sha256:") && d.len() == 7 + 64);
/// assert_ne!(d, agentgraph_spec::digest("version: 1\n# changed\n"));
/// ```
pub fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A parse error as a [`SpecError`]: its position, its message without the snippet, and a
/// suggestion for an unknown key.
fn parse_error(e: &serde_saphyr::Error) -> SpecError {
    let pos = e.location().map_or(Pos::UNKNOWN, |l| {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Pos::new(clamp(l.line()), clamp(l.column()))
    });
    let message = match e.without_snippet() {
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        other => {
            let rendered = other.render_with_options(serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            });
            rendered.lines().next().unwrap_or_default().to_owned()
        }
    };
    // The position is given apart: the message's own " at line.., column .." goes.
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => message[..at].to_owned(),
        _ => message,
    };
    let suggestion = unknown_field_suggestion(&message);
    SpecError::new(pos, Subject::File, message).suggest(suggestion)
}

/// For "unknown field `x`, expected one of a, b": the closest of the expected names.
fn unknown_field_suggestion(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .trim_start_matches(',')
        .trim()
        .trim_start_matches("expected one of")
        .trim_start_matches("expected")
        .split(',')
        .map(|n| n.trim().trim_matches('`'));
    did_you_mean(name, expected)
}
