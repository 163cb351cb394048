//! The envelope around every stored record: magic bytes, format version, codec id, record
//! kind, payload length and checksum, then the payload.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "AGCP"
//! 4       2     format version (little endian)
//! 6       1     codec id (1 = bincode 2, standard configuration)
//! 7       1     record kind
//! 8       4     payload length (little endian)
//! 12      4     CRC-32 of bytes 0..12 and of the payload (little endian)
//! 16      ...   payload
//! ```
//!
//! The header layout and the checksum are the same in every format version: a checksum
//! mismatch is always damage ([`FormatError::Checksum`]), and an intact record of a newer
//! version is [`FormatError::TooNew`]. A record that is not exactly a valid envelope of the
//! expected kind is a [`FormatError`]: it is never half-read and decoding never panics.

use bincode::enc::write::{SizeWriter, Writer};
use serde::{Serialize, de::DeserializeOwned};

/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"AGCP";

/// The newest format version this build reads and the one it writes.
pub const FORMAT_VERSION: u16 = 1;

/// The size of the header before the payload.
pub const HEADER_LEN: usize = 16;

/// The largest payload accepted (a guard against absurd lengths in damaged headers).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// How a payload is encoded. Kept in every record so the codec can change without breaking
/// stored runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// bincode 2 with serde, standard configuration (little endian, variable-length integers).
    Bincode2 = 1,
}

impl Codec {
    fn from_byte(b: u8) -> Option<Codec> {
        match b {
            1 => Some(Codec::Bincode2),
            _ => None,
        }
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// A run's record ([`RunRecord`](crate::RunRecord)).
    Run = 1,
    /// A checkpoint.
    Checkpoint = 2,
    /// A field value or delta.
    Blob = 3,
    /// A pending write of a finished task.
    PendingWrite = 4,
    /// A stored event.
    Event = 5,
    /// A long-term memory item ([`Item`](crate::items::Item)).
    Item = 6,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::Run,
            2 => RecordKind::Checkpoint,
            3 => RecordKind::Blob,
            4 => RecordKind::PendingWrite,
            5 => RecordKind::Event,
            6 => RecordKind::Item,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes do not start with the magic: not an agentgraph record.
    #[error("not an agentgraph record (magic {found:02x?}, expected {MAGIC:02x?})")]
    Foreign {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The record is shorter than its header or its declared length.
    #[error("truncated record: {len} bytes, {needed} needed")]
    Truncated {
        /// The bytes present.
        len: usize,
        /// The bytes the header requires.
        needed: usize,
    },
    /// Bytes follow the declared payload.
    #[error("record has {extra} bytes after its payload")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The record was written by a newer format version.
    #[error(
        "record format version {found} is newer than this build reads ({FORMAT_VERSION}); upgrade agentgraph"
    )]
    TooNew {
        /// The version found.
        found: u16,
    },
    /// The codec id is unknown.
    #[error("unknown codec id {0}; the record was written by another build")]
    UnknownCodec(u8),
    /// The record is of another kind than expected.
    #[error("expected a {expected:?} record, found kind {found}")]
    WrongKind {
        /// The kind expected.
        expected: RecordKind,
        /// The kind byte found.
        found: u8,
    },
    /// The declared payload length is beyond [`MAX_PAYLOAD`].
    #[error("declared payload of {0} bytes is too large")]
    TooLarge(usize),
    /// The checksum does not match: the record is corrupt.
    #[error(
        "checksum mismatch: stored {stored:08x}, computed {computed:08x}; the record is corrupt"
    )]
    Checksum {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// The payload passed the checksum but does not decode as the expected type.
    #[error("payload does not decode: {0}")]
    Decode(String),
    /// The value could not be encoded.
    #[error("value does not encode: {0}")]
    Encode(String),
}

/// The bincode configuration of [`Codec::Bincode2`].
pub const fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Wraps `payload` in an envelope of `kind`.
///
/// # Panics
///
/// If `payload` is longer than [`MAX_PAYLOAD`].
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::envelope::{open, seal, RecordKind};
/// let record = seal(RecordKind::Blob, b"hello");
/// assert_eq!(open(RecordKind::Blob, &record).unwrap(), b"hello");
/// assert!(open(RecordKind::Checkpoint, &record).is_err());
/// ```
pub fn seal(kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_PAYLOAD,
        "payload of {} bytes is too large",
        payload.len()
    );
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(payload);
    fill_header(&mut out, kind);
    out
}

