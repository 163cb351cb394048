//! The tools of an agent: offered and called under allow and deny lists, with per-tool limits.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde_json::Value;
use tracing::Instrument;

use super::{PatternError, Tool, ToolContext, ToolError, ToolFilter, ToolOutput};
use crate::message::{Message, ToolArguments, ToolCall};

/// The limits of one tool in a [`ToolSet`].
///
/// [`ToolSet::call`] enforces the **timeout** (per attempt) and the **retries** (of timeouts
/// and the tool's own failures, never of refusals or bad arguments; with exponential backoff
/// from `retry_delay`, doubling up to 10 s). **Calls per run** and **approval** need the
/// run's state and its interrupts: they are kept here as data for the tool-calling agent,
/// which enforces them; `ToolSet::call` ignores them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agentgraph_nodes::tool::ToolOptions;
///
/// let options = ToolOptions::new()
///     .timeout(Duration::from_secs(30))
///     .retries(2)
///     .max_calls_per_run(5)
///     .needs_approval(true);
/// assert_eq!(options.retries, 2);
/// assert_eq!(options.retry_delay, Duration::from_millis(100));
/// assert!(options.needs_approval);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolOptions {
    /// The longest an attempt may take (none: no limit).
    pub timeout: Option<Duration>,
    /// How many times a failed or timed-out call is tried again (0: once in all).
    pub retries: u32,
    /// The delay before the first retry; it doubles for each next one, up to 10 s.
    pub retry_delay: Duration,
    /// At most this many calls of the tool in one run (enforced by the agent).
    pub max_calls_per_run: Option<u32>,
    /// Whether a human approves each call before it runs (enforced by the agent, with an
    /// interrupt).
    pub needs_approval: bool,
}

impl Default for ToolOptions {
    fn default() -> Self {
        ToolOptions {
            timeout: None,
            retries: 0,
            retry_delay: Duration::from_millis(100),
            max_calls_per_run: None,
            needs_approval: false,
        }
    }
}

impl ToolOptions {
    /// No timeout, no retries, no limit on calls, no approval.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOptions;
    /// assert_eq!(ToolOptions::new(), ToolOptions::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the timeout of each attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_nodes::tool::ToolOptions;
    /// assert_eq!(ToolOptions::new().timeout(Duration::from_secs(1)).timeout, Some(Duration::from_secs(1)));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets how many times a failed call is tried again.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOptions;
    /// assert_eq!(ToolOptions::new().retries(3).retries, 3);
    /// ```
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the delay before the first retry.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_nodes::tool::ToolOptions;
    /// let o = ToolOptions::new().retry_delay(Duration::from_millis(5));
    /// assert_eq!(o.retry_delay, Duration::from_millis(5));
    /// ```
    #[must_use]
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Sets the most calls of the tool in one run (enforced by the agent).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOptions;
    /// assert_eq!(ToolOptions::new().max_calls_per_run(3).max_calls_per_run, Some(3));
    /// ```
    #[must_use]
    pub fn max_calls_per_run(mut self, calls: u32) -> Self {
        self.max_calls_per_run = Some(calls);
        self
    }

    /// Sets whether a human approves each call before it runs (enforced by the agent).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOptions;
    /// assert!(ToolOptions::new().needs_approval(true).needs_approval);
    /// ```
    #[must_use]
    pub fn needs_approval(mut self, needs: bool) -> Self {
        self.needs_approval = needs;
        self
    }
}

/// One tool of a set, with its options.
#[derive(Debug, Clone)]
struct Entry {
    tool: Arc<dyn Tool>,
    options: ToolOptions,
}

/// A set of tools, offered to a model and called for it under allow and deny lists.
///
/// The same [`ToolFilter`] decides both what [`offered`](ToolSet::offered) lists and what
/// [`call`](ToolSet::call) runs: a call of a tool that is refused, or that does not exist, is
/// not run; it is a typed [`ToolError`], recorded as a `tracing` warning (target
/// `agentgraph_nodes::tool`), and [`answer`](ToolSet::answer) turns it into a tool result with
/// `is_error` for the model. Tools are kept in the order they were added; adding a tool with a
/// name already in the set replaces it.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{ToolContext, ToolError, ToolSet, tool_fn};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Path {
///     path: String,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let read = tool_fn("fs_read", "Reads a file.", |p: Path| async move {
///     Ok::<_, std::io::Error>(format!("contents of {}", p.path))
/// });
/// let delete = tool_fn("fs_delete", "Deletes a file.", |_: Path| async move {
///     Ok::<_, std::io::Error>("deleted")
/// });
/// let tools = ToolSet::new().with(read).with(delete).deny("fs_delete");
///
/// let offered: Vec<&str> = tools.offered().map(|t| t.name()).collect();
/// assert_eq!(offered, ["fs_read"]);
///
/// let args = serde_json::json!({ "path": "/tmp/x" });
/// let e = tools.call("fs_delete", args, ToolContext::new("k")).await.unwrap_err();
/// assert!(matches!(e, ToolError::NotAllowed { .. }));
/// assert_eq!(e.to_string(), "tool `fs_delete` is not allowed: it is denied by `fs_delete`");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ToolSet {
    tools: Vec<Entry>,
    filter: ToolFilter,
}

