//! Sending the server's mails (verification and login codes, notices)
//! behind one trait, [`Mailer`]: SMTP through lettre's async transport, an
//! `.eml` outbox for development, and an in-memory fake for tests.
//!
//! A mail body carries a one-time code; it is never logged.

mod outbox;
mod smtp;

use std::sync::Mutex;

use async_trait::async_trait;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;

pub use outbox::OutboxMailer;
pub use smtp::SmtpMailer;

/// Why a mail could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// An address does not parse.
    #[error("invalid address")]
    Address,
    /// The message could not be built.
    #[error("cannot build the message: {0}")]
    Build(String),
    /// The transport failed.
    #[error("mail transport failed: {0}")]
    Transport(String),
}

/// One mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl Mail {
    /// Builds the MIME message from `from`.
    pub fn to_message(&self, from: &Mailbox) -> Result<Message, MailError> {
        let to: Mailbox = self.to.parse().map_err(|_| MailError::Address)?;
        Message::builder()
            .from(from.clone())
            .to(to)
            .subject(self.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(self.body.clone())
            .map_err(|e| MailError::Build(e.to_string()))
    }
}

/// Sends mail.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug + 'static {
    /// Sends one mail.
    async fn send(&self, mail: Mail) -> Result<(), MailError>;
}

/// Keeps mails in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<Mail>>,
}

impl MemoryMailer {
    /// Every mail sent so far.
    pub fn sent(&self) -> Vec<Mail> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        mail.to.parse::<Mailbox>().map_err(|_| MailError::Address)?;
        if let Ok(mut v) = self.sent.lock() {
            v.push(mail);
        }
        Ok(())
    }
}

/// The mail with a code.
pub fn code_mail(to: &str, purpose: &str, code: &str) -> Mail {
    Mail {
        to: to.to_owned(),
        subject: format!("SecureVault {purpose} code: {code}"),
        body: format!(
            "Your SecureVault {purpose} code is\n\n    {code}\n\n\
             It is valid for 10 minutes and can be used once.\n\
             If you did not ask for it, someone knows your password or is trying\n\
             to register this address: you can ignore this mail.\n"
        ),
    }
}

/// The notice sent when someone registers an address that already has an
/// account (the answer to the registration looks the same either way).
pub fn already_registered_mail(to: &str) -> Mail {
    Mail {
        to: to.to_owned(),
        subject: "SecureVault: this address already has an account".into(),
        body: "Someone asked to register a SecureVault account with this address,\n\
               which already has one. If it was you, log in with `vault login`.\n\
               Otherwise you can ignore this mail: nothing was changed.\n"
            .into(),
    }
}
