//! Budgets and quotas: [`Budget`] (the limits), [`BudgetUsage`] (what was used),
//! [`PriceTable`] (what tokens cost), [`TenantBudget`] (limits shared by the runs of a tenant,
//! in process or, over a [`TenantLedger`], by processes) and [`BudgetExceeded`] (why a run
//! stopped).
//!
//! A run counts its steps (the scheduler), its model tokens, their cost and its tool calls (the
//! nodes report them through [`Context::record_model_usage`](crate::Context::record_model_usage)
//! and [`Context::record_tool_calls`](crate::Context::record_tool_calls)) and the wall time it
//! ran. The counts are stored with each checkpoint, so a resumed run counts on from them.
//! Budgets are checked before each step starts: a run over one stops there, checkpointed, with
//! [`Error::BudgetExceeded`](crate::Error::BudgetExceeded) and status `budget_exceeded`;
//! resuming it with a higher budget goes on from that step. Within a step, a task takes tool
//! calls from the budgets before making them
//! ([`Context::charge_tool_calls`](crate::Context::charge_tool_calls)) and checks that tokens
//! and cost are not used up before a model call
//! ([`Context::check_budget`](crate::Context::check_budget)); a task refused so stops the run
//! in its step, the step's other tasks keeping their writes, and runs again on a resume.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentgraph_checkpoint::TenantId;
use serde::{Deserialize, Serialize};

use crate::run::ledger::{SharedTotals, Tally, TenantLedger};

/// What a budget bounds.
///
/// Every amount is a `u64`: steps, tokens (prompt and completion together), tool calls, runs;
/// cost in **nano-dollars** (10⁻⁹ US dollars) and wall time in **milliseconds**.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::BudgetKind;
/// assert_eq!(BudgetKind::ToolCalls.as_str(), "tool_calls");
/// assert_eq!("cost".parse::<BudgetKind>(), Ok(BudgetKind::Cost));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetKind {
    /// Steps run.
    Steps,
    /// Model tokens, prompt and completion.
    Tokens,
    /// What the tokens cost (nano-dollars), from the run's [`PriceTable`].
    Cost,
    /// Tool calls.
    ToolCalls,
    /// Wall time spent running (milliseconds).
    WallTime,
    /// Runs in flight at once (tenant budgets only).
    RunsInFlight,
}

impl BudgetKind {
    /// The kinds a run's counters measure, in the order they are checked.
    const COUNTED: [BudgetKind; 5] = [
        BudgetKind::Steps,
        BudgetKind::Tokens,
        BudgetKind::Cost,
        BudgetKind::ToolCalls,
        BudgetKind::WallTime,
    ];

    /// The kind's name, as JSON spells it: `"steps"`, `"tokens"`, `"cost"`, `"tool_calls"`,
    /// `"wall_time"` or `"runs_in_flight"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_engine::BudgetKind::WallTime.as_str(), "wall_time");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            BudgetKind::Steps => "steps",
            BudgetKind::Tokens => "tokens",
            BudgetKind::Cost => "cost",
            BudgetKind::ToolCalls => "tool_calls",
            BudgetKind::WallTime => "wall_time",
            BudgetKind::RunsInFlight => "runs_in_flight",
        }
    }

    /// An amount of this kind, for people: `$0.000450` for a cost, `1.5s` for a wall time.
    fn show(self, amount: u64) -> String {
        match self {
            BudgetKind::Cost => format!("${:.6}", amount as f64 / 1e9),
            BudgetKind::WallTime => format!("{:?}", Duration::from_millis(amount)),
            BudgetKind::Steps => format!("{amount} steps"),
            BudgetKind::Tokens => format!("{amount} tokens"),
            BudgetKind::ToolCalls => format!("{amount} tool calls"),
            BudgetKind::RunsInFlight => format!("{amount} runs in flight"),
        }
    }
}

impl std::str::FromStr for BudgetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            BudgetKind::Steps,
            BudgetKind::Tokens,
            BudgetKind::Cost,
            BudgetKind::ToolCalls,
            BudgetKind::WallTime,
            BudgetKind::RunsInFlight,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown budget `{s}`"))
    }
}

/// Whose budget a run went over.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::BudgetScope;
/// assert_eq!(BudgetScope::Thread.as_str(), "thread");
/// assert_eq!("tenant".parse::<BudgetScope>(), Ok(BudgetScope::Tenant));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetScope {
    /// The run's own ([`RunConfig::budget`](crate::RunConfig::budget)): this invocation of the
    /// run, with its resumes.
    Run,
    /// The thread's ([`RunConfig::thread_budget`](crate::RunConfig::thread_budget)): every
    /// invocation of the run's id.
    Thread,
    /// The tenant's ([`RunConfig::tenant_budget`](crate::RunConfig::tenant_budget)): every run
    /// given the same [`TenantBudget`].
    Tenant,
}

