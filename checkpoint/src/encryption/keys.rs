//! Keys and where they come from: [`Key`], the [`KeyProvider`] trait, [`StaticKeys`] (keys
//! held in memory) and [`EnvKeys`] (keys read from an environment variable).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest, Sha256};

use super::EncryptionError;

/// The longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;

/// A 256-bit key of XChaCha20-Poly1305 with its id. Cheap to clone (shared); the key material
/// is wiped from memory when the last clone is dropped, and never shown: `Debug` prints the
/// id alone.
///
/// A key id is 1 to 64 bytes of `A-Z a-z 0-9 . _ -`: it is stored in every record the key
/// encrypts and named in errors, so it must say which key without saying anything of it.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::encryption::Key;
/// let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// let key = Key::parse("2026-12", hex).unwrap();
/// assert_eq!(key.id(), "2026-12");
/// assert!(!format!("{key:?}").contains("00112233"));
/// // The same key in base64.
/// let b64 = "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=";
/// assert!(Key::parse("2026-12", b64).unwrap().same_secret(&key));
/// assert!(Key::parse("bad id!", hex).is_err());
/// assert!(Key::parse("k", "too short").is_err());
/// ```
#[derive(Clone)]
pub struct Key(Arc<Inner>);

struct Inner {
    id: String,
    /// The key material, wiped when dropped.
    secret: zeroize::Zeroizing<[u8; 32]>,
    /// The first bytes of a hash of the key, stored with each record: a wrong key under the
    /// right id is told from a tampered record.
    check: [u8; 8],
}

impl Key {
    /// The key `secret` under `id`. The caller's copy of `secret` is its own to wipe.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::InvalidKeyId`] when `id` is not 1 to 64 bytes of
    /// `A-Z a-z 0-9 . _ -`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::encryption::Key;
    /// let key = Key::new("k1", [7; 32]).unwrap();
    /// assert_eq!(key.id(), "k1");
    /// assert!(Key::new("", [7; 32]).is_err());
    /// ```
    pub fn new(id: impl Into<String>, mut secret: [u8; 32]) -> Result<Key, EncryptionError> {
        let id = id.into();
        check_key_id(&id)?;
        let mut hash = Sha256::new();
        hash.update(b"agentgraph key check v1\0");
        hash.update(secret);
        let digest = hash.finalize();
        let mut check = [0; 8];
        check.copy_from_slice(&digest[..8]);
        let key = Key(Arc::new(Inner {
            id,
            secret: zeroize::Zeroizing::new(secret),
            check,
        }));
        zeroize::Zeroize::zeroize(&mut secret);
        Ok(key)
    }

    /// A new random key under `id`, from the operating system's random number generator.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::InvalidKeyId`]; [`EncryptionError::Random`] when the system's
    /// generator fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::encryption::Key;
    /// let a = Key::generate("k1").unwrap();
    /// let b = Key::generate("k1").unwrap();
    /// assert!(!a.same_secret(&b));
    /// ```
    pub fn generate(id: impl Into<String>) -> Result<Key, EncryptionError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| EncryptionError::Random("no random bytes for a key".into()))?;
        let key = Key::new(id, secret);
        zeroize::Zeroize::zeroize(&mut secret);
        key
    }

    /// The key written as 64 hexadecimal digits or as 32 bytes in base64 (standard or URL-safe
    /// alphabet, padded or not), under `id`. Surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::InvalidKeyId`]; [`EncryptionError::InvalidKey`] when `text` is
    /// neither (the error never holds the text).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::encryption::{EncryptionError, Key};
    /// let key = Key::parse("k1", &"ab".repeat(32)).unwrap();
    /// assert_eq!(key.id(), "k1");
    /// let e = Key::parse("k1", "secret").unwrap_err();
    /// assert!(matches!(e, EncryptionError::InvalidKey { .. }));
    /// assert!(!e.to_string().contains("secret"));
    /// ```
    pub fn parse(id: impl Into<String>, text: &str) -> Result<Key, EncryptionError> {
        let id = id.into();
        check_key_id(&id)?;
        let text = text.trim();
        let mut secret = [0u8; 32];
        let parsed = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (i, pair) in text.as_bytes().chunks(2).enumerate() {
                let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                secret[i] = (digit(pair[0]) << 4) | digit(pair[1]);
            }
            true
        } else {
            let unpadded = text.trim_end_matches('=');
            let mut buf = [0u8; 48];
            let mut parsed = false;
            for engine in [
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                if let Ok(32) = engine.decode_slice(unpadded, &mut buf) {
                    secret.copy_from_slice(&buf[..32]);
                    parsed = true;
                    break;
                }
            }
            zeroize::Zeroize::zeroize(&mut buf);
            parsed
        };
        if !parsed {
            return Err(EncryptionError::InvalidKey {
                key_id: id,
                reason: "not 64 hexadecimal digits or 32 bytes in base64",
            });
        }
        let key = Key::new(id, secret);
        zeroize::Zeroize::zeroize(&mut secret);
        key
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Whether `other` is the same key material (whatever its id).
    pub fn same_secret(&self, other: &Key) -> bool {
        self.0.check == other.0.check
    }

    pub(super) fn secret(&self) -> &[u8; 32] {
        &self.0.secret
    }

    pub(super) fn check(&self) -> [u8; 8] {
        self.0.check
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.0.id)
            .finish_non_exhaustive()
    }
}

