//! Encryption at rest (feature `encryption`): an [`EncryptedStore`] wraps any
//! [`CheckpointStore`] and encrypts every checkpoint, field value,
//! pending write and event written through it with XChaCha20-Poly1305, under the current key
//! of a [`KeyProvider`]; it decrypts them when they are read back, under the key whose id
//! each record carries, so that records of older keys stay readable after a rotation.
//!
//! An encrypted record is an envelope of codec 3 (see [`envelope`]): the
//! key id, a check of the key, a 24-byte nonce, then the whole record as it would
//! have been stored (compressed or not: compression comes first), encrypted, then the tag.
//! The cipher is standard XChaCha20-Poly1305: HChaCha20 (RustCrypto's `chacha20`) derives a
//! subkey from the key and the nonce's first 16 bytes, and ChaCha20-Poly1305 (`ring`) seals
//! under it with the nonce's last 8 bytes. The records of one commit share a nonce prefix
//! drawn from the operating system for that commit (so one subkey), and their last 8 bytes
//! count up from a random start: no nonce repeats within a commit, each commit draws 192 fresh
//! bits, and nothing is kept between commits (a forked process cannot repeat its parent's
//! nonces). Subkeys live in `ring`'s key type for the commit and are not wiped when dropped;
//! the keys themselves are.
//! The associated data binds it to where it lives: its kind, its run and its place in the run
//! (the step of a checkpoint, the field and version of a field value, the step and task of a
//! pending write, the number of an event), so that a record copied under another run, or to
//! another place of its own run, fails to open.
//!
//! Reading needs the key: without the wrapper a record reads as
//! [`FormatError::Encrypted`](crate::envelope::FormatError::Encrypted) naming its key id;
//! through a wrapper whose provider lacks the key, as [`EncryptionError::MissingKey`]; with
//! another key under the same id, [`EncryptionError::WrongKey`]; a record changed after it
//! was sealed (with its checksum recomputed), [`EncryptionError::Tampered`]. Each is a
//! [`StoreError::Encryption`](crate::StoreError::Encryption) naming the record: never a
//! panic, never a half-read record, and never a fallback to an older checkpoint.
//!
//! What stays in plain text: run records (status, steps, times, metadata, the error of a failed
//! run: stores list and filter runs by them), leases, and long-term memory items (stores
//! search and filter them). Records written without encryption stay readable through the
//! wrapper, so a run may be resumed with encryption turned on.
//!
//! # Examples
//!
//! ```
//! use agentgraph_checkpoint::encryption::{EncryptedStore, Encryption, Key, StaticKeys};
//! use agentgraph_checkpoint::envelope::{self, FormatError, RecordKind};
//! use agentgraph_checkpoint::{CheckpointStore, MemoryStore, WriteBatch};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let plain = std::sync::Arc::new(MemoryStore::new());
//!     let keys = StaticKeys::new(Key::generate("k1")?);
//!     let store = EncryptedStore::new(plain.clone(), Encryption::new(keys));
//!     let record = envelope::encode(RecordKind::Checkpoint, &"the state")?;
//!     let mut batch = WriteBatch::new();
//!     batch.put_checkpoint("run-1", 0, record.clone());
//!     store.commit(batch).await?;
//!     // Through the wrapper: the record as it was written.
//!     assert_eq!(store.get_checkpoint("run-1", 0).await?, Some(record));
//!     // In the store underneath: encrypted, and the key's id says which key reads it.
//!     let stored = plain.get_checkpoint("run-1", 0).await?.unwrap();
//!     assert_eq!(
//!         envelope::decode::<String>(RecordKind::Checkpoint, &stored),
//!         Err(FormatError::Encrypted { key_id: "k1".into() })
//!     );
//!     Ok(())
//! }
//! ```

mod keys;
mod store;

use std::fmt;
use std::sync::Arc;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroize as _;

use crate::envelope::{self, Codec, HEADER_LEN, MAX_PAYLOAD, RecordKind};
use crate::{CheckpointStore, IntoStore};

pub use keys::{EnvKeys, Key, KeyProvider, MAX_KEY_ID_LEN, StaticKeys};
pub use store::EncryptedStore;