impl BudgetScope {
    /// The scope's name: `"run"`, `"thread"` or `"tenant"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_engine::BudgetScope::Run.as_str(), "run");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Run => "run",
            BudgetScope::Thread => "thread",
            BudgetScope::Tenant => "tenant",
        }
    }
}

impl std::str::FromStr for BudgetScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [BudgetScope::Run, BudgetScope::Thread, BudgetScope::Tenant]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown budget scope `{s}`"))
    }
}

/// Limits on what a run, a thread or a tenant may use: steps, model tokens, cost, tool calls,
/// wall time (and, for a tenant, runs in flight). Every limit is off until set.
///
/// Give it to a run with [`RunConfig::budget`](crate::RunConfig::budget) or
/// [`RunConfig::thread_budget`](crate::RunConfig::thread_budget), or to a
/// [`TenantBudget`]. A limit of N lets the run use N: before each step, a run that used N or
/// more of something stops with [`Error::BudgetExceeded`](crate::Error::BudgetExceeded); within
/// a step, a charge of tool calls that would pass N is refused
/// ([`Context::charge_tool_calls`](crate::Context::charge_tool_calls)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_engine::{Budget, BudgetKind};
///
/// let budget = Budget::new()
///     .max_steps(50)
///     .max_tokens(100_000)
///     .max_cost(0.25) // dollars
///     .max_tool_calls(20)
///     .max_wall_time(Duration::from_secs(300));
/// assert_eq!(budget.limit(BudgetKind::Cost), Some(250_000_000)); // nano-dollars
/// assert_eq!(budget.limit(BudgetKind::WallTime), Some(300_000)); // milliseconds
/// assert_eq!(Budget::new().limit(BudgetKind::Steps), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Budget {
    steps: Option<u64>,
    tokens: Option<u64>,
    cost_nanos: Option<u64>,
    tool_calls: Option<u64>,
    wall_ms: Option<u64>,
    runs_in_flight: Option<u64>,
}

impl Budget {
    /// No limits.
    pub fn new() -> Self {
        Budget::default()
    }

    /// At most `steps` steps.
    #[must_use]
    pub fn max_steps(mut self, steps: u64) -> Self {
        self.steps = Some(steps);
        self
    }

    /// At most `tokens` model tokens, prompt and completion together.
    #[must_use]
    pub fn max_tokens(mut self, tokens: u64) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// At most `dollars` of model tokens, priced by the run's
    /// [`PriceTable`] ([`RunConfig::prices`](crate::RunConfig::prices)). Kept in nano-dollars;
    /// a negative or non-finite amount is 0.
    #[must_use]
    pub fn max_cost(mut self, dollars: f64) -> Self {
        self.cost_nanos = Some(nanos(dollars));
        self
    }

    /// At most `calls` tool calls.
    #[must_use]
    pub fn max_tool_calls(mut self, calls: u64) -> Self {
        self.tool_calls = Some(calls);
        self
    }

