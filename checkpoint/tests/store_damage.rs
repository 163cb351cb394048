//! Byte-level damage of run records stored in sled (and in redb): every damaged record is
//! `StoreError::Corrupt` naming the run, from `get_run` and `list_runs`, and never a panic.
#![cfg(feature = "sled")]

use agentgraph_checkpoint::envelope::{self, FORMAT_VERSION, FormatError, HEADER_LEN, RecordKind};
use agentgraph_checkpoint::{
    CheckpointStore, RunRecord, RunStatus, SledStore, StoreError, WriteBatch,
};
use proptest::prelude::*;

const VICTIM: &str = "victim/\u{0}run";
const NEIGHBOUR: &str = "victim/\u{0}run2";

/// A store whose raw run records a test can overwrite.
trait Raw: CheckpointStore + Sized {
    /// The store kept in directory `dir`.
    fn open_in(dir: &std::path::Path) -> Self;
    fn put_raw(&self, run: &str, bytes: Vec<u8>);
    fn raw(&self, run: &str) -> Option<Vec<u8>>;
}

impl Raw for SledStore {
    fn open_in(dir: &std::path::Path) -> Self {
        SledStore::open(dir).unwrap()
    }
    fn put_raw(&self, run: &str, bytes: Vec<u8>) {
        self.put_raw_run_record(run, bytes)
    }
    fn raw(&self, run: &str) -> Option<Vec<u8>> {
        self.raw_run_record(run)
    }
}

#[cfg(feature = "redb")]
impl Raw for agentgraph_checkpoint::RedbStore {
    fn open_in(dir: &std::path::Path) -> Self {
        agentgraph_checkpoint::RedbStore::open(dir.join("store.redb")).unwrap()
    }
    fn put_raw(&self, run: &str, bytes: Vec<u8>) {
        self.put_raw_run_record(run, bytes)
    }
    fn raw(&self, run: &str) -> Option<Vec<u8>> {
        self.raw_run_record(run)
    }
}

/// `$name` runs `$body` (a generic function over [`Raw`]) on sled, and `$name_on_redb` on redb.
macro_rules! on_both {
    ($name:ident, $redb:ident, $body:ident) => {
        #[test]
        fn $name() {
            $body::<SledStore>();
        }

        #[cfg(feature = "redb")]
        #[test]
        fn $redb() {
            $body::<agentgraph_checkpoint::RedbStore>();
        }
    };
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A store holding `VICTIM` and `NEIGHBOUR`, and the victim's stored bytes.
fn setup<S: Raw>(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (S, Vec<u8>) {
    let store = S::open_in(dir);
    let mut record = RunRecord::new(VICTIM, RunStatus::Failed, u128::MAX, 1_700_000_000_000);
    record.error = Some("the node failed".into());
    record.last_step = Some(41);
    record.forked_from = Some(("parent".into(), 7));
    let mut batch = WriteBatch::new();
    batch
        .put_run(record)
        .put_run(RunRecord::new(NEIGHBOUR, RunStatus::Running, 1, 0));
    rt.block_on(store.commit(batch)).unwrap();
    let good = store.raw(VICTIM).unwrap();
    (store, good)
}

/// Stores `damaged` as the victim's record and checks every read of it; returns the
/// format error `get_run` reported.
fn check<S: Raw>(
    rt: &tokio::runtime::Runtime,
    store: &S,
    damaged: Vec<u8>,
    what: &str,
) -> FormatError {
    store.put_raw(VICTIM, damaged);
    let from_get = match rt.block_on(store.get_run(VICTIM)) {
        Err(StoreError::Corrupt { what: w, source }) => {
            assert!(
                w.contains(&format!("{VICTIM:?}")),
                "{what}: get_run's error names {w:?}"
            );
            source
        }
        other => panic!("{what}: get_run must be Corrupt, got {other:?}"),
    };
    match rt.block_on(store.list_runs(None, 10)) {
        Err(StoreError::Corrupt { what: w, .. }) => {
            assert!(
                w.contains(&format!("{VICTIM:?}")),
                "{what}: list_runs's error names {w:?}"
            )
        }
        other => panic!("{what}: list_runs must be Corrupt, got {other:?}"),
    }
    let after = rt.block_on(store.list_runs(Some(VICTIM), 10)).unwrap();
    assert_eq!(
        after.len(),
        1,
        "{what}: the runs after the damaged one still list"
    );
    assert!(
        rt.block_on(store.get_run(NEIGHBOUR)).unwrap().is_some(),
        "{what}: neighbour"
    );
    from_get
}

on_both!(
    every_truncation_is_corrupt,
    every_truncation_is_corrupt_on_redb,
    truncations
);

fn truncations<S: Raw>() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (store, good) = setup::<S>(&rt, dir.path());
    for cut in 0..good.len() {
        let err = check(&rt, &store, good[..cut].to_vec(), &format!("cut at {cut}"));
        assert!(
            matches!(err, FormatError::Truncated { .. }),
            "cut at {cut}: {err:?}"
        );
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"tail");
    let err = check(&rt, &store, longer, "trailing bytes");
    assert_eq!(err, FormatError::TrailingBytes { extra: 4 });
}

on_both!(
    every_bit_flip_is_corrupt,
    every_bit_flip_is_corrupt_on_redb,
    bit_flips
);

fn bit_flips<S: Raw>() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (store, good) = setup::<S>(&rt, dir.path());
    for byte in 0..good.len() {
        for bit in 0..8 {
            let mut damaged = good.clone();
            damaged[byte] ^= 1 << bit;
            check(&rt, &store, damaged, &format!("bit {bit} of byte {byte}"));
        }
    }
}