/// Seals a payload that `record` holds after `room` bytes, but for its first bytes, `prefix`:
/// the envelope is built in the payload's own buffer (for a large value, no second buffer to
/// fill and copy into), the unused room dropped.
///
/// # Panics
///
/// If `room` is shorter than [`HEADER_LEN`] plus the prefix, or the payload is longer than
/// [`MAX_PAYLOAD`].
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::envelope::{HEADER_LEN, RecordKind, seal, seal_in_place};
/// let room = HEADER_LEN + 8;
/// let mut buf = vec![0; room];
/// buf.extend_from_slice(b"world");
/// let record = seal_in_place(RecordKind::Blob, buf, room, b"hello ");
/// assert_eq!(record, seal(RecordKind::Blob, b"hello world"));
/// ```
pub fn seal_in_place(kind: RecordKind, mut record: Vec<u8>, room: usize, prefix: &[u8]) -> Vec<u8> {
    let start = room
        .checked_sub(HEADER_LEN + prefix.len())
        .expect("room for the header and the prefix");
    record[room - prefix.len()..room].copy_from_slice(prefix);
    record.drain(..start);
    assert!(
        record.len() - HEADER_LEN <= MAX_PAYLOAD,
        "payload of {} bytes is too large",
        record.len() - HEADER_LEN
    );
    fill_header(&mut record, kind);
    record
}

/// Fills in the header of `record`, whose first [`HEADER_LEN`] bytes are room for it and whose
/// rest is the payload (at most [`MAX_PAYLOAD`] bytes).
fn fill_header(record: &mut [u8], kind: RecordKind) {
    let len = (record.len() - HEADER_LEN) as u32;
    let (header, payload) = record.split_at_mut(HEADER_LEN);
    header[..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[6] = Codec::Bincode2 as u8;
    header[7] = kind as u8;
    header[8..12].copy_from_slice(&len.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..12]);
    h.update(payload);
    header[12..].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Checks an envelope of `kind` and returns its payload.
///
/// # Errors
///
/// Any [`FormatError`] but `Decode` and `Encode`.
pub fn open(kind: RecordKind, bytes: &[u8]) -> Result<&[u8], FormatError> {
    if bytes.len() < 4 || bytes[..4] != MAGIC {
        if bytes.len() < 4 && MAGIC.starts_with(bytes) {
            return Err(FormatError::Truncated {
                len: bytes.len(),
                needed: HEADER_LEN,
            });
        }
        return Err(FormatError::Foreign {
            found: bytes[..bytes.len().min(4)].to_vec(),
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated {
            len: bytes.len(),
            needed: HEADER_LEN,
        });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let stored = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if len > MAX_PAYLOAD {
        return Err(FormatError::TooLarge(len));
    }
    let needed = HEADER_LEN + len;
    if bytes.len() < needed {
        return Err(FormatError::Truncated {
            len: bytes.len(),
            needed,
        });
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..12]);
    h.update(&bytes[HEADER_LEN..needed]);
    let computed = h.finalize();
    if computed != stored {
        // The header layout and checksum are the same in every format version, so a mismatch
        // is damage, whatever the version bytes say.
        return Err(FormatError::Checksum { stored, computed });
    }
    if version > FORMAT_VERSION {
        return Err(FormatError::TooNew { found: version });
    }
    if Codec::from_byte(bytes[6]).is_none() {
        return Err(FormatError::UnknownCodec(bytes[6]));
    }
    if RecordKind::from_byte(bytes[7]) != Some(kind) {
        return Err(FormatError::WrongKind {
            expected: kind,
            found: bytes[7],
        });
    }
    if bytes.len() > needed {
        return Err(FormatError::TrailingBytes {
            extra: bytes.len() - needed,
        });
    }
    Ok(&bytes[HEADER_LEN..needed])
}

/// Encodes `value` with the current codec and seals it.
///
/// # Errors
///
/// [`FormatError::Encode`] when serde fails.
pub fn encode<T: Serialize + ?Sized>(kind: RecordKind, value: &T) -> Result<Vec<u8>, FormatError> {
    // Two passes over the value, one buffer: its size first, then the payload itself, written
    // after room for the header. A large field value is copied once, not grown and copied.
    let failed = |e: bincode::error::EncodeError| FormatError::Encode(e.to_string());
    let mut size = SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, bincode_config()).map_err(failed)?;
    let len = size.bytes_written;
    if len > MAX_PAYLOAD {
        return Err(FormatError::TooLarge(len));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&[0; HEADER_LEN]);
    bincode::serde::encode_into_writer(value, Append(&mut out), bincode_config())
        .map_err(failed)?;
    if out.len() != HEADER_LEN + len {
        return Err(FormatError::Encode(format!(
            "the value encoded to {len} bytes, then to {}",
            out.len() - HEADER_LEN
        )));
    }
    fill_header(&mut out, kind);
    Ok(out)
}

/// A bincode writer appending to a vector.
struct Append<'a>(&'a mut Vec<u8>);