/// The size of a key check in a record.
const CHECK_LEN: usize = 8;
/// The size of a nonce (XChaCha20).
const NONCE_LEN: usize = 24;
/// The size of a tag (Poly1305).
const TAG_LEN: usize = 16;

/// Why a record cannot be encrypted or decrypted, or a key cannot be had. Never holds key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// The record was encrypted with a key the provider does not have.
    #[error(
        "the record is encrypted with key `{key_id}`, which the key provider does not have; give it that key (keep old keys after a rotation)"
    )]
    MissingKey {
        /// The key's id.
        key_id: String,
    },
    /// The provider's key under this id is not the key the record was encrypted with.
    #[error(
        "the key provider's key `{key_id}` is not the key the record was encrypted with under that id"
    )]
    WrongKey {
        /// The key's id.
        key_id: String,
    },
    /// The record does not authenticate under its (right) key: it was changed after it was
    /// written, or copied from another run or another place of its run.
    #[error(
        "the record encrypted with key `{key_id}` does not authenticate: it was changed, or copied from another run or place"
    )]
    Tampered {
        /// The key's id.
        key_id: String,
    },
    /// An encrypted record whose own layout is broken (with an intact checksum).
    #[error("malformed encrypted record: {0}")]
    Malformed(String),
    /// A key id is not 1 to 64 bytes of `A-Z a-z 0-9 . _ -`.
    #[error("invalid key id `{key_id}`: a key id is 1 to 64 of A-Z a-z 0-9 . _ -")]
    InvalidKeyId {
        /// The id given (escaped, cut at 64 characters).
        key_id: String,
    },
    /// A key's text is not a key.
    #[error("invalid key `{key_id}`: {reason}")]
    InvalidKey {
        /// The id it was given under (empty when there was none).
        key_id: String,
        /// Why.
        reason: &'static str,
    },
    /// No keys were given where some were expected.
    #[error(
        "no keys in {origin}: give ID=KEY entries (64 hex digits or base64 of 32 bytes), the current key first"
    )]
    NoKeys {
        /// Where they were looked for.
        origin: String,
    },
    /// The system's random number generator failed (a nonce or a key could not be drawn).
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    /// A record too large to encrypt (over [`MAX_PAYLOAD`] once encrypted).
    #[error("a record of {0} bytes is too large to encrypt")]
    TooLarge(usize),
}

/// Encryption of a run's records: its [`KeyProvider`], shared. Give it to
/// [`EncryptedStore::new`] (or to `RunConfig::encryption`, the CLI's `--key-env`, the
/// monitor's `encryption`). `Debug` shows the provider's, which shows key ids only.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::encryption::{Encryption, Key, StaticKeys};
/// let encryption = Encryption::new(StaticKeys::new(Key::new("k1", [9; 32]).unwrap()));
/// assert_eq!(encryption.keys().current().id(), "k1");
/// let shown = format!("{encryption:?}");
/// assert!(shown.contains("k1") && !shown.contains("9, 9"));
/// ```
#[derive(Clone)]
pub struct Encryption {
    keys: Arc<dyn KeyProvider>,
}

impl Encryption {
    /// Encryption with the keys of `keys`.
    pub fn new(keys: impl KeyProvider) -> Encryption {
        Encryption {
            keys: Arc::new(keys),
        }
    }

    /// Encryption with a shared provider.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_checkpoint::encryption::{Encryption, Key, KeyProvider, StaticKeys};
    /// let keys: Arc<dyn KeyProvider> = Arc::new(StaticKeys::new(Key::new("k1", [1; 32]).unwrap()));
    /// assert_eq!(Encryption::shared(keys).keys().current().id(), "k1");
    /// ```
    pub fn shared(keys: Arc<dyn KeyProvider>) -> Encryption {
        Encryption { keys }
    }

    /// The provider.
    pub fn keys(&self) -> &dyn KeyProvider {
        &*self.keys
    }

    /// `store`, wrapped so that what is written through it is encrypted and what is read
    /// decrypted: an [`EncryptedStore`], shared.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::MemoryStore;
    /// use agentgraph_checkpoint::encryption::{Encryption, Key, StaticKeys};
    /// let encryption = Encryption::new(StaticKeys::new(Key::new("k1", [1; 32]).unwrap()));
    /// let store = encryption.wrap(MemoryStore::new());
    /// assert!(format!("{store:?}").starts_with("EncryptedStore"));
    /// ```
    pub fn wrap(&self, store: impl IntoStore) -> Arc<dyn CheckpointStore> {
        Arc::new(EncryptedStore::new(store, self.clone()))
    }