impl ToolSet {
    /// An empty set, allowing every tool.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_nodes::tool::ToolSet::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool with default options.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{ToolSet, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct NoArgs {}
    /// let tools = ToolSet::new().with(tool_fn("now", "The time.", |_: NoArgs| async { Ok::<_, std::io::Error>("noon") }));
    /// assert_eq!(tools.len(), 1);
    /// ```
    #[must_use]
    pub fn with(self, tool: impl Tool + 'static) -> Self {
        self.with_options(tool, ToolOptions::default())
    }

    /// Adds a tool with options.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_nodes::tool::{ToolOptions, ToolSet, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct NoArgs {}
    /// let slow = tool_fn("slow", "Slow.", |_: NoArgs| async { Ok::<_, std::io::Error>("done") });
    /// let tools = ToolSet::new().with_options(slow, ToolOptions::new().timeout(Duration::from_secs(5)));
    /// assert_eq!(tools.options("slow").unwrap().timeout, Some(Duration::from_secs(5)));
    /// ```
    #[must_use]
    pub fn with_options(mut self, tool: impl Tool + 'static, options: ToolOptions) -> Self {
        self.insert(Arc::new(tool), options);
        self
    }

    /// Adds a shared tool, replacing (and returning) one with the same name.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_nodes::tool::{Tool, ToolOptions, ToolSet, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct NoArgs {}
    /// let v1: Arc<dyn Tool> = Arc::new(tool_fn("t", "v1", |_: NoArgs| async { Ok::<_, std::io::Error>(1) }));
    /// let v2: Arc<dyn Tool> = Arc::new(tool_fn("t", "v2", |_: NoArgs| async { Ok::<_, std::io::Error>(2) }));
    /// let mut tools = ToolSet::new();
    /// assert!(tools.insert(v1, ToolOptions::new()).is_none());
    /// assert_eq!(tools.insert(v2, ToolOptions::new()).unwrap().description(), "v1");
    /// assert_eq!(tools.get("t").unwrap().description(), "v2");
    /// ```
    pub fn insert(&mut self, tool: Arc<dyn Tool>, options: ToolOptions) -> Option<Arc<dyn Tool>> {
        let entry = Entry { tool, options };
        match self.position(entry.tool.name()) {
            Some(i) => Some(std::mem::replace(&mut self.tools[i], entry).tool),
            None => {
                self.tools.push(entry);
                None
            }
        }
    }

    /// Allows the tool with exactly this name (see [`ToolFilter::allow`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolSet;
    /// assert!(!ToolSet::new().allow("a").is_allowed("b"));
    /// ```
    #[must_use]
    pub fn allow(mut self, name: impl Into<String>) -> Self {
        self.filter = self.filter.allow(name);
        self
    }

    /// Denies the tool with exactly this name (see [`ToolFilter::deny`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolSet;
    /// assert!(!ToolSet::new().deny("a").is_allowed("a"));
    /// ```
    #[must_use]
    pub fn deny(mut self, name: impl Into<String>) -> Self {
        self.filter = self.filter.deny(name);
        self
    }

    /// Allows the tools matching a glob pattern (see [`ToolFilter::allow_pattern`]).
    ///
    /// # Errors
    ///
    /// [`PatternError`] for a pattern that is not a valid glob.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolSet;
    /// let tools = ToolSet::new().allow_pattern("web_*")?;
    /// assert!(tools.is_allowed("web_search"));
    /// assert!(!tools.is_allowed("shell"));
    /// # Ok::<(), agentgraph_nodes::tool::PatternError>(())
    /// ```
    pub fn allow_pattern(mut self, pattern: &str) -> Result<Self, PatternError> {
        self.filter = self.filter.allow_pattern(pattern)?;
        Ok(self)
    }

    /// Denies the tools matching a glob pattern (see [`ToolFilter::deny_pattern`]).
    ///
    /// # Errors
    ///
    /// [`PatternError`] for a pattern that is not a valid glob.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolSet;
    /// assert!(!ToolSet::new().deny_pattern("*")?.is_allowed("anything"));
    /// # Ok::<(), agentgraph_nodes::tool::PatternError>(())
    /// ```
    pub fn deny_pattern(mut self, pattern: &str) -> Result<Self, PatternError> {
        self.filter = self.filter.deny_pattern(pattern)?;
        Ok(self)
    }