    /// At most `time` of wall time spent running (kept in milliseconds).
    #[must_use]
    pub fn max_wall_time(mut self, time: Duration) -> Self {
        self.wall_ms = Some(u64::try_from(time.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// At most `runs` runs in flight at once. Only a [`TenantBudget`] counts runs in flight: a
    /// run or thread budget ignores it (a run id is run by one process at a time anyway).
    #[must_use]
    pub fn max_runs_in_flight(mut self, runs: u64) -> Self {
        self.runs_in_flight = Some(runs);
        self
    }

    /// The limit on `kind`, in its unit (see [`BudgetKind`]); `None` when there is none.
    pub fn limit(&self, kind: BudgetKind) -> Option<u64> {
        match kind {
            BudgetKind::Steps => self.steps,
            BudgetKind::Tokens => self.tokens,
            BudgetKind::Cost => self.cost_nanos,
            BudgetKind::ToolCalls => self.tool_calls,
            BudgetKind::WallTime => self.wall_ms,
            BudgetKind::RunsInFlight => self.runs_in_flight,
        }
    }

    /// The first counted kind whose limit `used` reaches.
    fn reached(&self, used: &BudgetUsage) -> Option<(BudgetKind, u64, u64)> {
        BudgetKind::COUNTED.into_iter().find_map(|kind| {
            let limit = self.limit(kind)?;
            let used = used.get(kind);
            (used >= limit).then_some((kind, limit, used))
        })
    }
}

/// Dollars as nano-dollars (negative or not finite: 0).
fn nanos(dollars: f64) -> u64 {
    if dollars.is_finite() && dollars > 0.0 {
        (dollars * 1e9).round() as u64
    } else {
        0
    }
}

/// What a run, thread or tenant used: steps, model tokens, their cost (nano-dollars), tool
/// calls, wall time (milliseconds).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{BudgetKind, BudgetUsage};
/// let used = BudgetUsage { tokens: 1_200, cost_nanos: 450_000, ..BudgetUsage::default() };
/// assert_eq!(used.get(BudgetKind::Tokens), 1_200);
/// assert!((used.cost_usd() - 0.00045).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BudgetUsage {
    /// Steps run.
    pub steps: u64,
    /// Model tokens, prompt and completion.
    pub tokens: u64,
    /// Their cost, in nano-dollars.
    pub cost_nanos: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Wall time spent running, in milliseconds.
    pub wall_ms: u64,
}

impl BudgetUsage {
    /// The amount used of `kind` (0 for runs in flight, which a usage does not hold).
    pub fn get(&self, kind: BudgetKind) -> u64 {
        match kind {
            BudgetKind::Steps => self.steps,
            BudgetKind::Tokens => self.tokens,
            BudgetKind::Cost => self.cost_nanos,
            BudgetKind::ToolCalls => self.tool_calls,
            BudgetKind::WallTime => self.wall_ms,
            BudgetKind::RunsInFlight => 0,
        }
    }

    /// The cost in dollars.
    pub fn cost_usd(&self) -> f64 {
        self.cost_nanos as f64 / 1e9
    }

    /// What was used since `base`.
    pub(crate) fn since(&self, base: &BudgetUsage) -> BudgetUsage {
        BudgetUsage {
            steps: self.steps.saturating_sub(base.steps),
            tokens: self.tokens.saturating_sub(base.tokens),
            cost_nanos: self.cost_nanos.saturating_sub(base.cost_nanos),
            tool_calls: self.tool_calls.saturating_sub(base.tool_calls),
            wall_ms: self.wall_ms.saturating_sub(base.wall_ms),
        }
    }

    /// This and `other` together.
    pub(crate) fn plus(&self, other: &BudgetUsage) -> BudgetUsage {
        BudgetUsage {
            steps: self.steps.saturating_add(other.steps),
            tokens: self.tokens.saturating_add(other.tokens),
            cost_nanos: self.cost_nanos.saturating_add(other.cost_nanos),
            tool_calls: self.tool_calls.saturating_add(other.tool_calls),
            wall_ms: self.wall_ms.saturating_add(other.wall_ms),
        }
    }
}

/// What models cost: per model name, dollars per million prompt (input) and completion
/// (output) tokens. A run prices the tokens its nodes report with the table of its
/// [`RunConfig::prices`](crate::RunConfig::prices); a model the table does not name costs
/// nothing (its tokens still count).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::PriceTable;
/// let prices = PriceTable::new().price("gpt-4o-mini", 0.15, 0.60);
/// // 1,000 prompt and 500 completion tokens: $0.00015 + $0.0003.
/// assert_eq!(prices.cost_nanos("gpt-4o-mini", 1_000, 500), 450_000);
/// assert_eq!(prices.cost_nanos("unknown", 1_000, 500), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    prices: HashMap<String, (f64, f64)>,
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// Prices `model`: `input` and `output` dollars per million prompt and completion tokens
    /// (negative or non-finite prices count as 0).
    #[must_use]
    pub fn price(mut self, model: impl Into<String>, input: f64, output: f64) -> Self {
        let sane = |p: f64| if p.is_finite() && p > 0.0 { p } else { 0.0 };
        self.prices
            .insert(model.into(), (sane(input), sane(output)));
        self
    }

    /// What `input` prompt and `output` completion tokens of `model` cost, in nano-dollars.
    pub fn cost_nanos(&self, model: &str, input: u64, output: u64) -> u64 {
        let Some((i, o)) = self.prices.get(model) else {
            return 0;
        };
        // Dollars per million tokens are nano-dollars per thousandth of a token.
        (input as f64 * i * 1e3 + output as f64 * o * 1e3).round() as u64
    }
}

/// Why a run stopped for its budget: whose budget, of what, its limit and what was used (in
/// the units of [`BudgetKind`]), and the step the run stopped before.
///
/// A run stopped for its budget is checkpointed with status `budget_exceeded` (a refused
/// start of a tenant over its runs in flight writes nothing): resume it with a higher budget
/// ([`CompiledGraph::resume`](crate::CompiledGraph::resume)) and it goes on from that step,
/// nothing finished run again.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{BudgetExceeded, BudgetKind, BudgetScope};
/// let e = BudgetExceeded {
///     run_id: "r".into(), scope: BudgetScope::Run, budget: BudgetKind::Tokens,
///     limit: 1_000, used: 1_250, step: 4,
/// };
/// assert!(e.to_string().contains("run budget of 1000 tokens"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetExceeded {
    /// The run.
    pub run_id: String,
    /// Whose budget.
    pub scope: BudgetScope,
    /// Of what.
    pub budget: BudgetKind,
    /// The limit.
    pub limit: u64,
    /// What was used: the limit or more for a run stopped before a step (or refused by
    /// [`Context::check_budget`](crate::Context::check_budget)); for a charge refused by
    /// [`Context::charge_tool_calls`](crate::Context::charge_tool_calls), what was used before
    /// it (which with the charge would pass the limit).
    pub used: u64,
    /// The step the run stopped before, or in, for a task refused within a step (its finished
    /// tasks keep their writes); either way a resume goes on with this step. 0 for a start or
    /// resume refused for the tenant's runs in flight.
    pub step: u64,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run `{}` stopped before step {}: its {} budget of {} is used ({}); raise it and resume the run to go on",
            self.run_id,
            self.step,
            self.scope.as_str(),
            self.budget.show(self.limit),
            self.budget.show(self.used),
        )
    }
}

