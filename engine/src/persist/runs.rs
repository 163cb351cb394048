//! Run ids, and the runs of subgraphs.
//!
//! A subgraph node runs its child graph as a run of its own, in the parent's store, named
//! `{parent run}/@{node}/{task id}` (nested subgraphs nest these). The segment marker `/@` is
//! reserved for them: a new run whose id contains it is refused ([`Error::ReservedRunId`]), so
//! the runs of a run's subgraphs are exactly the runs whose id begins with `{run}/@`, and no run
//! a user named (`team/1` beside `team`) is ever taken for one.

use agentgraph_checkpoint::CheckpointStore;

use crate::error::{Error, Result};
use crate::ids::TaskId;

/// What separates a parent run's id from the node and task of a subgraph run.
pub(crate) const SUBGRAPH_MARK: &str = agentgraph_checkpoint::SUBGRAPH_MARK;

/// The id of the run of the subgraph node `node`'s task `task` in run `parent`.
pub(crate) fn child_run_id(parent: &str, node: &str, task: TaskId) -> String {
    format!("{parent}{SUBGRAPH_MARK}{node}/{task}")
}

/// Refuses an id for a new run that only subgraph runs may have.
pub(crate) fn check_new_run_id(run: &str) -> Result<()> {
    if run.contains(SUBGRAPH_MARK) {
        return Err(Error::ReservedRunId(run.to_owned()));
    }
    Ok(())
}

/// The run whose subgraph node made `run`, if it is a subgraph run: its id up to the last
/// [`SUBGRAPH_MARK`].
pub(crate) fn parent_run(run: &str) -> Option<&str> {
    run.rsplit_once(SUBGRAPH_MARK).map(|(parent, _)| parent)
}

/// The ids of the runs of `run`'s subgraphs (nested ones too), in id order.
pub(crate) async fn child_runs(store: &dyn CheckpointStore, run: &str) -> Result<Vec<String>> {
    let prefix = format!("{run}{SUBGRAPH_MARK}");
    let mut after = prefix.clone();
    let mut out = Vec::new();
    loop {
        let page = store.list_runs(Some(&after), 256).await?;
        let children: Vec<_> = page
            .iter()
            .take_while(|r| r.run_id.starts_with(&prefix))
            .collect();
        out.extend(children.iter().map(|r| r.run_id.clone()));
        match children.last() {
            Some(last) if children.len() == page.len() => after.clone_from(&last.run_id),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgraph_runs_name_their_parent() {
        let task = TaskId::from_u128(7);
        let child = child_run_id("team/1", "sub", task);
        assert_eq!(child, format!("team/1/@sub/{task}"));
        assert_eq!(parent_run(&child), Some("team/1"));
        let nested = child_run_id(&child, "inner", task);
        assert_eq!(parent_run(&nested), Some(child.as_str()));
        assert_eq!(parent_run("team/1"), None);
        assert!(check_new_run_id("team/1").is_ok());
        assert!(matches!(
            check_new_run_id(&child),
            Err(Error::ReservedRunId(run)) if run == child
        ));
    }
}
