//! Development mail: each message written as an `.eml` file into the
//! outbox directory (lettre's file transport), with a log line saying so.

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};

use super::{Mail, MailError, Mailer};

/// Writes mails into a directory.
#[derive(Debug)]
pub struct OutboxMailer {
    dir: PathBuf,
    from: Mailbox,
    transport: AsyncFileTransport<Tokio1Executor>,
}

impl OutboxMailer {
    /// An outbox in `dir` (created if missing).
    pub fn new(dir: PathBuf, from: Mailbox) -> Result<Self, MailError> {
        std::fs::create_dir_all(&dir).map_err(|e| MailError::Transport(e.to_string()))?;
        let transport = AsyncFileTransport::new(&dir);
        Ok(Self {
            dir,
            from,
            transport,
        })
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let message = mail.to_message(&self.from)?;
        let id = self
            .transport
            .send(message)
            .await
            .map_err(|e| MailError::Transport(e.to_string()))?;
        tracing::info!(
            file = %self.dir.join(format!("{id}.eml")).display(),
            "no SMTP server configured: mail written to the outbox"
        );
        Ok(())
    }
}