impl std::error::Error for BudgetExceeded {}

/// A budget shared by the runs of one tenant, in this process (or, made with
/// [`TenantBudget::shared`], by every process that keeps the tenant's totals in one
/// [`TenantLedger`]): the same limits as a
/// [`Budget`] over the totals of every run given it, and a cap on its runs in flight
/// ([`Budget::max_runs_in_flight`]). Cheap to clone (an `Arc` of atomics); give a clone to each
/// run of the tenant with [`RunConfig::tenant_budget`](crate::RunConfig::tenant_budget).
///
/// Made with [`TenantBudget::new`], the totals live in this object, not in a store: they start
/// at 0 when it is made and are not shared with other processes. Keep one per tenant for the
/// life of the process (or rebuild it from your own accounting). A run over the cap on runs in flight is refused
/// before it starts or resumes (nothing is written); one over another limit stops before its
/// next step, like a run over its own budget, and tool calls charged by a task are taken from
/// the tenant's total at once, across its runs
/// ([`Context::charge_tool_calls`](crate::Context::charge_tool_calls)).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::{Budget, RunConfig, TenantBudget};
/// let acme = TenantBudget::new(Budget::new().max_runs_in_flight(4).max_tokens(1_000_000));
/// let config = RunConfig::new().tenant_budget(acme.clone());
/// # let _ = config;
/// assert_eq!((acme.in_flight(), acme.usage().tokens), (0, 0));
/// ```
#[derive(Debug, Clone)]
pub struct TenantBudget {
    inner: Arc<TenantInner>,
}

#[derive(Debug)]
struct TenantInner {
    limits: Budget,
    in_flight: AtomicU64,
    /// What the tenant's runs used: in process, the totals; with a ledger, what was not
    /// pushed to it yet.
    counts: Tally,
    /// The ledger's side, for a budget shared through one ([`TenantBudget::shared`]).
    shared: Option<SharedTotals>,
}

impl TenantBudget {
    /// A tenant's budget, its totals at 0.
    pub fn new(limits: Budget) -> Self {
        TenantBudget {
            inner: Arc::new(TenantInner {
                limits,
                in_flight: AtomicU64::new(0),
                counts: Tally::default(),
                shared: None,
            }),
        }
    }