impl Writer for Append<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Opens a record of `kind` and decodes its whole payload as a `T`.
///
/// # Errors
///
/// Any [`FormatError`] but `Encode`; a payload with bytes left over after the value, or
/// whose lengths claim more than [`MAX_PAYLOAD`] bytes, is [`FormatError::Decode`].
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::envelope::{decode, encode, RecordKind, FormatError};
/// let bytes = encode(RecordKind::Event, &("step", 3u64)).unwrap();
/// let back: (String, u64) = decode(RecordKind::Event, &bytes).unwrap();
/// assert_eq!(back, ("step".to_string(), 3));
/// let mut damaged = bytes.clone();
/// *damaged.last_mut().unwrap() ^= 1;
/// assert!(matches!(decode::<(String, u64)>(RecordKind::Event, &damaged), Err(FormatError::Checksum { .. })));
/// ```
pub fn decode<T: DeserializeOwned>(kind: RecordKind, bytes: &[u8]) -> Result<T, FormatError> {
    let payload = open(kind, bytes)?;
    // The limit makes a length prefix that claims more than a payload can hold an error
    // before anything is allocated (without it, bincode allocates what the prefix claims:
    // a capacity-overflow panic or an out-of-memory abort). It changes no encoding.
    let config = bincode_config().with_limit::<MAX_PAYLOAD>();
    let (value, read) = bincode::serde::decode_from_slice(payload, config)
        .map_err(|e| FormatError::Decode(e.to_string()))?;
    if read != payload.len() {
        return Err(FormatError::Decode(format!(
            "{} bytes left after the value",
            payload.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let record = encode(
            RecordKind::Checkpoint,
            &(1u64, "state".to_string(), vec![1u8, 2, 3]),
        )
        .unwrap();
        for cut in 0..record.len() {
            assert!(
                open(RecordKind::Checkpoint, &record[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        for byte in 0..record.len() {
            for bit in 0..8 {
                let mut damaged = record.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode::<(u64, String, Vec<u8>)>(RecordKind::Checkpoint, &damaged).is_err(),
                    "flip of bit {bit} of byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn encoding_seals_the_bincode_payload() {
        let big: Vec<String> = (0..1_000).map(|i| format!("{i:020}")).collect();
        let payload = bincode::serde::encode_to_vec(&big, bincode_config()).unwrap();
        let record = encode(RecordKind::Blob, &big).unwrap();
        assert_eq!(record, seal(RecordKind::Blob, &payload));
        assert_eq!(open(RecordKind::Blob, &record).unwrap(), payload);
        let empty = encode(RecordKind::Event, &()).unwrap();
        assert_eq!(empty, seal(RecordKind::Event, &[]));
    }

    #[test]
    fn absurd_lengths_in_a_valid_envelope_are_errors_not_allocations() {
        // bincode varints: 0xfd then a u64, 0xfc then a u32.
        let mut huge = vec![0xfd];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut large = vec![0xfd];
        large.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let mut big = vec![0xfc];
        big.extend_from_slice(&(MAX_PAYLOAD as u32 - 1).to_le_bytes());
        for payload in [huge, large, big] {
            let record = seal(RecordKind::Event, &payload);
            assert!(matches!(
                decode::<String>(RecordKind::Event, &record),
                Err(FormatError::Decode(_))
            ));
            assert!(matches!(
                decode::<Vec<u8>>(RecordKind::Event, &record),
                Err(FormatError::Decode(_))
            ));
            assert!(matches!(
                decode::<Vec<String>>(RecordKind::Event, &record),
                Err(FormatError::Decode(_))
            ));
        }
    }

    #[test]
    fn versions_codecs_and_kinds_are_checked() {
        let mut record = seal(RecordKind::Run, b"x");
        record[4] = 9; // version 9, with a valid checksum
        let crc = {
            let mut h = crc32fast::Hasher::new();
            h.update(&record[..12]);
            h.update(&record[HEADER_LEN..]);
            h.finalize()
        };
        record[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            open(RecordKind::Run, &record),
            Err(FormatError::TooNew { found: 9 })
        );
        assert!(matches!(
            open(RecordKind::Run, b"PK\x03\x04rest"),
            Err(FormatError::Foreign { .. })
        ));
        assert!(matches!(
            open(RecordKind::Run, b""),
            Err(FormatError::Truncated { .. })
        ));
        let mut extra = seal(RecordKind::Run, b"x");
        extra.push(0);
        assert_eq!(
            open(RecordKind::Run, &extra),
            Err(FormatError::TrailingBytes { extra: 1 })
        );
    }
}
