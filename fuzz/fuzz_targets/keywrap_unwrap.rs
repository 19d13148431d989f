//! Wrapped vault keys as a hostile server serves them.
//!
//! Input: one byte `n`, `n` bytes of account (lossy UTF-8), then the wrapped
//! key. Properties: never panics; `unwrap_vault_key` (fixed key-encryption
//! key) and `unwrap_vault_key_with_recovery` (fixed recovery key) never
//! succeed on forged bytes, with the error the layout calls for; a real wrap
//! (of a vault key taken from the input) round-trips for the account and its
//! canonical form, and fails for the other purpose or another account.
#![no_main]

use common::crypto::CryptoError;
use common::crypto::kdf::KeyEncryptionKey;
use common::crypto::keywrap::{
    WRAPPED_KEY_LEN, canonical_account, unwrap_vault_key, unwrap_vault_key_with_recovery,
    wrap_vault_key, wrap_vault_key_for_recovery,
};
use common::crypto::recovery::RecoveryKey;
use common::crypto::subkeys::VaultKey;
use libfuzzer_sys::fuzz_target;

fn expected_kind(wrapped: &[u8]) -> &'static str {
    match wrapped.first() {
        _ if wrapped.len() != WRAPPED_KEY_LEN => "Malformed",
        Some(&1) => "Authentication",
        _ => "UnsupportedVersion",
    }
}

fn kind(e: &CryptoError) -> &'static str {
    match e {
        CryptoError::Malformed { .. } => "Malformed",
        CryptoError::Authentication => "Authentication",
        CryptoError::UnsupportedVersion(_) => "UnsupportedVersion",
        other => panic!("unexpected error kind: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let kek = KeyEncryptionKey::from_bytes([0x5a; 32]);
    let recovery = RecoveryKey::from_bytes([0xa5; 32]);
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (account, wrapped) = rest.split_at(usize::from(n).min(rest.len()));
    let account = String::from_utf8_lossy(account);

    match unwrap_vault_key(&kek, &account, wrapped) {
        Ok(_) => panic!("unwrap_vault_key accepted forged bytes"),
        Err(e) => assert_eq!(kind(&e), expected_kind(wrapped), "{e:?}"),
    }
    match unwrap_vault_key_with_recovery(&recovery, &account, wrapped) {
        Ok(_) => panic!("unwrap_vault_key_with_recovery accepted forged bytes"),
        Err(e) => assert_eq!(kind(&e), expected_kind(wrapped), "{e:?}"),
    }

    // A real wrap of the first 32 bytes after the account.
    let Some((vk, _)) = wrapped.split_first_chunk::<32>() else {
        return;
    };
    let vk = VaultKey::from_bytes(*vk);
    let real = match wrap_vault_key(&kek, &account, &vk) {
        Ok(w) => w,
        Err(e) => panic!("wrap_vault_key: {e:?}"),
    };
    assert_eq!(real.len(), WRAPPED_KEY_LEN);
    assert_eq!(unwrap_vault_key(&kek, &account, &real).as_ref(), Ok(&vk));
    let canonical = canonical_account(&account);
    assert_eq!(
        unwrap_vault_key(&kek, &canonical, &real).as_ref(),
        Ok(&vk),
        "the canonical form {canonical:?} of {account:?} does not unwrap"
    );
    assert_eq!(
        unwrap_vault_key(&kek, &format!("{canonical}x"), &real),
        Err(CryptoError::Authentication)
    );
    assert_eq!(
        unwrap_vault_key_with_recovery(&recovery, &account, &real),
        Err(CryptoError::Authentication)
    );
    let for_recovery = match wrap_vault_key_for_recovery(&recovery, &account, &vk) {
        Ok(w) => w,
        Err(e) => panic!("wrap_vault_key_for_recovery: {e:?}"),
    };
    assert_eq!(
        unwrap_vault_key_with_recovery(&recovery, &canonical, &for_recovery).as_ref(),
        Ok(&vk)
    );
    assert_eq!(
        unwrap_vault_key(&kek, &account, &for_recovery),
        Err(CryptoError::Authentication)
    );
});
