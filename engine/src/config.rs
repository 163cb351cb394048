//! Run settings: [`Mode`] and [`RunConfig`].

use serde::{Deserialize, Serialize};

/// How the tasks of a step run. Both modes give the same final state and the same events per
/// task; they differ only in speed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One task after another, in merge order.
    Sequential,
    /// Concurrently: async nodes as tokio tasks, CPU-bound nodes on the rayon pool.
    #[default]
    Parallel,
}

/// The settings of one run.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{Mode, RunConfig};
/// let config = RunConfig::new().mode(Mode::Sequential).seed(7).recursion_limit(50);
/// assert_eq!(config.get_seed(), 7);
/// ```
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub(crate) mode: Mode,
    pub(crate) seed: u64,
    pub(crate) recursion_limit: u64,
    pub(crate) run_id: Option<String>,
    pub(crate) event_capacity: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            mode: Mode::Parallel,
            seed: 0,
            recursion_limit: RunConfig::DEFAULT_RECURSION_LIMIT,
            run_id: None,
            event_capacity: 4096,
        }
    }
}

impl RunConfig {
    /// The default recursion limit: 10,000 steps.
    pub const DEFAULT_RECURSION_LIMIT: u64 = 10_000;

    /// The defaults: parallel, seed 0, 10,000 steps, a fresh run id, 4,096 buffered events.
    pub fn new() -> Self {
        RunConfig::default()
    }

    /// Sets the execution mode.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the seed of weighted choices. The same graph, input and seed give the same run.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the most steps the run may take; a limit of N lets a run of exactly N steps finish.
    #[must_use]
    pub fn recursion_limit(mut self, steps: u64) -> Self {
        self.recursion_limit = steps;
        self
    }

    /// Names the run (a fresh time-ordered id otherwise).
    #[must_use]
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    /// How many events a subscriber may fall behind before it misses some (default 4,096).
    #[must_use]
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events;
        self
    }

    /// The execution mode.
    pub fn get_mode(&self) -> Mode {
        self.mode
    }

    /// The seed.
    pub fn get_seed(&self) -> u64 {
        self.seed
    }

    /// The recursion limit.
    pub fn get_recursion_limit(&self) -> u64 {
        self.recursion_limit
    }
}
