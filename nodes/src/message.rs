//! Chat messages: what a conversation with a model is made of.
//!
//! A [`Message`] has an id (a UUID v7 unless given), a [`Role`] (system, user, assistant with
//! its [`ToolCall`]s, or a tool's result naming the call it answers) and a [`Content`] (text,
//! JSON, or parts). Keep a conversation in a state field reduced by
//! [`add_messages`](crate::messages::add_messages): it appends messages with new ids, replaces
//! those whose id it holds, and removes those named by a removal marker ([`Message::remove`]).
//!
//! # Serialized forms
//!
//! In JSON (and any human-readable format: the monitor's views, `--json`, inputs written by
//! hand) a message is a flat object close to OpenAI's chat format:
//!
//! ```json
//! {"id": "…", "role": "user", "content": "What is 2 + 3?"}
//! {"id": "…", "role": "assistant", "content": "",
//!  "tool_calls": [{"id": "c1", "name": "add", "arguments": {"json": {"a": 2, "b": 3}}}]}
//! {"id": "…", "role": "tool", "call_id": "c1", "content": {"json": 5}, "name": "add"}
//! {"id": "…", "role": "tool", "call_id": "c2", "is_error": true, "content": "no such tool"}
//! ```
//!
//! `id` is generated when missing; `content` is a string (text), an array of parts
//! (`{"text": "…"}`, `{"image": {"url": "…", "detail": null}}`) or `{"json": value}`;
//! arguments are `{"json": value}` or `{"malformed": "text"}`; `name`, `tool_calls`, `call_id`
//! and `is_error` are left out when empty, and an unknown key is an error. A removal marker has
//! the role `remove`.
//!
//! Checkpoints store messages with the engine's binary codec, which cannot hold a
//! `serde_json::Value` as such: there every field is written in order and JSON values as JSON
//! text.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A new message id: a UUID v7 (time-ordered), as text.
///
/// # Examples
///
/// ```
/// let a = agentgraph_nodes::message::new_id();
/// let b = agentgraph_nodes::message::new_id();
/// assert_ne!(a, b);
/// assert_eq!(a.len(), 36);
/// ```
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// One message of a conversation.
///
/// Build one with [`Message::system`], [`Message::user`], [`Message::assistant`],
/// [`Message::tool_result`] or [`Message::tool_error`], then the `with_*` builders. Each gets a
/// fresh id ([`new_id`]) unless [`with_id`](Message::with_id) gives one: a message sent again
/// with the same id replaces the first one in a state field reduced by
/// [`add_messages`](crate::messages::add_messages).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, Role, ToolCall};
/// use serde_json::json;
///
/// let question = Message::user("What is the weather in Paris?");
/// assert_eq!(question.role, Role::User);
/// assert_eq!(question.text(), Some("What is the weather in Paris?"));
///
/// let call = ToolCall::new("call_1", "get_weather", json!({ "city": "Paris" }));
/// let answer = Message::assistant("").with_tool_calls([call]);
/// assert_eq!(answer.tool_calls()[0].name, "get_weather");
///
/// let result = Message::tool_result("call_1", "18°C").with_name("get_weather");
/// assert_eq!(result.call_id(), Some("call_1"));
/// assert!(!result.is_error());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The message's id, unique in a conversation. Missing in JSON input, it is generated.
    pub id: String,
    /// Who speaks, with what belongs to the role (tool calls, the call answered).
    pub role: Role,
    /// What is said.
    pub content: Content,
    /// An optional name of the speaker (OpenAI's `name`); on a tool result, the tool's name.
    pub name: Option<String>,
}

/// Who speaks in a [`Message`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, Role};
///
/// let m = Message::tool_error("call_7", "no such city");
/// assert!(matches!(m.role, Role::Tool { ref call_id, is_error: true } if call_id == "call_7"));
/// assert_eq!(m.role.as_str(), "tool");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user.
    User,
    /// The model, with the tools it asks to call (none for a plain answer).
    Assistant {
        /// The calls, in the model's order.
        tool_calls: Vec<ToolCall>,
    },
    /// A tool's result.
    Tool {
        /// The id of the [`ToolCall`] it answers.
        call_id: String,
        /// Whether the call failed (refused, invalid arguments, the tool's error): the
        /// content then tells the model what went wrong.
        is_error: bool,
    },
    /// Not a message: a marker that removes the message with its id from a field reduced by
    /// [`add_messages`](crate::messages::add_messages) ([`Message::remove`]). It is never
    /// stored in such a field, nor sent to a model.
    Remove,
}

