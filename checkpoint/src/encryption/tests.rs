use proptest::prelude::*;

use super::*;
use crate::envelope::{FormatError, decode, encode, open};

fn keys(id: &str, byte: u8) -> Encryption {
    Encryption::new(StaticKeys::new(Key::new(id, [byte; 32]).unwrap()))
}

const HERE: Place<'static> = Place {
    run: "run-1",
    a: 3,
    b: 0,
};

/// Recomputes the checksum of a record whose bytes were changed on purpose.
fn reseal(record: &mut [u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&record[..12]);
    h.update(&record[HEADER_LEN..]);
    let crc = h.finalize();
    record[12..16].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn sealed_records_open_to_what_was_sealed_and_nothing_else_reads_them() {
    let e = keys("k1", 1);
    let record = encode(RecordKind::Checkpoint, &("state", 42u64)).unwrap();
    let sealed = e.seal(RecordKind::Checkpoint, &HERE, &record).unwrap();
    assert_eq!(sealed[6], Codec::Encrypted as u8);
    assert_eq!(
        sealed.len(),
        record.len() + HEADER_LEN + 1 + 2 + CHECK_LEN + NONCE_LEN + TAG_LEN
    );
    // The plain bytes appear nowhere in it.
    assert!(!sealed.windows(5).any(|w| w == b"state"));
    assert_eq!(
        e.open(RecordKind::Checkpoint, &HERE, sealed.clone())
            .unwrap(),
        record
    );
    // Without the key: the envelope says which key.
    assert_eq!(
        open(RecordKind::Checkpoint, &sealed),
        Err(FormatError::Encrypted {
            key_id: "k1".into()
        })
    );
    assert!(matches!(
        decode::<(String, u64)>(RecordKind::Checkpoint, &sealed),
        Err(FormatError::Encrypted { .. })
    ));
    // Random nonces: the same record seals differently each time.
    assert_ne!(
        sealed,
        e.seal(RecordKind::Checkpoint, &HERE, &record).unwrap()
    );
    // Plain records and damage pass through, for the reader to report.
    assert_eq!(
        e.open(RecordKind::Checkpoint, &HERE, record.clone())
            .unwrap(),
        record
    );
    let cut = sealed[..sealed.len() - 1].to_vec();
    assert_eq!(
        e.open(RecordKind::Checkpoint, &HERE, cut.clone()).unwrap(),
        cut
    );
}

#[test]
fn missing_wrong_and_rotated_keys() {
    let record = encode(RecordKind::Event, &"event").unwrap();
    let sealed = keys("k1", 1)
        .seal(RecordKind::Event, &HERE, &record)
        .unwrap();
    assert_eq!(
        keys("k2", 1).open(RecordKind::Event, &HERE, sealed.clone()),
        Err(EncryptionError::MissingKey {
            key_id: "k1".into()
        })
    );
    assert_eq!(
        keys("k1", 2).open(RecordKind::Event, &HERE, sealed.clone()),
        Err(EncryptionError::WrongKey {
            key_id: "k1".into()
        })
    );
    let rotated = Encryption::new(
        StaticKeys::new(Key::new("k1", [1; 32]).unwrap()).rotate(Key::new("k2", [2; 32]).unwrap()),
    );
    assert_eq!(
        rotated
            .open(RecordKind::Event, &HERE, sealed.clone())
            .unwrap(),
        record
    );
    let new = rotated.seal(RecordKind::Event, &HERE, &record).unwrap();
    assert_eq!(
        open(RecordKind::Event, &new),
        Err(FormatError::Encrypted {
            key_id: "k2".into()
        })
    );
    // Errors name key ids, never keys.
    let e = keys("k1", 0xab)
        .open(
            RecordKind::Event,
            &HERE,
            keys("k1", 0xcd)
                .seal(RecordKind::Event, &HERE, &record)
                .unwrap(),
        )
        .unwrap_err();
    assert!(!format!("{e} {e:?}").to_lowercase().contains("abab"));
}

#[test]
fn a_record_opens_only_where_it_was_sealed() {
    let e = keys("k1", 1);
    let record = encode(RecordKind::Blob, &vec![1u8; 100]).unwrap();
    let sealed = e.seal(RecordKind::Blob, &HERE, &record).unwrap();
    let tampered = |r| Err(EncryptionError::Tampered { key_id: r });
    for place in [
        Place {
            run: "run-2",
            ..HERE
        },
        Place { a: 4, ..HERE },
        Place { b: 1, ..HERE },
    ] {
        assert_eq!(
            e.open(RecordKind::Blob, &place, sealed.clone()),
            tampered("k1".into())
        );
    }
    // Relabelled as another kind (checksum recomputed): tampered too.
    let mut relabelled = sealed.clone();
    relabelled[7] = RecordKind::Event as u8;
    reseal(&mut relabelled);
    assert_eq!(
        e.open(RecordKind::Event, &HERE, relabelled),
        tampered("k1".into())
    );
}

#[test]
fn malformed_payloads_are_typed_errors() {
    let e = keys("k1", 1);
    for payload in [&b""[..], b"\x05k1", b"\x02k1short"] {
        let mut record = crate::envelope::seal(RecordKind::Blob, payload);
        record[6] = Codec::Encrypted as u8;
        reseal(&mut record);
        assert!(matches!(
            e.open(RecordKind::Blob, &HERE, record.clone()),
            Err(EncryptionError::Malformed(_))
        ));
    }
}

#[test]
fn bad_keys_and_lists_are_refused_without_showing_them() {
    for id in ["", "a b", "é", &"x".repeat(65), "k=1"] {
        assert!(matches!(
            Key::new(id, [0; 32]),
            Err(EncryptionError::InvalidKeyId { .. })
        ));
    }
    for text in ["", "00", &"g".repeat(64), &"a".repeat(63), "AAAA"] {
        let e = Key::parse("k", text).unwrap_err();
        assert!(matches!(e, EncryptionError::InvalidKey { .. }), "{text}");
    }
    let secret = "5".repeat(64);
    let e = StaticKeys::parse(&format!("k1={secret},k2=nope"), "a list").unwrap_err();
    assert!(!e.to_string().contains(&secret));
    // Hex, base64 and URL-safe base64 of the same key.
    let hex = "fbff".repeat(16);
    let k = Key::parse("k", &hex).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode([0xfb, 0xff].repeat(16));
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb, 0xff].repeat(16));
    assert!(Key::parse("k", &b64).unwrap().same_secret(&k));
    assert!(Key::parse("k", &url).unwrap().same_secret(&k));
    let list = StaticKeys::parse(&format!("k2={b64}\n k1={hex}"), "a list").unwrap();
    assert_eq!(list.ids().collect::<Vec<_>>(), ["k2", "k1"]);
}

