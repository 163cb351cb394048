//! Structured output: a typed answer checked against its JSON Schema ([`structured`]).

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::message::Message;
use crate::model::{ChatModel, ChatRequest, ModelError, ResponseFormat};
use crate::tool::ArgumentsValidator;

/// Why [`structured`] found no valid answer.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::StructuredError;
/// let e = StructuredError::Invalid { attempts: 3, errors: vec!["/city: 7 is not of type \"string\"".into()] };
/// assert!(e.to_string().contains("3 attempts"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StructuredError {
    /// The model call failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The type's schema cannot be compiled.
    #[error("the schema of `{type_name}` cannot be compiled: {error}")]
    Schema {
        /// The type.
        type_name: &'static str,
        /// The validator's complaint.
        error: String,
    },
    /// Every answer failed the schema (or the type), the last one for these reasons.
    #[error("no answer matched the schema in {attempts} attempts; the last: {}", errors.join("; "))]
    Invalid {
        /// Answers asked for (the first call and the repairs).
        attempts: u32,
        /// Why the last answer failed.
        errors: Vec<String>,
    },
}

/// The response format for answers of type `T`: its JSON Schema (schemars), named after the
/// type (letters, digits, `_` and `-`, at most 64).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::model::{ResponseFormat, structured_format};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Weather { city: String, celsius: f64 }
///
/// let ResponseFormat::JsonSchema { name, schema, .. } = structured_format::<Weather>() else { panic!() };
/// assert_eq!(name, "Weather");
/// assert_eq!(schema["properties"]["celsius"]["type"], "number");
/// ```
pub fn structured_format<T: JsonSchema>() -> ResponseFormat {
    let name: String = T::schema_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let schema = schemars::schema_for!(T).to_value();
    ResponseFormat::json_schema(name, schema)
}

/// Asks the model for an answer of type `T`: sets the response format to `T`'s JSON Schema
/// ([`structured_format`]), checks the answer against the schema (jsonschema) and
/// deserializes it. An answer that fails is sent back to the model with what is wrong, and
/// the model asked again, at most `max_repairs` times.
///
/// # Errors
///
/// [`StructuredError::Invalid`] when the last answer still fails, with its errors;
/// [`StructuredError::Model`] when a call fails.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::Message;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse, structured};
///
/// /// Answers wrongly first, then right.
/// #[derive(Debug, Default)]
/// struct Learner(std::sync::atomic::AtomicU32);
/// impl ChatModel for Learner {
///     fn model(&self) -> &str { "learner" }
///     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
///         let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///         let text = if n == 0 { r#"{"city": 7}"# } else { r#"{"city": "Paris"}"# };
///         Box::pin(async move { Ok(ChatResponse::new(Message::assistant(text))) })
///     }
/// }
///
/// #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
/// struct Place { city: String }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), agentgraph_nodes::model::StructuredError> {
/// let place: Place = structured(&Learner::default(), ChatRequest::new([Message::user("Where?")]), 1).await?;
/// assert_eq!(place.city, "Paris");
/// # Ok(()) }
/// ```
pub async fn structured<T>(
    model: &(impl ChatModel + ?Sized),
    mut request: ChatRequest,
    max_repairs: u32,
) -> Result<T, StructuredError>
where
    T: JsonSchema + DeserializeOwned,
{
    let format = structured_format::<T>();
    let ResponseFormat::JsonSchema { schema, .. } = &format else {
        unreachable!("structured_format makes a JSON Schema format")
    };
    let validator = ArgumentsValidator::new(schema).map_err(|error| StructuredError::Schema {
        type_name: std::any::type_name::<T>(),
        error,
    })?;
    request.response_format = Some(format);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let response = model.chat(request.clone()).await?;
        let text = response.text().into_owned();
        let errors = match serde_json::from_str::<Value>(&text) {
            Err(e) => vec![format!("the answer is not JSON: {e}")],
            Ok(value) => match validator.check(&value) {
                Err(errors) => errors
                    .into_iter()
                    .map(|e| format!("{}: {}", display_pointer(&e.pointer), e.message))
                    .collect(),
                Ok(()) => match serde_json::from_value::<T>(value) {
                    Ok(typed) => return Ok(typed),
                    Err(e) => vec![format!("the answer does not fit the type: {e}")],
                },
            },
        };
        if attempts > max_repairs {
            return Err(StructuredError::Invalid { attempts, errors });
        }
        request.messages.push(Message::assistant(text));
        request.messages.push(Message::user(format!(
            "Your answer does not match the JSON Schema: {}. Answer again with only the JSON \
             value, matching the schema.",
            errors.join("; ")
        )));
    }
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(the answer)"
    } else {
        pointer
    }
}