impl Role {
    /// The role's name: `system`, `user`, `assistant`, `tool` or `remove`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Role;
    /// assert_eq!(Role::User.as_str(), "user");
    /// ```
    pub const fn as_str(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant { .. } => "assistant",
            Role::Tool { .. } => "tool",
            Role::Remove => "remove",
        }
    }
}

/// What a [`Message`] says: text, a JSON value, or a list of parts.
///
/// Strings convert into text (`"hi".into()`), JSON values into [`Content::Json`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Content, ContentPart};
/// use serde_json::json;
///
/// let text: Content = "hello".into();
/// assert_eq!(text.as_text(), Some("hello"));
///
/// let json: Content = json!({ "temperature": 18 }).into();
/// assert_eq!(json.to_text(), r#"{"temperature":18}"#);
///
/// let parts = Content::Parts(vec![
///     ContentPart::Text("Look:".into()),
///     ContentPart::image("https://example.com/cat.png"),
///     ContentPart::Text("a cat".into()),
/// ]);
/// assert_eq!(parts.to_text(), "Look:\na cat");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// Plain text (empty for an assistant message that only calls tools).
    Text(String),
    /// A JSON value: a tool's structured result, a structured answer.
    Json(Value),
    /// Several parts: text and images.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// Empty text.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(agentgraph_nodes::message::Content::empty().is_empty());
    /// ```
    pub const fn empty() -> Self {
        Content::Text(String::new())
    }

    /// The text, when the content is text.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Content;
    /// assert_eq!(Content::from("hi").as_text(), Some("hi"));
    /// assert_eq!(Content::from(serde_json::json!(1)).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Content::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Whether there is nothing: empty text, or no parts.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Content;
    /// assert!(Content::from("").is_empty());
    /// assert!(!Content::from(serde_json::Value::Null).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(text) => text.is_empty(),
            Content::Json(_) => false,
            Content::Parts(parts) => parts.is_empty(),
        }
    }

    /// The content as one text, for a model that takes only text: the text itself, JSON
    /// written compactly, or the text parts joined by newlines (other parts left out).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Content;
    /// assert_eq!(Content::from(serde_json::json!([1, 2])).to_text(), "[1,2]");
    /// ```
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(text) => Cow::Borrowed(text),
            Content::Json(value) => Cow::Owned(value.to_string()),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text(text) => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                Cow::Owned(texts.join("\n"))
            }
        }
    }
}

impl Default for Content {
    fn default() -> Self {
        Content::empty()
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_owned())
    }
}

impl From<Value> for Content {
    fn from(value: Value) -> Self {
        Content::Json(value)
    }
}

impl From<Vec<ContentPart>> for Content {
    fn from(parts: Vec<ContentPart>) -> Self {
        Content::Parts(parts)
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// One part of a [`Content::Parts`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::ContentPart;
/// let part = ContentPart::image("data:image/png;base64,iVBORw0KGgo=");
/// assert!(matches!(part, ContentPart::Image { detail: None, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    /// Text.
    Text(String),
    /// An image, by URL (a `data:` URL for inline bytes).
    Image {
        /// Where the image is.
        url: String,
        /// How closely the model should look (`low`, `high`, `auto` in OpenAI's terms).
        detail: Option<String>,
    },
}

impl ContentPart {
    /// An image part without a detail level.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ContentPart;
    /// assert_eq!(
    ///     ContentPart::image("https://example.com/a.png"),
    ///     ContentPart::Image { url: "https://example.com/a.png".into(), detail: None },
    /// );
    /// ```
    pub fn image(url: impl Into<String>) -> Self {
        ContentPart::Image {
            url: url.into(),
            detail: None,
        }
    }
}

/// A call of a tool that a model asks for, in an assistant message.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{ToolArguments, ToolCall};
/// use serde_json::json;
///
/// // As a model sends it: the arguments as JSON text.
/// let call = ToolCall::from_raw("call_1", "add", r#"{"a": 1, "b": 2}"#);
/// assert_eq!(call.arguments, ToolArguments::Json(json!({ "a": 1, "b": 2 })));
///
/// // Text that does not parse is kept, to be reported to the model.
/// let bad = ToolCall::from_raw("call_2", "add", r#"{"a": 1,"#);
/// assert!(matches!(bad.arguments, ToolArguments::Malformed(ref raw) if raw == r#"{"a": 1,"#));
/// assert!(bad.arguments.parse_error().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCall {
    /// The call's id, chosen by the model; the tool's result names it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments.
    pub arguments: ToolArguments,
}