    /// A tenant's budget whose totals are kept in `ledger`, shared with every process that
    /// keeps `tenant`'s there (each with a `TenantBudget::shared` of its own): the limits
    /// bound the totals of all their runs. `agentgraph-postgres`'s `PostgresLedger` keeps them
    /// in a table.
    ///
    /// A run given it pushes what it used to the ledger at each step boundary (one call of
    /// [`TenantLedger::add`] per step of the run) and when it ends, and the check before its
    /// next step reads the totals the ledger returned: another run's use counts once that run
    /// pushed it, so the tenant may go over a limit by at most one step's use per run of the
    /// tenant running at the time (as a run goes over its own by its last step). A push that
    /// fails is logged and kept for the next; the check then reads what this process knows.
    /// [`Budget::max_runs_in_flight`] still counts this process's runs only (PostgreSQL workers
    /// cap a tenant's runs across processes at claim: `Queue::set_tenant_limit`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use agentgraph_engine::{BoxError, Budget, BudgetUsage, TenantBudget, TenantLedger};
    /// # use agentgraph_checkpoint::{BoxFuture, TenantId};
    /// # #[derive(Debug, Default)] struct One(Mutex<BudgetUsage>);
    /// # impl TenantLedger for One {
    /// #     fn add<'a>(&'a self, _: &'a str, d: BudgetUsage) -> BoxFuture<'a, Result<BudgetUsage, BoxError>> {
    /// #         Box::pin(async move { let mut t = self.0.lock().unwrap(); t.tokens += d.tokens; t.steps += d.steps; Ok(*t) })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
    /// let ledger: Arc<dyn TenantLedger> = Arc::new(One::default()); // e.g. a PostgresLedger
    /// let acme = TenantId::new("acme")?;
    /// let here = TenantBudget::shared(Budget::new().max_tokens(1_000_000), &acme, ledger.clone());
    /// // What another process's runs of acme pushed:
    /// ledger.add("acme", BudgetUsage { tokens: 300, ..BudgetUsage::default() }).await?;
    /// assert_eq!(here.usage().tokens, 0); // not asked yet
    /// assert_eq!(here.sync().await?.tokens, 300);
    /// assert_eq!(here.usage().tokens, 300);
    /// # Ok(()) }
    /// ```
    pub fn shared(limits: Budget, tenant: &TenantId, ledger: Arc<dyn TenantLedger>) -> Self {
        TenantBudget {
            inner: Arc::new(TenantInner {
                limits,
                in_flight: AtomicU64::new(0),
                counts: Tally::default(),
                shared: Some(SharedTotals::new(ledger, tenant.as_str().to_owned())),
            }),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Budget {
        &self.inner.limits
    }

    /// What the tenant's runs used so far, in total: for a [`shared`](TenantBudget::shared)
    /// budget, the ledger's totals as last returned to this process, with what this process
    /// counted since ([`sync`](TenantBudget::sync) to ask the ledger).
    pub fn usage(&self) -> BudgetUsage {
        let counted = self.inner.counts.load();
        match &self.inner.shared {
            None => counted,
            Some(shared) => shared.total(counted),
        }
    }

    /// How many of the tenant's runs are in flight (in this process).
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the totals are kept in a ledger ([`TenantBudget::shared`]).
    pub fn is_shared(&self) -> bool {
        self.inner.shared.is_some()
    }

    /// Pushes what this process counted to the ledger and returns the tenant's totals with
    /// it, every process's; for an in-process budget, [`usage`](TenantBudget::usage).
    ///
    /// # Errors
    ///
    /// The ledger's, when it cannot be reached; what was counted is kept for the next push.
    ///
    /// # Examples
    ///
    /// See [`TenantBudget::shared`].
    pub async fn sync(&self) -> Result<BudgetUsage, crate::BoxError> {
        match &self.inner.shared {
            None => Ok(self.usage()),
            Some(shared) => shared.push(&self.inner.counts).await,
        }
    }

    /// Pushes to the ledger, for the scheduler: a failure is logged (the counts are kept).
    pub(crate) async fn push(&self) {
        if let Some(shared) = &self.inner.shared
            && let Err(e) = shared.push(&self.inner.counts).await
        {
            tracing::warn!(error = %e, "pushing a tenant's usage to its ledger failed; it is pushed with the next");
        }
    }

    /// Takes a place among the runs in flight, or says the cap (and the runs in flight).
    pub(crate) fn enter(&self) -> Result<InFlight, (u64, u64)> {
        let now = self.inner.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(cap) = self.inner.limits.runs_in_flight
            && now > cap
        {
            self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err((cap, now - 1));
        }
        Ok(InFlight(self.clone()))
    }

    pub(crate) fn add(&self, tokens: u64, cost_nanos: u64, tool_calls: u64) {
        let i = &self.inner.counts;
        if tokens > 0 {
            i.tokens.fetch_add(tokens, Ordering::Relaxed);
        }
        if cost_nanos > 0 {
            i.cost_nanos.fetch_add(cost_nanos, Ordering::Relaxed);
        }
        if tool_calls > 0 {
            i.tool_calls.fetch_add(tool_calls, Ordering::Relaxed);
        }
    }

    /// Takes `n` tool calls from the tenant's total if that keeps it within `limit`; else
    /// says what the tenant used.
    ///
    /// For a [`shared`](TenantBudget::shared) budget, the total is the ledger's as last
    /// returned (and the pushes under way) with this process's count since.
    fn take_tool_calls(&self, n: u64, limit: u64) -> Result<(), u64> {
        let elsewhere = self
            .inner
            .shared
            .as_ref()
            .map_or(0, |s| s.total(BudgetUsage::default()).tool_calls);
        self.inner
            .counts
            .tool_calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n)
                    .filter(|&now| elsewhere.saturating_add(now) <= limit)
            })
            .map(drop)
            .map_err(|used| elsewhere.saturating_add(used))
    }

    /// Gives back tool calls taken (a charge another scope refused). A shared budget's push
    /// may have sent them to the ledger meanwhile: they stay counted there (never below 0
    /// here), an overcount on the safe side.
    fn give_back_tool_calls(&self, n: u64) {
        let _ = self.inner.counts.tool_calls.fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |used| Some(used.saturating_sub(n)),
        );
    }

    pub(crate) fn add_step(&self) {
        self.inner.counts.steps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_wall(&self, ms: u64) {
        self.inner.counts.wall_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// A run's place among its tenant's runs in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(TenantBudget);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The counters nodes add to while a run runs: tokens, their cost, tool calls, and the same
/// totals when the invocation began (the run budget counts from them, and a task checking or
/// charging its budget reads them). Inline in the run's shared part: nothing allocated, and
/// nothing touched by a step that reports nothing.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tokens: AtomicU64,
    pub(crate) cost_nanos: AtomicU64,
    pub(crate) tool_calls: AtomicU64,
    base_tokens: AtomicU64,
    base_cost_nanos: AtomicU64,
    base_tool_calls: AtomicU64,
    /// Held by a charge that another scope may refuse after the run's counter took it, so
    /// that no other charge of the run sees the amount before it is given back (only with
    /// such limits: a run without them never takes it).
    charging: std::sync::Mutex<()>,
}

/// Why a charge or check was refused: whose budget, of what, its limit, what was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) scope: BudgetScope,
    pub(crate) kind: BudgetKind,
    pub(crate) limit: u64,
    pub(crate) used: u64,
}

