//! The prebuilt tool-calling agent: [`Agent`] compiles to a graph over [`AgentState`] that
//! calls a model, runs the tool calls of its answer, and calls it again with their results,
//! until it answers without tool calls.
//!
//! ```text
//! START ─▶ model ─(no tool calls)──────────────▶ END
//!            │ ▲
//!   one packet per tool call    (every result merged, then the next model call,
//!            ▼ │                 unless the stop hook says stop: END)
//!           tool  tool  tool
//! ```
//!
//! - **Each tool call is its own task**: the `model` node's router sends one packet per call
//!   to the `tool` node, so the calls of a turn run in parallel, each under its own
//!   idempotency key (the task's, `/` and the call id, in [`ToolContext`](crate::tool::ToolContext)), each checkpointed
//!   as a pending write when it finishes. A run that crashes after two of three calls resumes
//!   with the third only. The step's barrier merges every result before the next model call.
//! - **Guards.** [`Agent::max_turns`]: at most this many model calls per invocation (25 by
//!   default; counted as the assistant messages after the last user message), after which the
//!   `model` node fails with [`AgentError::TurnLimit`]. [`Agent::max_tool_calls`] and each
//!   tool's [`ToolOptions::max_calls_per_run`](crate::tool::ToolOptions::max_calls_per_run):
//!   at most this many calls in the run (on a thread, across its invocations), counted from
//!   the calls the model made in the history, in order, so the count is the same on every
//!   resume; a call beyond a limit is not run and is answered to the model as an error.
//!   [`Agent::max_model_calls`]: at most this many model answers in the run (on a thread,
//!   across its invocations), after which the `model` node fails with
//!   [`AgentError::ModelCallLimit`].
//!   [`Agent::stop_when`]: a hook on the messages, checked after each turn's tool results; when
//!   it says stop, the run ends before the next model call.
//! - **Model calls are tasks with a retry policy and an optional timeout.** By default
//!   ([`Agent::default_model_retry`]) a model call that timed out or whose stream was cut is
//!   made again, up to 3 attempts, under the same idempotency key; the provider already
//!   retries 429s, 5xx answers and failed connections itself, so those are not retried twice.
//!   [`Agent::model_retry`] and [`Agent::model_timeout`] change that.
//! - **Invalid tool calls** (an unknown tool, one the allow and deny lists refuse, arguments
//!   that are not JSON or fail the tool's schema): [`InvalidToolCalls`] says whether the error
//!   is answered to the model (the default), the model is asked again, or the run fails.
//! - **Approval.** A call of a tool whose options say
//!   [`needs_approval`](crate::tool::ToolOptions::needs_approval), or that
//!   [`Agent::approve_when`] picks, interrupts its task before it runs
//!   ([`Context::interrupt`](agentgraph_engine::Context::interrupt)) with an
//!   [`ApprovalRequest`]; the answer is an [`Approval`]: approve, reject (answered to the model
//!   as a tool error with the reason) or edit the arguments.
//! - **Threads.** The graph is an ordinary compiled graph: run it on a thread with
//!   `invoke_thread(id, AgentStateUpdate::new().messages(vec![Message::user(..)]), config)` to
//!   continue a chat, or embed it in a graph of your own with
//!   [`GraphBuilder::add_subgraph`](agentgraph_engine::GraphBuilder::add_subgraph).
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use agentgraph_nodes::agent::{Agent, AgentState};
//! use agentgraph_nodes::message::{Message, ToolCall};
//! use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
//! use agentgraph_nodes::tool::{ToolSet, tool_fn};
//!
//! /// A model that asks for `add` once, then reads the result back.
//! #[derive(Debug)]
//! struct Scripted;
//! impl ChatModel for Scripted {
//!     fn model(&self) -> &str { "scripted" }
//!     fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
//!         Box::pin(async move {
//!             request.check()?;
//!             let last = request.messages.last().unwrap();
//!             Ok(ChatResponse::new(match last.call_id() {
//!                 Some(_) => Message::assistant(format!("It is {}.", last.content.to_text())),
//!                 None => Message::assistant("").with_tool_calls([ToolCall::new(
//!                     "c1", "add", serde_json::json!({ "a": 2, "b": 3 }),
//!                 )]),
//!             }))
//!         })
//!     }
//! }
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Add { a: i64, b: i64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tools = ToolSet::new().with(tool_fn("add", "Adds.", |x: Add| async move {
//!     Ok::<_, std::convert::Infallible>(x.a + x.b)
//! }));
//! let graph = Agent::new(Arc::new(Scripted)).tools(tools).system_prompt("Be exact.").compile()?;
//! let done = graph.invoke(AgentState::from_messages([Message::user("2 + 3?")])).await?;
//! assert_eq!(done.messages.len(), 4); // user, assistant (call), tool result, assistant
//! assert_eq!(done.messages[3].text(), Some("It is 5."));
//! # Ok(()) }
//! ```

mod graph;

#[cfg(feature = "patterns")]
pub(crate) use graph::answer;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{BoxError, CompiledGraph, GraphError, NodeTimedOut, RetryPolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::{Message, MessageError, ToolCall};
use crate::model::{ChatModel, ChatRequest, ModelError};
use crate::tool::{ToolError, ToolSet};

/// The name of the agent's model node.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_nodes::agent::MODEL_NODE, "model");
/// ```
pub const MODEL_NODE: &str = "model";

/// The name of the agent's tool node: one task per tool call (a packet carrying the call's id).
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_nodes::agent::TOOL_NODE, "tool");
/// ```
pub const TOOL_NODE: &str = "tool";

/// The state of an [`Agent`]'s graph: the conversation, reduced by
/// [`add_messages`](crate::messages::add_messages) (append, replace by id, remove by id).
///
/// The derive makes `AgentStateUpdate`, the update type: `AgentStateUpdate::new().messages(..)`
/// is the input of a thread's next invocation.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::State;
/// use agentgraph_nodes::agent::{AgentState, AgentStateUpdate};
/// use agentgraph_nodes::Message;
///
/// let mut state = AgentState::from_messages([Message::user("hi")]);
/// state.apply(AgentStateUpdate::new().messages(vec![Message::assistant("hello")]));
/// assert_eq!(state.messages.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
pub struct AgentState {
    /// The conversation.
    #[reducer(with = crate::messages::add_messages)]
    pub messages: Vec<Message>,
}

impl AgentState {
    /// A state holding these messages.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, agent::AgentState};
    /// assert_eq!(AgentState::from_messages([Message::user("hi")]).messages.len(), 1);
    /// ```
    pub fn from_messages(messages: impl IntoIterator<Item = Message>) -> Self {
        AgentState {
            messages: messages.into_iter().collect(),
        }
    }

    /// The last message, when it is the model's answer without tool calls (the agent's reply).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, agent::AgentState};
    /// let s = AgentState::from_messages([Message::user("hi"), Message::assistant("hello")]);
    /// assert_eq!(s.reply().and_then(Message::text), Some("hello"));
    /// assert!(AgentState::from_messages([Message::user("hi")]).reply().is_none());
    /// ```
    pub fn reply(&self) -> Option<&Message> {
        self.messages
            .last()
            .filter(|m| m.role.as_str() == "assistant" && m.tool_calls().is_empty())
    }
}

/// What the agent does with an invalid tool call: one of an unknown tool, of a tool the allow
/// and deny lists refuse, or with arguments that are not JSON or fail the tool's schema.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::agent::InvalidToolCalls;
/// assert_eq!(InvalidToolCalls::default(), InvalidToolCalls::AnswerError);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToolCalls {
    /// The call goes to its `tool` task, which does not run it and answers the error to the
    /// model as a tool result with `is_error`; the model sees what was wrong and tries again.
    #[default]
    AnswerError,
    /// The model's answer is dropped and the model asked again, at most `retries` more times
    /// in the same task; then the run fails with [`AgentError::InvalidToolCall`].
    RetryModel {
        /// How many more model calls a turn may make.
        retries: u32,
    },
    /// The run fails at once with [`AgentError::InvalidToolCall`].
    Fail,
}

/// The errors an agent's nodes fail with (besides the model's own
/// [`ModelError`]s).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::agent::AgentError;
/// let e = AgentError::TurnLimit { limit: 3 };
/// assert_eq!(e.to_string(), "the agent made its 3 model calls of this invocation without a final answer");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The invocation used up [`Agent::max_turns`] model calls and the model still asks for
    /// tools. The run fails at its `model` node; on a thread, resume it with an update that
    /// adds a user message (`Resume::new().update(..)`), which starts a new count.
    #[error("the agent made its {limit} model calls of this invocation without a final answer")]
    TurnLimit {
        /// The limit.
        limit: u32,
    },
    /// The run (on a thread, across its invocations) holds [`Agent::max_model_calls`] model
    /// answers, and the model would be called again. The run fails at its `model` node; every
    /// later invocation of the thread would too: raise the limit, or go on in a new thread.
    #[error(
        "the agent reached its limit of {limit} model calls in this run: raise `max_model_calls` or go on in a new thread"
    )]
    ModelCallLimit {
        /// The limit.
        limit: u32,
    },
    /// The history holds a tool call without a result: the model cannot be called on it.
    #[error(transparent)]
    Unanswered(#[from] MessageError),
    /// The model made an invalid tool call and the policy ([`InvalidToolCalls::RetryModel`]
    /// used up, or [`InvalidToolCalls::Fail`]) fails the run.
    #[error("the model made an invalid call `{call_id}`: {error}")]
    InvalidToolCall {
        /// The call's id.
        call_id: String,
        /// What is wrong with it.
        error: ToolError,
    },
    /// A `tool` task's call is not in the history (the messages were edited under it).
    #[error("tool call `{call_id}` is not in the history")]
    CallNotFound {
        /// The call's id.
        call_id: String,
    },
}

/// What a tool call that needs approval interrupts with (the interrupt's payload, as JSON):
/// the tool, the call's id and its arguments.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::agent::ApprovalRequest;
/// let r: ApprovalRequest = serde_json::from_value(serde_json::json!({
///     "kind": "tool_approval", "tool": "rm", "call_id": "c1", "arguments": { "path": "/" }
/// })).unwrap();
/// assert_eq!(r.tool, "rm");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// Always `tool_approval`: tells this interrupt apart from others of a graph.
    pub kind: String,
    /// The tool.
    pub tool: String,
    /// The call's id.
    pub call_id: String,
    /// The arguments the model gave.
    pub arguments: Value,
}

