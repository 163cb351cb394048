//! The envelope around every stored record: magic bytes, format version, codec id, record
//! kind, payload length and checksum, then the payload.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "AGCP"
//! 4       2     format version (little endian)
//! 6       1     codec id (1 = bincode 2, standard configuration; 2 = the same, compressed;
//!               3 = a whole record of codec 1 or 2, encrypted)
//! 7       1     record kind
//! 8       4     payload length (little endian)
//! 12      4     CRC-32 of bytes 0..12 and of the payload (little endian)
//! 16      ...   payload
//! ```
//!
//! A compressed record (codec 2, written only when a `Compression` (feature `compression`) is
//! configured and the payload is large enough and shrinks) holds the length of the decompressed payload (4 bytes,
//! little endian, at most [`MAX_PAYLOAD`]) and then one zstd frame; its checksum covers the
//! stored, compressed bytes. Records of codec 1 are the records of every earlier build, byte
//! for byte: a build reads both, and an older build refuses a compressed record with a typed
//! error ([`FormatError::UnknownCodec`]). [`open`] and [`decode`] decompress; nothing else
//! needs to know.
//!
//! An encrypted record (codec 3, written by an `encryption::EncryptedStore`, feature
//! `encryption`) holds the length of its key id (1 byte), the key id (ASCII), an 8-byte check
//! of the key, a 24-byte nonce, then a whole record of codec 1 or 2 (header and payload)
//! encrypted with XChaCha20-Poly1305, then the 16-byte tag; its checksum covers the stored,
//! encrypted bytes. Only the store wrapper decrypts: [`open`] refuses an encrypted record with
//! [`FormatError::Encrypted`], which names the key id.
//!
//! The header layout and the checksum are the same in every format version: a checksum
//! mismatch is always damage ([`FormatError::Checksum`]), and an intact record of a newer
//! version is [`FormatError::TooNew`]. A record that is not exactly a valid envelope of the
//! expected kind is a [`FormatError`]: it is never half-read and decoding never panics.

use std::borrow::Cow;

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
    /// [`Codec::Bincode2`], compressed with zstd: the decompressed length (a little-endian
    /// `u32`), then one zstd frame. Written by builds with the `compression` feature, when a
    /// `Compression` is configured; read by them whatever the configuration.
    Bincode2Zstd = 2,
    /// A whole record of another codec (header and payload), encrypted with an AEAD under a
    /// key named in the payload (see the module docs). Written and read by an
    /// `encryption::EncryptedStore` (feature `encryption`);
    /// [`open`] refuses it with [`FormatError::Encrypted`].
    Encrypted = 3,
}

impl Codec {
    fn from_byte(b: u8) -> Option<Codec> {
        match b {
            1 => Some(Codec::Bincode2),
            2 => Some(Codec::Bincode2Zstd),
            3 => Some(Codec::Encrypted),
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
    /// The payload passed the checksum but does not decompress to the length it declares
    /// (never a panic, and never more than [`MAX_PAYLOAD`] bytes allocated).
    #[error("compressed payload does not decompress: {0}")]
    Decompress(String),
    /// The record is compressed and this build was made without the `compression` feature.
    #[error("the record is compressed ({0:?}); reading it needs the `compression` feature")]
    CompressionUnavailable(Codec),
    /// The record is encrypted (codec 3): only a store wrapped with the key
    /// (`encryption::EncryptedStore`, feature `encryption`) reads it.
    #[error(
        "the record is encrypted with key `{key_id}`; reading it needs that key (a KeyProvider that has it; the command line's --key-env)"
    )]
    Encrypted {
        /// The id of the key it was encrypted with (printable ASCII, at most 64 bytes; a
        /// damaged id is shown escaped).
        key_id: String,
    },
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
/// assert_eq!(&*open(RecordKind::Blob, &record).unwrap(), b"hello");
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
    fill_header_as(record, kind, Codec::Bincode2);
}

