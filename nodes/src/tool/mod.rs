//! Tools a model can call: the [`Tool`] trait, tools made from async functions
//! ([`tool_fn`]), their arguments checked against a JSON Schema ([`ArgumentsValidator`]), and
//! [`ToolSet`]: the tools of an agent, offered and called under allow and deny lists
//! ([`ToolFilter`]), with per-tool limits ([`ToolOptions`]).
//!
//! Every failure of a call is a [`ToolError`], never a panic, and every `ToolError` turns into
//! a tool result [`Message`] with `is_error` ([`ToolError::to_message`]) so that the model
//! learns what went wrong and can try again.
//!
//! # Examples
//!
//! ```
//! use agentgraph_nodes::message::ToolCall;
//! use agentgraph_nodes::tool::{ToolContext, ToolSet, tool_fn};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! /// Adds two numbers.
//! #[derive(Deserialize, JsonSchema)]
//! struct AddArgs {
//!     a: i64,
//!     b: i64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tools = ToolSet::new().with(tool_fn("add", "Adds two integers.", |args: AddArgs| async move {
//!     Ok::<_, std::convert::Infallible>(args.a + args.b)
//! }));
//!
//! let ctx = ToolContext::new("run-1/step-3/task-0");
//! let answer = tools.answer(&ToolCall::new("c1", "add", json!({ "a": 2, "b": 3 })), ctx.clone()).await;
//! assert_eq!(answer.content, json!(5).into());
//!
//! // A wrong argument is answered as an error, naming what failed.
//! let answer = tools.answer(&ToolCall::new("c2", "add", json!({ "a": "two" })), ctx).await;
//! assert!(answer.is_error());
//! assert!(answer.content.to_text().contains("\"b\" is a required property"));
//! # }
//! ```

mod filter;
mod func;
mod set;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_engine::{BoxError, Context};
use serde_json::Value;

pub use filter::{PatternError, Refusal, ToolFilter};
pub use func::{FnTool, tool_fn, tool_fn_with_context};
pub use set::{ToolOptions, ToolSet};

use crate::message::{Content, Message};

/// What [`Tool::call`] returns: a boxed future, so that `Tool` is object safe.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{ToolFuture, ToolOutput};
/// let fut: ToolFuture<'static> = Box::pin(async { Ok(ToolOutput::text("done")) });
/// # drop(fut);
/// ```
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<ToolOutput, ToolError>> + Send + 'a>>;

/// A tool a model can call: a name, a description, the JSON Schema of its arguments, and an
/// async call.
///
/// Object safe: tool sets hold `Arc<dyn Tool>`. Make one from an async function with
/// [`tool_fn`], or implement it for tools whose schema comes from elsewhere (an MCP server).
/// An implementation checks its arguments itself ([`ArgumentsValidator`] does it against a
/// schema) and reports every failure as a [`ToolError`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{Tool, ToolContext, ToolError, ToolFuture, ToolOutput};
/// use serde_json::{Value, json};
///
/// struct Clock {
///     schema: Value,
/// }
///
/// impl Tool for Clock {
///     fn name(&self) -> &str {
///         "clock"
///     }
///     fn description(&self) -> &str {
///         "The current time, as seconds since 1970."
///     }
///     fn parameters(&self) -> &Value {
///         &self.schema
///     }
///     fn call(&self, _args: Value, _ctx: ToolContext) -> ToolFuture<'_> {
///         Box::pin(async { Ok(ToolOutput::text("1700000000")) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ToolError> {
/// let clock: std::sync::Arc<dyn Tool> =
///     std::sync::Arc::new(Clock { schema: json!({ "type": "object" }) });
/// let out = clock.call(json!({}), ToolContext::new("key")).await?;
/// assert_eq!(out.content.as_text(), Some("1700000000"));
/// # Ok(()) }
/// ```
pub trait Tool: Send + Sync {
    /// The name the model calls it by (OpenAI allows letters, digits, `_` and `-`).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{Tool, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Q { q: String }
    /// let search = tool_fn("search", "Searches the docs.", |q: Q| async move { Ok::<_, std::io::Error>(q.q) });
    /// assert_eq!(search.name(), "search");
    /// ```
    fn name(&self) -> &str;

    /// What it does, for the model.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{Tool, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Q { q: String }
    /// let search = tool_fn("search", "Searches the docs.", |q: Q| async move { Ok::<_, std::io::Error>(q.q) });
    /// assert_eq!(search.description(), "Searches the docs.");
    /// ```
    fn description(&self) -> &str;

