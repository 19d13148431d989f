//! `vault mount`, `vault unmount`, the hidden `vault __mount-daemon`, and
//! the mount lines of `vault status`.
//!
//! `vault mount` checks everything in the terminal (session, mount point,
//! journal lock, server, key) before anything runs in the background, so
//! every failure is a one-line error there; then it either serves in the
//! foreground (`--foreground`) or hands over to a detached daemon
//! ([`super::handoff`]) and returns once the mount is live.
//!
//! `vault unmount` asks the daemon over its control socket, shows upload
//! progress, and returns once the mount is gone. Without a daemon to ask,
//! a stale mount (daemon killed) is detached lazily, and a live one that
//! belongs to another data directory is unmounted with umount(2) (its
//! daemon then uploads and exits by itself).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::control::{self, ControlError};
use super::daemon::Mounted;
use super::handoff::{self, Answer, DaemonOptions};
use super::mountinfo::{self, is_not_connected};
use super::paths::{
    JournalLock, data_dir, default_cache_dir, is_not_found, journal_dir, log_file, run_dir,
    socket_path,
};
use super::progress::UnmountProgress;
use super::size::format_bytes;
use super::unlock;
use crate::api::authed::SessionClient;
use crate::api::http::{HttpApi, HttpOptions};
use crate::cli::render::clean;
use crate::cli::{Cli, MountArgs};
use crate::config::{FileStore, SessionStore, config_dir};
use crate::error::Error;

/// How long `vault unmount` waits for the mount to leave the mount table.
pub const GONE_WAIT: Duration = Duration::from_secs(10);

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::Io {
        action: "resolve",
        path: path.to_path_buf(),
        source,
    })
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// How long `vault mount` waits for the journal of a daemon that just
/// died (its stale mount was removed) to be let go: a killed process
/// releases its files only once its last thread has exited, which can lag
/// behind the process being reported gone (a thread finishing a disk
/// write), and a mount started at once would otherwise be refused as a
/// second mount of the vault.
const DEAD_DAEMON_GRACE: Duration = Duration::from_secs(5);

/// A mount point checked by [`check_mount_point`].
#[derive(Debug, PartialEq, Eq)]
pub struct MountPoint {
    /// The directory, resolved.
    pub dir: PathBuf,
    /// Whether a stale mount of a dead daemon was removed from it.
    pub removed_stale: bool,
}

/// Checks `dir` for mounting and returns it resolved. A stale SecureVault
/// mount on it (daemon gone) is detached first.
pub fn check_mount_point(dir: &Path) -> Result<MountPoint, Error> {
    let bad = |reason| Error::BadMountPoint {
        dir: dir.to_path_buf(),
        reason,
    };
    let resolved = match mountinfo::resolve_dir(dir) {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return Err(bad("no such directory")),
        Err(e) => return Err(io_err("resolve", dir)(e)),
    };
    let mounts = mountinfo::read().map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
    let mut removed_stale = false;
    if let Some(entry) = mountinfo::find(&mounts, &resolved) {
        let ours = entry.is_securevault();
        if ours && mountinfo::is_stale(&resolved) {
            mountinfo::lazy_unmount(&resolved).map_err(|e| Error::MountFailed {
                dir: resolved.clone(),
                reason: "a stale mount is in the way and could not be removed".into(),
                source: Some(Box::new(e)),
            })?;
            eprintln!(
                "note: removed a stale mount on {} (its daemon had stopped)",
                resolved.display()
            );
            removed_stale = true;
        } else {
            return Err(Error::AlreadyMounted {
                dir: resolved,
                ours,
            });
        }
    }
    match std::fs::metadata(&resolved) {
        Ok(m) if m.is_dir() => Ok(MountPoint {
            dir: resolved,
            removed_stale,
        }),
        Ok(_) => Err(bad("not a directory")),
        Err(e) if is_not_connected(&e) => Err(bad("a stale mount is in the way")),
        Err(e) => Err(io_err("read", &resolved)(e)),
    }
}