impl Refusal {
    /// As the error a task returns; the run stops with its own (`Scheduler::over_budget`).
    pub(crate) fn exceeded(self, run_id: &str, step: u64) -> BudgetExceeded {
        BudgetExceeded {
            run_id: run_id.to_owned(),
            scope: self.scope,
            budget: self.kind,
            limit: self.limit,
            used: self.used,
            step,
        }
    }
}

impl Counters {
    pub(crate) fn add(&self, tokens: u64, cost_nanos: u64, tool_calls: u64) {
        if tokens > 0 {
            self.tokens.fetch_add(tokens, Ordering::Relaxed);
        }
        if cost_nanos > 0 {
            self.cost_nanos.fetch_add(cost_nanos, Ordering::Relaxed);
        }
        if tool_calls > 0 {
            self.tool_calls.fetch_add(tool_calls, Ordering::Relaxed);
        }
    }

    /// Sets the counters to what a checkpoint stored, and the invocation's base.
    pub(crate) fn set(&self, usage: &BudgetUsage, base: &BudgetUsage) {
        self.tokens.store(usage.tokens, Ordering::Relaxed);
        self.cost_nanos.store(usage.cost_nanos, Ordering::Relaxed);
        self.tool_calls.store(usage.tool_calls, Ordering::Relaxed);
        self.base_tokens.store(base.tokens, Ordering::Relaxed);
        self.base_cost_nanos
            .store(base.cost_nanos, Ordering::Relaxed);
        self.base_tool_calls
            .store(base.tool_calls, Ordering::Relaxed);
    }

    /// The counter of `kind` and its base (`None` for the kinds the scheduler counts).
    fn of(&self, kind: BudgetKind) -> Option<(&AtomicU64, &AtomicU64)> {
        match kind {
            BudgetKind::Tokens => Some((&self.tokens, &self.base_tokens)),
            BudgetKind::Cost => Some((&self.cost_nanos, &self.base_cost_nanos)),
            BudgetKind::ToolCalls => Some((&self.tool_calls, &self.base_tool_calls)),
            _ => None,
        }
    }

    /// The first of the run's and the thread's limits on `kind` that the counter reaches
    /// already (`used >= limit`).
    pub(crate) fn reached(
        &self,
        kind: BudgetKind,
        run: Option<u64>,
        thread: Option<u64>,
    ) -> Option<Refusal> {
        let (counter, base) = self.of(kind)?;
        let total = counter.load(Ordering::Acquire);
        let since = total.saturating_sub(base.load(Ordering::Relaxed));
        refusal(BudgetScope::Run, kind, run, since)
            .or_else(|| refusal(BudgetScope::Thread, kind, thread, total))
    }