    /// The JSON Schema of its arguments (an object schema).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{Tool, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Q { q: String }
    /// let search = tool_fn("search", "Searches the docs.", |q: Q| async move { Ok::<_, std::io::Error>(q.q) });
    /// assert_eq!(search.parameters()["required"], serde_json::json!(["q"]));
    /// ```
    fn parameters(&self) -> &Value;

    /// Calls the tool with the model's arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::{Tool, ToolContext, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Q { q: String }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let search = tool_fn("search", "Searches the docs.", |q: Q| async move { Ok::<_, std::io::Error>(q.q) });
    /// let out = search.call(serde_json::json!({ "q": "joins" }), ToolContext::new("k")).await.unwrap();
    /// assert_eq!(out.content.as_text(), Some("joins"));
    /// # }
    /// ```
    fn call(&self, args: Value, ctx: ToolContext) -> ToolFuture<'_>;
}

impl<T: Tool + ?Sized> Tool for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn description(&self) -> &str {
        (**self).description()
    }

    fn parameters(&self) -> &Value {
        (**self).parameters()
    }

    fn call(&self, args: Value, ctx: ToolContext) -> ToolFuture<'_> {
        (**self).call(args, ctx)
    }
}

impl fmt::Debug for dyn Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tool").field("name", &self.name()).finish()
    }
}

/// What a tool call knows of the task that runs it.
///
/// Above all its **idempotency key**: the same when the task runs again (a retry, a resume
/// after a crash), different for every other call, so a tool with side effects can dedupe them
/// (send it as an `Idempotency-Key` header, or keep it with what it wrote).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::ToolContext;
///
/// let ctx = ToolContext::new("run-9:4:search").with_call_id("call_1");
/// assert_eq!(ctx.idempotency_key(), "run-9:4:search/call_1");
/// assert_eq!(ctx.call_id(), Some("call_1"));
/// assert_eq!(ctx.attempt(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolContext {
    key: String,
    call_id: Option<String>,
    attempt: u32,
}

impl ToolContext {
    /// A context with an idempotency key of your choosing.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolContext;
    /// assert_eq!(ToolContext::new("k").idempotency_key(), "k");
    /// ```
    pub fn new(idempotency_key: impl Into<String>) -> Self {
        ToolContext {
            key: idempotency_key.into(),
            call_id: None,
            attempt: 1,
        }
    }

    /// The context of a call made by the task of `ctx`: its key is the task's
    /// ([`Context::idempotency_key`]), the same when the task runs again after a crash.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_engine::{BoxError, Context};
    /// use agentgraph_nodes::tool::ToolContext;
    ///
    /// async fn node(ctx: Context) -> Result<(), BoxError> {
    ///     let tool_ctx = ToolContext::from_context(&ctx).with_call_id("call_1");
    ///     assert!(tool_ctx.idempotency_key().starts_with(&ctx.idempotency_key()));
    ///     Ok(())
    /// }
    /// ```
    pub fn from_context(ctx: &Context) -> Self {
        Self::new(ctx.idempotency_key())
    }

    /// Names the model's call this context is for. The idempotency key gets `/` and the call
    /// id appended, so that the calls of one task have keys of their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolContext;
    /// let a = ToolContext::new("task").with_call_id("c1");
    /// let b = ToolContext::new("task").with_call_id("c2");
    /// assert_ne!(a.idempotency_key(), b.idempotency_key());
    /// ```
    #[must_use]
    pub fn with_call_id(mut self, call_id: impl Into<String>) -> Self {
        let call_id = call_id.into();
        self.key = format!("{}/{call_id}", self.key);
        self.call_id = Some(call_id);
        self
    }

    /// The idempotency key: the same for every attempt of this call, in this process or after
    /// a resume.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolContext;
    /// assert_eq!(ToolContext::new("k").idempotency_key(), "k");
    /// ```
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// The id of the model's call, when known.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolContext;
    /// assert_eq!(ToolContext::new("k").call_id(), None);
    /// ```
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// The attempt of the call within [`ToolSet::call`]'s retries, from 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolContext;
    /// assert_eq!(ToolContext::new("k").attempt(), 1);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }
}