/// `vault mount DIR ...`.
pub async fn mount<W: Write>(cli: &Cli, args: &MountArgs, out: &mut W) -> Result<(), Error> {
    let config = absolute(&config_dir()?)?;
    let store = FileStore::new(config.clone());
    let (server, session) = crate::cli::session_for(cli.server.as_deref(), store.load()?)?;
    let MountPoint { dir, removed_stale } = check_mount_point(&args.dir)?;
    let data = data_dir()?;
    // Refuse early (before the password) when this account is mounted here;
    // a daemon whose stale mount was just removed may still be letting go.
    let journal = journal_dir(&data, &session.account_id);
    drop(if removed_stale {
        JournalLock::acquire_within(&journal, DEAD_DAEMON_GRACE)?
    } else {
        JournalLock::acquire(&journal)?
    });

    let ca_file = cli.ca_file.as_deref().map(absolute).transpose()?;
    let api = HttpApi::new(
        server,
        &HttpOptions {
            ca_file: ca_file.clone(),
            ..HttpOptions::default()
        },
    )?;
    let client = SessionClient::new(&api, &store, session);
    let keys = client.account_keys().await?;
    let session = client.session().await;
    drop(client);
    let key = unlock::vault_key(&session, &keys, args.password.password_file.as_deref()).await?;

    let cache_dir = match &args.cache_dir {
        Some(d) => absolute(d)?,
        None => default_cache_dir(&session.account_id)?,
    };
    let options = DaemonOptions {
        mountpoint: dir.clone(),
        config_dir: config,
        data_dir: data.clone(),
        cache_dir,
        cache_bytes: args.cache_size,
        memory_cache_bytes: args.memory_cache,
        read_only: args.read_only,
        allow_other: args.allow_other,
        ca_file,
        server: session.server.clone(),
        account_id: session.account_id.clone(),
        email: session.email.clone(),
    };
    if args.foreground {
        let mounted = Mounted::start(options, key).await?;
        writeln!(out, "Mounted at {} (Ctrl-C to unmount)", dir.display())?;
        out.flush()?;
        mounted.serve().await?;
        writeln!(out, "Unmounted {}", dir.display())?;
    } else {
        let log = log_file(&data, &session.account_id);
        handoff::spawn_daemon(&options, &key, &log, cli.verbose).await?;
        drop(key);
        writeln!(out, "Mounted at {}", dir.display())?;
    }
    Ok(())
}

/// `vault __mount-daemon`: the detached daemon `vault mount` starts.
pub async fn daemon() -> Result<(), Error> {
    let (mut socket, key, options) = handoff::receive()?;
    match Mounted::start(options, key).await {
        Ok(mounted) => {
            if let Err(e) = handoff::write_answer(&mut socket, &Answer::Ready { ready: true }) {
                tracing::warn!(error = %e, "could not tell `vault mount` that the mount is live");
            }
            drop(socket);
            mounted.serve().await
        }
        Err(e) => {
            let _ = handoff::write_answer(&mut socket, &Answer::from_error(&e));
            Err(e)
        }
    }
}