/// Fails unless `id` is 1 to [`MAX_KEY_ID_LEN`] bytes of `A-Z a-z 0-9 . _ -`.
fn check_key_id(id: &str) -> Result<(), EncryptionError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EncryptionError::InvalidKeyId {
            key_id: id
                .chars()
                .take(MAX_KEY_ID_LEN)
                .collect::<String>()
                .escape_default()
                .to_string(),
        })
    }
}

/// Where an [`EncryptedStore`](super::EncryptedStore) gets its keys: the current key, which new
/// records are encrypted with, and any key by id, for reading records written under older
/// ones. Rotating keys is making a new key current while the old ones stay readable.
///
/// Implementations hold their keys (fetch them from a key service beforehand, not on each
/// call: both methods are called for every record) and must not show them in `Debug`.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::encryption::{Key, KeyProvider};
///
/// /// One fixed key.
/// #[derive(Debug)]
/// struct One(Key);
///
/// impl KeyProvider for One {
///     fn current(&self) -> Key {
///         self.0.clone()
///     }
///     fn key(&self, id: &str) -> Option<Key> {
///         (id == self.0.id()).then(|| self.0.clone())
///     }
/// }
///
/// let keys = One(Key::new("k1", [1; 32]).unwrap());
/// assert_eq!(keys.current().id(), "k1");
/// assert!(keys.key("k2").is_none());
/// ```
pub trait KeyProvider: Send + Sync + fmt::Debug + 'static {
    /// The key new records are encrypted with.
    fn current(&self) -> Key;

    /// The key with id `id`, if this provider has it.
    fn key(&self, id: &str) -> Option<Key>;
}

/// Keys held in memory: a current key and older ones, kept for reading.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::encryption::{Key, KeyProvider, StaticKeys};
/// let k1 = Key::new("k1", [1; 32]).unwrap();
/// let k2 = Key::new("k2", [2; 32]).unwrap();
/// // Rotation: k2 is current, k1 still reads what it encrypted.
/// let keys = StaticKeys::new(k2).with(k1);
/// assert_eq!(keys.current().id(), "k2");
/// assert_eq!(keys.key("k1").unwrap().id(), "k1");
/// assert!(keys.key("k3").is_none());
/// assert_eq!(format!("{keys:?}"), r#"StaticKeys { current: "k2", ids: ["k2", "k1"] }"#);
/// ```
#[derive(Clone)]
pub struct StaticKeys {
    /// The current key first.
    keys: Vec<Key>,
}

impl StaticKeys {
    /// `current` alone.
    pub fn new(current: Key) -> StaticKeys {
        StaticKeys {
            keys: vec![current],
        }
    }

    /// Keeps `key` for reading (a key with its id replaces an older key of the same id, but
    /// never the current one).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::encryption::{Key, KeyProvider, StaticKeys};
    /// let keys = StaticKeys::new(Key::new("k2", [2; 32]).unwrap())
    ///     .with(Key::new("k1", [1; 32]).unwrap());
    /// assert_eq!(keys.ids().collect::<Vec<_>>(), ["k2", "k1"]);
    /// ```
    #[must_use]
    pub fn with(mut self, key: Key) -> StaticKeys {
        if key.id() == self.keys[0].id() {
            return self;
        }
        self.keys.retain(|k| k.id() != key.id());
        self.keys.push(key);
        self
    }

