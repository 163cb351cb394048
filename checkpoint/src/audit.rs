//! The audit trail: an append-only, hash-chained log of who did what to a run.
//!
//! An action on a run (started, resumed, an interrupt answered, its state edited, forked,
//! pruned, deleted, cancelled) is recorded as an [`AuditRecord`] carried by an
//! [`Op::PutAudit`](crate::Op::PutAudit) in the **same atomic batch** as the action's own
//! writes: an entry never exists without its action, nor the action without its entry.
//!
//! # The chain
//!
//! Each run has its own chain. The store numbers a run's entries `1, 2, 3, ...` as it commits
//! them and links each to the one before it:
//!
//! ```text
//! hash(n) = SHA-256("agentgraph-audit-1" ‖ len(run) as u32 BE ‖ run ‖ n as u64 BE ‖ hash(n-1) ‖ body(n))
//! ```
//!
//! with `hash(0)` 32 zero bytes ([`GENESIS`]) and `body(n)` the entry's encoded record. An
//! entry is stored as `hash(n-1) ‖ hash(n) ‖ body(n)` under `(run, n)`. [`verify_chain`]
//! recomputes every link: an edited byte, a deleted entry (a gap in the numbers) and entries
//! put in another order (a number or a link that does not match) are reported with the
//! position of the first broken link ([`BrokenLink`]).
//!
//! A run's entries are **kept when the run is deleted** ([`Op::DeleteRun`](crate::Op::DeleteRun)
//! leaves them): the deletion is itself the last entry of the chain, and a run id used again
//! continues the chain. The chain is local to a run, so a run's entries are written under the
//! run's lease with its other writes, and verifying one run reads only that run's entries.
//!
//! What a hash chain cannot show alone is the loss of its newest entries: the chain that is
//! left is intact. [`ChainHead::head`] is the hash of the newest entry; keep it elsewhere
//! (the command-line tool prints it) to detect a truncation later.
//!
//! # Examples
//!
//! ```
//! use agentgraph_checkpoint::audit::{self, AuditAction, AuditRecord};
//! use agentgraph_checkpoint::{CheckpointStore, MemoryStore, WriteBatch};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> agentgraph_checkpoint::Result<()> {
//!     let store = MemoryStore::new();
//!     for action in [AuditAction::Started, AuditAction::Cancelled] {
//!         let mut batch = WriteBatch::new();
//!         batch.put_audit("run-1", AuditRecord::new("alice", action));
//!         store.commit(batch).await?;
//!     }
//!     let entries = store.audit("run-1").await?;
//!     assert_eq!(entries.len(), 2);
//!     assert_eq!((entries[1].seq, entries[1].record.action), (2, AuditAction::Cancelled));
//!     assert_eq!(entries[1].prev, entries[0].hash);
//!     let head = audit::verify(&store, "run-1").await?.expect("an intact chain");
//!     assert_eq!((head.entries, head.head), (2, entries[1].hash));
//!     Ok(())
//! }
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::envelope::FormatError;
use crate::error::{Result, StoreError};
use crate::store::CheckpointStore;

/// A SHA-256 digest: a link of the chain.
pub type Digest = [u8; 32];

/// The link before a run's first entry: 32 zero bytes.
pub const GENESIS: Digest = [0; 32];

/// The caller recorded when none was given (`RunConfig::caller`, the inspector's caller).
pub const UNKNOWN_CALLER: &str = "unknown";

/// What the hash of every entry starts with: the chain's format and version.
const DOMAIN: &[u8] = b"agentgraph-audit-1";

/// The version byte that starts an encoded record.
const BODY_VERSION: u8 = 1;

/// How many entries a read asks the store for at a time.
const PAGE: usize = 512;