async fn wait_gone(dir: &Path) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        let mounted = mountinfo::mounted_at(dir)
            .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
        if !mounted.is_some_and(|e| e.is_securevault()) {
            return Ok(());
        }
        if start.elapsed() > GONE_WAIT {
            return Err(Error::UnmountFailed {
                dir: dir.to_path_buf(),
                reason: "it is still mounted after its daemon finished".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when `/proc/PID/stat` text says the process is dead or a zombie.
pub fn stat_says_exited(stat: &str) -> bool {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.trim_start())
        .is_some_and(|state| state.starts_with('Z') || state.starts_with('X'))
}

/// Waits (bounded) until the daemon `pid` has exited.
async fn wait_exited(pid: u32) {
    let start = Instant::now();
    while start.elapsed() < GONE_WAIT {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) if stat_says_exited(&stat) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tracing::debug!(pid, "the mount daemon is still running");
}

/// `vault unmount DIR`.
pub async fn unmount<W: Write>(dir: &Path, out: &mut W) -> Result<(), Error> {
    let resolved = match mountinfo::resolve_dir(dir) {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => {
            return Err(Error::NotMounted {
                dir: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err("resolve", dir)(e)),
    };
    let entry = mountinfo::mounted_at(&resolved)
        .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?
        .ok_or_else(|| Error::NotMounted {
            dir: resolved.clone(),
        })?;
    if !entry.is_securevault() {
        return Err(Error::NotAVaultMount { dir: resolved });
    }
    let socket = socket_path(&data_dir()?, &resolved);
    let mut progress = UnmountProgress::new();
    let asked = control::unmount(&socket, |files, bytes| progress.update(files, bytes)).await;
    progress.finish();
    let failed = |reason: String| Error::UnmountFailed {
        dir: resolved.clone(),
        reason,
    };
    match asked {
        Ok(control::Unmounted { warning, pid }) => {
            wait_gone(&resolved).await?;
            if let Some(pid) = pid {
                wait_exited(pid).await;
            }
            if let Some(w) = warning {
                eprintln!("warning: {}", clean(&w));
            }
            writeln!(out, "Unmounted {}", resolved.display())?;
        }
        Err(ControlError::NoDaemon(_)) if mountinfo::is_stale(&resolved) => {
            mountinfo::lazy_unmount(&resolved).map_err(|e| failed(e.to_string()))?;
            let _ = std::fs::remove_file(&socket);
            writeln!(
                out,
                "Unmounted {} (its daemon had stopped; changes it had not uploaded are \
                 uploaded the next time the vault is mounted here)",
                resolved.display()
            )?;
        }
        Err(ControlError::NoDaemon(_)) => {
            // A live mount whose daemon uses another data directory.
            let target = resolved.clone();
            tokio::task::spawn_blocking(move || mountinfo::unmount(&target))
                .await
                .map_err(|e| Error::Task(Box::new(e)))?
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EBUSY) => {
                        failed("it is busy: close the files and shells using it".into())
                    }
                    _ => failed(e.to_string()),
                })?;
            wait_gone(&resolved).await?;
            writeln!(
                out,
                "Unmounted {} (its daemon uploads any pending changes before it exits)",
                resolved.display()
            )?;
        }
        Err(ControlError::Refused(message)) => return Err(failed(message)),
        Err(e) => return Err(failed(e.to_string())),
    }
    Ok(())
}

/// One line per live mount of this data directory, for `vault status`.
pub async fn status_lines() -> Vec<String> {
    let Ok(data) = data_dir() else {
        return Vec::new();
    };
    control::list(&run_dir(&data))
        .await
        .into_iter()
        .map(|s| {
            format!(
                "{}  ({})  pending uploads: {} file(s), {}  cache: {}",
                clean(&s.mountpoint),
                clean(&s.account),
                s.pending_files,
                format_bytes(s.pending_bytes),
                format_bytes(s.cache_bytes)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_states_are_read_from_stat() {
        assert!(!stat_says_exited("123 (vault) S 1 123 123 0 -1"));
        assert!(stat_says_exited("123 (vault) Z 1 123 123 0 -1"));
        assert!(stat_says_exited("123 (a) b) X 1"));
        assert!(!stat_says_exited("123 (a) Z) R 1"));
        assert!(!stat_says_exited("garbage"));
    }

    #[test]
    fn mount_points_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        let err = check_mount_point(&dir).unwrap_err();
        assert!(err.to_string().ends_with(": no such directory"), "{err}");
        std::fs::write(&dir, b"").unwrap();
        let err = check_mount_point(&dir).unwrap_err();
        assert!(err.to_string().ends_with(": not a directory"), "{err}");
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(
            check_mount_point(&dir).unwrap(),
            MountPoint {
                dir: dir.canonicalize().unwrap(),
                removed_stale: false
            }
        );
        let err = check_mount_point(Path::new("/proc")).unwrap_err();
        assert_eq!(err.to_string(), "/proc is already a mount point");
    }
}
