//! Full field values encoded straight into their records: a large value is not copied into a
//! second buffer to be enveloped.

use agentgraph_checkpoint::envelope::{self, FormatError, RecordKind};

use super::format_encode_error;
use crate::codec;
use crate::error::Result;

/// The room a full value is encoded after: the envelope's header and the start of
/// `BlobRecord::Full` (its variant, then the value's length: together at most 1 + 9 bytes).
pub(super) const FULL_ROOM: usize = envelope::HEADER_LEN + 10;

/// The enveloped `BlobRecord::Full` of the field value `record` holds after [`FULL_ROOM`]
/// bytes: the bytes `envelope::encode` gives for it, built in `record` itself.
pub(super) fn seal_full(record: Vec<u8>) -> Result<Vec<u8>> {
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
    use crate::persist::record::BlobRecord;
    use serde_bytes::ByteBuf;

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
