//! The control protocol between `vault` commands and a running mount
//! daemon, and its client side.
//!
//! Each mount listens on a Unix socket, `<data dir>/run/<hash>.sock` (mode
//! 0600 in a 0700 directory, so only its user can talk to it), speaking
//! newline-delimited JSON, one request per connection:
//!
//! - `{"op":"status"}` → one [`StatusReply`] line.
//! - `{"op":"unmount"}` → [`UnmountLine`]s: progress
//!   (`{"pending_files":N,"pending_bytes":N}`) every 200 ms while pending
//!   changes upload, then `{"done":true,"pid":N}` (possibly with a
//!   `warning`) once the mount is gone and the daemon has let go of the
//!   journal (it exits right after), or `{"error":"..."}` when it stays
//!   mounted.
//!
//! Anything else is answered `{"error":"..."}`. Socket files whose daemon
//! is gone (connection refused) are stale and removed by [`list`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Time allowed to connect and for a status answer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an unmount reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// Longest line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// A request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// What the mount is doing.
    Status,
    /// Upload everything, unmount, exit.
    Unmount,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The mount point.
    pub mountpoint: String,
    /// The account's e-mail address.
    pub account: String,
    /// The server.
    pub server: String,
    /// Files with changes not yet uploaded.
    pub pending_files: u64,
    /// Bytes not yet uploaded.
    pub pending_bytes: u64,
    /// Bytes in the on-disk cache.
    pub cache_bytes: u64,
    /// The daemon's process id.
    pub pid: u32,
}

/// One line of the answer to `unmount` (or an error answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmountLine {
    /// Files still to upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_files: Option<u64>,
    /// Bytes still to upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_bytes: Option<u64>,
    /// The mount is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    /// Unmounted, but something deserves a word (changes left to upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// With `done`: the daemon's process id (it exits right after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Refused or failed; the mount stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl UnmountLine {
    /// A progress line.
    pub fn progress(files: u64, bytes: u64) -> Self {
        Self {
            pending_files: Some(files),
            pending_bytes: Some(bytes),
            ..Self::default()
        }
    }

    /// The final line of a successful unmount.
    pub fn done(warning: Option<String>) -> Self {
        Self {
            done: Some(true),
            warning,
            pid: Some(std::process::id()),
            ..Self::default()
        }
    }

    /// An error line.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