/// [`fill_header`], for a payload of `codec`.
pub(crate) fn fill_header_as(record: &mut [u8], kind: RecordKind, codec: Codec) {
    let len = (record.len() - HEADER_LEN) as u32;
    let (header, payload) = record.split_at_mut(HEADER_LEN);
    header[..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[6] = codec as u8;
    header[7] = kind as u8;
    header[8..12].copy_from_slice(&len.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..12]);
    h.update(payload);
    header[12..].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Checks an envelope of `kind` and returns its payload: the stored bytes, or for a
/// compressed record, the bytes they decompress to.
///
/// # Errors
///
/// Any [`FormatError`] but `Decode` and `Encode`.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::envelope::{open, seal, FormatError, RecordKind};
/// let record = seal(RecordKind::Event, b"payload");
/// assert_eq!(&*open(RecordKind::Event, &record).unwrap(), b"payload");
/// assert!(matches!(open(RecordKind::Event, &record[..9]), Err(FormatError::Truncated { .. })));
/// ```
pub fn open(kind: RecordKind, bytes: &[u8]) -> Result<Cow<'_, [u8]>, FormatError> {
    let (codec, found, payload) = check(bytes)?;
    if RecordKind::from_byte(found) != Some(kind) {
        return Err(FormatError::WrongKind {
            expected: kind,
            found,
        });
    }
    match codec {
        Codec::Bincode2 => Ok(Cow::Borrowed(payload)),
        Codec::Bincode2Zstd => decompress(payload).map(Cow::Owned),
        Codec::Encrypted => Err(FormatError::Encrypted {
            key_id: encrypted_key_id(payload)?.escape_ascii().to_string(),
        }),
    }
}

/// The key id of an encrypted payload (its first byte is the id's length).
pub(crate) fn encrypted_key_id(payload: &[u8]) -> Result<&[u8], FormatError> {
    let Some((&n, rest)) = payload.split_first() else {
        return Err(FormatError::Decode(
            "an encrypted record without a key id".into(),
        ));
    };
    rest.get(..n as usize).ok_or_else(|| {
        FormatError::Decode(format!("an encrypted record's key id of {n} bytes is cut"))
    })
}

/// Checks an envelope but for its kind: its codec, its kind byte and its payload (as stored).
pub(crate) fn check(bytes: &[u8]) -> Result<(Codec, u8, &[u8]), FormatError> {
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
    let Some(codec) = Codec::from_byte(bytes[6]) else {
        return Err(FormatError::UnknownCodec(bytes[6]));
    };
    if bytes.len() > needed {
        return Err(FormatError::TrailingBytes {
            extra: bytes.len() - needed,
        });
    }
    Ok((codec, bytes[7], &bytes[HEADER_LEN..needed]))
}

/// The payload a compressed one (its length, then a zstd frame) decompresses to.
#[cfg(feature = "compression")]
fn decompress(stored: &[u8]) -> Result<Vec<u8>, FormatError> {
    let Some((len, frame)) = stored.split_first_chunk::<4>() else {
        return Err(FormatError::Decompress(format!(
            "{} bytes, no length",
            stored.len()
        )));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_PAYLOAD {
        return Err(FormatError::TooLarge(len));
    }
    // The declared length bounds what is allocated: a frame that would decompress to more is
    // an error ("destination too small"), not a bigger buffer.
    let mut out = vec![0; len];
    let failed = |e: std::io::Error| FormatError::Decompress(e.to_string());
    let n = zstd::bulk::Decompressor::new()
        .map_err(failed)?
        .decompress_to_buffer(frame, &mut out[..])
        .map_err(failed)?;
    if n != len {
        return Err(FormatError::Decompress(format!(
            "{n} bytes decompressed, {len} declared"
        )));
    }
    Ok(out)
}

#[cfg(not(feature = "compression"))]
fn decompress(_: &[u8]) -> Result<Vec<u8>, FormatError> {
    Err(FormatError::CompressionUnavailable(Codec::Bincode2Zstd))
}

/// When and how hard records are compressed (zstd): payloads of at least
/// [`threshold`](Compression::threshold) bytes (4 KiB unless set), at
/// [`level`](Compression::level) (3 unless set), and only when that makes the record smaller.
/// Readers need no configuration: the envelope says whether a record is compressed.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::envelope::{Compression, RecordKind, decode, encode};
/// let compression = Compression::zstd().threshold(1024).level(5);
/// let value = "all work and no play ".repeat(500);
/// let plain = encode(RecordKind::Blob, &value).unwrap();
/// let packed = compression.compress(plain.clone());
/// assert!(packed.len() < plain.len() / 10);
/// assert_eq!(decode::<String>(RecordKind::Blob, &packed).unwrap(), value);
/// // Below the threshold, a record is kept as it is.
/// let small = encode(RecordKind::Blob, &"short").unwrap();
/// assert_eq!(compression.compress(small.clone()), small);
/// ```
#[cfg(feature = "compression")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    threshold: usize,
    level: i32,
}