on_both!(
    foreign_bytes_are_corrupt,
    foreign_bytes_are_corrupt_on_redb,
    foreign_bytes
);

fn foreign_bytes<S: Raw>() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (store, good) = setup::<S>(&rt, dir.path());
    let payload = envelope::open(RecordKind::Run, &good).unwrap().to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "json",
            br#"{"run_id":"victim/\u0000run","status":"running"}"#.to_vec(),
        ),
        ("zip header", b"PK\x03\x04\x14\0\0\0\x08\0".to_vec()),
        ("zeros", vec![0; 64]),
        ("ones", vec![0xff; 64]),
        ("the bare payload", payload.clone()),
        (
            "a checkpoint envelope",
            envelope::seal(RecordKind::Checkpoint, &payload),
        ),
        (
            "a run envelope of garbage",
            envelope::seal(RecordKind::Run, b"\xff\xff\xff\xff\xff"),
        ),
        (
            "a run envelope of nothing",
            envelope::seal(RecordKind::Run, b""),
        ),
        (
            "another run's record",
            agentgraph_checkpoint::encode_run(&RunRecord::new(NEIGHBOUR, RunStatus::Running, 1, 0))
                .unwrap(),
        ),
    ];
    for (what, bytes) in cases {
        check(&rt, &store, bytes, what);
    }
}

/// Rewrites the header's version and the checksum to match, as a newer build would write.
fn with_version(good: &[u8], version: u16) -> Vec<u8> {
    let mut record = good.to_vec();
    record[4..6].copy_from_slice(&version.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&record[..12]);
    h.update(&record[HEADER_LEN..]);
    record[12..16].copy_from_slice(&h.finalize().to_le_bytes());
    record
}

on_both!(
    too_new_versions_are_corrupt_and_say_so,
    too_new_versions_are_corrupt_and_say_so_on_redb,
    too_new_versions
);

fn too_new_versions<S: Raw>() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (store, good) = setup::<S>(&rt, dir.path());
    for version in [FORMAT_VERSION + 1, u16::MAX] {
        let err = check(
            &rt,
            &store,
            with_version(&good, version),
            &format!("version {version}"),
        );
        assert_eq!(err, FormatError::TooNew { found: version });
        // Without a matching checksum it is damage: the header layout is the same in every
        // version, so a reader may fall back past it.
        let mut raw = good.clone();
        raw[4..6].copy_from_slice(&version.to_le_bytes());
        let err = check(
            &rt,
            &store,
            raw,
            &format!("version {version}, old checksum"),
        );
        assert!(matches!(err, FormatError::Checksum { .. }), "{err:?}");
    }
}

on_both!(
    damage_survives_reopening_and_stays_corrupt,
    damage_survives_reopening_and_stays_corrupt_on_redb,
    damage_after_reopening
);

fn damage_after_reopening<S: Raw>() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, good) = setup::<S>(&rt, dir.path());
        store.put_raw(VICTIM, good[..good.len() / 2].to_vec());
        rt.block_on(store.flush()).unwrap();
    }
    let store = S::open_in(dir.path());
    let good = agentgraph_checkpoint::encode_run(&RunRecord::new(VICTIM, RunStatus::Running, 0, 0))
        .unwrap();
    let damaged = store.raw(VICTIM).unwrap();
    check(&rt, &store, damaged, "after reopening");
    // A damaged run can still be deleted, and rewritten.
    let mut batch = WriteBatch::new();
    batch.delete_run(VICTIM);
    rt.block_on(store.commit(batch)).unwrap();
    assert_eq!(rt.block_on(store.get_run(VICTIM)).unwrap(), None);
    store.put_raw(VICTIM, good);
    assert!(rt.block_on(store.get_run(VICTIM)).unwrap().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let rt = rt();
        thread_local! {
            static STORE: (tempfile::TempDir, SledStore) = {
                let dir = tempfile::tempdir().unwrap();
                let store = SledStore::open(dir.path()).unwrap();
                (dir, store)
            };
        }
        STORE.with(|(_, store)| {
            store.put_raw_run_record(VICTIM, bytes);
            let got = rt.block_on(store.get_run(VICTIM));
            prop_assert!(matches!(got, Err(StoreError::Corrupt { .. })), "{got:?}");
            let listed = rt.block_on(store.list_runs(None, 10));
            prop_assert!(matches!(listed, Err(StoreError::Corrupt { .. })), "{listed:?}");
            Ok(())
        })?;
    }
}

#[cfg(feature = "redb")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_on_redb(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let rt = rt();
        thread_local! {
            static STORE: (tempfile::TempDir, agentgraph_checkpoint::RedbStore) = {
                let dir = tempfile::tempdir().unwrap();
                let store = agentgraph_checkpoint::RedbStore::open(dir.path().join("store.redb")).unwrap();
                (dir, store)
            };
        }
        STORE.with(|(_, store)| {
            store.put_raw_run_record(VICTIM, bytes);
            let got = rt.block_on(store.get_run(VICTIM));
            prop_assert!(matches!(got, Err(StoreError::Corrupt { .. })), "{got:?}");
            let listed = rt.block_on(store.list_runs(None, 10));
            prop_assert!(matches!(listed, Err(StoreError::Corrupt { .. })), "{listed:?}");
            Ok(())
        })?;
    }
}
