//! `vault login`: pre-login, password, second factor, and the key check.
//!
//! 1. Pre-login gives the account's KDF parameters, checked against the safe
//!    bounds (a server asking for less is attempting a downgrade).
//! 2. The password is stretched locally; only the auth key is sent, and the
//!    answer is a ticket naming the second factor.
//! 3. The code (e-mailed, or from the authenticator app; `--email-code`
//!    asks for a mailed one instead) is exchanged for tokens and the wrapped
//!    vault key.
//! 4. The wrapped vault key must open with the key-encryption key from this
//!    password: a server that answers with anything else is caught here,
//!    before a session is saved.

use std::io::Write;

use common::api::{
    Base64, LoginRequest, PreloginRequest, ResendCodeRequest, SecondFactor, VerifyLoginRequest,
};
use common::crypto::keywrap::{canonical_account, unwrap_vault_key};

use super::{derive_keys, with_code};
use crate::api::AccountApi;
use crate::config::{RefreshToken, Session, SessionStore};
use crate::error::{Error, password_step};
use crate::secrets::{PasswordKind, Prompter};
use crate::server_url::ServerUrl;

/// Choices of `vault login`.
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// For TOTP accounts: ask for an e-mailed code instead.
    pub email_code: bool,
    /// The label for the session list.
    pub device: Option<String>,
}

/// Logs `email` in at `server` and saves the session in `store`.
pub async fn login<A, S, P, W>(
    api: &A,
    store: &S,
    prompter: &mut P,
    out: &mut W,
    server: &ServerUrl,
    email: &str,
    options: &LoginOptions,
) -> Result<Session, Error>
where
    A: AccountApi,
    S: SessionStore,
    P: Prompter,
    W: Write,
{
    let email = canonical_account(email);
    let prelogin = api
        .prelogin(&PreloginRequest {
            email: email.clone(),
        })
        .await?;
    let kdf = prelogin.kdf;
    kdf.validate().map_err(Error::UnsafeKdf)?;
    let password = prompter.password(PasswordKind::Login)?;
    let keys = derive_keys(password, kdf.clone()).await?;

    let ticket = api
        .login(&LoginRequest {
            email: email.clone(),
            auth_key: Base64(keys.auth.expose().to_vec()),
        })
        .await
        .map_err(password_step)?;

    let prompt = match (ticket.second_factor, options.email_code) {
        (SecondFactor::Email, _) => format!("Code from the e-mail sent to {email}: "),
        (SecondFactor::Totp, false) => "Code from your authenticator app: ".to_owned(),
        (SecondFactor::Totp, true) => {
            api.resend_code(&ResendCodeRequest {
                ticket: ticket.ticket.clone(),
            })
            .await?;
            format!("Code from the e-mail sent to {email}: ")
        }
    };
    if ticket.second_factor == SecondFactor::Email && options.email_code {
        tracing::debug!("--email-code ignored: this account gets e-mailed codes anyway");
    }

    let response = with_code(prompter, &prompt, |code| {
        let req = VerifyLoginRequest {
            ticket: ticket.ticket.clone(),
            code: code.into(),
            device: options.device.clone(),
        };
        async move { api.verify_login(&req).await.map_err(Error::from) }
    })
    .await?;

    if canonical_account(&response.account.email) != email {
        return Err(Error::Inconsistent("the session is for another account"));
    }
    if response.kdf != kdf {
        return Err(Error::Inconsistent(
            "the key-derivation parameters changed during login",
        ));
    }
    // The proof that this server holds this account's key: it must open.
    let vault_key = unwrap_vault_key(&keys.kek, &email, response.wrapped_vault_key.as_bytes())
        .map_err(Error::KeyMismatch)?;
    drop((vault_key, keys));

    let session = Session::new(
        server.to_string(),
        email.clone(),
        response.account.id.clone(),
        response.session_id.clone(),
        RefreshToken::new(response.tokens.refresh_token.expose().to_owned()),
        kdf,
        Base64(response.wrapped_vault_key.as_bytes().to_vec()),
    );
    store.save(&session)?;
    writeln!(out, "Logged in to {server} as {email}.")?;
    Ok(session)
}