/// The answer to an [`ApprovalRequest`]: give it to `Resume::value` (or `Resume::answer` with
/// the interrupt's id when several calls wait). In JSON: `{"decision": "approve"}`,
/// `{"decision": "reject", "reason": ".."}`, `{"decision": "edit", "arguments": {..}}`.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::agent::Approval;
/// let json = serde_json::to_value(Approval::reject("not on Fridays")).unwrap();
/// assert_eq!(json, serde_json::json!({ "decision": "reject", "reason": "not on Fridays" }));
/// let edit: Approval = serde_json::from_value(serde_json::json!({
///     "decision": "edit", "arguments": { "path": "/tmp" }
/// })).unwrap();
/// assert_eq!(edit, Approval::Edit { arguments: serde_json::json!({ "path": "/tmp" }) });
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Approval {
    /// Run the call as the model made it.
    Approve,
    /// Do not run it; the model gets a tool error saying it was rejected, and why.
    Reject {
        /// Why (may be empty).
        #[serde(default)]
        reason: String,
    },
    /// Run it with these arguments instead (the history keeps the model's).
    Edit {
        /// The arguments to call the tool with.
        arguments: Value,
    },
}

impl Approval {
    /// A rejection with a reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::agent::Approval;
    /// assert_eq!(Approval::reject("no"), Approval::Reject { reason: "no".into() });
    /// ```
    pub fn reject(reason: impl Into<String>) -> Self {
        Approval::Reject {
            reason: reason.into(),
        }
    }

