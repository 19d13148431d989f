//! The daemon's side of the control socket ([`super::control`]).
//!
//! `status` is answered here from [`Vfs::pending`] and
//! [`Vfs::cache_used`]. `unmount` is handed to the daemon's main loop (the one
//! owner of the unmount sequence, which signals use too) as an
//! [`UnmountRequest`]; this side streams progress every 200 ms until the
//! main loop reports the outcome, writes the final line, and then lets the
//! main loop go on (so the daemon never exits before the client has heard).
//!
//! The socket is bound with mode 0600 in the 0700 run directory; an
//! existing socket file is replaced only when nobody answers on it. The
//! file is removed when the [`ControlSocket`] is dropped.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::control::{self, MAX_LINE, PROGRESS_EVERY, Request, StatusReply, UnmountLine};
use super::paths::ensure_private_dir;
use crate::api::VaultApi;
use crate::error::Error;
use crate::vfs::Vfs;

/// What `status` reports besides the live numbers.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// The mount point.
    pub mountpoint: PathBuf,
    /// The account's e-mail address.
    pub account: String,
    /// The server.
    pub server: String,
}

/// An `unmount` asked for over the socket.
#[derive(Debug)]
pub struct UnmountRequest {
    /// Where the main loop sends the outcome: `Ok(warning)` once unmounted,
    /// `Err(message)` when the mount stays.
    pub outcome: oneshot::Sender<Result<Option<String>, String>>,
    /// Resolves once the final line is written (or the client is gone).
    pub written: oneshot::Receiver<()>,
}

/// The bound control socket; the file goes away with it.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlSocket {
    /// Binds `path`, replacing a stale socket file.
    pub async fn bind(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir)?;
        }
        let io_err = |action: &'static str| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        if path.exists() {
            match control::status(path).await {
                Err(control::ControlError::NoDaemon(_)) => {
                    std::fs::remove_file(path).map_err(io_err("remove"))?;
                }
                _ => {
                    return Err(Error::Io {
                        action: "take over the control socket",
                        path: path.to_path_buf(),
                        source: std::io::ErrorKind::AddrInUse.into(),
                    });
                }
            }
        }
        let listener = UnixListener::bind(path).map_err(io_err("listen on"))?;
        let socket = Self {
            listener,
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(io_err("protect"))?;
        Ok(socket)
    }

    /// Serves connections until the task is dropped.
    pub async fn serve<A: VaultApi + 'static>(
        &self,
        vfs: Arc<Vfs<A>>,
        info: Arc<MountInfo>,
        unmounts: mpsc::Sender<UnmountRequest>,
    ) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let (vfs, info, unmounts) =
                        (Arc::clone(&vfs), Arc::clone(&info), unmounts.clone());
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, vfs, info, unmounts).await {
                            tracing::debug!(error = %e, "control connection failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
            }
        }
    }
}

async fn handle<A: VaultApi + 'static>(
    stream: UnixStream,
    vfs: Arc<Vfs<A>>,
    info: Arc<MountInfo>,
    unmounts: mpsc::Sender<UnmountRequest>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(u64::try_from(MAX_LINE).unwrap_or(u64::MAX));
    let mut text = String::new();
    reader.read_line(&mut text).await?;
    let request: Request = match serde_json::from_str(text.trim()) {
        Ok(r) => r,
        Err(_) => {
            let answer = UnmountLine::error(
                "unknown request (expected {\"op\":\"status\"} or {\"op\":\"unmount\"})",
            );
            return write.write_all(&control::line(&answer)).await;
        }
    };
    match request {
        Request::Status => {
            let pending = vfs.pending();
            let cache_bytes = vfs.cache_used();
            let reply = StatusReply {
                mountpoint: info.mountpoint.to_string_lossy().into_owned(),
                account: info.account.clone(),
                server: info.server.clone(),
                pending_files: pending.files,
                pending_bytes: pending.bytes,
                cache_bytes,
                pid: std::process::id(),
            };
            write.write_all(&control::line(&reply)).await
        }
        Request::Unmount => {
            let (outcome_tx, mut outcome_rx) = oneshot::channel();
            let (written_tx, written_rx) = oneshot::channel();
            let request = UnmountRequest {
                outcome: outcome_tx,
                written: written_rx,
            };
            if unmounts.send(request).await.is_err() {
                let answer = UnmountLine::error("the mount is already shutting down");
                return write.write_all(&control::line(&answer)).await;
            }
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            let mut client_gone = false;
            let last = loop {
                tokio::select! {
                    outcome = &mut outcome_rx => break match outcome {
                        Ok(Ok(warning)) => UnmountLine::done(warning),
                        Ok(Err(message)) => UnmountLine::error(message),
                        Err(_) => UnmountLine::error("the mount daemon gave up"),
                    },
                    _ = tick.tick() => {
                        if !client_gone {
                            let p = vfs.pending();
                            let l = control::line(&UnmountLine::progress(p.files, p.bytes));
                            // A client that went away does not stop the unmount.
                            client_gone = write.write_all(&l).await.is_err();
                        }
                    }
                }
            };
            let result = write.write_all(&control::line(&last)).await;
            let _ = write.flush().await;
            drop(written_tx);
            result
        }
    }
}