    /// `record` (an envelope, or any bytes) encrypted under the current key, bound to `place`.
    #[cfg(test)]
    pub(crate) fn seal(
        &self,
        kind: RecordKind,
        place: &Place<'_>,
        record: &[u8],
    ) -> Result<Vec<u8>, EncryptionError> {
        self.sealer().seal(kind, place, record)
    }

    /// A [`Sealer`] for the records of one batch, under the current key.
    pub(crate) fn sealer(&self) -> Sealer {
        Sealer {
            key: self.keys.current(),
            batch: None,
            aad: Vec::new(),
        }
    }

    /// `stored` decrypted when it is an intact encrypted record of `kind` (the record it
    /// holds); anything else as it is (plain records, and damage the reader reports).
    pub(crate) fn open(
        &self,
        kind: RecordKind,
        place: &Place<'_>,
        mut stored: Vec<u8>,
    ) -> Result<Vec<u8>, EncryptionError> {
        let (start, end) = match envelope::check(&stored) {
            Ok((Codec::Encrypted, found, payload)) if found == kind as u8 => {
                (HEADER_LEN, HEADER_LEN + payload.len())
            }
            _ => return Ok(stored),
        };
        let payload = &stored[start..end];
        let id = envelope::encrypted_key_id(payload)
            .map_err(|e| EncryptionError::Malformed(e.to_string()))?;
        let key_id = String::from_utf8_lossy(id).escape_default().to_string();
        let body = start + 1 + id.len();
        if end < body + CHECK_LEN + NONCE_LEN + TAG_LEN {
            return Err(EncryptionError::Malformed(format!(
                "an encrypted record of {} bytes is too short",
                end - start
            )));
        }
        let Some(key) = std::str::from_utf8(id)
            .ok()
            .and_then(|id| self.keys.key(id))
        else {
            return Err(EncryptionError::MissingKey { key_id });
        };
        if stored[body..body + CHECK_LEN] != key.check() {
            return Err(EncryptionError::WrongKey { key_id });
        }
        let nonce_at = body + CHECK_LEN;
        let text = nonce_at + NONCE_LEN;
        let tag_at = end - TAG_LEN;
        let nonce: [u8; NONCE_LEN] = stored[nonce_at..text].try_into().expect("24 bytes");
        let tag: [u8; TAG_LEN] = stored[tag_at..end].try_into().expect("16 bytes");
        let aead = subkey(&key, &nonce);
        aead.open_in_place_separate_tag(
            inner_nonce(&nonce),
            Aad::from(place.aad(kind)),
            Tag::from(tag),
            &mut stored[text..tag_at],
            0..,
        )
        .map_err(|_| EncryptionError::Tampered { key_id })?;
        stored.truncate(tag_at);
        stored.drain(..text);
        Ok(stored)
    }
}

/// Seals records under one key, drawing one nonce prefix from the operating system for all
/// the records it seals (a batch's): XChaCha20-Poly1305 derives a subkey from a nonce's first
/// 16 bytes (HChaCha20), so the records of a batch share that prefix and its subkey, and
/// differ in the nonce's last 8 bytes (a random start, counted up per record). Nonces never
/// repeat within a batch, and batches draw their 192 bits afresh (nothing is kept between
/// batches, so a forked process cannot repeat its parent's nonces). Each record stays a
/// whole XChaCha20-Poly1305 record with its own nonce.
pub(crate) struct Sealer {
    key: Key,
    /// The nonce prefix drawn for this batch and its subkey: drawn at the first record.
    batch: Option<Batch>,
    /// The associated data's buffer, reused.
    aad: Vec<u8>,
}

struct Batch {
    nonce: [u8; NONCE_LEN],
    aead: LessSafeKey,
}