/// Serialises one line with its newline.
pub fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// Why talking to a daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens on the socket.
    #[error("no mount daemon answers")]
    NoDaemon(#[source] io::Error),
    /// The daemon refused or failed.
    #[error("{0}")]
    Refused(String),
    /// The conversation broke off or timed out.
    #[error("the mount daemon stopped answering")]
    Broken(#[source] io::Error),
    /// An answer that does not parse.
    #[error("the mount daemon's answer is garbled")]
    Garbled(#[source] serde_json::Error),
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

async fn connect(socket: &Path) -> Result<UnixStream, ControlError> {
    match tokio::time::timeout(STATUS_TIMEOUT, UnixStream::connect(socket)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) if is_gone(&e) => Err(ControlError::NoDaemon(e)),
        Ok(Err(e)) => Err(ControlError::Broken(e)),
        Err(_) => Err(ControlError::Broken(io::ErrorKind::TimedOut.into())),
    }
}

async fn send(stream: &mut UnixStream, request: Request) -> Result<(), ControlError> {
    stream
        .write_all(&line(&request))
        .await
        .map_err(ControlError::Broken)
}

/// Reads one line (`None` at end of stream).
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Option<String>, ControlError> {
    let mut text = String::new();
    let n = reader
        .read_line(&mut text)
        .await
        .map_err(ControlError::Broken)?;
    if n == 0 {
        return Ok(None);
    }
    if text.len() > MAX_LINE {
        return Err(ControlError::Broken(io::Error::other("line too long")));
    }
    Ok(Some(text))
}

/// Asks the daemon behind `socket` what it is doing.
pub async fn status(socket: &Path) -> Result<StatusReply, ControlError> {
    let mut stream = connect(socket).await?;
    send(&mut stream, Request::Status).await?;
    let mut reader = BufReader::new(stream);
    let text = tokio::time::timeout(STATUS_TIMEOUT, read_line(&mut reader))
        .await
        .map_err(|_| ControlError::Broken(io::ErrorKind::TimedOut.into()))??
        .ok_or_else(|| ControlError::Broken(io::ErrorKind::UnexpectedEof.into()))?;
    if let Ok(UnmountLine {
        error: Some(message),
        ..
    }) = serde_json::from_str::<UnmountLine>(&text)
    {
        return Err(ControlError::Refused(message));
    }
    serde_json::from_str(&text).map_err(ControlError::Garbled)
}

/// What a finished unmount reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmounted {
    /// Something left to say (changes not uploaded yet).
    pub warning: Option<String>,
    /// The daemon's process id, which exits next.
    pub pid: Option<u32>,
}

/// Asks the daemon behind `socket` to upload everything and unmount;
/// `progress` sees each progress line.
pub async fn unmount<F: FnMut(u64, u64)>(
    socket: &Path,
    mut progress: F,
) -> Result<Unmounted, ControlError> {
    let mut stream = connect(socket).await?;
    send(&mut stream, Request::Unmount).await?;
    let mut reader = BufReader::new(stream);
    while let Some(text) = read_line(&mut reader).await? {
        let l: UnmountLine = serde_json::from_str(&text).map_err(ControlError::Garbled)?;
        if let Some(message) = l.error {
            return Err(ControlError::Refused(message));
        }
        if l.done == Some(true) {
            return Ok(Unmounted {
                warning: l.warning,
                pid: l.pid,
            });
        }
        if let (Some(files), Some(bytes)) = (l.pending_files, l.pending_bytes) {
            progress(files, bytes);
        }
    }
    Err(ControlError::Broken(io::ErrorKind::UnexpectedEof.into()))
}

/// Every live mount with a socket in `run_dir`; sockets nobody listens on
/// any more are removed.
pub async fn list(run_dir: &Path) -> Vec<StatusReply> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    let sockets: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    let mut out = Vec::new();
    for socket in sockets {
        match status(&socket).await {
            Ok(s) => out.push(s),
            Err(ControlError::NoDaemon(_)) => {
                tracing::debug!(socket = %socket.display(), "removing a stale control socket");
                let _ = std::fs::remove_file(&socket);
            }
            Err(e) => tracing::debug!(error = %e, "a mount daemon did not answer"),
        }
    }
    out.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_op() {
        assert_eq!(line(&Request::Status), b"{\"op\":\"status\"}\n");
        assert_eq!(line(&Request::Unmount), b"{\"op\":\"unmount\"}\n");
        let r: Request = serde_json::from_str("{\"op\":\"unmount\"}").unwrap();
        assert_eq!(r, Request::Unmount);
        assert!(serde_json::from_str::<Request>("{\"op\":\"format\"}").is_err());
    }

    #[test]
    fn unmount_lines_have_the_documented_shapes() {
        assert_eq!(
            line(&UnmountLine::progress(2, 4096)),
            b"{\"pending_files\":2,\"pending_bytes\":4096}\n"
        );
        let pid = std::process::id();
        assert_eq!(
            String::from_utf8(line(&UnmountLine::done(None))).unwrap(),
            format!("{{\"done\":true,\"pid\":{pid}}}\n")
        );
        assert_eq!(line(&UnmountLine::error("busy")), b"{\"error\":\"busy\"}\n");
        let l: UnmountLine = serde_json::from_str(&format!(
            "{{\"done\":true,\"warning\":\"w\",\"pid\":{pid}}}"
        ))
        .unwrap();
        assert_eq!(l, UnmountLine::done(Some("w".into())));
    }

    #[test]
    fn status_replies_round_trip() {
        let s = StatusReply {
            mountpoint: "/mnt/v".into(),
            account: "a@example.org".into(),
            server: "https://v.example".into(),
            pending_files: 1,
            pending_bytes: 2,
            cache_bytes: 3,
            pid: 4,
        };
        let text = String::from_utf8(line(&s)).unwrap();
        for key in [
            "mountpoint",
            "account",
            "server",
            "pending_files",
            "pending_bytes",
            "cache_bytes",
            "pid",
        ] {
            assert!(text.contains(&format!("\"{key}\":")), "{text}");
        }
        assert_eq!(serde_json::from_str::<StatusReply>(&text).unwrap(), s);
    }

    #[tokio::test]
    async fn a_socket_without_a_daemon_is_stale_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        assert!(matches!(
            status(&path).await,
            Err(ControlError::NoDaemon(_))
        ));
        assert!(list(tmp.path()).await.is_empty());
        assert!(!path.exists());
        assert!(matches!(
            unmount(&tmp.path().join("missing.sock"), |_, _| {}).await,
            Err(ControlError::NoDaemon(_))
        ));
    }
}
