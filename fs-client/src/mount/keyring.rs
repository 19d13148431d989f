//! The vault key in the kernel session keyring, between `vault login` and
//! `vault mount`.
//!
//! After a successful login the 32-byte vault key is stored as a `user` key
//! named `securevault:<server>:<account id>` in the session keyring, with a
//! timeout (`vault login --keep-key SECONDS`, default one hour), so a mount
//! soon after login needs no second password prompt. `vault logout` revokes
//! it. The kernel keeps it in unswappable memory, readable by processes of
//! this user that possess the session keyring (like ssh-agent, the same
//! trust as the user's own processes), and drops it when the timeout ends.
//! It is never written to disk.
//!
//! The keyring is a convenience: where it is unavailable (the syscalls are
//! filtered in many containers) every function here fails quietly and the
//! caller asks for the password instead. The session keyring is looked up
//! without creating one, so a process without a session keyring gets the
//! user-session keyring, which outlives the process (a freshly created
//! session keyring would vanish with it).

use linux_keyutils::{KeyRing, KeyRingIdentifier};
use zeroize::Zeroizing;

use common::crypto::subkeys::VaultKey;

/// Default lifetime of the stored key, in seconds.
pub const DEFAULT_KEEP_SECONDS: u64 = 3600;
const KEY_LEN: usize = 32;

/// The key's description in the keyring.
pub fn description(server: &str, account_id: &str) -> String {
    format!("securevault:{server}:{account_id}")
}

fn session_keyring() -> Option<KeyRing> {
    KeyRing::from_special_id(KeyRingIdentifier::Session, false)
        .map_err(|e| tracing::debug!(error = ?e, "no session keyring"))
        .ok()
}

/// True when the session keyring can be used at all.
pub fn available() -> bool {
    session_keyring().is_some()
}

/// Stores `key` for `seconds` (replacing an older one). Returns whether it
/// was stored.
pub fn store(server: &str, account_id: &str, key: &VaultKey, seconds: u64) -> bool {
    let Some(ring) = session_keyring() else {
        return false;
    };
    let name = description(server, account_id);
    let timeout = usize::try_from(seconds).unwrap_or(usize::MAX);
    match ring.add_key(&name, key.expose()) {
        Ok(k) => {
            if let Err(e) = k.set_timeout(timeout) {
                // A key that would not expire is worse than none.
                tracing::debug!(error = ?e, "cannot set the key's timeout; removing it");
                let _ = k.invalidate().or_else(|_| k.revoke());
                return false;
            }
            true
        }
        Err(e) => {
            tracing::debug!(error = ?e, "cannot store the vault key in the keyring");
            false
        }
    }
}

/// The stored key, if there is one and it is intact.
pub fn load(server: &str, account_id: &str) -> Option<VaultKey> {
    let ring = session_keyring()?;
    let key = ring.search(&description(server, account_id)).ok()?;
    let mut buf = Zeroizing::new([0u8; KEY_LEN]);
    match key.read(&mut *buf) {
        Ok(KEY_LEN) => Some(VaultKey::from_bytes(*buf)),
        Ok(n) => {
            tracing::debug!(len = n, "ignoring a keyring entry of the wrong size");
            None
        }
        Err(e) => {
            tracing::debug!(error = ?e, "cannot read the keyring entry");
            None
        }
    }
}

/// Revokes the stored key, if any. Returns whether one was removed.
pub fn revoke(server: &str, account_id: &str) -> bool {
    let Some(ring) = session_keyring() else {
        return false;
    };
    match ring.search(&description(server, account_id)) {
        Ok(key) => {
            let removed = key.invalidate().or_else(|_| key.revoke()).is_ok();
            let _ = ring.unlink_key(key);
            removed
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_names_server_and_account() {
        assert_eq!(
            description("https://v.example", "acc-1"),
            "securevault:https://v.example:acc-1"
        );
    }

    /// Round trip where the machine has a keyring; silently nothing where
    /// it does not (the fallback is the password prompt).
    #[test]
    fn keys_round_trip_through_the_keyring_when_there_is_one() {
        let server = "https://keyring-test.invalid";
        let account = format!("test-{}", std::process::id());
        let key = VaultKey::from_bytes([0x5a; 32]);
        if !store(server, &account, &key, 60) {
            assert!(load(server, &account).is_none() || available());
            return;
        }
        assert_eq!(load(server, &account), Some(key));
        assert!(revoke(server, &account));
        assert!(load(server, &account).is_none());
        assert!(!revoke(server, &account));
    }
}