    /// Makes `key` current, keeping the others for reading.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::encryption::{Key, KeyProvider, StaticKeys};
    /// let keys = StaticKeys::new(Key::new("k1", [1; 32]).unwrap())
    ///     .rotate(Key::new("k2", [2; 32]).unwrap());
    /// assert_eq!(keys.current().id(), "k2");
    /// assert!(keys.key("k1").is_some());
    /// ```
    #[must_use]
    pub fn rotate(mut self, key: Key) -> StaticKeys {
        self.keys.retain(|k| k.id() != key.id());
        self.keys.insert(0, key);
        self
    }

    /// Parses a list of keys: `ID=KEY` entries separated by commas (or whitespace), each
    /// `KEY` 64 hexadecimal digits or 32 bytes in base64; the first entry is the current key.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::InvalidKey`] or [`EncryptionError::InvalidKeyId`] for the first entry
    /// that is not a key, [`EncryptionError::NoKeys`] for an empty list (`source` names the list
    /// in the error). Errors never hold key material.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::encryption::{KeyProvider, StaticKeys};
    /// let list = format!("k2={}, k1={}", "22".repeat(32), "11".repeat(32));
    /// let keys = StaticKeys::parse(&list, "the test's list").unwrap();
    /// assert_eq!(keys.current().id(), "k2");
    /// assert!(keys.key("k1").is_some());
    /// assert!(StaticKeys::parse(" ", "the test's list").is_err());
    /// assert!(StaticKeys::parse("k1", "the test's list").is_err());
    /// ```
    pub fn parse(list: &str, source: &str) -> Result<StaticKeys, EncryptionError> {
        let mut keys: Option<StaticKeys> = None;
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let Some((id, text)) = entry.split_once('=') else {
                return Err(EncryptionError::InvalidKey {
                    key_id: String::new(),
                    reason: "an entry is not ID=KEY",
                });
            };
            // base64 ends with '=': the first one splits the id off.
            let key = Key::parse(id.trim(), text)?;
            keys = Some(match keys {
                None => StaticKeys::new(key),
                Some(k) => k.with(key),
            });
        }
        keys.ok_or_else(|| EncryptionError::NoKeys {
            origin: source.to_owned(),
        })
    }

    /// The ids of the keys, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(Key::id)
    }
}

impl KeyProvider for StaticKeys {
    fn current(&self) -> Key {
        self.keys[0].clone()
    }

    fn key(&self, id: &str) -> Option<Key> {
        self.keys.iter().find(|k| k.id() == id).cloned()
    }
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("current", &self.keys[0].id())
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// Keys read once from an environment variable, as [`StaticKeys::parse`] reads them: `ID=KEY`
/// entries separated by commas, the first one current. Rotating is putting a new entry first
/// and restarting; keep the old entries as long as records they encrypted are kept.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::encryption::{EncryptionError, EnvKeys, KeyProvider};
/// // SAFETY (of the example): no other thread reads the environment.
/// unsafe { std::env::set_var("DOC_KEYS", format!("k2={},k1={}", "22".repeat(32), "11".repeat(32))) };
/// let keys = EnvKeys::from_var("DOC_KEYS").unwrap();
/// assert_eq!(keys.current().id(), "k2");
/// assert!(!format!("{keys:?}").contains("2222"));
/// assert!(matches!(EnvKeys::from_var("DOC_NO_SUCH_VAR"), Err(EncryptionError::NoKeys { .. })));
/// ```
#[derive(Clone)]
pub struct EnvKeys {
    var: String,
    keys: StaticKeys,
}

impl EnvKeys {
    /// The keys in the environment variable `var`.
    ///
    /// # Errors
    ///
    /// [`EncryptionError::NoKeys`] when `var` is not set or empty, and the errors of
    /// [`StaticKeys::parse`].
    pub fn from_var(var: &str) -> Result<EnvKeys, EncryptionError> {
        let mut text = std::env::var(var).unwrap_or_default();
        let keys = StaticKeys::parse(&text, &format!("environment variable {var}"));
        zeroize::Zeroize::zeroize(&mut text);
        Ok(EnvKeys {
            var: var.to_owned(),
            keys: keys?,
        })
    }

    /// The keys read.
    pub fn keys(&self) -> &StaticKeys {
        &self.keys
    }
}

impl KeyProvider for EnvKeys {
    fn current(&self) -> Key {
        self.keys.current()
    }

    fn key(&self, id: &str) -> Option<Key> {
        self.keys.key(id)
    }
}

impl fmt::Debug for EnvKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvKeys")
            .field("var", &self.var)
            .field("current", &self.keys.keys[0].id())
            .field("ids", &self.keys.ids().collect::<Vec<_>>())
            .finish()
    }
}