    /// Replaces the allow and deny lists.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{ToolFilter, ToolSet};
    /// let tools = ToolSet::new().with_filter(ToolFilter::new().allow("a"));
    /// assert!(tools.is_allowed("a"));
    /// assert!(!tools.is_allowed("b"));
    /// ```
    #[must_use]
    pub fn with_filter(mut self, filter: ToolFilter) -> Self {
        self.filter = filter;
        self
    }

    /// The allow and deny lists.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolSet;
    /// assert!(ToolSet::new().filter().permits("x"));
    /// ```
    pub fn filter(&self) -> &ToolFilter {
        &self.filter
    }

    /// Whether the lists allow the tool named `name` (whether or not the set has it).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolSet;
    /// assert!(ToolSet::new().is_allowed("x"));
    /// ```
    pub fn is_allowed(&self, name: &str) -> bool {
        self.filter.permits(name)
    }

    /// The tools to offer to a model: those of the set that the lists allow, in the order
    /// they were added.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{ToolSet, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct NoArgs {}
    /// # fn t(name: &str) -> agentgraph_nodes::tool::FnTool { tool_fn(name, "", |_: NoArgs| async { Ok::<_, std::io::Error>(()) }) }
    /// let tools = ToolSet::new().with(t("b")).with(t("a")).with(t("c")).deny("c");
    /// let names: Vec<&str> = tools.offered().map(|t| t.name()).collect();
    /// assert_eq!(names, ["b", "a"]);
    /// ```
    pub fn offered(&self) -> impl Iterator<Item = &Arc<dyn Tool>> + '_ {
        self.tools
            .iter()
            .filter(|e| self.filter.permits(e.tool.name()))
            .map(|e| &e.tool)
    }

    /// The tool named `name`, allowed or not.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_nodes::tool::ToolSet::new().get("x").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.position(name).map(|i| &self.tools[i].tool)
    }

    /// The options of the tool named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_nodes::tool::ToolSet::new().options("x").is_none());
    /// ```
    pub fn options(&self, name: &str) -> Option<&ToolOptions> {
        self.position(name).map(|i| &self.tools[i].options)
    }

    /// How many tools the set holds, allowed or not.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::tool::ToolSet::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether the set holds no tool.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_nodes::tool::ToolSet::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.tools.iter().position(|e| e.tool.name() == name)
    }

    /// Calls the tool `name` with `args`, if the lists allow it: each attempt under the
    /// tool's timeout, failures and timeouts retried as its options say.
    ///
    /// # Errors
    ///
    /// [`ToolError::NotAllowed`] (the lists refuse the name; checked first, so a refused
    /// name is refused whether or not the set has it), [`ToolError::Unknown`] (listing the
    /// allowed tools), or the last attempt's error: [`ToolError::TimedOut`], or the tool's
    /// own ([`ToolError::InvalidArguments`], [`ToolError::Failed`], ...). Refusals are
    /// recorded as `tracing` warnings, and so are failures after the last attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_nodes::tool::{ToolContext, ToolOptions, ToolSet, tool_fn_with_context};
    ///
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct NoArgs {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Fails on its first attempt, succeeds on its second.
    /// let flaky = tool_fn_with_context("flaky", "Flaky.", |_: NoArgs, ctx: ToolContext| async move {
    ///     if ctx.attempt() == 1 { Err("try again") } else { Ok(ctx.attempt()) }
    /// });
    /// let options = ToolOptions::new().retries(1).retry_delay(Duration::from_millis(1));
    /// let tools = ToolSet::new().with_options(flaky, options);
    ///
    /// let out = tools.call("flaky", serde_json::json!({}), ToolContext::new("k")).await.unwrap();
    /// assert_eq!(out.content, serde_json::json!(2).into());
    /// # }
    /// ```
    pub async fn call(
        &self,
        name: &str,
        args: Value,
        ctx: ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        if let Err(refusal) = self.filter.check(name) {
            tracing::warn!(
                target: "agentgraph_nodes::tool",
                tool = name,
                refusal = %refusal,
                key = ctx.idempotency_key(),
                "tool call refused"
            );
            return Err(ToolError::NotAllowed {
                tool: name.to_owned(),
                refusal,
            });
        }
        let Some(entry) = self.position(name).map(|i| &self.tools[i]) else {
            tracing::warn!(
                target: "agentgraph_nodes::tool",
                tool = name,
                key = ctx.idempotency_key(),
                "tool call refused: no such tool"
            );
            return Err(ToolError::Unknown {
                tool: name.to_owned(),
                available: self.offered().map(|t| t.name().to_owned()).collect(),
            });
        };
        let result = run_attempts(entry, args, ctx.clone()).await;
        if let Err(error) = &result {
            tracing::warn!(
                target: "agentgraph_nodes::tool",
                tool = name,
                key = ctx.idempotency_key(),
                error = %error,
                "tool call failed"
            );
        }
        result
    }

    /// Runs a model's tool call and answers it: the tool result message for the model, with
    /// `is_error` when the call failed or was refused (malformed arguments included), so that
    /// every call gets its answer. The context gets the call's id
    /// ([`ToolContext::with_call_id`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ToolCall;
    /// use agentgraph_nodes::tool::{ToolContext, ToolSet};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tools = ToolSet::new();
    /// let bad = ToolCall::from_raw("c1", "add", "{\"a\": 1");
    /// let answer = tools.answer(&bad, ToolContext::new("k")).await;
    /// assert!(answer.is_error());
    /// assert_eq!(answer.call_id(), Some("c1"));
    /// assert!(answer.content.to_text().starts_with("the arguments of tool `add` are not valid JSON"));
    /// # }
    /// ```
    ///
    /// The call runs in an `execute_tool` span (at `INFO`) with the attributes of
    /// OpenTelemetry's GenAI conventions: `gen_ai.operation.name = "execute_tool"`,
    /// `gen_ai.tool.name`, `gen_ai.tool.call.id`, and `error.type` when it failed (`unknown`,
    /// `not_allowed`, `malformed_arguments`, `invalid_arguments`, `invalid_schema`, `timeout`,
    /// `failed`, with `otel.status_code = "ERROR"`); `otel.name` is `execute_tool {name}`. The
    /// arguments and the result are not recorded.
    pub async fn answer(&self, call: &ToolCall, ctx: ToolContext) -> Message {
        let span = tracing::info_span!(
            "execute_tool",
            otel.name = %format_args!("execute_tool {}", call.name),
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = call.name.as_str(),
            gen_ai.tool.call.id = call.id.as_str(),
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let ctx = ctx.with_call_id(call.id.clone());
        let result = async {
            match &call.arguments {
                ToolArguments::Json(args) => self.call(&call.name, args.clone(), ctx).await,
                ToolArguments::Malformed(raw) => {
                    let source = call.arguments.parse_error().unwrap_or_else(|| {
                        serde_json::Error::io(std::io::Error::other("malformed"))
                    });
                    tracing::warn!(
                        target: "agentgraph_nodes::tool",
                        tool = call.name.as_str(),
                        key = ctx.idempotency_key(),
                        "tool call refused: malformed arguments"
                    );
                    Err(ToolError::MalformedArguments {
                        tool: call.name.clone(),
                        raw: raw.clone(),
                        source,
                    })
                }
            }
        }
        .instrument(span.clone())
        .await;
        match result {
            Ok(output) => output
                .into_message(call.id.clone())
                .with_name(call.name.clone()),
            Err(error) => {
                span.record("error.type", error_type(&error));
                span.record("otel.status_code", "ERROR");
                error.to_message(call.id.clone())
            }
        }
    }
}

/// The `error.type` of a failed call's span.
fn error_type(error: &ToolError) -> &'static str {
    match error {
        ToolError::Unknown { .. } => "unknown",
        ToolError::NotAllowed { .. } => "not_allowed",
        ToolError::MalformedArguments { .. } => "malformed_arguments",
        ToolError::InvalidArguments { .. } => "invalid_arguments",
        ToolError::InvalidSchema { .. } => "invalid_schema",
        ToolError::TimedOut { .. } => "timeout",
        ToolError::Failed { .. } => "failed",
    }
}

