//! What a model call asks: [`ChatRequest`] and its parts.

use serde_json::Value;

use crate::message::Message;
use crate::messages::unanswered_tool_calls;
use crate::model::ModelError;
use crate::tool::{Tool, ToolSet};

/// A tool offered to a model: its name, description and the JSON Schema of its arguments.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::ToolSpec;
/// let spec = ToolSpec::new("now", "The time.", serde_json::json!({ "type": "object" }));
/// assert_eq!(spec.name, "now");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments.
    pub parameters: Value,
}

impl ToolSpec {
    /// A spec from its parts.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ToolSpec;
    /// assert_eq!(ToolSpec::new("a", "b", serde_json::json!({})).description, "b");
    /// ```
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }

    /// The spec of a tool.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ToolSpec;
    /// use agentgraph_nodes::tool::tool_fn;
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct City { city: String }
    /// let tool = tool_fn("weather", "The weather.", |c: City| async move { Ok::<_, std::io::Error>(c.city) });
    /// let spec = ToolSpec::of(&tool);
    /// assert_eq!(spec.parameters["required"][0], "city");
    /// ```
    pub fn of(tool: &(impl Tool + ?Sized)) -> Self {
        ToolSpec::new(tool.name(), tool.description(), tool.parameters().clone())
    }
}

/// Whether, and which, tools the model must call.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::ToolChoice;
/// assert_eq!(ToolChoice::named("search"), ToolChoice::Named("search".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides (the default when tools are offered).
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// A call of this tool.
    Named(String),
}

impl ToolChoice {
    /// A call of the tool `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ToolChoice;
    /// assert!(matches!(ToolChoice::named("x"), ToolChoice::Named(n) if n == "x"));
    /// ```
    pub fn named(name: impl Into<String>) -> Self {
        ToolChoice::Named(name.into())
    }
}

/// The form of the answer.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::ResponseFormat;
/// let f = ResponseFormat::json_schema("weather", serde_json::json!({ "type": "object" }));
/// assert!(matches!(f, ResponseFormat::JsonSchema { strict: None, .. }));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that matches a schema.
    JsonSchema {
        /// The schema's name (letters, digits, `_` and `-`).
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Whether the provider should enforce the schema strictly (OpenAI's `strict`).
        strict: Option<bool>,
    },
}

impl ResponseFormat {
    /// JSON matching `schema`, without `strict`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ResponseFormat;
    /// let f = ResponseFormat::json_schema("a", serde_json::json!(true));
    /// assert!(matches!(f, ResponseFormat::JsonSchema { ref name, .. } if name == "a"));
    /// ```
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            name: name.into(),
            schema,
            strict: None,
        }
    }
}

/// A model call: the conversation, the tools offered, and the sampling options.
///
/// Options left `None` are not sent: the provider's defaults apply.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::Message;
/// use agentgraph_nodes::model::{ChatRequest, ToolChoice};
///
/// let request = ChatRequest::new([Message::system("Be brief."), Message::user("Hi!")])
///     .temperature(0.2)
///     .max_tokens(64)
///     .stop(["\n\n"])
///     .seed(7)
///     .tool_choice(ToolChoice::None);
/// assert_eq!(request.messages.len(), 2);
/// assert_eq!(request.max_tokens, Some(64));
/// assert!(request.check().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// The tools offered.
    pub tools: Vec<ToolSpec>,
    /// Whether and which tools to call.
    pub tool_choice: Option<ToolChoice>,
    /// The form of the answer.
    pub response_format: Option<ResponseFormat>,
    /// The sampling temperature.
    pub temperature: Option<f32>,
    /// The most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sequences that stop the generation.
    pub stop: Vec<String>,
    /// A seed, for providers that sample deterministically with one.
    pub seed: Option<u64>,
}

impl ChatRequest {
    /// A request with these messages and nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, model::ChatRequest};
    /// assert!(ChatRequest::new([Message::user("hi")]).tools.is_empty());
    /// ```
    pub fn new(messages: impl IntoIterator<Item = Message>) -> Self {
        ChatRequest {
            messages: messages.into_iter().collect(),
            ..ChatRequest::default()
        }
    }

    /// Offers a tool.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::{ChatRequest, ToolSpec};
    /// let r = ChatRequest::default().tool(ToolSpec::new("t", "", serde_json::json!({})));
    /// assert_eq!(r.tools.len(), 1);
    /// ```
    #[must_use]
    pub fn tool(mut self, spec: ToolSpec) -> Self {
        self.tools.push(spec);
        self
    }

    /// Offers the tools of a set that its allow and deny lists allow ([`ToolSet::offered`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::ChatRequest;
    /// use agentgraph_nodes::tool::{ToolSet, tool_fn};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct NoArgs {}
    /// # fn t(name: &str) -> agentgraph_nodes::tool::FnTool { tool_fn(name, "", |_: NoArgs| async { Ok::<_, std::io::Error>(()) }) }
    /// let tools = ToolSet::new().with(t("read")).with(t("delete")).deny("delete");
    /// let r = ChatRequest::default().tools_from(&tools);
    /// assert_eq!(r.tools.len(), 1);
    /// assert_eq!(r.tools[0].name, "read");
    /// ```
    #[must_use]
    pub fn tools_from(mut self, tools: &ToolSet) -> Self {
        self.tools
            .extend(tools.offered().map(|t| ToolSpec::of(&**t)));
        self
    }

    /// Sets the tool choice.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::{ChatRequest, ToolChoice};
    /// let r = ChatRequest::default().tool_choice(ToolChoice::Required);
    /// assert_eq!(r.tool_choice, Some(ToolChoice::Required));
    /// ```
    #[must_use]
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets the response format.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::model::{ChatRequest, ResponseFormat};
    /// let r = ChatRequest::default().response_format(ResponseFormat::JsonObject);
    /// assert_eq!(r.response_format, Some(ResponseFormat::JsonObject));
    /// ```
    #[must_use]
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    /// Sets the temperature.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::model::ChatRequest::default().temperature(0.0).temperature, Some(0.0));
    /// ```
    #[must_use]
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the most tokens to generate.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::model::ChatRequest::default().max_tokens(9).max_tokens, Some(9));
    /// ```
    #[must_use]
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets the stop sequences.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::model::ChatRequest::default().stop(["END"]).stop, ["END"]);
    /// ```
    #[must_use]
    pub fn stop<I, T>(mut self, stop: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.stop = stop.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the seed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::model::ChatRequest::default().seed(1).seed, Some(1));
    /// ```
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks that the request can be sent: every tool call of the history has its result.
    ///
    /// # Errors
    ///
    /// [`ModelError::UnansweredToolCall`] naming the first call without a result.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::{Message, ToolCall};
    /// use agentgraph_nodes::model::{ChatRequest, ModelError};
    ///
    /// let ask = Message::assistant("").with_tool_calls([ToolCall::new("c1", "add", serde_json::json!({}))]);
    /// let err = ChatRequest::new([Message::user("1+1?"), ask]).check().unwrap_err();
    /// assert!(matches!(err, ModelError::UnansweredToolCall { ref call_id, .. } if call_id == "c1"));
    /// ```
    pub fn check(&self) -> Result<(), ModelError> {
        match unanswered_tool_calls(&self.messages).into_iter().next() {
            None => Ok(()),
            Some(open) => Err(ModelError::UnansweredToolCall {
                call_id: open.call_id,
                tool: open.tool,
                message_id: open.message_id,
            }),
        }
    }
}