/// What was done to a run.
///
/// In JSON and in the stored entries an action is its [`as_str`](AuditAction::as_str) name.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::audit::AuditAction;
/// assert_eq!(AuditAction::InterruptAnswered.as_str(), "interrupt_answered");
/// assert_eq!("forked".parse::<AuditAction>(), Ok(AuditAction::Forked));
/// assert!("renamed".parse::<AuditAction>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A new run started (its first checkpoint).
    Started,
    /// A stopped run was resumed.
    Resumed,
    /// A thread's next invocation started.
    Invoked,
    /// An interrupt was answered (details: the interrupt's id, the answer's SHA-256 and size,
    /// and the answer itself when it is small).
    InterruptAnswered,
    /// The run's state was edited (a resume's edit, a fork's edit).
    StateEdited,
    /// The run was made as a fork of another run's checkpoint (details: the source run and
    /// step).
    Forked,
    /// Old checkpoints of the run were deleted (details: how many were kept and deleted).
    Pruned,
    /// The run was deleted (its entries stay).
    Deleted,
    /// The run was cancelled.
    Cancelled,
}

impl AuditAction {
    /// Every action, in declaration order.
    pub const ALL: [AuditAction; 9] = [
        AuditAction::Started,
        AuditAction::Resumed,
        AuditAction::Invoked,
        AuditAction::InterruptAnswered,
        AuditAction::StateEdited,
        AuditAction::Forked,
        AuditAction::Pruned,
        AuditAction::Deleted,
        AuditAction::Cancelled,
    ];

    /// The action's name: `"started"`, `"resumed"`, `"invoked"`, `"interrupt_answered"`,
    /// `"state_edited"`, `"forked"`, `"pruned"`, `"deleted"` or `"cancelled"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_checkpoint::audit::AuditAction;
    /// assert_eq!(AuditAction::StateEdited.to_string(), "state_edited");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::Started => "started",
            AuditAction::Resumed => "resumed",
            AuditAction::Invoked => "invoked",
            AuditAction::InterruptAnswered => "interrupt_answered",
            AuditAction::StateEdited => "state_edited",
            AuditAction::Forked => "forked",
            AuditAction::Pruned => "pruned",
            AuditAction::Deleted => "deleted",
            AuditAction::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditAction {
    type Err = FormatError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| FormatError::Decode(format!("unknown audit action `{s}`")))
    }
}

/// One entry's content: when, who, what, and the details of what.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::audit::{AuditAction, AuditRecord};
/// let record = AuditRecord::new("alice", AuditAction::Pruned)
///     .with_details(serde_json::json!({"kept": 2, "deleted": 5}))
///     .at(1_700_000_000_000);
/// assert_eq!(record.caller, "alice");
/// assert_eq!(record.details["deleted"], 5);
/// assert_eq!(record.at_ms, 1_700_000_000_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who: the caller the program named (`RunConfig::caller`, the command-line tool's
    /// `--as` or the OS user, the monitor's token), or [`UNKNOWN_CALLER`].
    pub caller: String,
    /// What.
    pub action: AuditAction,
    /// The details of what, as JSON (`null` for none).
    pub details: serde_json::Value,
}

impl AuditRecord {
    /// A record of `action` by `caller`, now, without details.
    pub fn new(caller: impl Into<String>, action: AuditAction) -> Self {
        AuditRecord {
            at_ms: now_ms(),
            caller: caller.into(),
            action,
            details: serde_json::Value::Null,
        }
    }

    /// Sets the details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Sets the time, in milliseconds since the Unix epoch.
    pub fn at(mut self, at_ms: u64) -> Self {
        self.at_ms = at_ms;
        self
    }
}

/// An entry of a run's audit trail, as read back: its number, its record, and its links.
///
/// In JSON the digests are 64 hex digits.
///
/// # Examples
///
/// See the [module](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// The run.
    pub run: String,
    /// The entry's number in the run's chain, from 1.
    pub seq: u64,
    /// What was recorded.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The hash of the entry before (of [`GENESIS`] for the first).
    #[serde(serialize_with = "hex_digest")]
    pub prev: Digest,
    /// The entry's hash.
    #[serde(serialize_with = "hex_digest")]
    pub hash: Digest,
}