/// The attempts of one call: the first, then a retry after each retryable failure while the
/// options allow one.
async fn run_attempts(
    entry: &Entry,
    args: Value,
    ctx: ToolContext,
) -> Result<ToolOutput, ToolError> {
    let options = &entry.options;
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(options.retry_delay)
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(options.retries as usize)
        .build();
    let mut args = Some(args);
    let mut attempt = 1u32;
    loop {
        let last = attempt > options.retries;
        let this_args = if last {
            args.take().unwrap_or_default()
        } else {
            args.clone().unwrap_or_default()
        };
        let fut = entry
            .tool
            .call(this_args, ctx.clone().with_attempt(attempt));
        let result = match options.timeout {
            Some(after) => match tokio::time::timeout(after, fut).await {
                Ok(result) => result,
                Err(_) => Err(ToolError::TimedOut {
                    tool: entry.tool.name().to_owned(),
                    after,
                }),
            },
            None => fut.await,
        };
        match result {
            Err(error) if error.is_retryable() && !last => {
                let delay = delays.next().unwrap_or(options.retry_delay);
                tracing::debug!(
                    target: "agentgraph_nodes::tool",
                    tool = entry.tool.name(),
                    attempt,
                    error = %error,
                    delay_ms = delay.as_millis() as u64,
                    "tool call retried"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
