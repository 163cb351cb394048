//! Sessions: what a run (a thread) carries about itself ([`RunMetadata`]), and how runs are
//! chosen by it ([`RunFilter`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::store::{RunRecord, RunStatus};

/// What a run (a conversation's thread) says about itself: who it belongs to, a title, tags
/// and free labels. Set with `RunConfig::metadata`, kept in the run's [`RunRecord`], and
/// chosen by with a [`RunFilter`].
///
/// Tags are kept sorted and without duplicates, whichever way they are given.
///
/// In JSON (the monitor's API, the command-line tool's `--json`, inside a run record's
/// `"metadata"`): `{"user": "ann" | null, "title": "…" | null, "tags": ["…", …],
/// "labels": {"key": "value", …}}`. Every field may be left out when read back.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::RunMetadata;
///
/// let meta = RunMetadata::new()
///     .with_user("ann")
///     .with_title("Refund for order 17")
///     .with_tags(["support", "billing", "support"])
///     .with_label("channel", "email");
/// assert_eq!(meta.user(), Some("ann"));
/// assert_eq!(meta.tags(), ["billing", "support"]);
/// assert_eq!(meta.labels()["channel"], "email");
///
/// let json = serde_json::to_value(&meta).unwrap();
/// assert_eq!(
///     json,
///     serde_json::json!({
///         "user": "ann",
///         "title": "Refund for order 17",
///         "tags": ["billing", "support"],
///         "labels": { "channel": "email" },
///     })
/// );
/// let back: RunMetadata = serde_json::from_value(json).unwrap();
/// assert_eq!(back, meta);
/// assert!(RunMetadata::new().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunMetadata {
    /// `None` when empty: a run without metadata costs a pointer in its record, and copying
    /// its record allocates nothing for it.
    parts: Option<Box<Parts>>,
}

/// What [`RunMetadata`] holds, in its JSON shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Parts {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default, deserialize_with = "sorted_tags")]
    tags: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl PartialEq for RunMetadata {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for RunMetadata {}

impl std::hash::Hash for RunMetadata {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

static EMPTY: Parts = Parts {
    user: None,
    title: None,
    tags: Vec::new(),
    labels: BTreeMap::new(),
};

fn sorted_tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let mut tags = Vec::<String>::deserialize(d)?;
    normalize(&mut tags);
    Ok(tags)
}

fn normalize(tags: &mut Vec<String>) {
    tags.sort_unstable();
    tags.dedup();
}

impl Serialize for RunMetadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.parts().serialize(s)
    }
}

impl<'de> Deserialize<'de> for RunMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RunMetadata::from_box(Box::new(Parts::deserialize(d)?)))
    }
}

impl RunMetadata {
    /// No user, title, tags or labels.
    pub fn new() -> Self {
        RunMetadata::default()
    }

    fn from_box(parts: Box<Parts>) -> Self {
        RunMetadata {
            parts: (*parts != EMPTY).then_some(parts),
        }
    }

    fn parts(&self) -> &Parts {
        self.parts.as_deref().unwrap_or(&EMPTY)
    }

    fn parts_mut(&mut self) -> &mut Parts {
        self.parts.get_or_insert_with(Box::default)
    }

    /// Sets the user the run belongs to.
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.parts_mut().user = Some(user.into());
        self
    }

    /// Sets the run's title.
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.parts_mut().title = Some(title.into());
        self
    }

    /// Adds a tag (once: tags are a sorted set).
    #[must_use]
    pub fn with_tag(self, tag: impl Into<String>) -> Self {
        self.with_tags([tag.into()])
    }

    /// Adds tags (each once: tags are a sorted set).
    #[must_use]
    pub fn with_tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        let parts = self.parts_mut();
        parts.tags.extend(tags.into_iter().map(Into::into));
        normalize(&mut parts.tags);
        self
    }

    /// Sets the label `key` to `value` (replacing an earlier value of `key`).
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.parts_mut().labels.insert(key.into(), value.into());
        self
    }

    /// The user the run belongs to.
    pub fn user(&self) -> Option<&str> {
        self.parts().user.as_deref()
    }

    /// The run's title.
    pub fn title(&self) -> Option<&str> {
        self.parts().title.as_deref()
    }

    /// The tags, sorted, each once.
    pub fn tags(&self) -> &[String] {
        &self.parts().tags
    }

    /// Whether the run has the tag `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags()
            .binary_search_by(|t| t.as_str().cmp(tag))
            .is_ok()
    }

    /// The labels, by key.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.parts().labels
    }

    /// Whether there is nothing: no user, title, tag or label.
    pub fn is_empty(&self) -> bool {
        *self.parts() == EMPTY
    }

    /// The metadata from its parts as stores keep them: for store authors (see
    /// [`encode_run`](crate::encode_run)). Tags are sorted and deduplicated here.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::RunMetadata;
    /// let meta = RunMetadata::from_parts(None, None, vec!["b".into(), "a".into(), "b".into()], Default::default());
    /// assert_eq!(meta, RunMetadata::new().with_tags(["a", "b"]));
    /// assert!(RunMetadata::from_parts(None, None, vec![], Default::default()).is_empty());
    /// ```
    pub fn from_parts(
        user: Option<String>,
        title: Option<String>,
        mut tags: Vec<String>,
        labels: BTreeMap<String, String>,
    ) -> Self {
        normalize(&mut tags);
        RunMetadata::from_box(Box::new(Parts {
            user,
            title,
            tags,
            labels,
        }))
    }
}

