//! `open_attributes` on arbitrary sealed bytes, as a hostile server would
//! serve them.
//!
//! Input: node id (16 bytes), version (8 bytes), then the sealed record.
//! Properties: never panics and never succeeds (the record is an AEAD box
//! under a key the fuzzer does not know); the error is the one the layout
//! calls for. When the sealed part happens to be a valid plaintext record,
//! it is also sealed for real and must open for its own node and version
//! only.
#![no_main]

use std::sync::LazyLock;

use common::NodeId;
use common::crypto::CryptoError;
use common::crypto::SEALED_OVERHEAD;
use common::crypto::attrs::{NodeAttributes, open_attributes, seal_attributes};
use common::crypto::subkeys::{AttributeKey, VaultKey};
use libfuzzer_sys::fuzz_target;

static KEY: LazyLock<AttributeKey> =
    LazyLock::new(|| match VaultKey::from_bytes([0x42; 32]).subkeys() {
        Ok(s) => s.attributes,
        Err(e) => panic!("subkeys: {e:?}"),
    });

fuzz_target!(|data: &[u8]| {
    let Some((node, rest)) = data.split_first_chunk::<16>() else {
        return;
    };
    let Some((version, sealed)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let node = NodeId::from_bytes(*node);
    let version = u64::from_be_bytes(*version);

    match open_attributes(&KEY, node, version, sealed) {
        Ok(attrs) => panic!("open_attributes accepted forged input: {attrs:?}"),
        Err(e) => {
            let expected = match sealed.first() {
                None => "Malformed",
                Some(&1) if sealed.len() < SEALED_OVERHEAD => "Malformed",
                Some(&1) => "Authentication",
                Some(_) => "UnsupportedVersion",
            };
            let got = match e {
                CryptoError::Malformed { .. } => "Malformed",
                CryptoError::Authentication => "Authentication",
                CryptoError::UnsupportedVersion(v) => {
                    assert_eq!(sealed.first(), Some(&v));
                    "UnsupportedVersion"
                }
                other => panic!("unexpected error kind: {other:?}"),
            };
            assert_eq!(
                got,
                expected,
                "wrong error for {} sealed bytes",
                sealed.len()
            );
        }
    }

    // A real record: sealing and opening round-trip, bound to node and version.
    if let Ok(attrs) = NodeAttributes::decode(sealed) {
        let real = match seal_attributes(&KEY, node, version, &attrs) {
            Ok(real) => real,
            Err(e) => panic!("seal_attributes of a decoded record: {e:?}"),
        };
        assert_eq!(real.len(), sealed.len() + SEALED_OVERHEAD);
        assert_eq!(
            open_attributes(&KEY, node, version, &real).as_ref(),
            Ok(&attrs)
        );
        assert_eq!(
            open_attributes(&KEY, node, version.wrapping_add(1), &real),
            Err(CryptoError::Authentication)
        );
        let mut other = *node.as_bytes();
        other[0] ^= 1;
        assert_eq!(
            open_attributes(&KEY, NodeId::from_bytes(other), version, &real),
            Err(CryptoError::Authentication)
        );
    }
});
