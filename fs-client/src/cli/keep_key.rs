//! `vault login --keep-key SECONDS`: after a successful login, the vault key
//! goes into the kernel session keyring (see [`crate::mount::keyring`]) so
//! that `vault mount` soon after needs no second password prompt.
//!
//! The login flow does not hand out the key, so the login password is
//! remembered on its way through the prompter ([`Remembering`], a
//! zeroizing copy that lives only until the key is stored) and the key is
//! opened once more from the session's wrapped key (one more Argon2id run,
//! about 0.3 s). Where the keyring is unavailable nothing is remembered and
//! nothing is derived. Failures are silent: the mount will ask instead.

use common::api::AccountKeys;

use crate::config::Session;
use crate::mount::{keyring, unlock};
use crate::secrets::{Password, PasswordKind, Prompter, SecretError};

/// A prompter that keeps a copy of the login password it passes on.
#[derive(Debug)]
pub struct Remembering<'a, P> {
    inner: &'a mut P,
    keep: bool,
    password: Option<Password>,
}

impl<'a, P: Prompter> Remembering<'a, P> {
    /// Wraps `inner`; remembers only when `keep` is true.
    pub fn new(inner: &'a mut P, keep: bool) -> Self {
        Self {
            inner,
            keep,
            password: None,
        }
    }

    /// The login password, if it was asked and is to be kept.
    pub fn take_password(&mut self) -> Option<Password> {
        self.password.take()
    }
}

impl<P: Prompter> Prompter for Remembering<'_, P> {
    fn password(&mut self, kind: PasswordKind) -> Result<Password, SecretError> {
        let password = self.inner.password(kind)?;
        if self.keep && kind == PasswordKind::Login {
            self.password = Some(password.clone());
        }
        Ok(password)
    }

    fn code(&mut self, prompt: &str) -> Result<String, SecretError> {
        self.inner.code(prompt)
    }

    fn text(&mut self, prompt: &str, missing: &'static str) -> Result<String, SecretError> {
        self.inner.text(prompt, missing)
    }

    fn interactive(&self) -> bool {
        self.inner.interactive()
    }
}

/// Stores the vault key of `session` for `seconds` (best effort), or, with
/// 0 seconds, removes a key an earlier login left.
pub async fn keep_vault_key(session: &Session, password: Option<Password>, seconds: u64) {
    if seconds == 0 {
        keyring::revoke(&session.server, &session.account_id);
        return;
    }
    let Some(password) = password else {
        return;
    };
    let keys = AccountKeys {
        kdf: session.kdf.clone(),
        wrapped_vault_key: session.wrapped_vault_key.clone(),
    };
    match unlock::unwrap_with_password(password, &session.email, &keys).await {
        Ok(key) => {
            if keyring::store(&session.server, &session.account_id, &key, seconds) {
                tracing::debug!(seconds, "vault key kept in the session keyring");
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot open the vault key to keep it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secrets;
    use std::io::Cursor;
    use zeroize::Zeroizing;

    #[test]
    fn only_the_login_password_is_remembered_and_only_when_asked() {
        let mut s = Secrets::from_lines(Cursor::new(b"pw one\n123456\n".to_vec()), None, None);
        let mut r = Remembering::new(&mut s, true);
        assert_eq!(&*r.password(PasswordKind::Login).unwrap(), "pw one");
        assert_eq!(r.code("Code: ").unwrap(), "123456");
        assert!(!r.interactive());
        assert_eq!(
            r.take_password().as_deref().map(String::as_str),
            Some("pw one")
        );
        assert!(r.take_password().is_none());

        let mut s = Secrets::from_lines(
            Cursor::new(Vec::new()),
            Some(Zeroizing::new("given".into())),
            None,
        );
        let mut r = Remembering::new(&mut s, false);
        assert_eq!(&*r.password(PasswordKind::Login).unwrap(), "given");
        assert!(r.take_password().is_none());
    }
}