#[cfg(feature = "compression")]
impl Compression {
    /// The default threshold: payloads of 4 KiB and more are compressed.
    pub const DEFAULT_THRESHOLD: usize = 4096;

    /// The default zstd level.
    pub const DEFAULT_LEVEL: i32 = 3;

    /// zstd at level 3, for payloads of 4 KiB and more.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::envelope::Compression;
    /// let c = Compression::zstd();
    /// assert_eq!((c.min_len(), c.zstd_level()), (4096, 3));
    /// ```
    pub fn zstd() -> Compression {
        Compression {
            threshold: Compression::DEFAULT_THRESHOLD,
            level: Compression::DEFAULT_LEVEL,
        }
    }

    /// Compresses payloads of at least `bytes` bytes (smaller ones are stored as they are).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::envelope::Compression;
    /// assert_eq!(Compression::zstd().threshold(64 * 1024).min_len(), 65_536);
    /// ```
    pub fn threshold(mut self, bytes: usize) -> Compression {
        self.threshold = bytes;
        self
    }

    /// The zstd level: from 1 (fastest) to 22 (smallest), negative levels faster still;
    /// clamped to the range the library accepts, 0 meaning its default (3).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::envelope::Compression;
    /// assert_eq!(Compression::zstd().level(19).zstd_level(), 19);
    /// assert_eq!(Compression::zstd().level(1000).zstd_level(), 22);
    /// ```
    pub fn level(mut self, level: i32) -> Compression {
        let range = zstd::compression_level_range();
        self.level = level.clamp(*range.start(), *range.end());
        self
    }

    /// The threshold: the smallest payload compressed.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::envelope::Compression;
    /// assert_eq!(Compression::zstd().threshold(10).min_len(), 10);
    /// ```
    pub fn min_len(&self) -> usize {
        self.threshold
    }

    /// The zstd level.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::envelope::Compression;
    /// assert_eq!(Compression::zstd().level(7).zstd_level(), 7);
    /// ```
    pub fn zstd_level(&self) -> i32 {
        self.level
    }

    /// The compressed form of `record`, an uncompressed envelope as [`seal`] or [`encode`]
    /// make it: `record` itself when its payload is under the threshold, when compressing
    /// would not make it smaller, or when it is not such an envelope.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::envelope::{Compression, RecordKind, open, seal};
    /// let payload = vec![7u8; 100_000];
    /// let record = Compression::zstd().compress(seal(RecordKind::Checkpoint, &payload));
    /// assert!(record.len() < 1_000);
    /// assert_eq!(open(RecordKind::Checkpoint, &record).unwrap(), payload);
    /// ```
    pub fn compress(&self, record: Vec<u8>) -> Vec<u8> {
        if record.len() < HEADER_LEN
            || record.len() - HEADER_LEN < self.threshold
            || record[..4] != MAGIC
            || record[6] != Codec::Bincode2 as u8
        {
            return record;
        }
        let Some(kind) = RecordKind::from_byte(record[7]) else {
            return record;
        };
        let payload = &record[HEADER_LEN..];
        let start = HEADER_LEN + 4;
        if record.len() <= start + 1 {
            // Not even room for the length: nothing that small shrinks.
            return record;
        }
        // Room for no more than the plain record: a frame that does not fit is not smaller.
        let mut out = vec![0; record.len() - 1];
        let written = COMPRESSOR.with_borrow_mut(|slot| {
            let level = self.level;
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
            }
            let (_, compressor) = slot.as_mut()?;
            compressor
                .compress_to_buffer(payload, &mut out[start..])
                .ok()
        });
        let Some(written) = written else {
            return record;
        };
        out.truncate(start + written);
        out[HEADER_LEN..start].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        fill_header_as(&mut out, kind, Codec::Bincode2Zstd);
        out
    }
}