    /// An approval with edited arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::agent::Approval;
    /// let a = Approval::edit(serde_json::json!({ "n": 1 }));
    /// assert!(matches!(a, Approval::Edit { .. }));
    /// ```
    pub fn edit(arguments: Value) -> Self {
        Approval::Edit { arguments }
    }
}

type StopHook = Arc<dyn Fn(&[Message]) -> bool + Send + Sync>;
type ApprovalRule = Arc<dyn Fn(&ToolCall) -> bool + Send + Sync>;
type RequestHook = Arc<dyn Fn(ChatRequest) -> ChatRequest + Send + Sync>;

/// The prebuilt tool-calling agent: a model, its tools, a persona, guards, a policy for
/// invalid calls and approval rules; [`compile`](Agent::compile) makes its graph. See
/// [the module](self) for how it runs.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::agent::{Agent, InvalidToolCalls};
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::{Message, tool::ToolSet};
/// # #[derive(Debug)] struct Hello;
/// # impl ChatModel for Hello {
/// #     fn model(&self) -> &str { "hello" }
/// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
/// #         Box::pin(async { Ok(ChatResponse::new(Message::assistant("Hello!"))) })
/// #     }
/// # }
///
/// let agent = Agent::new(Arc::new(Hello))
///     .tools(ToolSet::new())
///     .system_prompt("You are terse.")
///     .max_turns(5)
///     .max_tool_calls(20)
///     .stop_when(|messages| messages.len() > 50)
///     .on_invalid_tool_call(InvalidToolCalls::RetryModel { retries: 1 })
///     .approve_when(|call| call.name.starts_with("shell"))
///     .request_with(|request| request.temperature(0.0));
/// assert_eq!(agent.turn_limit(), 5);
/// let graph = agent.compile().unwrap();
/// # drop(graph);
/// ```
#[derive(Clone)]
pub struct Agent {
    pub(crate) model: Arc<dyn ChatModel>,
    pub(crate) tools: Arc<ToolSet>,
    pub(crate) system: Option<String>,
    pub(crate) max_turns: u32,
    max_model_calls: Option<u32>,
    max_tool_calls: Option<u32>,
    model_retry: RetryPolicy,
    model_timeout: Option<Duration>,
    stop: Option<StopHook>,
    invalid: InvalidToolCalls,
    approve: Option<ApprovalRule>,
    pub(crate) request: Option<RequestHook>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("model", &self.model.model())
            .field("tools", &self.tools.len())
            .field("system", &self.system.is_some())
            .field("max_turns", &self.max_turns)
            .field("max_model_calls", &self.max_model_calls)
            .field("max_tool_calls", &self.max_tool_calls)
            .field("model_retry", &self.model_retry)
            .field("model_timeout", &self.model_timeout)
            .field("stop", &self.stop.is_some())
            .field("invalid", &self.invalid)
            .field("approve", &self.approve.is_some())
            .finish()
    }
}

