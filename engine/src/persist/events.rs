//! The encoding of stored events: each event is enveloped as the JSON of [`Event`] (its payloads
//! are JSON values), the shape the monitor serves and documents; a stored event is read back
//! with the same shape.

use agentgraph_checkpoint::WriteBatch;
use agentgraph_checkpoint::envelope::{self, RecordKind};

use super::format_encode_error;
use crate::codec::CodecError;
use crate::error::{Error, Result};
use crate::event::Event;

/// Adds `log` to `batch`.
pub(crate) fn put_events(batch: &mut WriteBatch, run: &str, log: &[Event]) -> Result<()> {
    for event in log {
        let json = serde_json::to_string(event).map_err(|e| Error::Encode {
            what: format!("event {}", event.seq),
            source: CodecError::new(e.to_string()),
        })?;
        let bytes = envelope::encode(RecordKind::Event, &json).map_err(format_encode_error)?;
        batch.put_event(run, event.seq, bytes);
    }
    Ok(())
}

/// Opens a stored event.
pub(crate) fn decode_event(run: &str, seq: u64, bytes: &[u8]) -> Result<Event> {
    let corrupt = |reason: String| Error::Corrupt {
        run: run.to_owned(),
        reason: format!("event {seq}: {reason}"),
    };
    let json: String =
        envelope::decode(RecordKind::Event, bytes).map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))
}
