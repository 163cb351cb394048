//! OpenAI's chat completions format on the wire: requests written from this crate's types,
//! answers read leniently (unknown fields ignored, `null` taken as absent, unknown enum values
//! kept).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::message::{Content, ContentPart, Message, Role};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice, Usage};

/// How the body is written, beyond the request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dialect {
    pub(super) stream: bool,
    pub(super) usage: bool,
    /// A JSON Schema format sent as `{"type": "json_object", "schema": ...}`.
    pub(super) schema_in_json_object: bool,
    /// `max_tokens` sent as `max_completion_tokens`.
    pub(super) max_completion_tokens: bool,
}

/// The request body.
pub(super) fn request_body(model: &str, request: &ChatRequest, dialect: Dialect) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert(
        "messages".into(),
        request.messages.iter().filter_map(message).collect(),
    );
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                })
            })
            .collect();
        body.insert("tools".into(), tools);
    }
    if let Some(choice) = &request.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(name) => json!({ "type": "function", "function": { "name": name } }),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(format) = &request.response_format {
        let format = match format {
            ResponseFormat::Text => json!({ "type": "text" }),
            ResponseFormat::JsonObject => json!({ "type": "json_object" }),
            ResponseFormat::JsonSchema { schema, .. } if dialect.schema_in_json_object => {
                json!({ "type": "json_object", "schema": schema })
            }
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                let mut spec = json!({ "name": name, "schema": schema });
                if let Some(strict) = strict {
                    spec["strict"] = (*strict).into();
                }
                json!({ "type": "json_schema", "json_schema": spec })
            }
        };
        body.insert("response_format".into(), format);
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(n) = request.max_tokens {
        let field = if dialect.max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(field.into(), n.into());
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), request.stop.clone().into());
    }
    if let Some(seed) = request.seed {
        body.insert("seed".into(), seed.into());
    }
    if dialect.stream {
        body.insert("stream".into(), true.into());
        if dialect.usage {
            body.insert("stream_options".into(), json!({ "include_usage": true }));
        }
    }
    Value::Object(body)
}

fn content(content: &Content) -> Value {
    match content {
        Content::Text(text) => text.as_str().into(),
        Content::Json(value) => value.to_string().into(),
        Content::Parts(parts) => parts
            .iter()
            .map(|p| match p {
                ContentPart::Text(text) => json!({ "type": "text", "text": text }),
                ContentPart::Image { url, detail } => {
                    let mut image = json!({ "url": url });
                    if let Some(detail) = detail {
                        image["detail"] = detail.as_str().into();
                    }
                    json!({ "type": "image_url", "image_url": image })
                }
            })
            .collect(),
    }
}

fn message(m: &Message) -> Option<Value> {
    let mut out = Map::new();
    match &m.role {
        Role::System | Role::User => {
            out.insert("role".into(), m.role.as_str().into());
            out.insert("content".into(), content(&m.content));
        }
        Role::Assistant { tool_calls } => {
            out.insert("role".into(), "assistant".into());
            // An empty text goes as "" even beside tool calls: OpenAI takes `null` or "", but
            // llama.cpp's server (llama-cpp-python) refuses a `null` or absent content.
            out.insert("content".into(), content(&m.content));
            if !tool_calls.is_empty() {
                let calls = tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": { "name": c.name, "arguments": c.arguments.to_json_text() },
                        })
                    })
                    .collect();
                out.insert("tool_calls".into(), calls);
            }
        }
        Role::Tool { call_id, .. } => {
            out.insert("role".into(), "tool".into());
            out.insert("tool_call_id".into(), call_id.as_str().into());
            out.insert("content".into(), m.content.to_text().into_owned().into());
            return Some(Value::Object(out));
        }
        _ => return None,
    }
    if let Some(name) = &m.name {
        out.insert("name".into(), name.as_str().into());
    }
    Some(Value::Object(out))
}

/// A whole answer.
#[derive(Debug, Deserialize)]
pub(super) struct Completion {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) choices: Option<Vec<Choice>>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Choice {
    #[serde(default)]
    pub(super) message: Option<OutMessage>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct OutMessage {
    #[serde(default)]
    pub(super) content: Option<Value>,
    #[serde(default)]
    pub(super) refusal: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    pub(super) function_call: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireToolCall {
    #[serde(default)]
    pub(super) index: Option<u32>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireFunction {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) arguments: Option<Value>,
}

impl WireFunction {
    /// The arguments as JSON text: a string as it is, a JSON value (some servers send an
    /// object) written out, nothing as empty.
    pub(super) fn arguments_text(&self) -> String {
        match &self.arguments {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(super) completion_tokens: Option<u64>,
}

impl WireUsage {
    pub(super) fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        )
    }
}

/// Text from a `content` value: a string, or an array of parts whose text is joined.
pub(super) fn content_text(content: &Option<Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// A streamed chunk.
#[derive(Debug, Deserialize)]
pub(super) struct Chunk {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkChoice {
    /// Which answer (only the first is read: requests ask for one).
    #[serde(default)]
    pub(super) index: Option<u32>,
    #[serde(default)]
    pub(super) delta: Option<Delta>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Delta {
    #[serde(default)]
    pub(super) content: Option<Value>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    pub(super) function_call: Option<WireFunction>,
}

/// The message of an error body (`{"error": {"message": ...}}`, or `{"error": "..."}`).
pub(super) fn error_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => error.to_string(),
        },
        other => other.to_string(),
    }
}
