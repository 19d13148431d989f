//! `NodeAttributes::decode` on arbitrary bytes (a decrypted attribute record
//! is still attacker-influenced: an older client or a bug may have written it).
//!
//! Properties: never panics; whatever decodes is valid, re-encodes to exactly
//! the input (the encoding is canonical, so one record has one byte string)
//! and decodes back to an equal record.
#![no_main]

use common::crypto::CryptoError;
use common::crypto::attrs::{NodeAttributes, RECORD_VERSION, RECORD_VERSION_DIGESTS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let attrs = match NodeAttributes::decode(data) {
        Ok(attrs) => attrs,
        Err(CryptoError::UnsupportedVersion(v)) => {
            assert_eq!(data.first(), Some(&v));
            assert!(v != RECORD_VERSION && v != RECORD_VERSION_DIGESTS);
            return;
        }
        Err(e) => {
            assert!(
                matches!(e, CryptoError::Malformed { .. }),
                "unexpected error kind: {e:?}"
            );
            return;
        }
    };
    assert_eq!(
        attrs.validate(),
        Ok(()),
        "decode returned an invalid record"
    );
    let encoded = match attrs.encode() {
        Ok(encoded) => encoded,
        Err(e) => panic!("a decoded record does not re-encode: {e:?}"),
    };
    assert_eq!(
        encoded.as_slice(),
        data,
        "non-canonical encoding: re-encoding gives other bytes"
    );
    assert_eq!(
        NodeAttributes::decode(&encoded).as_ref(),
        Ok(&attrs),
        "re-decoding the encoding gives another record"
    );
});
