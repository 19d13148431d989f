//! The one-time codes the server mails during setup, read from its mail
//! directory: the development outbox (`<data dir>/outbox/*.eml`, written
//! when no SMTP server is configured) or a Maildir (its `new/`).
//!
//! Up to `--clients` setups wait for codes at once, so the directory is
//! scanned by whichever waiter finds the last scan older than
//! [`SCAN_EVERY`], and each file is parsed once: its codes go into a shared
//! list that every waiter searches for its own address and purpose. Files
//! already there when the run starts are skipped unread (a reused data dir
//! may hold thousands). A file without a code is read again until it is
//! [`SETTLE`] old, as the server may still be writing it. Parsing (headers
//! unfolded, `"<purpose> code: NNNNNN"` in the subject) is the harness's
//! `tests::mail::Mail`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ::tests::mail::Mail;
use anyhow::{Context as _, bail};

/// The least time between two scans of the directory.
const SCAN_EVERY: Duration = Duration::from_millis(25);
/// How old a file without a code must be before it is given up on.
const SETTLE: Duration = Duration::from_secs(2);
/// The purposes of the codes the server mails.
const PURPOSES: [&str; 2] = ["verification", "login"];

/// One code found in a mail.
#[derive(Debug, Clone)]
struct Code {
    /// The `To:` and envelope recipients, lower-case.
    to: String,
    purpose: &'static str,
    code: String,
}

#[derive(Debug)]
struct State {
    seen: HashSet<PathBuf>,
    codes: Vec<Code>,
    last_scan: Option<Instant>,
}

/// The server's mail directory.
#[derive(Debug)]
pub struct Outbox {
    dirs: Vec<PathBuf>,
    state: Mutex<State>,
}

impl Outbox {
    /// Watches `dir` (and `dir/new` when it is a Maildir), skipping the
    /// files already there.
    ///
    /// # Errors
    ///
    /// When `dir` is not a readable directory.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let mut dirs = vec![dir.to_path_buf()];
        let new = dir.join("new");
        if new.is_dir() {
            dirs.push(new);
        }
        let mut seen = HashSet::new();
        for d in &dirs {
            let entries = std::fs::read_dir(d).with_context(|| {
                format!(
                    "cannot read the mail directory {} (the server's <data dir>/outbox, \
                     written when VAULT_SMTP_URL is unset)",
                    d.display()
                )
            })?;
            seen.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        }
        Ok(Self {
            dirs,
            state: Mutex::new(State {
                seen,
                codes: Vec::new(),
                last_scan: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` for the next unused `purpose` code
    /// (`verification` or `login`) mailed to `email`.
    ///
    /// # Errors
    ///
    /// When none arrives in time.
    pub async fn code(
        &self,
        email: &str,
        purpose: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let email = email.to_ascii_lowercase();
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut state = self.lock();
                if state.last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
                    self.scan(&mut state);
                    state.last_scan = Some(Instant::now());
                }
                if let Some(at) = state
                    .codes
                    .iter()
                    .position(|c| c.purpose == purpose && c.to.contains(&email))
                {
                    return Ok(state.codes.remove(at).code);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "no {purpose} code mailed to {email} in {} after {timeout:?}",
                    self.dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                );
            }
            tokio::time::sleep(SCAN_EVERY).await;
        }
    }

    /// Reads the files not seen yet, collecting their codes.
    fn scan(&self, state: &mut State) {
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if state.seen.contains(&path)
                    || path.extension().is_some_and(|e| e == "json")
                    || !entry.file_type().is_ok_and(|t| t.is_file())
                {
                    continue;
                }
                let Ok(raw) = std::fs::read(&path) else {
                    continue;
                };
                let mail = Mail::parse(path.clone(), &String::from_utf8_lossy(&raw));
                let found = codes_of(&mail);
                if found.is_empty() && !settled(&path) {
                    continue; // perhaps still being written
                }
                state.codes.extend(found);
                state.seen.insert(path);
            }
        }
    }
}

/// The codes of one mail.
fn codes_of(mail: &Mail) -> Vec<Code> {
    let to = format!("{} {}", mail.to, mail.rcpt_to).to_ascii_lowercase();
    PURPOSES
        .iter()
        .filter_map(|&purpose| {
            mail.code(purpose).map(|code| Code {
                to: to.clone(),
                purpose,
                code,
            })
        })
        .collect()
}

/// True when the file was last written at least [`SETTLE`] ago.
fn settled(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= SETTLE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn codes_are_found_by_address_and_purpose_once_each() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("old.eml"),
            mail("a@x.test", "login", "111111"),
        )
        .unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("1.eml"),
            mail("a@x.test", "verification", "222222"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("2.eml"),
            mail("b@x.test", "login", "333333"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("3.eml"),
            mail("A@x.test", "login", "444444"),
        )
        .unwrap();
        let t = Duration::from_secs(2);
        assert_eq!(outbox.code("b@x.test", "login", t).await.unwrap(), "333333");
        assert_eq!(outbox.code("a@x.test", "login", t).await.unwrap(), "444444");
        assert_eq!(
            outbox.code("a@x.test", "verification", t).await.unwrap(),
            "222222"
        );
        // The mail that was there before the run, and used codes, are not
        // handed out.
        let short = Duration::from_millis(100);
        assert!(outbox.code("a@x.test", "login", short).await.is_err());
    }

    /// A mail as lettre writes it, with the subject folded.
    fn mail(to: &str, purpose: &str, code: &str) -> String {
        format!(
            "From: SecureVault <vault@localhost>\r\nTo: {to}\r\n\
             Subject: SecureVault {purpose}\r\n code: {code}\r\n\
             Content-Type: text/plain\r\n\r\nYour code is {code}\r\n"
        )
    }
}
