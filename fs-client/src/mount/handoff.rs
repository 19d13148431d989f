//! Handing a checked, unlocked mount from `vault mount` to its detached
//! daemon, and the daemon's answer.
//!
//! The parent does every check and asks for the password in the terminal,
//! then starts `vault __mount-daemon` (its own executable) in a new process
//! group, in `/`, with stdout and stderr appended to the log file and its
//! standard input one end of a Unix socket pair. Over that socket the
//! parent writes the 32-byte vault key, then one JSON line of
//! [`DaemonOptions`]; the daemon answers one JSON line, `{"ready":true}`
//! once the mount is live or `{"error":..., "causes":[...]}`. The key
//! therefore never appears in argv, the environment or on disk, and the
//! password never leaves the parent. The daemon's environment loses
//! `VAULT_PASSWORD` and `VAULT_NEW_PASSWORD`.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::crypto::subkeys::VaultKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::paths::ensure_private_dir;
use crate::error::Error;
use crate::secrets::{NEW_PASSWORD_ENV, PASSWORD_ENV};

/// The hidden subcommand the daemon runs as.
pub const DAEMON_COMMAND: &str = "__mount-daemon";
/// How long the parent waits for the daemon to mount.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
const KEY_LEN: usize = 32;
const MAX_LINE: u64 = 64 * 1024;

/// Everything the daemon needs besides the key. Every path is absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonOptions {
    /// The mount point (canonical).
    pub mountpoint: PathBuf,
    /// The configuration directory holding the session.
    pub config_dir: PathBuf,
    /// The data directory (journal, run, logs).
    pub data_dir: PathBuf,
    /// The on-disk cache.
    pub cache_dir: PathBuf,
    /// Bound of the on-disk cache.
    pub cache_bytes: u64,
    /// Bound of the in-memory cache.
    pub memory_cache_bytes: u64,
    /// Mount read-only.
    pub read_only: bool,
    /// Let other users in.
    pub allow_other: bool,
    /// Extra CA certificates for the server.
    pub ca_file: Option<PathBuf>,
    /// The server of the session.
    pub server: String,
    /// The account id of the session.
    pub account_id: String,
    /// The account's e-mail address (for `vault status`).
    pub email: String,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// Mounted.
    Ready {
        /// Always true.
        ready: bool,
    },
    /// Failed.
    Failed {
        /// The one-line error.
        error: String,
        /// Its causes, outermost first.
        #[serde(default)]
        causes: Vec<String>,
    },
}

impl Answer {
    /// The answer for a failure.
    pub fn from_error(e: &Error) -> Self {
        let mut chain = e.chain().into_iter();
        Self::Failed {
            error: chain.next().unwrap_or_default(),
            causes: chain.collect(),
        }
    }

    /// The answer as the parent's result.
    pub fn into_result(self) -> Result<(), Error> {
        match self {
            Self::Ready { ready: true } => Ok(()),
            Self::Ready { ready: false } => Err(Error::Daemon {
                message: "the mount daemon did not mount".into(),
                cause: None,
            }),
            Self::Failed { error, causes } => Err(Error::Daemon {
                message: error,
                cause: RemoteCause::chain(causes),
            }),
        }
    }
}

/// One cause reported by the daemon, with the next as its source.
#[derive(Debug)]
pub struct RemoteCause {
    text: String,
    next: Option<Box<RemoteCause>>,
}

impl RemoteCause {
    /// The causes as a chain (`None` when there are none).
    pub fn chain(causes: Vec<String>) -> Option<Self> {
        causes.into_iter().rev().fold(None, |next, text| {
            Some(Self {
                text,
                next: next.map(Box::new),
            })
        })
    }
}

impl fmt::Display for RemoteCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for RemoteCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// Writes the key and the options for the daemon.
pub fn write_request<W: Write>(
    to: &mut W,
    key: &VaultKey,
    options: &DaemonOptions,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(options).map_err(std::io::Error::other)?;
    line.push(b'\n');
    to.write_all(key.expose())?;
    to.write_all(&line)?;
    to.flush()
}

/// Reads what [`write_request`] wrote.
pub fn read_request<R: Read>(from: &mut R) -> std::io::Result<(VaultKey, DaemonOptions)> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    from.read_exact(&mut *key)?;
    let mut line = Vec::new();
    BufReader::new(from.take(MAX_LINE)).read_until(b'\n', &mut line)?;
    let options = serde_json::from_slice(&line).map_err(std::io::Error::other)?;
    Ok((VaultKey::from_bytes(*key), options))
}

/// Writes the daemon's answer line.
pub fn write_answer<W: Write>(to: &mut W, answer: &Answer) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    line.push(b'\n');
    to.write_all(&line)?;
    to.flush()
}

