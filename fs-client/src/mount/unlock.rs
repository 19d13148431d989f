//! Getting the vault key for a mount: from the kernel keyring when `vault
//! login` left it there, else from the password, asked exactly as `vault
//! login` asks it (`VAULT_PASSWORD`, `--password-file`, the terminal, or
//! the first line of standard input).
//!
//! The password opens the wrapped key the server holds now (`GET
//! /v1/account/keys`, so a password changed on another device works), with
//! the KDF parameters checked against the safe bounds first. A key that
//! does not open means a wrong password. The password is zeroized as soon
//! as the key-encryption key is derived.

use std::path::Path;

use common::api::AccountKeys;
use common::crypto::keywrap::{canonical_account, unwrap_vault_key};
use common::crypto::subkeys::VaultKey;

use super::keyring;
use crate::account::derive_keys;
use crate::config::Session;
use crate::error::Error;
use crate::secrets::{PASSWORD_ENV, Password, PasswordKind, Prompter, Secrets, given_password};

/// Opens the wrapped vault key with `password`.
pub async fn unwrap_with_password(
    password: Password,
    email: &str,
    keys: &AccountKeys,
) -> Result<VaultKey, Error> {
    let derived = derive_keys(password, keys.kdf.clone()).await?;
    unwrap_vault_key(
        &derived.kek,
        &canonical_account(email),
        keys.wrapped_vault_key.as_bytes(),
    )
    .map_err(|_| Error::WrongCurrentPassword)
}

/// The vault key: the keyring's, else one opened with the password.
pub async fn vault_key(
    session: &Session,
    keys: &AccountKeys,
    password_file: Option<&Path>,
) -> Result<VaultKey, Error> {
    if let Some(key) = keyring::load(&session.server, &session.account_id) {
        tracing::debug!("vault key taken from the session keyring");
        return Ok(key);
    }
    let given = given_password(password_file, PASSWORD_ENV)?;
    let mut secrets = Secrets::from_stdin(given, None);
    let password = secrets.password(PasswordKind::Login)?;
    unwrap_with_password(password, &session.email, keys).await
}
