//! The mount daemon: opens the vault, mounts it, serves it until it is
//! unmounted, and makes sure pending changes are uploaded on the way out.
//!
//! [`Mounted::start`] takes the account's journal lock (one daemon per
//! account and data directory), starts [`Vfs`] with the session's tokens
//! and the vault's subkeys (held only in memory; the vault key itself is
//! dropped as soon as they are derived), binds the control socket, and
//! mounts with fuser (`securevault` / `fuse.vault`, `default_permissions`,
//! two FUSE threads with cloned fds). When it returns the mount is live.
//!
//! [`Mounted::serve`] then waits for one of three endings, and one owner
//! runs the sequence for all of them:
//!
//! - `vault unmount` (control socket) or SIGTERM/SIGINT: upload everything
//!   (`sync_all`), unmount (in a helper process, so a stuck write-back
//!   never traps a daemon thread) (a busy mount stays mounted for `vault
//!   unmount`; a signal detaches it lazily instead), wait for the kernel to
//!   end the FUSE session, and upload what it wrote back while unmounting.
//! - `umount DIR` from outside: the session ends by itself; upload what is
//!   pending.
//!
//! Then [`Vfs::shutdown`] stops background work and wipes the keys. What
//! could not be uploaded stays in the crash-safe journal for the next
//! mount; the unmount reports it. SIGHUP is ignored (a detached daemon
//! outlives its terminal).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::crypto::subkeys::VaultKey;
use fuser::{MountOption, SessionACL};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};

use super::fuse::FuseFs;
use super::handoff::DaemonOptions;
use super::mountinfo::{self, FS_NAME, SUBTYPE};
use super::paths::{JournalLock, ensure_private_dir, journal_dir, socket_path};
use super::server::{ControlSocket, MountInfo, UnmountRequest};
use super::size::format_bytes;
use crate::api::TokenSource;
use crate::api::authed::SessionClient;
use crate::api::http::{HttpApi, HttpOptions};
use crate::config::{FileStore, Session, SessionStore};
use crate::error::Error;
use crate::server_url::ServerUrl;
use crate::vfs::{Vfs, VfsConfig};

/// FUSE request threads (each only reads and dispatches).
pub const FUSE_THREADS: usize = 2;
/// Uploads running at once.
pub const UPLOADS: usize = 4;
/// How long to wait for the kernel to end the session after unmounting.
pub const SESSION_END_WAIT: Duration = Duration::from_secs(10);
/// Bound on waiting for the kernel (umount) and for shutdown.
pub const KERNEL_WAIT: Duration = Duration::from_secs(30);
/// How long an unmount waits for the client to hear the outcome.
const WRITTEN_WAIT: Duration = Duration::from_secs(2);

/// A live mount.
#[derive(Debug)]
pub struct Mounted {
    vfs: Arc<Vfs<HttpApi>>,
    info: Arc<MountInfo>,
    control: Arc<ControlSocket>,
    session_ended: watch::Receiver<bool>,
    signals: Signals,
    journal: Option<JournalLock>,
    journal_dir: PathBuf,
}

#[derive(Debug)]
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn register() -> Result<Self, Error> {
        let reg = |kind| {
            signal(kind).map_err(|source| Error::Io {
                action: "handle signals for",
                path: PathBuf::from("the mount daemon"),
                source,
            })
        };
        Ok(Self {
            term: reg(SignalKind::terminate())?,
            int: reg(SignalKind::interrupt())?,
            hup: reg(SignalKind::hangup())?,
        })
    }
}

/// How an upload before unmounting ended.
enum Upload {
    Done,
    Failed(crate::vfs::FsError),
    Interrupted,
}

enum Ending {
    Signal(&'static str),
    Control(UnmountRequest),
    External,
}

/// The session's token source for the daemon's whole life. The daemon
/// holds exactly one, so leaking its API client and store gives it the
/// `'static` lifetime a shared trait object needs.
fn session_tokens(api: HttpApi, store: FileStore, session: Session) -> Arc<dyn TokenSource> {
    let api: &'static HttpApi = Box::leak(Box::new(api));
    let store: &'static FileStore = Box::leak(Box::new(store));
    Arc::new(SessionClient::new(api, store, session))
}

fn mount_error(dir: &Path, e: io::Error) -> Error {
    let reason = match e.raw_os_error() {
        _ if !Path::new("/dev/fuse").exists() => "/dev/fuse is missing (load the fuse module)",
        Some(libc::EPERM | libc::EACCES) => {
            "permission denied (a user needs fusermount3; --allow-other needs \
             user_allow_other in /etc/fuse.conf)"
        }
        Some(libc::ENOTDIR) => "not a directory",
        Some(libc::ENOENT) => "no such directory",
        _ => "the kernel refused the mount",
    };
    Error::MountFailed {
        dir: dir.to_path_buf(),
        reason: reason.into(),
        source: Some(Box::new(e)),
    }
}

/// The fuser session settings.
pub fn fuse_config(read_only: bool, allow_other: bool) -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(FS_NAME.into()),
        // fuser passes `Subtype` only to fusermount3; as a kernel option it
        // also names the type `fuse.vault` when mounting with mount(2).
        MountOption::CUSTOM(format!("subtype={SUBTYPE}")),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    config.acl = if allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    config
}

