//! Where a mount keeps its local state, and the lock that makes it
//! exclusive.
//!
//! - The data directory: `$VAULT_DATA_DIR`, else
//!   `$XDG_DATA_HOME/securevault`, else `~/.local/share/securevault`. It
//!   holds `journal/<account>/` (the write-back journal, locked by the
//!   daemon for its whole life), `run/<hash>.sock` (one control socket per
//!   mount, named by a hash of the mount point) and
//!   `logs/mount-<account>.log` (the detached daemon's output).
//! - The cache directory: `--cache-dir`, else
//!   `$XDG_CACHE_HOME/securevault/<account>`, else
//!   `~/.cache/securevault/<account>`.
//!
//! Every directory is created with mode 0700; every path handed to the
//! daemon is absolute (it runs in `/`). The journal lock is an exclusive
//! `flock` on `journal/<account>/lock`, released by the kernel when the
//! daemon exits however it exits, so a crash never leaves it stuck.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;

/// Overrides the data directory.
pub const DATA_DIR_ENV: &str = "VAULT_DATA_DIR";
/// The journal lock file's name.
pub const JOURNAL_LOCK: &str = "lock";

/// The data directory from the environment (absolute).
pub fn data_dir() -> Result<PathBuf, Error> {
    let dir = base_dir(
        std::env::var_os(DATA_DIR_ENV),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
        &[".local", "share"],
    )?;
    absolute(&dir)
}

/// The default cache directory for `account` (absolute).
pub fn default_cache_dir(account: &str) -> Result<PathBuf, Error> {
    let dir = base_dir(
        None,
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
        &[".cache"],
    )?;
    absolute(&dir.join(account_component(account)))
}

/// `explicit`, else `$XDG_...../securevault`, else `~/<home_rel>/securevault`.
/// Empty values count as unset; a relative XDG value is ignored.
pub fn base_dir(
    explicit: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
    home_rel: &[&str],
) -> Result<PathBuf, Error> {
    crate::config::xdg_dir(explicit, xdg, home, home_rel).ok_or(Error::Usage(
        "cannot find a data directory: set VAULT_DATA_DIR or HOME".into(),
    ))
}

fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(dir).map_err(|source| Error::Io {
        action: "resolve",
        path: dir.to_path_buf(),
        source,
    })
}

/// An account id as one safe path component (ids come from the server).
pub fn account_component(account: &str) -> String {
    let clean: String = account
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "account".into()
    } else {
        clean
    }
}

/// The journal directory of `account`.
pub fn journal_dir(data: &Path, account: &str) -> PathBuf {
    data.join("journal").join(account_component(account))
}

/// The directory of the control sockets.
pub fn run_dir(data: &Path) -> PathBuf {
    data.join("run")
}

/// The detached daemon's log file.
pub fn log_file(data: &Path, account: &str) -> PathBuf {
    data.join("logs")
        .join(format!("mount-{}.log", account_component(account)))
}

/// The control socket of the mount on `mount_point` (canonical). Named by
/// a hash: mount points can be long and hold any byte, socket paths cannot.
pub fn socket_path(data: &Path, mount_point: &Path) -> PathBuf {
    let digest = Sha256::digest(mount_point.as_os_str().as_bytes());
    let name = hex::encode(digest.get(..16).unwrap_or(&digest));
    run_dir(data).join(format!("{name}.sock"))
}

/// Creates `dir` (and its parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })
}

/// An exclusive lock on a journal directory, held while this lives.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
    dir: PathBuf,
}

impl JournalLock {
    /// Creates the journal directory and locks it, or says it is in use.
    pub fn acquire(dir: &Path) -> Result<Self, Error> {
        ensure_private_dir(dir)?;
        let path = dir.join(JOURNAL_LOCK);
        let io_err = |action: &'static str| {
            let path = path.clone();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open"))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                _file: file,
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(Error::VaultInUse {
                journal: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(io_err("lock")(e)),
        }
    }

    /// [`JournalLock::acquire`], trying again for up to `wait` while the
    /// journal is in use.
    pub fn acquire_within(dir: &Path, wait: std::time::Duration) -> Result<Self, Error> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Self::acquire(dir) {
                Err(Error::VaultInUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// True for "the file is not there".
pub fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directories_resolve_in_order() {
        let d = |v: Option<&str>, x: Option<&str>, h: Option<&str>| {
            base_dir(
                v.map(Into::into),
                x.map(Into::into),
                h.map(Into::into),
                &[".local", "share"],
            )
        };
        assert_eq!(
            d(Some("/v"), Some("/x"), Some("/h")).unwrap(),
            Path::new("/v")
        );
        assert_eq!(
            d(Some(""), Some("/x"), Some("/h")).unwrap(),
            Path::new("/x/securevault")
        );
        assert_eq!(
            d(None, Some("relative"), Some("/h")).unwrap(),
            Path::new("/h/.local/share/securevault")
        );
        assert!(d(None, None, None).is_err());
    }

    #[test]
    fn paths_are_per_account_and_per_mount_point() {
        let data = Path::new("/d");
        assert_eq!(journal_dir(data, "acc-1"), Path::new("/d/journal/acc-1"));
        assert_eq!(journal_dir(data, "../x"), Path::new("/d/journal/___x"));
        assert_eq!(
            log_file(data, "acc-1"),
            Path::new("/d/logs/mount-acc-1.log")
        );
        let a = socket_path(data, Path::new("/mnt/a"));
        let b = socket_path(data, Path::new("/mnt/b"));
        assert_ne!(a, b);
        assert_eq!(a, socket_path(data, Path::new("/mnt/a")));
        assert!(a.starts_with("/d/run"));
        assert_eq!(a.file_name().unwrap().len(), 32 + ".sock".len());
    }

    #[test]
    fn the_journal_lock_is_exclusive_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal").join("acc");
        let lock = JournalLock::acquire(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let err = JournalLock::acquire(&dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "this vault is already mounted on this machine (journal {} is in use)",
                dir.display()
            )
        );
        drop(lock);
        JournalLock::acquire(&dir).unwrap();
    }

    #[test]
    fn a_lock_let_go_while_waiting_is_taken() {
        use std::time::Duration;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal").join("acc");
        let lock = JournalLock::acquire(&dir).unwrap();
        let started = std::time::Instant::now();
        let err = JournalLock::acquire_within(&dir, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, Error::VaultInUse { .. }), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(100), "it waited");
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(lock);
        });
        JournalLock::acquire_within(&dir, Duration::from_secs(10)).unwrap();
        holder.join().unwrap();
    }
}