fn hex_digest<S: serde::Serializer>(d: &Digest, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex(d))
}

/// `bytes` as lowercase hex digits.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_checkpoint::audit::hex(&[0x0f, 0xa0]), "0fa0");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The SHA-256 digest of `bytes`, as hex digits: what an entry records of an interrupt's
/// answer.
///
/// # Examples
///
/// ```
/// let d = agentgraph_checkpoint::audit::sha256_hex(b"abc");
/// assert!(d.starts_with("ba7816bf"));
/// ```
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The record as the stores keep it (behind [`BODY_VERSION`]).
#[derive(Serialize, Deserialize)]
struct StoredBody {
    at_ms: u64,
    caller: String,
    action: String,
    /// JSON text.
    details: String,
}

/// Encodes `record` as an entry's body: a version byte, then its fields. For backends.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when the record does not encode.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::audit::{AuditAction, AuditRecord, decode_body, encode_body};
/// let record = AuditRecord::new("bob", AuditAction::Deleted).at(5);
/// assert_eq!(decode_body(&encode_body(&record)?)?, record);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_body(record: &AuditRecord) -> Result<Vec<u8>> {
    let stored = StoredBody {
        at_ms: record.at_ms,
        caller: record.caller.clone(),
        action: record.action.as_str().to_owned(),
        details: record.details.to_string(),
    };
    let mut out = vec![BODY_VERSION];
    bincode::serde::encode_into_std_write(&stored, &mut out, bincode::config::standard()).map_err(
        |e| StoreError::Corrupt {
            what: "an audit record".to_owned(),
            source: FormatError::Encode(e.to_string()),
        },
    )?;
    Ok(out)
}

/// Decodes an entry's body ([`encode_body`]).
///
/// # Errors
///
/// [`FormatError`] when the bytes are not a body of a known version.
pub fn decode_body(bytes: &[u8]) -> std::result::Result<AuditRecord, FormatError> {
    let Some((&version, rest)) = bytes.split_first() else {
        return Err(FormatError::Decode("an empty audit record".into()));
    };
    if version != BODY_VERSION {
        return Err(FormatError::Decode(format!(
            "audit record version {version} (this build reads {BODY_VERSION})"
        )));
    }
    let (stored, used): (StoredBody, usize) =
        bincode::serde::decode_from_slice(rest, bincode::config::standard())
            .map_err(|e| FormatError::Decode(e.to_string()))?;
    if used != rest.len() {
        return Err(FormatError::Decode(
            "trailing bytes after an audit record".into(),
        ));
    }
    Ok(AuditRecord {
        at_ms: stored.at_ms,
        caller: stored.caller,
        action: stored.action.parse()?,
        details: serde_json::from_str(&stored.details)
            .map_err(|e| FormatError::Decode(format!("audit details: {e}")))?,
    })
}