impl Agent {
    /// The default of [`max_turns`](Agent::max_turns).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::agent::Agent::DEFAULT_MAX_TURNS, 25);
    /// ```
    pub const DEFAULT_MAX_TURNS: u32 = 25;

    /// An agent on `model`, with no tools, no system prompt, at most
    /// [`DEFAULT_MAX_TURNS`](Agent::DEFAULT_MAX_TURNS) model calls per invocation, model calls
    /// retried as [`default_model_retry`](Agent::default_model_retry) says, invalid calls
    /// answered to the model, and approval asked for the tools whose options say so.
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Agent {
            model,
            tools: Arc::new(ToolSet::new()),
            system: None,
            max_turns: Self::DEFAULT_MAX_TURNS,
            max_model_calls: None,
            max_tool_calls: None,
            model_retry: Self::default_model_retry(),
            model_timeout: None,
            stop: None,
            invalid: InvalidToolCalls::default(),
            approve: None,
            request: None,
        }
    }

    /// The tools offered to the model (those the set's lists allow) and run for it.
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn tools(mut self, tools: ToolSet) -> Self {
        self.tools = Arc::new(tools);
        self
    }

    /// The system prompt (the persona): sent first with every model call, not stored in the
    /// state, so changing it changes the next call only.
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system = Some(prompt.into());
        self
    }

    /// At most `turns` model calls per invocation (the assistant messages after the last
    /// user message); one more fails the run with [`AgentError::TurnLimit`].
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn max_turns(mut self, turns: u32) -> Self {
        self.max_turns = turns;
        self
    }

    /// The limit set by [`max_turns`](Agent::max_turns).
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    pub fn turn_limit(&self) -> u32 {
        self.max_turns
    }

    /// At most `calls` model calls in the run (on a thread, across its invocations), counted
    /// as the assistant messages in the history (those the input carries too); the next model
    /// call fails the run with [`AgentError::ModelCallLimit`]. The attempts of one call (its
    /// retries, [`InvalidToolCalls::RetryModel`]'s questions) count once. Unlike
    /// [`max_turns`](Agent::max_turns), a new user message does not start a new count.
    ///
    /// In the multi-agent patterns, where an agent's history is the view the pattern gives it
    /// (a supervisor's or a swarm's transcript holds the other agents' answers too), use
    /// [`max_turns`](Agent::max_turns) instead; a group chat does not apply this limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_nodes::agent::Agent;
    /// # use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
    /// # #[derive(Debug)] struct Hello;
    /// # impl ChatModel for Hello {
    /// #     fn model(&self) -> &str { "hello" }
    /// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> { unimplemented!() }
    /// # }
    /// let agent = Agent::new(Arc::new(Hello)).max_model_calls(100);
    /// assert_eq!(agent.model_call_limit(), Some(100));
    /// ```
    #[must_use]
    pub fn max_model_calls(mut self, calls: u32) -> Self {
        self.max_model_calls = Some(calls);
        self
    }

    /// The limit set by [`max_model_calls`](Agent::max_model_calls), if any.
    ///
    /// # Examples
    ///
    /// See [`max_model_calls`](Agent::max_model_calls).
    pub fn model_call_limit(&self) -> Option<u32> {
        self.max_model_calls
    }

    /// The retry policy of the `model` node's tasks (by default
    /// [`default_model_retry`](Agent::default_model_retry)). A retried call streams its answer
    /// again under the same idempotency key; what the failed attempt streamed stays in the
    /// events, as for any retried task. [`RetryPolicy::never`] turns retries off.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use agentgraph_engine::RetryPolicy;
    /// # use agentgraph_nodes::agent::Agent;
    /// # use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
    /// # #[derive(Debug)] struct Hello;
    /// # impl ChatModel for Hello {
    /// #     fn model(&self) -> &str { "hello" }
    /// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> { unimplemented!() }
    /// # }
    /// // Five attempts for the same errors as the default, a longer wait between them.
    /// let retry = RetryPolicy::new(5)
    ///     .backoff(Duration::from_secs(2), Duration::from_secs(30))
    ///     .retry_if(Agent::retryable_model_error);
    /// assert_eq!(retry.max_attempts(), 5);
    /// let agent = Agent::new(Arc::new(Hello))
    ///     .model_retry(retry)
    ///     .model_timeout(Duration::from_secs(120));
    /// # drop(agent);
    /// ```
    #[must_use]
    pub fn model_retry(mut self, policy: RetryPolicy) -> Self {
        self.model_retry = policy;
        self
    }

    /// The default retry policy of model calls: 3 attempts, the second after 0.5–1 s and the
    /// third after 1–2 s ([`RetryPolicy::new`]'s delays, with jitter), for the errors
    /// [`retryable_model_error`](Agent::retryable_model_error) picks.
    ///
    /// Those are the errors calling again may cure and the provider did not retry already: a
    /// call over its timeout ([`NodeTimedOut`], [`ModelError::Timeout`]) and a stream cut
    /// before its end ([`ModelError::StreamCut`]). 429s, 5xx answers and failed connections
    /// are retried by the provider itself (`OpenAiModel` honours `Retry-After`), so retrying
    /// them here too would multiply the attempts; every other error (a bad request, an
    /// agent's limit, an invalid call under [`InvalidToolCalls::Fail`]) fails at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_engine::{BoxError, NodeTimedOut};
    /// use agentgraph_nodes::agent::Agent;
    /// use agentgraph_nodes::model::ModelError;
    ///
    /// let retry = Agent::default_model_retry();
    /// assert_eq!(retry.max_attempts(), 3);
    /// let timeout: BoxError = ModelError::Timeout(Duration::from_secs(60)).into();
    /// assert!(retry.should_retry(&timeout));
    /// let refused: BoxError = ModelError::Empty.into();
    /// assert!(!retry.should_retry(&refused));
    /// ```
    pub fn default_model_retry() -> RetryPolicy {
        RetryPolicy::new(3).retry_if(Agent::retryable_model_error)
    }

    /// Whether a model task's error is one [`default_model_retry`](Agent::default_model_retry)
    /// retries: [`NodeTimedOut`], [`ModelError::Timeout`] or [`ModelError::StreamCut`]. For a
    /// policy of your own with the same choice of errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::BoxError;
    /// use agentgraph_nodes::agent::Agent;
    /// use agentgraph_nodes::model::ModelError;
    ///
    /// let cut: BoxError = ModelError::StreamCut { chunks: 2, text_len: 9, reason: "reset".into() }.into();
    /// assert!(Agent::retryable_model_error(&cut));
    /// let refused: BoxError = ModelError::Empty.into();
    /// assert!(!Agent::retryable_model_error(&refused));
    /// ```
    pub fn retryable_model_error(e: &BoxError) -> bool {
        e.is::<NodeTimedOut>()
            || e.downcast_ref::<ModelError>()
                .is_some_and(|e| matches!(e, ModelError::Timeout(_) | ModelError::StreamCut { .. }))
    }

    /// A time limit on each attempt of a model call, streaming included (none by default:
    /// the provider's own timeouts apply). An attempt over it fails with [`NodeTimedOut`],
    /// which [`default_model_retry`](Agent::default_model_retry) retries.
    ///
    /// It bounds everything the attempt does, the provider's own retries of 429s and 5xx
    /// answers (and their `Retry-After` waits) included: an attempt cut by it starts the
    /// provider's retries again. Make it longer than a call with those retries takes.
    ///
    /// # Examples
    ///
    /// See [`model_retry`](Agent::model_retry).
    #[must_use]
    pub fn model_timeout(mut self, timeout: Duration) -> Self {
        self.model_timeout = Some(timeout);
        self
    }

    /// At most `calls` tool calls in the run, all tools together (on a thread, across its
    /// invocations); a call beyond is answered to the model as an error, not run.
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn max_tool_calls(mut self, calls: u32) -> Self {
        self.max_tool_calls = Some(calls);
        self
    }

    /// A stop condition, checked on the messages after each turn's tool results: when it
    /// returns `true`, the run ends (at `END`) instead of calling the model again.
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn stop_when(mut self, stop: impl Fn(&[Message]) -> bool + Send + Sync + 'static) -> Self {
        self.stop = Some(Arc::new(stop));
        self
    }

    /// What to do with invalid tool calls (see [`InvalidToolCalls`]).
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn on_invalid_tool_call(mut self, policy: InvalidToolCalls) -> Self {
        self.invalid = policy;
        self
    }

    /// Asks for approval of the calls `rule` picks, besides those of the tools whose
    /// [`ToolOptions::needs_approval`](crate::tool::ToolOptions::needs_approval) is set.
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn approve_when(
        mut self,
        rule: impl Fn(&ToolCall) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.approve = Some(Arc::new(rule));
        self
    }

    /// Adjusts every model request (temperature, max tokens, tool choice, ...) after the
    /// agent made it from the messages, the system prompt and the tools.
    ///
    /// # Examples
    ///
    /// See [`Agent`].
    #[must_use]
    pub fn request_with(
        mut self,
        hook: impl Fn(ChatRequest) -> ChatRequest + Send + Sync + 'static,
    ) -> Self {
        self.request = Some(Arc::new(hook));
        self
    }

    /// Gives the task of node `node` of `b` (which calls the model) the agent's retry policy
    /// and timeout.
    pub(crate) fn set_model_task<S: agentgraph_engine::State>(
        &self,
        b: &mut agentgraph_engine::GraphBuilder<S>,
        node: &str,
    ) {
        b.retry(node, self.model_retry.clone());
        if let Some(timeout) = self.model_timeout {
            b.timeout(node, timeout);
        }
    }

    /// The agent's tool set (the multi-agent patterns restrict it per phase, or add handoff
    /// tools to it).
    #[cfg(feature = "patterns")]
    pub(crate) fn tool_set(&self) -> &ToolSet {
        &self.tools
    }

    /// The stop hook set by [`stop_when`](Agent::stop_when), if any.
    #[cfg(feature = "patterns")]
    pub(crate) fn stop_hook(&self) -> Option<StopHook> {
        self.stop.clone()
    }

    /// The agent's graph: `START -> model`, then `tool` tasks (one per call) and `model` again
    /// until the model answers without tool calls.
    ///
    /// # Errors
    ///
    /// None in practice: the graph is fixed (a [`GraphError`] would be a bug).
    ///
    /// # Examples
    ///
    /// See [the module](self).
    pub fn compile(&self) -> Result<CompiledGraph<AgentState>, GraphError> {
        graph::build(self.clone()).compile()
    }
}
