//! `vault register`: a new account, its keys, and the e-mail check.
//!
//! The client makes every key: KDF parameters with a fresh salt, the
//! password's auth key and key-encryption key, a random vault key wrapped by
//! the key-encryption key, and a random recovery key that wraps the vault
//! key a second time. The server gets the auth key and the two wrapped
//! copies. The recovery key is shown once, as soon as the server has
//! accepted the registration (from then on it holds a copy only that key
//! opens), and then the 6-digit code from the verification mail is asked for.

use std::io::Write;

use common::api::{Base64, RegisterRequest, VerifyEmailRequest};
use common::crypto::kdf::KdfParams;
use common::crypto::keywrap::{canonical_account, wrap_vault_key, wrap_vault_key_for_recovery};
use common::crypto::recovery::RecoveryKey;
use common::crypto::subkeys::VaultKey;

use super::{derive_keys, with_code};
use crate::api::AccountApi;
use crate::error::Error;
use crate::secrets::{PasswordKind, Prompter};

/// Registers `email` and verifies it with the mailed code.
pub async fn register<A, P, W>(
    api: &A,
    prompter: &mut P,
    out: &mut W,
    email: &str,
) -> Result<(), Error>
where
    A: AccountApi,
    P: Prompter,
    W: Write,
{
    let email = canonical_account(email);
    if email.is_empty() || !email.contains('@') {
        return Err(Error::Usage(format!("`{email}` is not an e-mail address")));
    }
    let password = prompter.password(PasswordKind::Choose)?;
    let kdf = KdfParams::generate()?;
    let keys = derive_keys(password, kdf.clone()).await?;
    let vault_key = VaultKey::generate()?;
    let recovery = RecoveryKey::generate()?;
    let req = RegisterRequest {
        email: email.clone(),
        kdf,
        auth_key: Base64(keys.auth.expose().to_vec()),
        wrapped_vault_key: Base64(wrap_vault_key(&keys.kek, &email, &vault_key)?),
        recovery_wrapped_vault_key: Base64(wrap_vault_key_for_recovery(
            &recovery, &email, &vault_key,
        )?),
    };
    drop((keys, vault_key));
    api.register(&req).await?;

    let shown = recovery.to_display_string()?;
    writeln!(out, "Registration accepted for {email}.")?;
    writeln!(out)?;
    writeln!(out, "RECOVERY KEY (shown only this once):")?;
    writeln!(out)?;
    writeln!(out, "    {}", shown.as_str())?;
    writeln!(out)?;
    writeln!(
        out,
        "Write it down and keep it somewhere safe, away from this computer. It is the only"
    )?;
    writeln!(
        out,
        "way back into your files if you forget your password: nobody, not even the server's"
    )?;
    writeln!(out, "operator, can recover them without it.")?;
    writeln!(out)?;
    writeln!(out, "A 6-digit code was sent to {email}.")?;
    out.flush()?;
    drop(shown);

    confirm(api, prompter, out, &email).await
}

/// Verifies `email` with the code from the verification mail (also the way
/// back into an interrupted `vault register`).
pub async fn verify_email<A, P, W>(
    api: &A,
    prompter: &mut P,
    out: &mut W,
    email: &str,
) -> Result<(), Error>
where
    A: AccountApi,
    P: Prompter,
    W: Write,
{
    confirm(api, prompter, out, &canonical_account(email)).await
}

async fn confirm<A, P, W>(api: &A, prompter: &mut P, out: &mut W, email: &str) -> Result<(), Error>
where
    A: AccountApi,
    P: Prompter,
    W: Write,
{
    with_code(prompter, "Code from the verification mail: ", |code| {
        let req = VerifyEmailRequest {
            email: email.to_owned(),
            code: code.into(),
        };
        async move { api.verify_email(&req).await.map_err(Error::from) }
    })
    .await?;
    writeln!(
        out,
        "E-mail address verified. Log in with `vault login --email {email}`."
    )?;
    Ok(())
}
