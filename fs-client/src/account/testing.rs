//! Helpers for flow tests: a scripted prompter whose codes are read from the
//! fake server's "mail" when asked for, and accounts set up in one call.

use std::collections::VecDeque;

use super::{LoginOptions, login, register};
use crate::api::fake::FakeApi;
use crate::config::{MemoryStore, Session};
use crate::secrets::{Password, PasswordKind, Prompter, SecretError, normalise_code};
use crate::server_url::ServerUrl;

/// Answers passwords from a list and codes from a closure, like a script on
/// standard input that somehow reads the mail in time.
pub(crate) struct Scripted<'a> {
    passwords: VecDeque<String>,
    codes: Box<dyn FnMut() -> String + 'a>,
    /// The password kinds and code prompts asked, in order.
    pub asked: Vec<String>,
}

impl<'a> Scripted<'a> {
    pub(crate) fn new(passwords: &[&str], codes: impl FnMut() -> String + 'a) -> Self {
        Self {
            passwords: passwords.iter().map(|p| (*p).to_owned()).collect(),
            codes: Box::new(codes),
            asked: Vec::new(),
        }
    }

    /// Codes always read from the fake's outbox for `email`.
    pub(crate) fn mail(fake: &'a FakeApi, email: &'a str, passwords: &[&str]) -> Self {
        Self::new(passwords, move || fake.last_code(email).unwrap_or_default())
    }
}

impl Prompter for Scripted<'_> {
    fn password(&mut self, kind: PasswordKind) -> Result<Password, SecretError> {
        self.asked.push(format!("{kind:?}"));
        self.passwords
            .pop_front()
            .map(Password::new)
            .ok_or(SecretError::EndOfInput("password"))
    }

    fn code(&mut self, prompt: &str) -> Result<String, SecretError> {
        self.asked.push(prompt.to_owned());
        normalise_code(&(self.codes)())
    }

    fn text(&mut self, _prompt: &str, missing: &'static str) -> Result<String, SecretError> {
        Err(SecretError::NotInteractive(missing))
    }

    fn interactive(&self) -> bool {
        false
    }
}

pub(crate) const EMAIL: &str = "alice@example.org";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) fn server() -> ServerUrl {
    ServerUrl::parse("https://vault.example.org").unwrap_or_else(|e| unreachable!("{e}"))
}

/// Registers and verifies [`EMAIL`] with [`PASSWORD`]; returns the output.
pub(crate) async fn registered(fake: &FakeApi) -> String {
    let mut p = Scripted::mail(fake, EMAIL, &[PASSWORD]);
    let mut out = Vec::new();
    register(fake, &mut p, &mut out, EMAIL)
        .await
        .unwrap_or_else(|e| unreachable!("register: {e}"));
    String::from_utf8(out).unwrap_or_default()
}

/// Registers, then logs in; returns the saved session.
pub(crate) async fn logged_in(fake: &FakeApi, store: &MemoryStore) -> Session {
    registered(fake).await;
    login_again(fake, store).await
}

/// Logs the registered account in once more (another device).
pub(crate) async fn login_again(fake: &FakeApi, store: &MemoryStore) -> Session {
    let mut p = Scripted::mail(fake, EMAIL, &[PASSWORD]);
    login(
        fake,
        store,
        &mut p,
        &mut Vec::new(),
        &server(),
        EMAIL,
        &LoginOptions::default(),
    )
    .await
    .unwrap_or_else(|e| unreachable!("login: {e}"))
}