/// The hash of entry `seq` of `run`, linked to `prev`, with `body`: see the [module](self).
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::audit::{GENESIS, chain_hash};
/// let first = chain_hash("run-1", 1, &GENESIS, b"body");
/// assert_ne!(first, chain_hash("run-1", 2, &GENESIS, b"body"));
/// assert_ne!(first, chain_hash("run-2", 1, &GENESIS, b"body"));
/// ```
pub fn chain_hash(run: &str, seq: u64, prev: &Digest, body: &[u8]) -> Digest {
    let len = u32::try_from(run.len()).unwrap_or(u32::MAX);
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(len.to_be_bytes());
    h.update(run.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

/// The stored bytes of entry `seq` of `run` after an entry whose stored bytes are `last`
/// (`None` for the first): `prev ‖ hash ‖ body`. For backends, which call it in the
/// transaction that commits the entry.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::audit::{GENESIS, seal};
/// let first = seal("run-1", 1, None, b"a");
/// assert_eq!(&first[..32], &GENESIS[..]);
/// let second = seal("run-1", 2, Some(&first), b"b");
/// assert_eq!(&second[..32], &first[32..64]);
/// ```
pub fn seal(run: &str, seq: u64, last: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
    // A damaged last entry is chained onto as it reads (its hash, or zeros): the verifier
    // reports the damage where it is.
    let prev: Digest = last
        .and_then(|l| l.get(32..64))
        .and_then(|h| h.try_into().ok())
        .unwrap_or(GENESIS);
    let hash = chain_hash(run, seq, &prev, body);
    let mut out = Vec::with_capacity(64 + body.len());
    out.extend_from_slice(&prev);
    out.extend_from_slice(&hash);
    out.extend_from_slice(body);
    out
}

/// Decodes the stored entry `seq` of `run` (without checking its links: see
/// [`verify_chain`]).
///
/// # Errors
///
/// [`StoreError::Corrupt`] when it does not decode.
pub fn decode_entry(run: &str, seq: u64, bytes: &[u8]) -> Result<AuditEntry> {
    let corrupt = |source| StoreError::Corrupt {
        what: format!("audit entry {seq} of run `{run}`"),
        source,
    };
    if bytes.len() < 64 {
        return Err(corrupt(FormatError::Decode(format!(
            "{} bytes, shorter than its two links",
            bytes.len()
        ))));
    }
    let digest = |r: std::ops::Range<usize>| -> Digest { bytes[r].try_into().expect("32 bytes") };
    Ok(AuditEntry {
        run: run.to_owned(),
        seq,
        record: decode_body(&bytes[64..]).map_err(corrupt)?,
        prev: digest(0..32),
        hash: digest(32..64),
    })
}

/// An intact chain: how many entries, and the newest one's number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChainHead {
    /// How many entries the chain holds.
    pub entries: u64,
    /// The hash of the newest entry ([`GENESIS`] for an empty chain): keep it elsewhere to
    /// detect a later truncation.
    #[serde(serialize_with = "hex_digest")]
    pub head: Digest,
}

/// Why a link is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum BreakKind {
    /// The entry stored at this position has another number: entries before it were deleted,
    /// or entries were moved.
    Gap {
        /// The number the position should hold.
        expected: u64,
        /// The number it holds.
        found: u64,
    },
    /// The entry's stored link to the one before is not that entry's hash.
    PrevMismatch,
    /// The entry's stored hash is not the hash of its content: it was edited.
    HashMismatch,
    /// The entry does not decode (shorter than its links, or an unreadable record).
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// The first broken link of a run's chain.
///
/// # Examples
///
/// ```
/// use agentgraph_checkpoint::audit::{AuditAction, AuditRecord, BreakKind, encode_body, seal, verify_chain};
/// let body = encode_body(&AuditRecord::new("ann", AuditAction::Started))?;
/// let first = seal("r", 1, None, &body);
/// let mut second = seal("r", 2, Some(&first), &body);
/// *second.last_mut().unwrap() ^= 1; // an edited byte
/// let broken = verify_chain("r", [(1, first), (2, second)]).unwrap_err();
/// assert_eq!((broken.seq, broken.position), (2, 2));
/// assert_eq!(broken.kind, BreakKind::HashMismatch);
/// # Ok::<(), agentgraph_checkpoint::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("the audit chain of run `{run}` is broken at entry {seq} (position {position}): {kind}")]
#[non_exhaustive]
pub struct BrokenLink {
    /// The run.
    pub run: String,
    /// The number of the entry where the chain breaks (the number stored at that position).
    pub seq: u64,
    /// The position of that entry in the chain, from 1: the number it should have.
    pub position: u64,
    /// Why.
    pub kind: BreakKind,
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakKind::Gap { expected, found } => write!(
                f,
                "entry {expected} is missing or moved (found entry {found} in its place)"
            ),
            BreakKind::PrevMismatch => f.write_str("its link to the entry before does not match"),
            BreakKind::HashMismatch => {
                f.write_str("its hash does not match its content (the entry was edited)")
            }
            BreakKind::Unreadable { reason } => write!(f, "it is unreadable: {reason}"),
        }
    }
}

