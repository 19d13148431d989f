//! Mail through an SMTP server with lettre's async transport. STARTTLS is
//! required unless the server is on loopback; `smtps://` uses TLS from the
//! first byte.

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Mail, MailError, Mailer};
use crate::config::is_loopback_host;

/// Sends through SMTP.
#[derive(Debug)]
pub struct SmtpMailer {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = host_port.split(['/', '?']).next().unwrap_or(host_port);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

impl SmtpMailer {
    /// A transport for `url` (`smtp://` or `smtps://`, optional user:pass).
    pub fn new(url: &str, from: Mailbox) -> Result<Self, MailError> {
        let host = host_of(url).to_owned();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Transport(e.to_string()))?;
        if url.starts_with("smtp://") && !is_loopback_host(&host) {
            let params =
                TlsParameters::new(host).map_err(|e| MailError::Transport(e.to_string()))?;
            builder = builder.tls(Tls::Required(params));
        }
        Ok(Self {
            from,
            transport: builder.build(),
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let message = mail.to_message(&self.from)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Transport(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(
            host_of("smtp://u:p@mail.example.org:587"),
            "mail.example.org"
        );
        assert_eq!(host_of("smtp://127.0.0.1:2525"), "127.0.0.1");
        assert_eq!(host_of("smtps://[::1]:465"), "::1");
        assert_eq!(host_of("smtp://user:p%40ss@host"), "host");
    }
}
