//! What a model call gets back: [`ChatResponse`], [`FinishReason`], [`Usage`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::message::{Message, ToolCall};

/// Why the model stopped. Lenient: a reason this crate does not know is kept as
/// [`FinishReason::Other`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::FinishReason;
/// assert_eq!(FinishReason::parse("tool_calls"), FinishReason::ToolCalls);
/// assert_eq!(FinishReason::parse("eos"), FinishReason::Other("eos".into()));
/// assert_eq!(FinishReason::Length.as_str(), "length");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum FinishReason {
    /// A natural end, or a stop sequence.
    Stop,
    /// The token limit.
    Length,
    /// The model calls tools.
    ToolCalls,
    /// The provider's content filter.
    ContentFilter,
    /// Anything else, as the provider named it.
    Other(String),
}

impl FinishReason {
    /// The reason for the provider's name of it.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::FinishReason;
    /// assert_eq!(FinishReason::parse("stop"), FinishReason::Stop);
    /// ```
    pub fn parse(name: &str) -> Self {
        match name {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// Its name (OpenAI's, or the provider's for [`FinishReason::Other`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::FinishReason;
    /// assert_eq!(FinishReason::Other("x".into()).as_str(), "x");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(other) => other,
        }
    }
}

impl From<String> for FinishReason {
    fn from(name: String) -> Self {
        match FinishReason::parse(&name) {
            FinishReason::Other(_) => FinishReason::Other(name),
            known => known,
        }
    }
}

impl From<FinishReason> for String {
    fn from(reason: FinishReason) -> Self {
        reason.as_str().to_owned()
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens a call used.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::Usage;
/// let u = Usage::new(12, 5);
/// assert_eq!(u.total(), 17);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens of the prompt (OpenAI's `prompt_tokens`).
    pub input_tokens: u64,
    /// Tokens generated (OpenAI's `completion_tokens`).
    pub output_tokens: u64,
}

impl Usage {
    /// Usage from its counts.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::model::Usage::new(1, 2).output_tokens, 2);
    /// ```
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens,
            output_tokens,
        }
    }

    /// Input and output tokens together.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::model::Usage::new(1, 2).total(), 3);
    /// ```
    pub const fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// A model's answer: the assistant message (with its tool calls), why it stopped, and the
/// tokens used.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, ToolCall};
/// use agentgraph_nodes::model::{ChatResponse, FinishReason, Usage};
///
/// let call = ToolCall::new("c1", "search", serde_json::json!({ "q": "rust" }));
/// let r = ChatResponse::new(Message::assistant("").with_tool_calls([call]))
///     .with_finish_reason(FinishReason::ToolCalls)
///     .with_usage(Usage::new(20, 8));
/// assert_eq!(r.tool_calls()[0].name, "search");
/// assert_eq!(r.text(), "");
/// assert_eq!(r.usage.unwrap().total(), 28);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
    /// The assistant message.
    pub message: Message,
    /// Why the model stopped, when the provider said.
    pub finish_reason: Option<FinishReason>,
    /// Tokens used, when the provider said.
    pub usage: Option<Usage>,
    /// The model that answered, as the provider named it.
    pub model: Option<String>,
    /// The provider's id of the answer.
    pub id: Option<String>,
}

impl ChatResponse {
    /// A response holding `message` and nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, model::ChatResponse};
    /// assert!(ChatResponse::new(Message::assistant("hi")).usage.is_none());
    /// ```
    pub fn new(message: Message) -> Self {
        ChatResponse {
            message,
            finish_reason: None,
            usage: None,
            model: None,
            id: None,
        }
    }

    /// Sets the finish reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, model::{ChatResponse, FinishReason}};
    /// let r = ChatResponse::new(Message::assistant("")).with_finish_reason(FinishReason::Length);
    /// assert_eq!(r.finish_reason, Some(FinishReason::Length));
    /// ```
    #[must_use]
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        self.finish_reason = Some(reason);
        self
    }

    /// Sets the usage.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, model::{ChatResponse, Usage}};
    /// let r = ChatResponse::new(Message::assistant("")).with_usage(Usage::new(1, 1));
    /// assert_eq!(r.usage, Some(Usage::new(1, 1)));
    /// ```
    #[must_use]
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The answer's text (the content as text; empty when the model only calls tools).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, model::ChatResponse};
    /// assert_eq!(ChatResponse::new(Message::assistant("ok")).text(), "ok");
    /// ```
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        self.message.content.to_text()
    }

    /// The tool calls the model asks for.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, model::ChatResponse};
    /// assert!(ChatResponse::new(Message::assistant("ok")).tool_calls().is_empty());
    /// ```
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.message.tool_calls()
    }
}