/// Checks `run`'s stored entries, `(number, bytes)` in number order: numbered `1, 2, ...`
/// without a gap, each linked to the one before, each hash that of its content.
///
/// # Errors
///
/// The first [`BrokenLink`].
///
/// # Examples
///
/// See [`BrokenLink`].
pub fn verify_chain(
    run: &str,
    entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
) -> std::result::Result<ChainHead, BrokenLink> {
    let mut head = ChainHead {
        entries: 0,
        head: GENESIS,
    };
    let mut checker = Checker::new(run);
    for (seq, bytes) in entries {
        head = checker.check(seq, &bytes)?;
    }
    Ok(head)
}

/// [`verify_chain`] one entry at a time.
struct Checker<'a> {
    run: &'a str,
    head: ChainHead,
}

impl<'a> Checker<'a> {
    fn new(run: &'a str) -> Self {
        Checker {
            run,
            head: ChainHead {
                entries: 0,
                head: GENESIS,
            },
        }
    }

    fn check(&mut self, seq: u64, bytes: &[u8]) -> std::result::Result<ChainHead, BrokenLink> {
        let position = self.head.entries + 1;
        let broken = |kind| BrokenLink {
            run: self.run.to_owned(),
            seq,
            position,
            kind,
        };
        if seq != position {
            return Err(broken(BreakKind::Gap {
                expected: position,
                found: seq,
            }));
        }
        if bytes.len() < 64 {
            return Err(broken(BreakKind::Unreadable {
                reason: format!("{} bytes, shorter than its two links", bytes.len()),
            }));
        }
        if bytes[..32] != self.head.head {
            return Err(broken(BreakKind::PrevMismatch));
        }
        let hash = chain_hash(self.run, seq, &self.head.head, &bytes[64..]);
        if bytes[32..64] != hash {
            return Err(broken(BreakKind::HashMismatch));
        }
        if let Err(e) = decode_body(&bytes[64..]) {
            return Err(broken(BreakKind::Unreadable {
                reason: e.to_string(),
            }));
        }
        self.head = ChainHead {
            entries: position,
            head: hash,
        };
        Ok(self.head)
    }
}

/// Reads `run`'s audit trail from `store` and checks its chain ([`verify_chain`]), a page at
/// a time. The outer error is the store's; the inner one the first broken link.
///
/// # Errors
///
/// The store's.
///
/// # Examples
///
/// See the [module](self).
pub async fn verify<St: CheckpointStore + ?Sized>(
    store: &St,
    run: &str,
) -> Result<std::result::Result<ChainHead, BrokenLink>> {
    let mut checker = Checker::new(run);
    let mut after = None;
    loop {
        let page = store.get_audit(run, after, PAGE).await?;
        let Some(&(last, _)) = page.last() else {
            return Ok(Ok(checker.head));
        };
        for (seq, bytes) in &page {
            if let Err(broken) = checker.check(*seq, bytes) {
                return Ok(Err(broken));
            }
        }
        if page.len() < PAGE {
            return Ok(Ok(checker.head));
        }
        after = Some(last);
    }
}

/// Every entry of `run`'s audit trail, decoded, in order: what
/// [`CheckpointStore::audit`] returns.
pub(crate) async fn read<St: CheckpointStore + ?Sized>(
    store: &St,
    run: &str,
) -> Result<Vec<AuditEntry>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.get_audit(run, after, PAGE).await?;
        let n = page.len();
        for (seq, bytes) in page {
            out.push(decode_entry(run, seq, &bytes)?);
            after = Some(seq);
        }
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
