//! [`ModelError`]: why a model call failed.

use std::time::Duration;

/// Why a model call failed. Every variant carries data; none holds a secret (the API key is
/// never part of an error, and a server's body is cleaned of it).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::ModelError;
/// let e = ModelError::Status { status: 503, body: "overloaded".into(), attempts: 3 };
/// assert!(e.is_retryable());
/// assert_eq!(e.to_string(), "the model server answered HTTP 503 after 3 attempts: overloaded");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The history holds a tool call without a result: no model can be called on it.
    #[error("tool call `{call_id}` of tool `{tool}` (message `{message_id}`) has no result")]
    UnansweredToolCall {
        /// The call's id.
        call_id: String,
        /// The tool's name.
        tool: String,
        /// The id of the assistant message holding the call.
        message_id: String,
    },
    /// The provider is misconfigured (an invalid base URL or header, a client that cannot
    /// be built).
    #[error("model configuration: {0}")]
    Config(String),
    /// The server could not be reached, or the connection failed, after every attempt.
    #[error("the model server could not be reached after {attempts} attempts: {message}")]
    Connection {
        /// What failed (the HTTP client's words, without headers).
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The call took longer than the request timeout.
    #[error("the model call timed out after {0:?}")]
    Timeout(Duration),
    /// The server answered with an error status (after retries, for 429 and 5xx).
    #[error("the model server answered HTTP {status} after {attempts} attempts: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body (its start), or the error message it holds.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The server's answer (a body, or a streamed chunk) is not what the format says.
    #[error("malformed {what} from the model server: {error}")]
    Malformed {
        /// What was being read: `response`, `stream chunk 3`, ...
        what: String,
        /// Why it does not parse.
        error: String,
    },
    /// The answer has no choice (no message) in it.
    #[error("the model server's answer holds no message")]
    Empty,
    /// The server reported an error in the middle of a stream.
    #[error("the model server reported an error mid-stream: {0}")]
    StreamError(String),
    /// The stream ended before the answer was complete: what arrived is not an answer.
    #[error(
        "the model's stream was cut after {chunks} chunks ({text_len} bytes of text): {reason}"
    )]
    StreamCut {
        /// Chunks received.
        chunks: usize,
        /// Bytes of text received (not returned as an answer).
        text_len: usize,
        /// How it ended.
        reason: String,
    },
}

impl ModelError {
    /// Whether calling again may succeed (a connection failure, a timeout, a 429 or 5xx, a cut
    /// stream): what a task's retry policy may look at.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ModelError;
    /// assert!(!ModelError::Empty.is_retryable());
    /// assert!(ModelError::Timeout(std::time::Duration::from_secs(1)).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            ModelError::Connection { .. }
            | ModelError::Timeout(_)
            | ModelError::StreamCut { .. } => true,
            ModelError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
