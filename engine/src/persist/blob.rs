//! A field's stored values (blobs): full values, encoded straight into their records (a large
//! value is not copied into a second buffer to be enveloped), and deltas; and where a field's
//! stored value stands, which decides when deltas are compacted into a full value.

use agentgraph_checkpoint::envelope::{self, FormatError, RecordKind};
use serde_bytes::ByteBuf;

use super::record::BlobRecord;
use super::{encode_error, format_encode_error};
use crate::codec;
use crate::define::state::State;
use crate::error::Result;

/// Where a field's stored value stands.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FieldTrack {
    /// The version (step) of the last full value.
    pub(crate) base: u64,
    /// Its size.
    pub(crate) full_len: usize,
    /// The size of the deltas stored since.
    pub(crate) delta_len: usize,
}

impl FieldTrack {
    /// Whether `more` bytes of deltas may be stored on top of this field's full value, rather
    /// than a new full value: while all the deltas since add up to no more than it (or 64
    /// bytes).
    pub(crate) fn takes_deltas(&self, more: usize) -> bool {
        self.delta_len + more <= self.full_len.max(64)
    }
}

/// The blob of field `f` of `state` stored whole at `step`, with its track. `hint` is the
/// expected size of the value (the buffer is sized for it).
pub(crate) fn full<S: State>(
    state: &S,
    schema: &S::Schema,
    f: usize,
    step: u64,
    hint: usize,
) -> Result<(Vec<u8>, FieldTrack)> {
    let mut record = Vec::with_capacity(FULL_ROOM + hint);
    record.resize(FULL_ROOM, 0);
    state
        .encode_field(f, &mut record)
        .map_err(|e| encode_error(&format!("field `{}`", S::fields(schema)[f].name), e))?;
    let track = FieldTrack {
        base: step,
        full_len: record.len() - FULL_ROOM,
        delta_len: 0,
    };
    Ok((seal_full(record)?, track))
}

/// The blob of the encoded values the updates of a step wrote to a field.
pub(crate) fn deltas(deltas: Vec<Vec<u8>>) -> Result<Vec<u8>> {
    let blob = BlobRecord::Deltas(deltas.into_iter().map(ByteBuf::from).collect());
    envelope::encode(RecordKind::Blob, &blob).map_err(format_encode_error)
}

/// The room a full value is encoded after: the envelope's header and the start of
/// `BlobRecord::Full` (its variant, then the value's length: together at most 1 + 9 bytes).
const FULL_ROOM: usize = envelope::HEADER_LEN + 10;

/// The enveloped `BlobRecord::Full` of the field value `record` holds after [`FULL_ROOM`]
/// bytes: the bytes `envelope::encode` gives for it, built in `record` itself.
fn seal_full(record: Vec<u8>) -> Result<Vec<u8>> {
    let len = record.len() - FULL_ROOM;
    // bincode encodes an enum's variant as a u32, then a byte string's length as a u64.
    let prefix = bincode::serde::encode_to_vec((0u32, len as u64), codec::config())
        .map_err(|e| format_encode_error(FormatError::Encode(e.to_string())))?;
    if len + prefix.len() > envelope::MAX_PAYLOAD {
        return Err(format_encode_error(FormatError::TooLarge(
            len + prefix.len(),
        )));
    }
    Ok(envelope::seal_in_place(
        RecordKind::Blob,
        record,
        FULL_ROOM,
        &prefix,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_full_value_is_the_encoded_record() {
        for len in [0, 1, 250, 251, 65_535, 65_536, 300_000] {
            let value: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut record = vec![0; FULL_ROOM];
            record.extend_from_slice(&value);
            let expected =
                envelope::encode(RecordKind::Blob, &BlobRecord::Full(ByteBuf::from(value)))
                    .unwrap();
            assert!(
                seal_full(record).unwrap() == expected,
                "a value of {len} bytes"
            );
        }
    }
}
