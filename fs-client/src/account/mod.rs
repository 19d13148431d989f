//! The account flows behind `vault register`, `login`, `passwd` and `totp`:
//! the steps of the protocol in order, with the cryptography of the client
//! side. Each flow is generic over the API, the session store, the prompter
//! and the output, so it runs unchanged against the fake in unit tests.
//!
//! What the server receives: the e-mail address, KDF parameters, the auth
//! key, wrapped vault keys and one-time codes; never the password, the
//! key-encryption key, the vault key or the recovery key.

mod login;
mod passwd;
mod register;
mod totp;

pub use login::{LoginOptions, login};
pub use passwd::change_password;
pub use register::{register, verify_email};
pub use totp::{totp_disable, totp_enable};

use common::crypto::kdf::{AccountKeys, KdfParams, derive_account_keys};

use crate::error::Error;
use crate::secrets::{Password, Prompter};

/// How many times a person may retype a wrong code before the command gives
/// up (a script gets one try: it has nothing else to say).
pub const CODE_TRIES: u32 = 3;

/// Runs Argon2id off the async threads (about 0.3 s and 64 MiB with the
/// default parameters). Bounds are checked first: the parameters may come
/// from a hostile server.
pub async fn derive_keys(password: Password, params: KdfParams) -> Result<AccountKeys, Error> {
    params.validate().map_err(Error::UnsafeKdf)?;
    tokio::task::spawn_blocking(move || derive_account_keys(password.as_bytes(), &params))
        .await
        .map_err(|e| Error::Task(Box::new(e)))?
        .map_err(Error::Crypto)
}

/// Asks for a code and runs `submit` with it; a person may retry a wrong
/// code up to [`CODE_TRIES`] times.
pub(crate) async fn with_code<P, T, F, Fut>(
    prompter: &mut P,
    prompt: &str,
    mut submit: F,
) -> Result<T, Error>
where
    P: Prompter,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let tries = if prompter.interactive() {
        CODE_TRIES
    } else {
        1
    };
    let mut attempt = 1;
    loop {
        let code = prompter.code(prompt)?;
        match submit(code).await {
            Err(Error::WrongCode) if attempt < tries => {
                eprintln!("That code was not accepted; try again.");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A label for the session list: this machine's host name.
pub fn device_label() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let host = host.trim();
    (!host.is_empty()).then(|| format!("vault CLI on {host}"))
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
