//! Storing and checking auth keys: Argon2id PHC strings, computed on the
//! blocking pool so the async workers keep serving.
//!
//! The auth key is already a 256-bit value derived from the password with
//! Argon2id on the client, so the server's hash only has to make a stolen
//! database useless for logging in; it uses OWASP's minimum Argon2id
//! parameters (19 MiB, t=2, p=1). An unknown account is checked against a
//! dummy hash with the same parameters, so the answer takes as long.
//!
//! At most one hash per CPU runs at once ([`slots`]); the rest wait their
//! turn. Without the bound, 50 clients logging in together held 50 × 19 MiB
//! at once and the allocator kept it: the server grew to 1.8 GB.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::ApiError;

fn argon() -> Result<Argon2<'static>, ApiError> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Argon2 computations that may run at once: one per CPU, at most 8.
fn slot_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 8)
}

/// The gate every Argon2 computation passes.
fn slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(slot_count()))
}

async fn slot() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    slots()
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Hashes an auth key into a PHC string.
pub async fn hash_auth_key(auth_key: Vec<u8>) -> Result<String, ApiError> {
    let _slot = slot().await?;
    tokio::task::spawn_blocking(move || {
        argon()?
            .hash_password(&auth_key)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Checks an auth key against a PHC string (or, for `None`, against a dummy
/// hash, always failing, in the same time).
pub async fn verify_auth_key(phc: Option<String>, auth_key: Vec<u8>) -> Result<bool, ApiError> {
    let _slot = slot().await?;
    tokio::task::spawn_blocking(move || {
        let a = argon()?;
        let (phc, real) = match phc {
            Some(p) => (p, true),
            None => (dummy_hash()?.to_owned(), false),
        };
        let parsed = PasswordHash::new(&phc).map_err(|e| ApiError::Internal(e.to_string()))?;
        let matches = a.verify_password(&auth_key, &parsed).is_ok();
        Ok(real && matches)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// The dummy hash, computed once: an unknown account then costs exactly one
/// Argon2id verification, like a known one.
fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            // A fixed salt and a key nobody has.
            argon()
                .ok()?
                .hash_password_with_salt(b"securevault: no such account", b"securevault-dummy")
                .map(|h| h.to_string())
                .ok()
        })
        .as_deref()
        .ok_or_else(|| ApiError::Internal("cannot compute the dummy hash".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_wait_for_a_free_slot() {
        let all = u32::try_from(slot_count()).unwrap();
        let held = slots().acquire_many(all).await.unwrap();
        let waiting = tokio::spawn(hash_auth_key(vec![1; 32]));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "a hash ran without a slot");
        drop(held);
        let h = waiting.await.unwrap().unwrap();
        assert!(h.starts_with("$argon2id$"));
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hash_auth_key(vec![7; 32]).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_auth_key(Some(h.clone()), vec![7; 32]).await.unwrap());
        assert!(!verify_auth_key(Some(h), vec![8; 32]).await.unwrap());
        assert!(!verify_auth_key(None, vec![7; 32]).await.unwrap());
        // Not even the dummy's own key passes for an unknown account.
        let dummy_key = b"securevault: no such account".to_vec();
        assert!(!verify_auth_key(None, dummy_key).await.unwrap());
    }
}