impl Mounted {
    /// Opens the vault and mounts it; the mount is live on return.
    pub async fn start(options: DaemonOptions, key: VaultKey) -> Result<Self, Error> {
        let journal = JournalLock::acquire(&journal_dir(&options.data_dir, &options.account_id))?;
        ensure_private_dir(&options.cache_dir)?;
        let store = FileStore::new(options.config_dir.clone());
        let session = store.load()?.ok_or(Error::NotLoggedIn)?;
        if session.server != options.server || session.account_id != options.account_id {
            return Err(Error::NotLoggedIn);
        }
        let api = HttpApi::new(
            ServerUrl::parse(&options.server)?,
            &HttpOptions {
                ca_file: options.ca_file.clone(),
                ..HttpOptions::default()
            },
        )?;
        let tokens = session_tokens(api.clone(), store, session);
        let subkeys = key.subkeys()?;
        drop(key);
        let signals = Signals::register()?;

        let config = VfsConfig {
            journal_dir: journal.dir().to_path_buf(),
            cache_dir: options.cache_dir.clone(),
            cache_bytes: options.cache_bytes,
            memory_cache_bytes: options.memory_cache_bytes,
            read_only: options.read_only,
            upload_parallelism: UPLOADS,
            journal_spare_files: crate::vfs::JOURNAL_SPARE_FILES,
        };
        let vfs = Arc::new(
            Vfs::start(Arc::new(api), tokens, subkeys, config)
                .await
                .map_err(Error::Vault)?,
        );
        let info = Arc::new(MountInfo {
            mountpoint: options.mountpoint.clone(),
            account: options.email.clone(),
            server: options.server.clone(),
        });
        let control =
            match ControlSocket::bind(&socket_path(&options.data_dir, &options.mountpoint)).await {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    vfs.shutdown().await;
                    return Err(e);
                }
            };
        let session_ended = match Self::mount(&vfs, &options).await {
            Ok(ended) => ended,
            Err(e) => {
                vfs.shutdown().await;
                return Err(e);
            }
        };
        tracing::info!(mountpoint = %options.mountpoint.display(), pid = std::process::id(), "mounted");
        Ok(Self {
            vfs,
            info,
            control,
            session_ended,
            signals,
            journal_dir: journal.dir().to_path_buf(),
            journal: Some(journal),
        })
    }

    /// Mounts and runs the FUSE session on its own thread; the receiver
    /// turns true when the kernel ends the session.
    async fn mount(
        vfs: &Arc<Vfs<HttpApi>>,
        options: &DaemonOptions,
    ) -> Result<watch::Receiver<bool>, Error> {
        let fs = FuseFs::new(Arc::clone(vfs), tokio::runtime::Handle::current());
        let config = fuse_config(options.read_only, options.allow_other);
        let dir = options.mountpoint.clone();
        let session = tokio::task::spawn_blocking(move || fuser::Session::new(fs, &dir, &config))
            .await
            .map_err(|e| Error::Task(Box::new(e)))?
            .map_err(|e| mount_error(&options.mountpoint, e))?;
        let (ended_tx, ended_rx) = watch::channel(false);
        std::thread::Builder::new()
            .name("fuse-session".into())
            .spawn(move || {
                if let Err(e) = session.run() {
                    tracing::error!(error = %e, "the FUSE session failed");
                }
                let _ = ended_tx.send(true);
            })
            .map_err(|e| mount_error(&options.mountpoint, e))?;
        Ok(ended_rx)
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.info.mountpoint
    }

    /// Serves until unmounted; pending changes are uploaded first.
    pub async fn serve(mut self) -> Result<(), Error> {
        let (unmount_tx, mut unmount_rx) = mpsc::channel(4);
        let server = {
            let (control, vfs, info) = (
                Arc::clone(&self.control),
                Arc::clone(&self.vfs),
                Arc::clone(&self.info),
            );
            tokio::spawn(async move { control.serve(vfs, info, unmount_tx).await })
        };
        let mut shut = false;
        loop {
            let mut ended = self.session_ended.clone();
            let ending = tokio::select! {
                _ = ended.wait_for(|done| *done) => Ending::External,
                _ = self.signals.term.recv() => Ending::Signal("SIGTERM"),
                _ = self.signals.int.recv() => Ending::Signal("SIGINT"),
                _ = self.signals.hup.recv() => {
                    tracing::info!("ignoring SIGHUP");
                    continue;
                }
                Some(request) = unmount_rx.recv() => Ending::Control(request),
            };
            match ending {
                Ending::External => {
                    tracing::info!("unmounted from outside; uploading pending changes");
                    let last = self.upload().await;
                    if let Some(w) = self.leftover(&last) {
                        tracing::warn!("{w}");
                    }
                    break;
                }
                Ending::Signal(name) => {
                    tracing::info!(signal = name, "unmounting");
                    match self.unmount(true).await {
                        Ok(Some(w)) => tracing::warn!("{w}"),
                        Ok(None) => {}
                        Err(e) => tracing::error!("{e}"),
                    }
                    break;
                }
                Ending::Control(request) => {
                    tracing::info!("unmount requested");
                    let outcome = self.unmount(false).await;
                    let unmounted = outcome.is_ok();
                    match &outcome {
                        Ok(Some(w)) => tracing::warn!("{w}"),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("staying mounted: {e}"),
                    }
                    if unmounted {
                        // Free the journal before saying so: a `vault
                        // mount` right after must not find it in use.
                        self.shut_down().await;
                        self.journal = None;
                        shut = true;
                    }
                    let _ = request.outcome.send(outcome);
                    if unmounted {
                        let _ = tokio::time::timeout(WRITTEN_WAIT, request.written).await;
                        break;
                    }
                }
            }
        }
        server.abort();
        let _ = server.await;
        if !shut {
            self.shut_down().await;
        }
        tracing::info!(mountpoint = %self.info.mountpoint.display(), "unmounted");
        Ok(())
    }

    /// The unmount sequence; `Err` (with the reason) when the mount stays.
    /// A signal during an upload stops waiting for it: the mount is then
    /// detached and what is left stays in the journal.
    async fn unmount(&mut self, detach_if_busy: bool) -> Result<Option<String>, String> {
        let dir = self.info.mountpoint.clone();
        let first = self.upload().await;
        let interrupted = matches!(first, Upload::Interrupted);
        if let Upload::Failed(e) = &first {
            tracing::warn!(error = %e, "uploading before unmount failed");
        }
        let attempt = {
            let dir = dir.clone();
            let blocking = tokio::task::spawn_blocking(move || mountinfo::unmount(&dir));
            match tokio::time::timeout(KERNEL_WAIT, blocking).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(io::Error::other(e)),
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            }
        };
        let detach = detach_if_busy || interrupted;
        match attempt {
            Ok(()) => {}
            Err(_) if *self.session_ended.borrow() => {}
            Err(e) if detach => {
                tracing::warn!(error = %e, "unmount failed; detaching lazily");
                if let Err(e) = mountinfo::lazy_unmount(&dir) {
                    tracing::error!(error = %e, "lazy unmount failed");
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(
                    "it is busy: close the files and shells using it, then try again".into(),
                );
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err("the kernel did not finish unmounting in time".into());
            }
            Err(e) => return Err(format!("the kernel refused to unmount it ({e})")),
        }
        let mut ended = self.session_ended.clone();
        if tokio::time::timeout(SESSION_END_WAIT, ended.wait_for(|done| *done))
            .await
            .is_err()
        {
            tracing::warn!("the kernel has not ended the FUSE session (files still open?)");
        }
        if interrupted {
            return Ok(self.leftover(&Upload::Interrupted));
        }
        // What the kernel wrote back while unmounting.
        let last = self.upload().await;
        Ok(self.leftover(&last))
    }

    /// `sync_all`, unless a signal comes first. It runs as its own task so
    /// that a filesystem call that blocks its thread cannot keep this loop
    /// from hearing the signal.
    async fn upload(&mut self) -> Upload {
        let vfs = Arc::clone(&self.vfs);
        let mut task = tokio::spawn(async move { vfs.sync_all().await });
        let signals = &mut self.signals;
        let outcome = tokio::select! {
            r = &mut task => match r {
                Ok(Ok(())) => return Upload::Done,
                Ok(Err(e)) => return Upload::Failed(e),
                Err(e) => return Upload::Failed(crate::vfs::FsError::Internal(e.to_string())),
            },
            _ = signals.term.recv() => Upload::Interrupted,
            _ = signals.int.recv() => Upload::Interrupted,
        };
        task.abort();
        outcome
    }

    /// Stops background work, bounded in time (the process exits next).
    async fn shut_down(&self) {
        let vfs = Arc::clone(&self.vfs);
        let task = tokio::spawn(async move { vfs.shutdown().await });
        if tokio::time::timeout(KERNEL_WAIT, task).await.is_err() {
            tracing::warn!("the filesystem did not shut down in time");
        }
    }

    /// A warning when changes are left for the next mount.
    fn leftover(&self, last: &Upload) -> Option<String> {
        let pending = self.vfs.pending();
        let journal = self.journal_dir.display();
        let rest = format!(
            "what is left stays in the local journal ({journal}) and is uploaded the next time \
             this vault is mounted here"
        );
        match last {
            Upload::Interrupted => Some(format!(
                "interrupted before every change was uploaded; {rest}"
            )),
            Upload::Failed(e) => Some(format!("not every change could be uploaded ({e}); {rest}")),
            Upload::Done if pending.files > 0 => Some(format!(
                "{} file(s) ({}) are not uploaded yet; {rest}",
                pending.files,
                format_bytes(pending.bytes)
            )),
            Upload::Done => None,
        }
    }
}