impl ToolCall {
    /// A call with parsed arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ToolCall;
    /// let call = ToolCall::new("c1", "search", serde_json::json!({ "q": "rust" }));
    /// assert_eq!(call.arguments.as_json().unwrap()["q"], "rust");
    /// ```
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: ToolArguments::Json(arguments),
        }
    }

    /// A call whose arguments are JSON text, as models send them: parsed when they parse,
    /// kept as [`ToolArguments::Malformed`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ToolCall;
    /// assert!(ToolCall::from_raw("c1", "t", "{}").arguments.as_json().is_some());
    /// assert!(ToolCall::from_raw("c1", "t", "not json").arguments.as_json().is_none());
    /// ```
    pub fn from_raw(
        id: impl Into<String>,
        name: impl Into<String>,
        raw: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: ToolArguments::parse(raw),
        }
    }
}

/// The arguments of a [`ToolCall`]: a JSON value, or the model's text when it was not JSON.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::ToolArguments;
/// use serde_json::json;
///
/// let ok = ToolArguments::parse(r#"{"city":"Paris"}"#);
/// assert_eq!(ok.as_json(), Some(&json!({ "city": "Paris" })));
/// assert_eq!(ok.to_json_text(), r#"{"city":"Paris"}"#);
///
/// let bad = ToolArguments::parse("{city: Paris}");
/// assert_eq!(bad.as_json(), None);
/// assert_eq!(bad.to_json_text(), "{city: Paris}"); // sent back as the model wrote it
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolArguments {
    /// Parsed arguments.
    Json(#[serde(with = "json_value")] Value),
    /// Text that is not JSON, kept as the model sent it so that the error can be reported
    /// to the model (and the history sent back unchanged).
    Malformed(String),
}

impl ToolArguments {
    /// Parses JSON text; text that does not parse is kept as [`ToolArguments::Malformed`].
    /// Empty text (or only whitespace) is taken as no arguments, `{}`: some servers send it
    /// for a tool without parameters.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ToolArguments;
    /// assert_eq!(ToolArguments::parse(""), ToolArguments::Json(serde_json::json!({})));
    /// ```
    pub fn parse(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        if raw.trim().is_empty() {
            return ToolArguments::Json(Value::Object(Default::default()));
        }
        match serde_json::from_str(&raw) {
            Ok(value) => ToolArguments::Json(value),
            Err(_) => ToolArguments::Malformed(raw),
        }
    }

    /// The parsed value, or `None` for malformed text.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ToolArguments;
    /// assert_eq!(ToolArguments::parse("[1]").as_json(), Some(&serde_json::json!([1])));
    /// ```
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            ToolArguments::Json(value) => Some(value),
            ToolArguments::Malformed(_) => None,
        }
    }

    /// Why malformed text does not parse (`None` for parsed arguments).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ToolArguments;
    /// let e = ToolArguments::parse("{\"a\":").parse_error().unwrap();
    /// assert!(e.is_eof());
    /// ```
    pub fn parse_error(&self) -> Option<serde_json::Error> {
        match self {
            ToolArguments::Json(_) => None,
            ToolArguments::Malformed(raw) => serde_json::from_str::<Value>(raw).err(),
        }
    }

    /// The arguments as JSON text, as OpenAI's format carries them: the value written
    /// compactly, or the malformed text unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::ToolArguments;
    /// assert_eq!(ToolArguments::Json(serde_json::json!({ "n": 1 })).to_json_text(), r#"{"n":1}"#);
    /// ```
    pub fn to_json_text(&self) -> Cow<'_, str> {
        match self {
            ToolArguments::Json(value) => Cow::Owned(value.to_string()),
            ToolArguments::Malformed(raw) => Cow::Borrowed(raw),
        }
    }
}