#[cfg(feature = "compression")]
thread_local! {
    /// A compression context per thread, kept between records (with its level).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
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
    let (value, read) = bincode::serde::decode_from_slice(&payload, config)
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

#[cfg(all(test, not(feature = "compression")))]
mod without_compression_tests {
    use super::*;

    #[test]
    fn a_compressed_record_is_a_typed_error_without_the_feature() {
        let mut record = seal(RecordKind::Blob, b"\x05\0\0\0frame");
        record[6] = Codec::Bincode2Zstd as u8;
        let mut h = crc32fast::Hasher::new();
        h.update(&record[..12]);
        h.update(&record[HEADER_LEN..]);
        let crc = h.finalize();
        record[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            open(RecordKind::Blob, &record),
            Err(FormatError::CompressionUnavailable(Codec::Bincode2Zstd))
        );
    }
}

#[cfg(all(test, feature = "compression"))]
mod compression_tests {
    use proptest::prelude::*;

    use super::*;

    /// A record written by the build before compression (`encode(RecordKind::Blob,
    /// &("old record", 7u64, vec![1u8, 2, 3]))`), kept as bytes.
    const OLD_RECORD: [u8; 32] = [
        65, 71, 67, 80, 1, 0, 1, 3, 16, 0, 0, 0, 227, 250, 167, 201, 10, 111, 108, 100, 32, 114,
        101, 99, 111, 114, 100, 7, 3, 1, 2, 3,
    ];

    fn text(len: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog "
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    /// Recomputes the checksum of a record whose bytes were changed on purpose.
    fn reseal(record: &mut [u8]) {
        let mut h = crc32fast::Hasher::new();
        h.update(&record[..12]);
        h.update(&record[HEADER_LEN..]);
        let crc = h.finalize();
        record[12..16].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn old_records_read_unchanged_and_plain_records_are_what_they_were() {
        let value = ("old record".to_string(), 7u64, vec![1u8, 2, 3]);
        assert_eq!(
            decode::<(String, u64, Vec<u8>)>(RecordKind::Blob, &OLD_RECORD).unwrap(),
            value
        );
        assert_eq!(encode(RecordKind::Blob, &value).unwrap(), OLD_RECORD);
        // Under its threshold a record is not touched.
        let c = Compression::zstd().threshold(0);
        assert_eq!(
            Compression::zstd().compress(OLD_RECORD.to_vec()),
            OLD_RECORD
        );
        assert_eq!(
            c.compress(OLD_RECORD.to_vec()),
            OLD_RECORD,
            "16 bytes do not shrink"
        );
    }

    #[test]
    fn payloads_at_below_and_above_the_threshold() {
        // Threshold 0: every record is offered, the tiniest too (they stay plain).
        for len in 0..64 {
            let plain = seal(RecordKind::Event, &text(len));
            let stored = Compression::zstd().threshold(0).compress(plain.clone());
            assert!(stored.len() < plain.len() || stored == plain);
            assert_eq!(open(RecordKind::Event, &stored).unwrap(), text(len));
        }
        let c = Compression::zstd().threshold(1000);
        for len in [0, 1, 999, 1000, 1001, 100_000] {
            let payload = text(len);
            let plain = seal(RecordKind::Checkpoint, &payload);
            let stored = c.compress(plain.clone());
            assert_eq!(
                stored[6] == Codec::Bincode2Zstd as u8,
                len >= 1000,
                "a payload of {len} bytes"
            );
            if len < 1000 {
                assert_eq!(stored, plain);
            } else {
                assert!(stored.len() < plain.len());
            }
            assert_eq!(open(RecordKind::Checkpoint, &stored).unwrap(), payload);
            assert!(matches!(
                open(RecordKind::Blob, &stored),
                Err(FormatError::WrongKind { .. })
            ));
        }
        // Levels change the bytes, not what they read as.
        let payload = text(50_000);
        for level in [-5, 1, 3, 19] {
            let stored = Compression::zstd()
                .level(level)
                .compress(seal(RecordKind::Event, &payload));
            assert_eq!(open(RecordKind::Event, &stored).unwrap(), payload);
        }
    }

    #[test]
    fn what_does_not_shrink_is_stored_plain() {
        // Pseudo-random bytes do not compress.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let plain = seal(RecordKind::Blob, &noise);
        assert_eq!(
            Compression::zstd().threshold(0).compress(plain.clone()),
            plain
        );
        // Compressing twice changes nothing.
        let once = Compression::zstd().compress(seal(RecordKind::Blob, &text(10_000)));
        assert_eq!(Compression::zstd().compress(once.clone()), once);
    }

    #[test]
    fn bombs_and_lies_about_the_length_are_typed_errors() {
        let payload = text(100_000);
        let stored = Compression::zstd().compress(seal(RecordKind::Blob, &payload));
        // A declared length beyond the limit: refused before anything is allocated.
        let mut huge = stored.clone();
        huge[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        reseal(&mut huge);
        assert_eq!(
            open(RecordKind::Blob, &huge),
            Err(FormatError::TooLarge(MAX_PAYLOAD + 1))
        );
        // A frame that decompresses to more than declared: an error, not a larger buffer.
        let mut short = stored.clone();
        short[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&1000u32.to_le_bytes());
        reseal(&mut short);
        assert!(matches!(
            open(RecordKind::Blob, &short),
            Err(FormatError::Decompress(_))
        ));
        // Or to less.
        let mut long = stored.clone();
        long[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&200_000u32.to_le_bytes());
        reseal(&mut long);
        assert!(matches!(
            open(RecordKind::Blob, &long),
            Err(FormatError::Decompress(_))
        ));
        // No room for the length.
        let mut empty = seal(RecordKind::Blob, b"ab");
        empty[6] = Codec::Bincode2Zstd as u8;
        reseal(&mut empty);
        assert!(matches!(
            open(RecordKind::Blob, &empty),
            Err(FormatError::Decompress(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any byte of a compressed record changed: the checksum says so. Changed and
        /// resealed (damage the checksum cannot see): a typed error or a value, never a panic.
        #[test]
        fn flipped_bytes_of_a_compressed_record_are_typed_errors(
            // From 1 KiB: this text shrinks under zstd from there (a record that does not shrink
            // is stored uncompressed, codec 1).
            len in 1_024usize..20_000,
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let value: Vec<String> = text(len)
                .chunks(37)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect();
            let plain = encode(RecordKind::PendingWrite, &value).unwrap();
            let stored = Compression::zstd().threshold(64).compress(plain);
            prop_assert_eq!(stored[6], Codec::Bincode2Zstd as u8);
            let i = at.index(stored.len());
            let mut damaged = stored.clone();
            damaged[i] ^= flip;
            prop_assert!(decode::<Vec<String>>(RecordKind::PendingWrite, &damaged).is_err());
            if i >= HEADER_LEN {
                reseal(&mut damaged);
                match decode::<Vec<String>>(RecordKind::PendingWrite, &damaged) {
                    Ok(_) | Err(FormatError::Decompress(_) | FormatError::Decode(_) | FormatError::TooLarge(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e:?}"),
                }
            }
        }
    }
}
