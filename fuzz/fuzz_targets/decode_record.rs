//! Arbitrary bytes through the record envelope and the decoder: errors, never panics.
//!
//! The input is tried as a whole record of every kind, and also sealed as the payload of a
//! valid envelope, so the fuzzer reaches the bincode decoder without forging checksums, and
//! that envelope compressed, so it reaches the decompressor too.
#![no_main]

use agentgraph_checkpoint::RunRecord;
use agentgraph_checkpoint::envelope::{self, Compression, RecordKind};
use libfuzzer_sys::fuzz_target;

const KINDS: [RecordKind; 5] = [
    RecordKind::Run,
    RecordKind::Checkpoint,
    RecordKind::Blob,
    RecordKind::PendingWrite,
    RecordKind::Event,
];

/// Decodes `bytes` as a `T`; what decodes must encode and decode back to itself.
fn decode_as<T>(kind: RecordKind, bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = envelope::decode::<T>(kind, bytes) {
        let again = envelope::encode(kind, &value).expect("a decoded value encodes");
        let back: T = envelope::decode(kind, &again).expect("an encoded value decodes");
        assert_eq!(back, value);
    }
}

fn decode_all(bytes: &[u8]) {
    decode_as::<RunRecord>(RecordKind::Run, bytes);
    decode_as::<(String, u64)>(RecordKind::Event, bytes);
    decode_as::<Vec<u8>>(RecordKind::Blob, bytes);
    decode_as::<Vec<(u32, Option<String>)>>(RecordKind::PendingWrite, bytes);
    decode_as::<(u64, Vec<i64>, bool)>(RecordKind::Checkpoint, bytes);
}

fuzz_target!(|data: &[u8]| {
    for kind in KINDS {
        if let Ok(payload) = envelope::open(kind, data) {
            let plain = envelope::seal(kind, &payload);
            if data[6] == 1 {
                // A plain record that opens is exactly the envelope of its payload.
                assert_eq!(plain, data);
            } else {
                // A compressed one opens to a payload that compresses and opens back.
                let again = Compression::zstd().threshold(0).compress(plain);
                assert_eq!(*envelope::open(kind, &again).unwrap(), *payload);
            }
        }
    }
    decode_all(data);
    let compression = Compression::zstd().threshold(0);
    for kind in KINDS {
        let sealed = envelope::seal(kind, data);
        decode_all(&compression.compress(sealed.clone()));
        decode_all(&sealed);
    }
});