impl Message {
    fn with_role(role: Role, content: Content) -> Self {
        Message {
            id: new_id(),
            role,
            content,
            name: None,
        }
    }

    /// A system message: instructions to the model.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::{Message, Role};
    /// assert_eq!(Message::system("Be brief.").role, Role::System);
    /// ```
    pub fn system(content: impl Into<Content>) -> Self {
        Self::with_role(Role::System, content.into())
    }

    /// A user message.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert_eq!(Message::user("hi").text(), Some("hi"));
    /// ```
    pub fn user(content: impl Into<Content>) -> Self {
        Self::with_role(Role::User, content.into())
    }

    /// An assistant message without tool calls (add them with
    /// [`with_tool_calls`](Message::with_tool_calls)).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// let m = Message::assistant("Hello!");
    /// assert!(m.tool_calls().is_empty());
    /// ```
    pub fn assistant(content: impl Into<Content>) -> Self {
        Self::with_role(
            Role::Assistant {
                tool_calls: Vec::new(),
            },
            content.into(),
        )
    }

    /// A tool's result, answering the call `call_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// let m = Message::tool_result("call_1", serde_json::json!({ "sum": 3 }));
    /// assert_eq!(m.call_id(), Some("call_1"));
    /// assert!(!m.is_error());
    /// ```
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        Self::with_role(
            Role::Tool {
                call_id: call_id.into(),
                is_error: false,
            },
            content.into(),
        )
    }

    /// A tool's failure, answering the call `call_id`: the content tells the model what
    /// went wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert!(Message::tool_error("call_1", "division by zero").is_error());
    /// ```
    pub fn tool_error(call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        Self::with_role(
            Role::Tool {
                call_id: call_id.into(),
                is_error: true,
            },
            content.into(),
        )
    }

    /// A removal marker: in an update of a field reduced by
    /// [`add_messages`](crate::messages::add_messages), it removes the message with this id
    /// (nothing when there is none).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// let m = Message::remove("m-1");
    /// assert!(m.is_removal());
    /// assert_eq!(m.id, "m-1");
    /// ```
    pub fn remove(id: impl Into<String>) -> Self {
        Message {
            id: id.into(),
            role: Role::Remove,
            content: Content::empty(),
            name: None,
        }
    }

    /// Sets the id (to replace an earlier message with the same id, or to make ids
    /// deterministic).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert_eq!(Message::user("hi").with_id("q1").id, "q1");
    /// ```
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the speaker's name (on a tool result: the tool's name).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert_eq!(Message::user("hi").with_name("ada").name.as_deref(), Some("ada"));
    /// ```
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds tool calls to an assistant message. Other messages have no tool calls: they are
    /// returned unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::{Message, ToolCall};
    /// let call = ToolCall::new("c1", "now", serde_json::json!({}));
    /// assert_eq!(Message::assistant("").with_tool_calls([call.clone()]).tool_calls().len(), 1);
    /// assert!(Message::user("").with_tool_calls([call]).tool_calls().is_empty());
    /// ```
    #[must_use]
    pub fn with_tool_calls(mut self, calls: impl IntoIterator<Item = ToolCall>) -> Self {
        if let Role::Assistant { tool_calls } = &mut self.role {
            tool_calls.extend(calls);
        }
        self
    }

    /// The text of the content, when it is text.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert_eq!(Message::assistant("ok").text(), Some("ok"));
    /// ```
    pub fn text(&self) -> Option<&str> {
        self.content.as_text()
    }

    /// The tool calls of an assistant message (empty for other roles).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert!(Message::user("hi").tool_calls().is_empty());
    /// ```
    pub fn tool_calls(&self) -> &[ToolCall] {
        match &self.role {
            Role::Assistant { tool_calls } => tool_calls,
            _ => &[],
        }
    }

    /// The id of the call a tool result answers.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert_eq!(Message::tool_result("c9", "done").call_id(), Some("c9"));
    /// assert_eq!(Message::user("hi").call_id(), None);
    /// ```
    pub fn call_id(&self) -> Option<&str> {
        match &self.role {
            Role::Tool { call_id, .. } => Some(call_id),
            _ => None,
        }
    }

    /// Whether this is a tool result reporting a failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert!(Message::tool_error("c1", "boom").is_error());
    /// assert!(!Message::tool_result("c1", "fine").is_error());
    /// ```
    pub fn is_error(&self) -> bool {
        matches!(self.role, Role::Tool { is_error: true, .. })
    }

    /// Whether this is a removal marker ([`Message::remove`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::Message;
    /// assert!(!Message::user("hi").is_removal());
    /// ```
    pub fn is_removal(&self) -> bool {
        matches!(self.role, Role::Remove)
    }
}

