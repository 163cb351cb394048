//! The binary codec of stored values (packet inputs, fields, updates): bincode 2 through serde,
//! standard configuration. Checkpoint records name it by the envelope's codec id, so it can be
//! replaced without breaking stored runs.

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

/// The bincode configuration.
pub(crate) const fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A value could not be encoded, or bytes could not be decoded as the expected type.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::CodecError;
/// let e = CodecError::new("field `notes`: unexpected end");
/// assert_eq!(e.to_string(), "field `notes`: unexpected end");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(String);

impl CodecError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        CodecError(message.into())
    }

    /// The error for a field index the state does not have.
    pub fn no_field(index: usize, fields: usize) -> Self {
        CodecError(format!("no field {index}: the state has {fields} fields"))
    }

    /// Prefixes the message with the field it concerns.
    #[must_use]
    pub fn in_field(self, name: &str) -> Self {
        CodecError(format!("field `{name}`: {}", self.0))
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// A JSON value (what [`to_json`] makes).
pub type JsonValue = serde_json::Value;

/// `value` as JSON, for views of the state (see
/// [`RunConfig::state_views`](crate::RunConfig::state_views)).
///
/// # Errors
///
/// When the value's `Serialize` fails or makes what JSON cannot hold (a map with keys that
/// are not strings or numbers, say).
///
/// # Examples
///
/// ```
/// use agentgraph_engine::codec;
/// assert_eq!(codec::to_json(&vec![1, 2]).unwrap(), serde_json::json!([1, 2]));
/// ```
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<JsonValue, CodecError> {
    serde_json::to_value(value).map_err(|e| CodecError(e.to_string()))
}

/// Appends the encoding of `value` to `out`.
///
/// # Errors
///
/// When the value's `Serialize` fails.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(drop)
        .map_err(|e| CodecError(e.to_string()))
}

/// Decodes a `T` from all of `bytes`.
///
/// # Errors
///
/// When the bytes are not one whole `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError(format!(
            "{} bytes left after the value",
            bytes.len() - read
        )));
    }
    Ok(value)
}
