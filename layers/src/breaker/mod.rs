//! Failing fast while a service is down: [`CircuitBreakerLayer`] and the node it makes,
//! [`CircuitBreaker`].

mod layer;
mod machine;
mod node;

pub use layer::CircuitBreakerLayer;
pub use node::CircuitBreaker;

use std::sync::{Arc, Mutex, MutexGuard};

use agentgraph_engine::BoxError;

use machine::Machine;

/// Which errors a breaker counts as failures.
type FailureIf = dyn Fn(&BoxError) -> bool + Send + Sync;

/// What the clones of one layer, and the nodes they wrap, share.
struct Shared {
    name: Option<Arc<str>>,
    machine: Mutex<Machine>,
    failure_if: Option<Arc<FailureIf>>,
}

impl Shared {
    fn machine(&self) -> MutexGuard<'_, Machine> {
        // The machine is only touched by non-panicking code under the lock; a poisoned lock
        // still holds a consistent machine.
        self.machine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