/// A tool call found in a history: the assistant message that made it, its id and its tool.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, ToolCall};
/// use agentgraph_nodes::messages::unanswered_tool_calls;
///
/// let history = [Message::assistant("")
///     .with_id("a1")
///     .with_tool_calls([ToolCall::new("c1", "search", serde_json::json!({}))])];
/// let open = unanswered_tool_calls(&history);
/// assert_eq!(open[0].message_id, "a1");
/// assert_eq!(open[0].call_id, "c1");
/// assert_eq!(open[0].tool, "search");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ToolCallRef {
    /// The id of the assistant message holding the call.
    pub message_id: String,
    /// The call's id.
    pub call_id: String,
    /// The tool's name.
    pub tool: String,
}

/// What is wrong with a history of messages.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, MessageError, ToolCall};
/// use agentgraph_nodes::messages::ensure_answered;
///
/// let history = [
///     Message::user("weather?"),
///     Message::assistant("").with_tool_calls([ToolCall::new("c1", "weather", serde_json::json!({}))]),
/// ];
/// let e = ensure_answered(&history).unwrap_err();
/// assert!(matches!(e, MessageError::UnansweredToolCall { ref call_id, ref tool, .. }
///     if call_id == "c1" && tool == "weather"));
/// assert_eq!(e.to_string(), "tool call `c1` of tool `weather` has no result");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// An assistant message calls a tool and no tool result after it answers the call: a
    /// model cannot be called on this history.
    #[error("tool call `{call_id}` of tool `{tool}` has no result")]
    UnansweredToolCall {
        /// The call's id.
        call_id: String,
        /// The tool's name.
        tool: String,
        /// The id of the assistant message holding the call.
        message_id: String,
    },
}

/// JSON values in both kinds of formats: as themselves where the format is human-readable
/// (JSON), as JSON text where it is not (the engine's bincode codec cannot decode a
/// self-describing value).
mod json_value {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub(super) fn serialize<V, S>(value: &V, s: S) -> Result<S::Ok, S::Error>
    where
        V: std::borrow::Borrow<Value>,
        S: Serializer,
    {
        let value = value.borrow();
        if s.is_human_readable() {
            value.serialize(s)
        } else {
            s.serialize_str(&value.to_string())
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        if d.is_human_readable() {
            Value::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(D::Error::custom)
        }
    }
}

/// The two serialized forms of [`Message`] and [`Content`]: the flat JSON of human-readable
/// formats, and all fields in order for the engine's binary codec.
mod forms {
    use serde::de::Error as _;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    use super::{Content, ContentPart, Message, Role, ToolCall, json_value, new_id};

    /// The binary form of a message, borrowed to write it.
    #[derive(Serialize)]
    struct StoredMessageRef<'a> {
        id: &'a str,
        role: &'a Role,
        content: &'a Content,
        name: &'a Option<String>,
    }

    /// The binary form of a message, read back (the same fields, in the same order).
    #[derive(Deserialize)]
    struct StoredMessage {
        id: String,
        role: Role,
        content: Content,
        name: Option<String>,
    }

