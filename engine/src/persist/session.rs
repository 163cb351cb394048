//! A run's session on its record: the metadata and time to live its configuration gives,
//! over those stored.

use std::time::Duration;

use agentgraph_checkpoint::{RunMetadata, RunRecord, TenantId};

use crate::error::{Error, Result};

/// What a run's configuration says of its session (`RunConfig::metadata`, `RunConfig::ttl`):
/// each, when given, replaces the stored one; when not, the stored one is kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    pub(crate) metadata: Option<RunMetadata>,
    pub(crate) ttl: Option<Duration>,
    /// The tenant the run must belong to (`RunConfig::tenant`); subgraph runs have their
    /// parent's.
    pub(crate) tenant: Option<TenantId>,
}

impl Session {
    /// The tenant of a run whose stored record is `stored` (`None` for a new run): the given
    /// one, which a stored run must already have, or the stored one when none is given.
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`] when the stored run is not the given tenant's (another's, or
    /// no tenant's): to a tenant, another's run does not exist.
    pub(crate) fn tenant_over(
        &self,
        run: &str,
        stored: Option<&RunRecord>,
    ) -> Result<Option<TenantId>> {
        match (&self.tenant, stored) {
            (Some(given), Some(r)) if r.tenant.as_ref() != Some(given) => {
                Err(Error::RunNotFound(run.to_owned()))
            }
            (Some(given), _) => Ok(Some(given.clone())),
            (None, stored) => Ok(stored.and_then(|r| r.tenant.clone())),
        }
    }

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
            tenant: None,
        };
        let (meta, ttl) = given.clone().over(Some(&stored));
        assert_eq!((meta.user(), ttl), (Some("bob"), Some(1_000)));
        let (meta, ttl) = Session::default().over(None);
        assert_eq!((meta.is_empty(), ttl), (true, None));
        assert_eq!(given.over(None).1, Some(1_000));
    }

    #[test]
    fn a_given_tenant_must_match_and_an_absent_one_keeps() {
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        let of = |t: Option<&TenantId>| {
            let r = RunRecord::new("r", RunStatus::Completed, 1, 0);
            match t {
                Some(t) => r.with_tenant(t.clone()),
                None => r,
            }
        };
        let as_acme = Session {
            tenant: Some(acme.clone()),
            ..Session::default()
        };
        assert_eq!(as_acme.tenant_over("r", None).unwrap(), Some(acme.clone()));
        assert_eq!(
            as_acme.tenant_over("r", Some(&of(Some(&acme)))).unwrap(),
            Some(acme.clone())
        );
        for other in [of(Some(&globex)), of(None)] {
            assert!(matches!(
                as_acme.tenant_over("r", Some(&other)),
                Err(Error::RunNotFound(run)) if run == "r"
            ));
        }
        let any = Session::default();
        assert_eq!(
            any.tenant_over("r", Some(&of(Some(&globex)))).unwrap(),
            Some(globex)
        );
        assert_eq!(any.tenant_over("r", None).unwrap(), None);
    }
}