#[cfg(feature = "compression")]
#[test]
fn compressed_then_encrypted() {
    use crate::envelope::Compression;
    let value = "all work and no play ".repeat(1000);
    let plain = encode(RecordKind::Blob, &value).unwrap();
    let packed = Compression::zstd().compress(plain.clone());
    assert!(packed.len() < plain.len() / 10);
    let e = keys("k1", 1);
    let sealed = e.seal(RecordKind::Blob, &HERE, &packed).unwrap();
    assert!(sealed.len() < plain.len() / 10);
    let opened = e.open(RecordKind::Blob, &HERE, sealed).unwrap();
    assert_eq!(decode::<String>(RecordKind::Blob, &opened).unwrap(), value);
}

use base64::Engine as _;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any byte of an encrypted record changed: the checksum says so (the reader's damage);
    /// changed and resealed: a typed error, never a panic, never the record.
    #[test]
    fn changed_bytes_are_typed_errors(
        len in 0usize..2_000,
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let e = keys("key-1", 7);
        let record = encode(RecordKind::PendingWrite, &vec![9u8; len]).unwrap();
        let sealed = e.seal(RecordKind::PendingWrite, &HERE, &record).unwrap();
        let i = at.index(sealed.len());
        let mut damaged = sealed.clone();
        damaged[i] ^= flip;
        let passed = e.open(RecordKind::PendingWrite, &HERE, damaged.clone());
        prop_assert!(passed.as_ref().is_ok_and(|b| *b == damaged) || passed.is_err());
        if i >= HEADER_LEN {
            reseal(&mut damaged);
            match e.open(RecordKind::PendingWrite, &HERE, damaged) {
                Err(EncryptionError::Tampered { .. } | EncryptionError::WrongKey { .. }
                    | EncryptionError::MissingKey { .. } | EncryptionError::Malformed(_)) => {}
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}

/// Where the parts of a sealed record with key id `k1` are: (nonce, ciphertext, tag) ranges.
fn parts(
    sealed: &[u8],
) -> (
    std::ops::Range<usize>,
    std::ops::Range<usize>,
    std::ops::Range<usize>,
) {
    let nonce = HEADER_LEN + 1 + 2 + CHECK_LEN;
    let text = nonce + NONCE_LEN;
    let tag = sealed.len() - TAG_LEN;
    (nonce..text, text..tag, tag..sealed.len())
}

#[test]
fn records_are_standard_xchacha20_poly1305_both_ways() {
    use chacha20poly1305::{AeadInOut as _, KeyInit as _, XChaCha20Poly1305};
    let secret = [7u8; 32];
    let e = Encryption::new(StaticKeys::new(Key::new("k1", secret).unwrap()));
    let reference = XChaCha20Poly1305::new(&secret.into());
    let record = encode(RecordKind::Blob, &("a field value", 7u64)).unwrap();
    let aad = HERE.aad(RecordKind::Blob);

    // Ours, opened by RustCrypto's XChaCha20-Poly1305.
    let sealed = e.seal(RecordKind::Blob, &HERE, &record).unwrap();
    let (nonce, text, tag) = parts(&sealed);
    let mut body = sealed[text].to_vec();
    reference
        .decrypt_inout_detached(
            &sealed[nonce].try_into().unwrap(),
            &aad,
            (&mut body[..]).into(),
            &sealed[tag].try_into().unwrap(),
        )
        .expect("the reference opens our record");
    assert_eq!(body, record);

    // A record sealed by the reference (as earlier builds wrote them), opened by ours.
    let mut theirs = sealed.clone();
    let (nonce, text, tag) = parts(&theirs);
    theirs[nonce.clone()].copy_from_slice(&[9; NONCE_LEN]);
    theirs[text.clone()].copy_from_slice(&record);
    let computed = reference
        .encrypt_inout_detached(
            &theirs[nonce].try_into().unwrap(),
            &aad,
            (&mut theirs[text]).into(),
        )
        .unwrap();
    theirs[tag].copy_from_slice(&computed);
    reseal(&mut theirs);
    assert_eq!(e.open(RecordKind::Blob, &HERE, theirs).unwrap(), record);
}

#[test]
fn a_batch_shares_a_random_nonce_prefix_and_never_repeats_a_nonce() {
    let e = keys("k1", 1);
    let record = encode(RecordKind::Event, &"an event").unwrap();
    let batch = |n: u64| {
        let mut sealer = e.sealer();
        (0..n)
            .map(|seq| {
                let place = Place {
                    run: "run-1",
                    a: seq,
                    b: 0,
                };
                let sealed = sealer.seal(RecordKind::Event, &place, &record).unwrap();
                assert_eq!(
                    e.open(RecordKind::Event, &place, sealed.clone()).unwrap(),
                    record
                );
                let (nonce, ..) = parts(&sealed);
                <[u8; NONCE_LEN]>::try_from(&sealed[nonce]).unwrap()
            })
            .collect::<Vec<_>>()
    };
    let first = batch(100);
    let second = batch(100);
    let mut all: Vec<_> = first.iter().chain(&second).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "a nonce repeated");
    // One prefix (one HChaCha20 subkey) per batch, another for the next batch.
    assert!(first.iter().all(|n| n[..16] == first[0][..16]));
    assert!(second.iter().all(|n| n[..16] == second[0][..16]));
    assert_ne!(first[0][..16], second[0][..16]);
    // The last 8 bytes count up from a random start, wrapping.
    let count = |n: &[u8; NONCE_LEN]| u64::from_le_bytes(n[16..].try_into().unwrap());
    for (i, n) in first.iter().enumerate() {
        assert_eq!(count(n), count(&first[0]).wrapping_add(i as u64));
    }
}