    /// The JSON form of a message, borrowed to write it.
    #[derive(Serialize)]
    struct JsonMessageRef<'a> {
        id: &'a str,
        role: &'static str,
        content: &'a Content,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
        tool_calls: &'a [ToolCall],
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<&'a str>,
        #[serde(skip_serializing_if = "is_false")]
        is_error: bool,
    }

    fn is_false(b: &bool) -> bool {
        !*b
    }

    /// The role names of the JSON form.
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum RoleName {
        System,
        User,
        Assistant,
        Tool,
        Remove,
    }

    /// The JSON form of a message, read back.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct JsonMessage {
        #[serde(default = "new_id")]
        id: String,
        role: RoleName,
        #[serde(default)]
        content: Content,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
        #[serde(default)]
        call_id: Option<String>,
        #[serde(default)]
        is_error: bool,
    }

    impl JsonMessage {
        fn into_message(self) -> Result<Message, &'static str> {
            let is_tool = matches!(self.role, RoleName::Tool);
            if !matches!(self.role, RoleName::Assistant) && !self.tool_calls.is_empty() {
                return Err("only an assistant message has `tool_calls`");
            }
            if !is_tool && (self.call_id.is_some() || self.is_error) {
                return Err("only a tool message has `call_id` and `is_error`");
            }
            let role = match self.role {
                RoleName::System => Role::System,
                RoleName::User => Role::User,
                RoleName::Assistant => Role::Assistant {
                    tool_calls: self.tool_calls,
                },
                RoleName::Tool => Role::Tool {
                    call_id: self.call_id.ok_or("a tool message needs `call_id`")?,
                    is_error: self.is_error,
                },
                RoleName::Remove => Role::Remove,
            };
            Ok(Message {
                id: self.id,
                role,
                content: self.content,
                name: self.name,
            })
        }
    }

    impl Serialize for Message {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                let (call_id, is_error) = match &self.role {
                    Role::Tool { call_id, is_error } => (Some(call_id.as_str()), *is_error),
                    _ => (None, false),
                };
                JsonMessageRef {
                    id: &self.id,
                    role: self.role.as_str(),
                    content: &self.content,
                    name: self.name.as_deref(),
                    tool_calls: self.tool_calls(),
                    call_id,
                    is_error,
                }
                .serialize(s)
            } else {
                StoredMessageRef {
                    id: &self.id,
                    role: &self.role,
                    content: &self.content,
                    name: &self.name,
                }
                .serialize(s)
            }
        }
    }

    impl<'de> Deserialize<'de> for Message {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if d.is_human_readable() {
                JsonMessage::deserialize(d)?
                    .into_message()
                    .map_err(D::Error::custom)
            } else {
                let m = StoredMessage::deserialize(d)?;
                Ok(Message {
                    id: m.id,
                    role: m.role,
                    content: m.content,
                    name: m.name,
                })
            }
        }
    }

    /// The binary form of content, borrowed to write it.
    #[derive(Serialize)]
    enum StoredContentRef<'a> {
        Text(&'a str),
        Json(#[serde(with = "json_value")] &'a Value),
        Parts(&'a [ContentPart]),
    }

    /// The binary form of content, read back (the same variants, in the same order).
    #[derive(Deserialize)]
    enum StoredContent {
        Text(String),
        Json(#[serde(with = "json_value")] Value),
        Parts(Vec<ContentPart>),
    }

    impl Serialize for Content {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                match self {
                    Content::Text(text) => s.serialize_str(text),
                    Content::Parts(parts) => parts.serialize(s),
                    Content::Json(value) => {
                        let mut map = s.serialize_map(Some(1))?;
                        map.serialize_entry("json", value)?;
                        map.end()
                    }
                }
            } else {
                match self {
                    Content::Text(text) => StoredContentRef::Text(text),
                    Content::Json(value) => StoredContentRef::Json(value),
                    Content::Parts(parts) => StoredContentRef::Parts(parts),
                }
                .serialize(s)
            }
        }
    }

    impl<'de> Deserialize<'de> for Content {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if !d.is_human_readable() {
                return Ok(match StoredContent::deserialize(d)? {
                    StoredContent::Text(text) => Content::Text(text),
                    StoredContent::Json(value) => Content::Json(value),
                    StoredContent::Parts(parts) => Content::Parts(parts),
                });
            }
            // Human-readable formats describe themselves: read a JSON value, then decide.
            match Value::deserialize(d)? {
                Value::Null => Ok(Content::empty()),
                Value::String(text) => Ok(Content::Text(text)),
                parts @ Value::Array(_) => serde_json::from_value(parts)
                    .map(Content::Parts)
                    .map_err(D::Error::custom),
                Value::Object(mut map) if map.len() == 1 && map.contains_key("json") => {
                    Ok(Content::Json(map.remove("json").unwrap_or(Value::Null)))
                }
                _ => Err(D::Error::custom(
                    "content is a string, an array of parts or {\"json\": value}",
                )),
            }
        }
    }
}
