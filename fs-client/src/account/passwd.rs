//! `vault passwd`: a new password for the same vault key.
//!
//! The current password is checked locally first: its key-encryption key
//! must open the session's cached wrapped vault key (so a typo costs no
//! server round trip and no rate-limit budget). The vault key it yields is
//! re-wrapped under a key-encryption key from the new password with fresh
//! KDF parameters and salt; no file is re-encrypted. The server checks the
//! current auth key, stores the new one and the new wrapped key, and
//! revokes every other session.

use std::io::Write;

use common::api::{Base64, ChangePasswordRequest, ErrorCode};
use common::crypto::kdf::KdfParams;
use common::crypto::keywrap::{unwrap_vault_key, wrap_vault_key};

use super::derive_keys;
use crate::api::AccountApi;
use crate::api::authed::SessionClient;
use crate::config::SessionStore;
use crate::error::Error;
use crate::secrets::{PasswordKind, Prompter};

/// Changes the password of the logged-in account.
pub async fn change_password<A, S, P, W>(
    client: &SessionClient<'_, A, S>,
    prompter: &mut P,
    out: &mut W,
) -> Result<(), Error>
where
    A: AccountApi,
    S: SessionStore,
    P: Prompter,
    W: Write,
{
    let session = client.session().await;
    let email = session.email.clone();
    let current = prompter.password(PasswordKind::Current)?;
    let old_keys = derive_keys(current.clone(), session.kdf.clone()).await?;
    let vault_key = unwrap_vault_key(&old_keys.kek, &email, session.wrapped_vault_key.as_bytes())
        .map_err(|_| Error::WrongCurrentPassword)?;
    let new = prompter.password(PasswordKind::ChooseNew)?;
    if *new == *current {
        return Err(Error::Usage(
            "the new password is the same as the current one".into(),
        ));
    }
    drop(current);

    let new_kdf = KdfParams::generate()?;
    let new_keys = derive_keys(new, new_kdf.clone()).await?;
    let new_wrapped = wrap_vault_key(&new_keys.kek, &email, &vault_key)?;
    // Never send a wrapped key that does not open to the same vault key.
    if unwrap_vault_key(&new_keys.kek, &email, &new_wrapped)? != vault_key {
        return Err(Error::Inconsistent("re-wrapping changed the vault key"));
    }
    drop(vault_key);

    let req = ChangePasswordRequest {
        current_auth_key: Base64(old_keys.auth.expose().to_vec()),
        new_kdf: new_kdf.clone(),
        new_auth_key: Base64(new_keys.auth.expose().to_vec()),
        new_wrapped_vault_key: Base64(new_wrapped.clone()),
    };
    drop((old_keys, new_keys));
    client
        .change_password(&req)
        .await
        .map_err(|e| match e.code() {
            Some(ErrorCode::Forbidden | ErrorCode::Unauthorized) => Error::WrongCurrentPassword,
            _ => e.into(),
        })?;
    client
        .update_session(|s| {
            s.kdf = new_kdf;
            s.wrapped_vault_key = Base64(new_wrapped);
        })
        .await?;
    writeln!(
        out,
        "Password changed. Every other session of {email} was logged out; this one stays."
    )?;
    Ok(())
}