    /// Takes `n` tool calls if the run's total since its invocation began stays within `run`
    /// and its total within `thread`; else says which limit refused them.
    fn take_tool_calls(
        &self,
        n: u64,
        run: Option<u64>,
        thread: Option<u64>,
    ) -> Result<(), Refusal> {
        let base = self.base_tool_calls.load(Ordering::Relaxed);
        let fits = |now: u64| {
            run.is_none_or(|l| now.saturating_sub(base) <= l) && thread.is_none_or(|l| now <= l)
        };
        self.tool_calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&now| fits(now))
            })
            .map(drop)
            .map_err(|used| {
                let kind = BudgetKind::ToolCalls;
                let since = used.saturating_sub(base);
                match run.filter(|l| since.saturating_add(n) > *l) {
                    Some(limit) => Refusal {
                        scope: BudgetScope::Run,
                        kind,
                        limit,
                        used: since,
                    },
                    None => Refusal {
                        scope: BudgetScope::Thread,
                        kind,
                        limit: thread.unwrap_or(0),
                        used,
                    },
                }
            })
    }
}

/// The refusal of `scope`'s `limit` on `kind` once `used` reaches it.
fn refusal(scope: BudgetScope, kind: BudgetKind, limit: Option<u64>, used: u64) -> Option<Refusal> {
    let limit = limit?;
    (used >= limit).then_some(Refusal {
        scope,
        kind,
        limit,
        used,
    })
}

/// The limits on `kind` of a run's own budget, its thread's and its tenant's (with the
/// tenant's budget).
fn limits_of(
    config: &crate::run::config::RunConfig,
    kind: BudgetKind,
) -> (Option<u64>, Option<u64>, Option<(&TenantBudget, u64)>) {
    (
        config.budget.as_ref().and_then(|b| b.limit(kind)),
        config.thread_budget.as_ref().and_then(|b| b.limit(kind)),
        config
            .tenant_budget
            .as_ref()
            .and_then(|t| Some((t, t.limits().limit(kind)?))),
    )
}