/// What a tool returns to the model.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::ToolOutput;
/// assert_eq!(ToolOutput::text("done").content.as_text(), Some("done"));
/// assert_eq!(ToolOutput::json(serde_json::json!({ "n": 1 })).content.to_text(), r#"{"n":1}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolOutput {
    /// The result.
    pub content: Content,
}

impl ToolOutput {
    /// A result of any content.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOutput;
    /// assert_eq!(ToolOutput::new("ok"), ToolOutput::text("ok"));
    /// ```
    pub fn new(content: impl Into<Content>) -> Self {
        ToolOutput {
            content: content.into(),
        }
    }

    /// A text result.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOutput;
    /// assert_eq!(ToolOutput::text("ok").content.as_text(), Some("ok"));
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Content::Text(text.into()))
    }

    /// A JSON result.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOutput;
    /// assert!(ToolOutput::json(serde_json::json!([1])).content.as_text().is_none());
    /// ```
    pub fn json(value: Value) -> Self {
        Self::new(Content::Json(value))
    }

    /// The tool result message answering the call `call_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolOutput;
    /// let m = ToolOutput::text("42").into_message("call_1");
    /// assert_eq!(m.call_id(), Some("call_1"));
    /// assert!(!m.is_error());
    /// ```
    pub fn into_message(self, call_id: impl Into<String>) -> Message {
        Message::tool_result(call_id, self.content)
    }
}

/// One way the arguments of a call fail their schema.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::ArgumentError;
/// let e = ArgumentError { pointer: "/city".into(), keyword: "type".into(), message: "1 is not of type \"string\"".into() };
/// assert_eq!(e.to_string(), "/city: 1 is not of type \"string\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentError {
    /// Where in the arguments, as a JSON pointer (empty for the arguments as a whole).
    pub pointer: String,
    /// The schema keyword that failed (`type`, `required`, ...; `deserialize` when the value
    /// passed the schema but not the tool's own type).
    pub keyword: String,
    /// What failed, for the model.
    pub message: String,
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// Why a tool call failed. Every variant names the tool; every one becomes a tool result
/// message with `is_error` through [`to_message`](ToolError::to_message).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{ToolError, ToolSet};
/// use agentgraph_nodes::tool::ToolContext;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tools = ToolSet::new();
/// let e = tools.call("rm", serde_json::json!({}), ToolContext::new("k")).await.unwrap_err();
/// assert!(matches!(e, ToolError::Unknown { ref tool, .. } if tool == "rm"));
/// let m = e.to_message("call_1");
/// assert!(m.is_error());
/// assert_eq!(m.content.to_text(), "tool `rm` does not exist; there are no tools");
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// No tool has this name.
    #[error("tool `{tool}` does not exist; {}", Available(available))]
    Unknown {
        /// The name called.
        tool: String,
        /// The names of the tools that may be called.
        available: Vec<String>,
    },
    /// The tool set's allow and deny lists refuse the tool.
    #[error("tool `{tool}` is not allowed: {refusal}")]
    NotAllowed {
        /// The name called.
        tool: String,
        /// Which rule refused it.
        refusal: Refusal,
    },
    /// The arguments are not JSON.
    #[error("the arguments of tool `{tool}` are not valid JSON ({source}): {raw}")]
    MalformedArguments {
        /// The tool.
        tool: String,
        /// The arguments as the model wrote them.
        raw: String,
        /// Why they do not parse.
        source: serde_json::Error,
    },
    /// The arguments do not satisfy the tool's schema.
    #[error("invalid arguments for tool `{tool}`: {}", Listed(errors))]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Everything that failed.
        errors: Vec<ArgumentError>,
    },
    /// The tool's schema is not a valid JSON Schema: no call can be checked against it.
    #[error("tool `{tool}` has an invalid argument schema: {reason}")]
    InvalidSchema {
        /// The tool.
        tool: String,
        /// What the validator says.
        reason: String,
    },
    /// An attempt took longer than the tool's timeout ([`ToolOptions::timeout`]).
    #[error("tool `{tool}` timed out after {after:?}")]
    TimedOut {
        /// The tool.
        tool: String,
        /// The timeout.
        after: Duration,
    },
    /// The tool itself failed.
    #[error("tool `{tool}` failed: {source}")]
    Failed {
        /// The tool.
        tool: String,
        /// The tool's error.
        source: BoxError,
    },
}

/// `a, b` or "there are no tools", for [`ToolError::Unknown`].
struct Available<'a>(&'a [String]);

