//! Reading the server's mails: from the test SMTP server's Maildir (`new/`),
//! or from the server's development outbox (`.eml` files) when no SMTP
//! server is configured.
//!
//! Many tests share one Maildir, so a mail is picked by its recipient (each
//! test uses unique addresses) and each file is handed out once per reader.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How long to wait for a mail.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// One parsed mail.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The file it came from.
    pub path: PathBuf,
    /// The `To:` header (unfolded).
    pub to: String,
    /// The envelope recipient aiosmtpd records (`X-RcptTo:`), if any.
    pub rcpt_to: String,
    /// The `Subject:` header.
    pub subject: String,
    /// The body.
    pub body: String,
}

impl Mail {
    /// Parses a raw RFC 5322 message (headers unfolded; body as text).
    pub fn parse(path: PathBuf, raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = headers.last_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Self {
            to: get("to"),
            rcpt_to: get("x-rcptto"),
            subject: get("subject"),
            body: body.to_owned(),
            path,
        }
    }

    /// True if the mail is addressed to `email` (case-insensitive).
    pub fn is_for(&self, email: &str) -> bool {
        let email = email.to_ascii_lowercase();
        self.to.to_ascii_lowercase().contains(&email)
            || self.rcpt_to.to_ascii_lowercase().contains(&email)
    }

    /// The 6-digit code of a `"<purpose> code: NNNNNN"` subject.
    pub fn code(&self, purpose: &str) -> Option<String> {
        let marker = format!("{purpose} code: ");
        let at = self.subject.find(&marker)? + marker.len();
        let code: String = self.subject.get(at..)?.chars().take(6).collect();
        (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
    }
}

/// Reads the mails one server sends.
#[derive(Debug)]
pub struct MailReader {
    dir: PathBuf,
    seen: Mutex<HashSet<PathBuf>>,
}

/// The order mails arrived in: modification time, then aiosmtpd's Maildir
/// sequence number (`…Q<n>.host`), then the name.
fn arrival_key(path: &Path) -> (SystemTime, u64, String) {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let seq = name
        .split_once('Q')
        .and_then(|(_, rest)| rest.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (mtime, seq, name)
}

impl MailReader {
    /// A reader of the Maildir at `maildir` (its `new/` subdirectory).
    pub fn maildir(maildir: &Path) -> Self {
        Self::directory(maildir.join("new"))
    }

    /// A reader of every file in `dir` (the server's outbox).
    pub fn directory(dir: PathBuf) -> Self {
        Self {
            dir,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The mails in the directory not handed out yet, oldest first.
    fn unseen(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && !seen.contains(p))
            .filter(|p| p.extension().is_none_or(|e| e != "json"))
            .collect();
        drop(seen);
        paths.sort_by_cached_key(|p| arrival_key(p));
        paths
            .into_iter()
            .filter_map(|p| {
                let raw = std::fs::read(&p).ok()?;
                Some(Mail::parse(p, &String::from_utf8_lossy(&raw)))
            })
            .collect()
    }

    /// Waits for the next unseen mail to `to` that `accept` takes, marks it
    /// seen and returns it.
    pub async fn wait_for(&self, to: &str, what: &str, accept: impl Fn(&Mail) -> bool) -> Mail {
        let deadline = Instant::now() + MAIL_TIMEOUT;
        loop {
            if let Some(mail) = self
                .unseen()
                .into_iter()
                .find(|m| m.is_for(to) && accept(m))
            {
                self.seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(mail.path.clone());
                return mail;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {what} mail to {to} in {} after {:?}",
                    self.dir.display(),
                    MAIL_TIMEOUT
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next `purpose` code (`verification` or `login`) mailed to `to`.
    pub async fn code(&self, to: &str, purpose: &str) -> String {
        let mail = self
            .wait_for(to, &format!("{purpose} code"), |m| {
                m.code(purpose).is_some()
            })
            .await;
        mail.code(purpose).expect("checked by wait_for")
    }

    /// Every unseen mail to `to` that is already there (marking them seen).
    pub fn drain(&self, to: &str) -> Vec<Mail> {
        let mails: Vec<Mail> = self.unseen().into_iter().filter(|m| m.is_for(to)).collect();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in &mails {
            seen.insert(m.path.clone());
        }
        mails
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_lettre_message() {
        let raw = "From: SecureVault <vault@localhost>\r\nTo: a-1@e2e.test\r\n\
                   Subject: SecureVault login\r\n code: 012345\r\nX-RcptTo: a-1@e2e.test\r\n\
                   Content-Type: text/plain\r\n\r\nYour SecureVault login code is\r\n\r\n    012345\r\n";
        let m = Mail::parse(PathBuf::from("x"), raw);
        assert!(m.is_for("A-1@e2e.test"));
        assert!(!m.is_for("b-1@e2e.test"));
        assert_eq!(m.code("login").as_deref(), Some("012345"));
        assert_eq!(m.code("verification"), None);
        assert!(m.body.contains("012345"));
    }

    #[test]
    fn maildir_names_sort_by_sequence() {
        let k = |n: &str| arrival_key(Path::new(n)).1;
        assert_eq!(k("1763000000.M12P345Q17.host"), 17);
        assert_eq!(k("abc.eml"), 0);
    }
}