impl crate::run::context::RunShared {
    /// Takes `n` tool calls from the run's, its thread's and its tenant's budgets (and, in a
    /// subgraph, its parent run's), all or none: refused when one of them would go past its
    /// limit. Without limits on tool calls, the same few atomic additions as
    /// [`add_usage`](crate::run::context::RunShared::add_usage).
    pub(crate) fn charge_tool_calls(&self, n: u64) -> Result<(), Refusal> {
        let (run, thread, tenant) = limits_of(&self.config, BudgetKind::ToolCalls);
        let parent = self.config.usage_parent.as_deref();
        if run.is_none() && thread.is_none() && tenant.is_none() && parent.is_none() {
            self.add_usage(0, 0, n);
            return Ok(());
        }
        // A later scope may refuse what an earlier one took: the amount is given back, and
        // meanwhile no other charge of this run may see it.
        let own = run.is_some() || thread.is_some();
        let _serial = (own && tenant.is_some() || parent.is_some()).then(|| {
            self.usage
                .charging
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        if own {
            self.usage.take_tool_calls(n, run, thread)?;
        } else {
            self.usage.tool_calls.fetch_add(n, Ordering::Relaxed);
        }
        match (tenant, &self.config.tenant_budget) {
            (Some((tenant, limit)), _) => {
                if let Err(used) = tenant.take_tool_calls(n, limit) {
                    self.usage.tool_calls.fetch_sub(n, Ordering::AcqRel);
                    return Err(Refusal {
                        scope: BudgetScope::Tenant,
                        kind: BudgetKind::ToolCalls,
                        limit,
                        used,
                    });
                }
            }
            (None, Some(tenant)) => tenant.add(0, 0, n),
            (None, None) => {}
        }
        if let Some(parent) = parent
            && let Err(refused) = parent.charge_tool_calls(n)
        {
            self.usage.tool_calls.fetch_sub(n, Ordering::AcqRel);
            // Taken above from the tenant whether or not it has a limit.
            if let Some(tenant) = &self.config.tenant_budget {
                tenant.give_back_tool_calls(n);
            }
            return Err(refused);
        }
        Ok(())
    }

    /// Whether the run, its thread or its tenant (or, in a subgraph, its parent run) used a
    /// limit on `kind` already: the first one reached, in that order. Only tokens, cost and
    /// tool calls are checked (the scheduler checks steps and wall time before each step).
    pub(crate) fn reached(&self, kind: BudgetKind) -> Option<Refusal> {
        if !matches!(
            kind,
            BudgetKind::Tokens | BudgetKind::Cost | BudgetKind::ToolCalls
        ) {
            return None;
        }
        let (run, thread, tenant) = limits_of(&self.config, kind);
        if (run.is_some() || thread.is_some())
            && let Some(refused) = self.usage.reached(kind, run, thread)
        {
            return Some(refused);
        }
        if let Some((tenant, limit)) = tenant
            && let Some(refused) = refusal(
                BudgetScope::Tenant,
                kind,
                Some(limit),
                tenant.usage().get(kind),
            )
        {
            return Some(refused);
        }
        self.config.usage_parent.as_deref()?.reached(kind)
    }
}

/// What a run used, as stored with its newest checkpoint, and the budget that stopped it:
/// what [`StoreInspector::usage`](crate::StoreInspector::usage) reads (and the monitor's run
/// API and `agentgraph show` print).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Count { #[reducer(add)] n: u64 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Count>::new();
/// b.add_node("ask", |_, ctx: Context| async move {
///     ctx.record_model_usage("gpt-x", 120, 30);
///     ctx.record_tool_calls(2);
///     Ok(CountUpdate::new().n(1))
/// })
/// .add_edge(START, "ask")
/// .add_conditional_edges("ask", ["ask", END], |c: &Count| if c.n < 3 { "ask" } else { END });
/// let store: Arc<dyn CheckpointStore> = Arc::new(agentgraph_checkpoint::MemoryStore::new());
/// let config = RunConfig::new()
///     .store(store.clone())
///     .run_id("r")
///     .store_events(true)
///     .budget(Budget::new().max_tokens(300));
/// assert!(matches!(b.compile()?.run_with(Count::default(), config).await, Err(Error::BudgetExceeded(_))));
///
/// let usage = StoreInspector::new(store).usage("r").await?.expect("stored with its checkpoints");
/// assert_eq!((usage.total.steps, usage.total.tokens, usage.total.tool_calls), (2, 300, 4));
/// let stop = usage.stopped_by.expect("its budget stopped it");
/// assert_eq!((stop.budget, stop.limit, stop.step), (BudgetKind::Tokens, 300, 3));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunUsage {
    /// The checkpoint the totals are stored with (the run's newest).
    pub step: u64,
    /// The run's totals by then: steps, model tokens, their cost, tool calls, wall time.
    pub total: BudgetUsage,
    /// The budget that stopped the run, for a run whose status is `budget_exceeded` and that
    /// stores its events (`RunConfig::store_events`, `monitored`): its newest
    /// `BudgetExceeded` event. `None` otherwise (the run record's error says it in words).
    pub stopped_by: Option<BudgetExceeded>,
}

/// The scheduler's side of a run's usage: the steps it counted, the wall time used before this
/// process took the run on, and the totals at the invocation's start.
#[derive(Debug)]
pub(crate) struct Book {
    /// Steps run, in all the run's invocations.
    pub(crate) steps: u64,
    /// Wall time used before this process took the run on (ms).
    pub(crate) wall_before: u64,
    /// When this process took the run on.
    pub(crate) started: std::time::Instant,
    /// The totals when the invocation began (the run budget counts from them).
    pub(crate) base: BudgetUsage,
    /// The wall time already added to the tenant's total (ms).
    pub(crate) wall_reported: u64,
}

impl Book {
    pub(crate) fn new() -> Self {
        Book {
            steps: 0,
            wall_before: 0,
            started: std::time::Instant::now(),
            base: BudgetUsage::default(),
            wall_reported: 0,
        }
    }

    /// The totals now.
    pub(crate) fn total(&self, counters: &Counters) -> BudgetUsage {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        BudgetUsage {
            steps: self.steps,
            tokens: counters.tokens.load(Ordering::Relaxed),
            cost_nanos: counters.cost_nanos.load(Ordering::Relaxed),
            tool_calls: counters.tool_calls.load(Ordering::Relaxed),
            wall_ms: self.wall_before.saturating_add(elapsed),
        }
    }

    /// Takes the run on from what a checkpoint stored: its totals and its invocation's base.
    pub(crate) fn restore(&mut self, counters: &Counters, total: &BudgetUsage, base: BudgetUsage) {
        counters.set(total, &base);
        self.steps = total.steps;
        self.wall_before = total.wall_ms;
        self.started = std::time::Instant::now();
        self.base = base;
        self.wall_reported = total.wall_ms;
    }
}

/// The first budget of `budgets` (run, thread, tenant) that `used` reaches.
pub(crate) fn first_reached(
    budgets: [(BudgetScope, Option<&Budget>, BudgetUsage); 3],
) -> Option<(BudgetScope, BudgetKind, u64, u64)> {
    budgets.into_iter().find_map(|(scope, budget, used)| {
        let (kind, limit, used) = budget?.reached(&used)?;
        Some((scope, kind, limit, used))
    })
}
