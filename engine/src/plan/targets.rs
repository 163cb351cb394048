//! Where edges lead: the targets and routers that the builder declares and the scheduler
//! follows.

use std::sync::Arc;

use crate::define::route::Route;
use crate::ids::NodeId;

/// Where an edge leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Node(NodeId),
    End,
}

/// The targets an edge declares, by name.
pub(crate) type Declared = Vec<(Arc<str>, Target)>;

/// A router: reads the merged state and picks declared targets or sends packets.
pub(crate) type RouterFn<S> = Arc<dyn Fn(&S) -> Route + Send + Sync>;