/// The daemon side: the socket on standard input, the key and the options.
pub fn receive() -> Result<(UnixStream, VaultKey, DaemonOptions), Error> {
    let stdin = Path::new("standard input");
    let fd: OwnedFd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(io_err("read", stdin))?;
    let mut socket = UnixStream::from(fd);
    // Started by hand rather than by `vault mount`, this fails here.
    let (key, options) = read_request(&mut socket).map_err(io_err(
        "read the mount instructions (from `vault mount`) on",
        stdin,
    ))?;
    Ok((socket, key, options))
}

/// The parent side: starts the daemon, hands it the key and the options,
/// and waits until it has mounted or failed.
pub async fn spawn_daemon(
    options: &DaemonOptions,
    key: &VaultKey,
    log: &Path,
    verbose: u8,
) -> Result<(), Error> {
    if let Some(dir) = log.parent() {
        ensure_private_dir(dir)?;
    }
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(io_err("open", log))?;
    let log_err = log_file.try_clone().map_err(io_err("open", log))?;
    let exe = std::env::current_exe().map_err(io_err("find", Path::new("the vault program")))?;
    let (mut ours, theirs) =
        UnixStream::pair().map_err(io_err("create", Path::new("a socket pair")))?;

    let mut command = Command::new(&exe);
    command.arg(DAEMON_COMMAND);
    for _ in 0..verbose {
        command.arg("-v");
    }
    command
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .current_dir("/")
        .env_remove(PASSWORD_ENV)
        .env_remove(NEW_PASSWORD_ENV)
        .process_group(0);
    let mut child = command.spawn().map_err(io_err("start", &exe))?;
    drop(command);

    write_request(&mut ours, key, options).map_err(io_err("instruct", Path::new("the daemon")))?;

    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        ours.set_read_timeout(Some(READY_TIMEOUT))?;
        let mut line = Vec::new();
        BufReader::new((&ours).take(MAX_LINE)).read_until(b'\n', &mut line)?;
        Ok(line)
    })
    .await
    .map_err(|e| Error::Task(Box::new(e)))?;

    let failed = |reason: String, source: Option<crate::api::BoxError>| Error::MountFailed {
        dir: options.mountpoint.clone(),
        reason,
        source,
    };
    let line = match read {
        Ok(line) if !line.is_empty() => line,
        Ok(_) => {
            let status = child.try_wait().ok().flatten();
            return Err(failed(
                format!(
                    "the mount daemon stopped before mounting{} (see {})",
                    status.map(|s| format!(" ({s})")).unwrap_or_default(),
                    log.display()
                ),
                None,
            ));
        }
        Err(e) => {
            let _ = child.kill();
            return Err(failed(
                format!("the mount daemon did not answer (see {})", log.display()),
                Some(Box::new(e)),
            ));
        }
    };
    let answer: Answer = serde_json::from_slice(&line).map_err(|e| {
        failed(
            format!(
                "the mount daemon's answer is garbled (see {})",
                log.display()
            ),
            Some(Box::new(e)),
        )
    })?;
    answer.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DaemonOptions {
        DaemonOptions {
            mountpoint: "/mnt/vault dir".into(),
            config_dir: "/c".into(),
            data_dir: "/d".into(),
            cache_dir: "/k".into(),
            cache_bytes: 1 << 30,
            memory_cache_bytes: 64 << 20,
            read_only: true,
            allow_other: false,
            ca_file: None,
            server: "https://v.example".into(),
            account_id: "acc-1".into(),
            email: "a@example.org".into(),
        }
    }

    #[test]
    fn the_key_and_options_round_trip() {
        let key = VaultKey::from_bytes([9; 32]);
        let mut wire = Vec::new();
        write_request(&mut wire, &key, &options()).unwrap();
        assert_eq!(wire.get(..32).unwrap(), &[9u8; 32]);
        assert_eq!(wire.last(), Some(&b'\n'));
        let (k, o) = read_request(&mut wire.as_slice()).unwrap();
        assert_eq!(k, key);
        assert_eq!(o, options());
        // A short key is an error, not a zero-padded key.
        assert!(read_request(&mut &wire[..20]).is_err());
    }

    #[test]
    fn answers_round_trip_and_carry_the_cause_chain() {
        let mut wire = Vec::new();
        write_answer(&mut wire, &Answer::Ready { ready: true }).unwrap();
        assert_eq!(wire, b"{\"ready\":true}\n");
        let a: Answer = serde_json::from_slice(&wire).unwrap();
        assert!(a.into_result().is_ok());

        let e = Error::VaultInUse {
            journal: "/d/journal/acc".into(),
        };
        let a = Answer::from_error(&e);
        let text = serde_json::to_string(&a).unwrap();
        let back: Answer = serde_json::from_str(&text).unwrap();
        let err = back.into_result().unwrap_err();
        assert_eq!(err.to_string(), e.to_string());

        let a = Answer::Failed {
            error: "cannot open the vault".into(),
            causes: vec!["server error".into(), "connection refused".into()],
        };
        let err = a.into_result().unwrap_err();
        assert_eq!(
            err.chain(),
            vec![
                "cannot open the vault",
                "server error",
                "connection refused"
            ]
        );
    }
}