impl fmt::Display for Available<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("there are no tools");
        }
        f.write_str("the tools are: ")?;
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// The errors joined by `; `.
struct Listed<'a>(&'a [ArgumentError]);

impl fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ToolError {
    /// The tool's own failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolError;
    /// let e = ToolError::failed("fetch", "connection refused");
    /// assert_eq!(e.to_string(), "tool `fetch` failed: connection refused");
    /// ```
    pub fn failed(tool: impl Into<String>, error: impl Into<BoxError>) -> Self {
        ToolError::Failed {
            tool: tool.into(),
            source: error.into(),
        }
    }

    /// The name of the tool called.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolError;
    /// assert_eq!(ToolError::failed("fetch", "boom").tool(), "fetch");
    /// ```
    pub fn tool(&self) -> &str {
        match self {
            ToolError::Unknown { tool, .. }
            | ToolError::NotAllowed { tool, .. }
            | ToolError::MalformedArguments { tool, .. }
            | ToolError::InvalidArguments { tool, .. }
            | ToolError::InvalidSchema { tool, .. }
            | ToolError::TimedOut { tool, .. }
            | ToolError::Failed { tool, .. } => tool,
        }
    }

    /// Whether another attempt may succeed: a timeout or the tool's own failure. Refusals and
    /// bad arguments fail the same way every time.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolError;
    /// assert!(ToolError::failed("fetch", "503").is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, ToolError::TimedOut { .. } | ToolError::Failed { .. })
    }

    /// The tool result message that tells the model about this error: `is_error`, the error
    /// as text, the tool's name as the message's name.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ToolError;
    /// let m = ToolError::failed("fetch", "timeout").to_message("call_3");
    /// assert!(m.is_error());
    /// assert_eq!(m.call_id(), Some("call_3"));
    /// assert_eq!(m.name.as_deref(), Some("fetch"));
    /// ```
    pub fn to_message(&self, call_id: impl Into<String>) -> Message {
        Message::tool_error(call_id, self.to_string()).with_name(self.tool())
    }
}

/// A compiled JSON Schema that checks the arguments of calls.
///
/// Built once per tool; it resolves references inside the schema (`#/$defs/..`) but never
/// fetches one from the network or the disk.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::ArgumentsValidator;
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": { "city": { "type": "string" } },
///     "required": ["city"],
/// });
/// let validator = ArgumentsValidator::new(&schema).unwrap();
/// assert!(validator.check(&json!({ "city": "Paris" })).is_ok());
/// let errors = validator.check(&json!({ "city": 7 })).unwrap_err();
/// assert_eq!(errors[0].pointer, "/city");
/// assert_eq!(errors[0].keyword, "type");
/// ```
pub struct ArgumentsValidator {
    validator: jsonschema::Validator,
}

impl fmt::Debug for ArgumentsValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArgumentsValidator").finish_non_exhaustive()
    }
}

impl ArgumentsValidator {
    /// Compiles `schema`.
    ///
    /// # Errors
    ///
    /// The validator's complaint, when `schema` is not a valid JSON Schema (or names a
    /// reference outside itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ArgumentsValidator;
    /// assert!(ArgumentsValidator::new(&serde_json::json!({ "type": 12 })).is_err());
    /// ```
    pub fn new(schema: &Value) -> Result<Self, String> {
        jsonschema::validator_for(schema)
            .map(|validator| ArgumentsValidator { validator })
            .map_err(|e| e.to_string())
    }

    /// Checks `args`, listing every failure.
    ///
    /// # Errors
    ///
    /// Every way `args` fails the schema, in the validator's order.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::tool::ArgumentsValidator;
    /// let v = ArgumentsValidator::new(&serde_json::json!({ "type": "integer" })).unwrap();
    /// assert!(v.check(&serde_json::json!(1)).is_ok());
    /// assert_eq!(v.check(&serde_json::json!("x")).unwrap_err().len(), 1);
    /// ```
    pub fn check(&self, args: &Value) -> Result<(), Vec<ArgumentError>> {
        if self.validator.is_valid(args) {
            return Ok(());
        }
        let errors: Vec<ArgumentError> = self
            .validator
            .iter_errors(args)
            .map(|e| ArgumentError {
                pointer: e.instance_path().as_str().to_owned(),
                keyword: e.kind().keyword().to_owned(),
                message: e.to_string(),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