impl Sealer {
    /// `record` (an envelope, or any bytes) encrypted under the sealer's key, bound to `place`.
    pub(crate) fn seal(
        &mut self,
        kind: RecordKind,
        place: &Place<'_>,
        record: &[u8],
    ) -> Result<Vec<u8>, EncryptionError> {
        let id = self.key.id().as_bytes();
        let start = HEADER_LEN + 1 + id.len() + CHECK_LEN + NONCE_LEN;
        let len = start + record.len() + TAG_LEN;
        if len - HEADER_LEN > MAX_PAYLOAD {
            return Err(EncryptionError::TooLarge(record.len()));
        }
        let batch = match &mut self.batch {
            Some(batch) => {
                let count = u64::from_le_bytes(batch.nonce[16..].try_into().expect("8 bytes"));
                batch.nonce[16..].copy_from_slice(&count.wrapping_add(1).to_le_bytes());
                batch
            }
            None => {
                let mut nonce = [0; NONCE_LEN];
                SystemRandom::new()
                    .fill(&mut nonce)
                    .map_err(|_| EncryptionError::Random("no random bytes for a nonce".into()))?;
                let aead = subkey(&self.key, &nonce);
                self.batch.insert(Batch { nonce, aead })
            }
        };
        let mut out = Vec::with_capacity(len);
        out.resize(HEADER_LEN, 0);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.key.check());
        out.extend_from_slice(&batch.nonce);
        out.extend_from_slice(record);
        place.aad_into(kind, &mut self.aad);
        let tag = batch
            .aead
            .seal_in_place_separate_tag(
                inner_nonce(&batch.nonce),
                Aad::from(&self.aad[..]),
                &mut out[start..],
            )
            .map_err(|_| EncryptionError::TooLarge(record.len()))?;
        out.extend_from_slice(tag.as_ref());
        envelope::fill_header_as(&mut out, kind, Codec::Encrypted);
        Ok(out)
    }
}

/// The ChaCha20-Poly1305 key of XChaCha20-Poly1305 under `key` for `nonce`: HChaCha20 of the
/// key and the nonce's first 16 bytes (RustCrypto's `chacha20`).
fn subkey(key: &Key, nonce: &[u8; NONCE_LEN]) -> LessSafeKey {
    let prefix: [u8; 16] = nonce[..16].try_into().expect("16 bytes");
    let mut sub = chacha20::hchacha::<chacha20::R20>(key.secret().into(), &prefix.into());
    let aead = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &sub).expect("a 32-byte ChaCha20-Poly1305 key"),
    );
    sub[..].zeroize();
    aead
}

/// The ChaCha20-Poly1305 nonce of XChaCha20-Poly1305 for `nonce`: four zero bytes, then the
/// nonce's last 8 bytes.
fn inner_nonce(nonce: &[u8; NONCE_LEN]) -> Nonce {
    let mut inner = [0; 12];
    inner[4..].copy_from_slice(&nonce[16..]);
    Nonce::assume_unique_for_key(inner)
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Encryption").field(&self.keys).finish()
    }
}

/// Where a record lives: its run and its place in the run (what the associated data binds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) run: &'a str,
    /// The step of a checkpoint or pending write, the field of a blob, the number of an event.
    pub(crate) a: u64,
    /// The version of a blob, the task of a pending write; 0 otherwise.
    pub(crate) b: u64,
}

impl Place<'_> {
    /// The associated data of a record of `kind` here.
    fn aad(&self, kind: RecordKind) -> Vec<u8> {
        let mut aad = Vec::new();
        self.aad_into(kind, &mut aad);
        aad
    }

    /// [`Place::aad`], into `aad` (cleared first).
    fn aad_into(&self, kind: RecordKind, aad: &mut Vec<u8>) {
        const DOMAIN: &[u8] = b"agentgraph encrypted record v1\0";
        aad.clear();
        aad.reserve(DOMAIN.len() + 1 + 4 + self.run.len() + 16);
        aad.extend_from_slice(DOMAIN);
        aad.push(kind as u8);
        aad.extend_from_slice(&(self.run.len() as u32).to_le_bytes());
        aad.extend_from_slice(self.run.as_bytes());
        aad.extend_from_slice(&self.a.to_le_bytes());
        aad.extend_from_slice(&self.b.to_le_bytes());
    }
}

#[cfg(test)]
mod tests;