/// Which runs to list, by their record: metadata ([`RunMetadata`]), status and graph. Every
/// condition given must hold; an empty filter takes every run. Used by `StoreInspector`'s
/// `runs_matching`, the command-line tool's `runs --user --tag --label` and the monitor's
/// `/api/runs?user=&tag=`.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::{RunFilter, RunMetadata, RunRecord, RunStatus};
///
/// let record = RunRecord::new("chat-1", RunStatus::Interrupted, 7, 0).with_metadata(
///     RunMetadata::new().with_user("ann").with_title("Refund").with_tags(["billing", "vip"]),
/// );
/// assert!(RunFilter::new().matches(&record));
/// assert!(RunFilter::new().user("ann").tag("vip").matches(&record));
/// assert!(RunFilter::new().title_contains("refund").matches(&record));
/// assert!(!RunFilter::new().user("bob").matches(&record));
/// assert!(!RunFilter::new().tag("vip").tag("legal").matches(&record));
/// assert!(RunFilter::new().status(RunStatus::Failed).status(RunStatus::Interrupted).matches(&record));
/// assert!(!RunFilter::new().label("channel", "email").matches(&record));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunFilter {
    /// The run's user, exactly.
    #[serde(default)]
    pub user: Option<String>,
    /// Tags the run has, every one of them.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A part of the run's title, compared ignoring case.
    #[serde(default)]
    pub title_contains: Option<String>,
    /// Labels the run has with these values, every one of them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The run's status is one of these (any status when empty).
    #[serde(default)]
    pub statuses: Vec<RunStatus>,
    /// The name of the graph that runs it, exactly.
    #[serde(default)]
    pub graph: Option<String>,
}

impl RunFilter {
    /// A filter that takes every run.
    pub fn new() -> Self {
        RunFilter::default()
    }

    /// Takes only the runs of `user`.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Takes only the runs tagged `tag` (and with every other tag asked for).
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Takes only the runs whose title contains `part`, ignoring case.
    #[must_use]
    pub fn title_contains(mut self, part: impl Into<String>) -> Self {
        self.title_contains = Some(part.into());
        self
    }

    /// Takes only the runs whose label `key` is `value` (and with every other label asked
    /// for).
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Takes the runs with `status` too (any status until one is given).
    #[must_use]
    pub fn status(mut self, status: RunStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Takes only the runs of the graph named `graph`.
    #[must_use]
    pub fn graph(mut self, graph: impl Into<String>) -> Self {
        self.graph = Some(graph.into());
        self
    }

    /// Whether the filter takes every run.
    pub fn is_empty(&self) -> bool {
        *self == RunFilter::default()
    }

    /// Whether `record` passes every condition.
    pub fn matches(&self, record: &RunRecord) -> bool {
        let meta = &record.metadata;
        self.user.as_deref().is_none_or(|u| meta.user() == Some(u))
            && self.tags.iter().all(|t| meta.has_tag(t))
            && self.title_contains.as_deref().is_none_or(|part| {
                meta.title()
                    .is_some_and(|title| title.to_lowercase().contains(&part.to_lowercase()))
            })
            && self
                .labels
                .iter()
                .all(|(k, v)| meta.labels().get(k) == Some(v))
            && (self.statuses.is_empty() || self.statuses.contains(&record.status))
            && self
                .graph
                .as_deref()
                .is_none_or(|g| record.graph.as_deref() == Some(g))
    }
}
