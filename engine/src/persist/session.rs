//! A run's session on its record: the metadata and time to live its configuration gives,
//! over those stored.

use std::time::Duration;

use agentgraph_checkpoint::{RunMetadata, RunRecord};

/// What a run's configuration says of its session (`RunConfig::metadata`, `RunConfig::ttl`):
/// each, when given, replaces the stored one; when not, the stored one is kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    pub(crate) metadata: Option<RunMetadata>,
    pub(crate) ttl: Option<Duration>,
}

impl Session {
    /// The metadata and time to live (in milliseconds) of a run whose stored record is
    /// `stored` (`None` for a new run).
    pub(crate) fn over(self, stored: Option<&RunRecord>) -> (RunMetadata, Option<u64>) {
        let metadata = match (self.metadata, stored) {
            (Some(given), _) => given,
            (None, Some(r)) => r.metadata.clone(),
            (None, None) => RunMetadata::new(),
        };
        let ttl = match self.ttl {
            Some(ttl) => Some(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            None => stored.and_then(|r| r.ttl_ms),
        };
        (metadata, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentgraph_checkpoint::RunStatus;

    #[test]
    fn given_replaces_and_absent_keeps() {
        let mut stored = RunRecord::new("r", RunStatus::Completed, 1, 0)
            .with_metadata(RunMetadata::new().with_user("ann"));
        stored.set_ttl(Some(5));
        let (meta, ttl) = Session::default().over(Some(&stored));
        assert_eq!((meta.user(), ttl), (Some("ann"), Some(5)));
        let given = Session {
            metadata: Some(RunMetadata::new().with_user("bob")),
            ttl: Some(Duration::from_secs(1)),
        };
        let (meta, ttl) = given.clone().over(Some(&stored));
        assert_eq!((meta.user(), ttl), (Some("bob"), Some(1_000)));
        let (meta, ttl) = Session::default().over(None);
        assert_eq!((meta.is_empty(), ttl), (true, None));
        assert_eq!(given.over(None).1, Some(1_000));
    }
}
