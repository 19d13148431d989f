//! Where the client keeps its state, and the saved login session.
//!
//! The directory is `$VAULT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/securevault`,
//! else `~/.config/securevault`. It is created with mode 0700 and refused
//! when other users may write to it (like OpenSSH's `StrictModes`), since a
//! planted session file could point the client at a hostile server.
//!
//! `session.json` holds the server URL, the account, the session id, the
//! refresh token, and the account's KDF parameters and *wrapped* vault key
//! (ciphertext that only the password opens; cached so `vault passwd` and a
//! later mount can re-wrap or unwrap it without another login). It never
//! holds a password, a plaintext key or an access token. It is written
//! atomically (a new file with mode 0600, fsynced, renamed over the old one,
//! then the directory fsynced), and refused on load if others can read it.
//!
//! `session.lock` serialises refresh-token rotation between processes: two
//! `vault` commands refreshing the same token at once would look like token
//! theft to the server, which revokes the whole session.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use common::api::Base64;
use common::crypto::kdf::KdfParams;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Overrides the configuration directory.
pub const CONFIG_DIR_ENV: &str = "VAULT_CONFIG_DIR";
/// Name of the directory under `$XDG_CONFIG_HOME` or `~/.config`.
pub const APP_DIR: &str = "securevault";
/// The session file's name.
pub const SESSION_FILE: &str = "session.json";
/// The lock file's name.
pub const LOCK_FILE: &str = "session.lock";
const SESSION_FORMAT: u32 = 1;

/// Why the configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No variable names a directory.
    #[error("cannot find a configuration directory: set VAULT_CONFIG_DIR or HOME")]
    NoDirectory,
    /// A filesystem operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Others may write to the directory or read the file.
    #[error("{} is accessible to other users (mode {mode:o}); run `chmod {want:o} {}`", path.display(), path.display())]
    Permissions {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// The mode it should have.
        want: u32,
    },
    /// The session file does not parse.
    #[error("the session file {} is damaged; remove it and run `vault login`", path.display())]
    Damaged {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Another `vault` process held the lock for too long.
    #[error("another vault process is holding {}; try again", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
}

/// The configuration directory from the environment.
pub fn config_dir() -> Result<PathBuf, ConfigError> {
    config_dir_from(
        std::env::var_os(CONFIG_DIR_ENV),
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The resolution rule, without reading the environment. Empty values count
/// as unset; a relative `XDG_CONFIG_HOME` is ignored, as its spec requires.
pub fn config_dir_from(
    vault: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, ConfigError> {
    xdg_dir(vault, xdg, home, &[".config"]).ok_or(ConfigError::NoDirectory)
}

/// `explicit`, else `$XDG_.../securevault`, else `~/<home_rel>/securevault`
/// (None without a home). Empty values count as unset; a relative XDG value
/// is ignored, as the XDG base directory spec requires.
pub fn xdg_dir(
    explicit: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
    home_rel: &[&str],
) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(explicit) {
        return Some(dir);
    }
    if let Some(xdg) = set(xdg).filter(|p| p.is_absolute()) {
        return Some(xdg.join(APP_DIR));
    }
    set(home).map(|h| {
        home_rel
            .iter()
            .fold(h, |p, part| p.join(part))
            .join(APP_DIR)
    })
}

/// A refresh token: a bearer secret, so zeroized and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(Zeroizing<String>);

impl Serialize for RefreshToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RefreshToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl RefreshToken {
    /// Wraps a token from the server.
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The token text, for the refresh request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// A logged-in session as saved between commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Format of this file.
    pub format: u32,
    /// The server's base URL.
    pub server: String,
    /// The account's e-mail address.
    pub email: String,
    /// The account id.
    pub account_id: String,
    /// The server's id for this session.
    pub session_id: String,
    /// The current (single-use) refresh token.
    pub refresh_token: RefreshToken,
    /// The account's KDF parameters (not secret).
    pub kdf: KdfParams,
    /// The vault key wrapped by the password's key-encryption key
    /// (ciphertext; useless without the password).
    pub wrapped_vault_key: Base64,
}

impl Session {
    /// A session in the current format.
    pub fn new(
        server: String,
        email: String,
        account_id: String,
        session_id: String,
        refresh_token: RefreshToken,
        kdf: KdfParams,
        wrapped_vault_key: Base64,
    ) -> Self {
        Self {
            format: SESSION_FORMAT,
            server,
            email,
            account_id,
            session_id,
            refresh_token,
            kdf,
            wrapped_vault_key,
        }
    }
}

/// Held while a process rotates the refresh token; released on drop.
#[derive(Debug)]
pub struct StoreLock(#[allow(dead_code)] Option<File>);

/// Where the session lives. A trait so flows can be tested in memory.
pub trait SessionStore: Send + Sync {
    /// The saved session, if any.
    fn load(&self) -> Result<Option<Session>, ConfigError>;
    /// Replaces the saved session.
    fn save(&self, session: &Session) -> Result<(), ConfigError>;
    /// Forgets the session.
    fn remove(&self) -> Result<(), ConfigError>;
    /// Takes the cross-process lock, or `None` when another process has it.
    fn try_lock(&self) -> Result<Option<StoreLock>, ConfigError>;
}

/// The session in the configuration directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ConfigError {
    let path = path.to_path_buf();
    move |source| ConfigError::Io {
        action,
        path,
        source,
    }
}

impl FileStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The session file's path.
    pub fn session_path(&self) -> PathBuf {
        self.dir.join(SESSION_FILE)
    }

    /// Creates the directory with mode 0700, or checks an existing one.
    fn ensure_dir(&self) -> Result<(), ConfigError> {
        match fs::metadata(&self.dir) {
            Ok(_) => self.check_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(io_err("create", &self.dir)),
            Err(e) => Err(io_err("read", &self.dir)(e)),
        }
    }

    fn check_dir(&self) -> Result<(), ConfigError> {
        let meta = fs::metadata(&self.dir).map_err(io_err("read", &self.dir))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(ConfigError::Permissions {
                path: self.dir.clone(),
                mode,
                want: 0o700,
            });
        }
        Ok(())
    }

    /// Writes `bytes` to `name` atomically with mode 0600.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), ConfigError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        self.ensure_dir()?;
        let target = self.dir.join(name);
        let (tmp, mut file) = loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = self
                .dir
                .join(format!(".{name}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
            {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &tmp)(e)),
            }
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(io_err("write", &tmp))
            .and_then(|()| fs::rename(&tmp, &target).map_err(io_err("replace", &target)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // Make the rename itself durable.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.dir))
    }
}

impl SessionStore for FileStore {
    fn load(&self) -> Result<Option<Session>, ConfigError> {
        let path = self.session_path();
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        self.check_dir()?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::Permissions {
                path,
                mode,
                want: 0o600,
            });
        }
        let text = Zeroizing::new(fs::read(&path).map_err(io_err("read", &path))?);
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| ConfigError::Damaged { path, source })
    }

    fn save(&self, session: &Session) -> Result<(), ConfigError> {
        let json = Zeroizing::new(serde_json::to_vec_pretty(session).map_err(|source| {
            ConfigError::Damaged {
                path: self.session_path(),
                source,
            }
        })?);
        self.write_atomic(SESSION_FILE, &json)
    }

    fn remove(&self) -> Result<(), ConfigError> {
        let path = self.session_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    fn try_lock(&self) -> Result<Option<StoreLock>, ConfigError> {
        self.ensure_dir()?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StoreLock(Some(file)))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
        }
    }
}

/// A store in memory, for tests and for callers that must not touch disk.
#[derive(Debug, Default)]
pub struct MemoryStore {
    session: Mutex<Option<Session>>,
    saves: AtomicU64,
}

impl MemoryStore {
    /// A store holding `session`.
    pub fn with(session: Session) -> Self {
        Self {
            session: Mutex::new(Some(session)),
            saves: AtomicU64::new(0),
        }
    }

    /// How many times `save` was called.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }

    /// The session as saved (test helper).
    pub fn current(&self) -> Option<Session> {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl SessionStore for MemoryStore {
    fn load(&self) -> Result<Option<Session>, ConfigError> {
        Ok(self.current())
    }

    fn save(&self, session: &Session) -> Result<(), ConfigError> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(session.clone());
        Ok(())
    }

    fn remove(&self) -> Result<(), ConfigError> {
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }

    fn try_lock(&self) -> Result<Option<StoreLock>, ConfigError> {
        Ok(Some(StoreLock(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session::new(
            "https://vault.example.org".into(),
            "a@example.org".into(),
            "acc-1".into(),
            "sess-1".into(),
            RefreshToken::new("refresh-secret".into()),
            KdfParams {
                memory_kib: 65536,
                iterations: 3,
                parallelism: 4,
                salt: [7; 16],
            },
            Base64(vec![1; 60]),
        )
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directory_resolution_order() {
        let d = |v: Option<&str>, x: Option<&str>, h: Option<&str>| {
            config_dir_from(v.map(Into::into), x.map(Into::into), h.map(Into::into))
        };
        assert_eq!(
            d(Some("/v"), Some("/x"), Some("/h")).unwrap(),
            PathBuf::from("/v")
        );
        assert_eq!(
            d(None, Some("/x"), Some("/h")).unwrap(),
            PathBuf::from("/x/securevault")
        );
        assert_eq!(
            d(Some(""), Some("rel"), Some("/h")).unwrap(),
            PathBuf::from("/h/.config/securevault")
        );
        assert!(matches!(d(None, None, None), Err(ConfigError::NoDirectory)));
    }

    #[test]
    fn session_file_is_0600_in_a_0700_dir_and_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("securevault");
        let store = FileStore::new(dir.clone());
        assert!(store.load().unwrap().is_none());
        store.save(&sample()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&store.session_path()), 0o600);
        assert_eq!(store.load().unwrap(), Some(sample()));
        // Only the session file remains: no temporary file left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from(SESSION_FILE)]);
        store.remove().unwrap();
        assert!(store.load().unwrap().is_none());
        store.remove().unwrap();
    }

    #[test]
    fn write_replaces_by_rename_never_in_place() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("c"));
        store.save(&sample()).unwrap();
        let before = fs::metadata(store.session_path()).unwrap().ino();
        // A reader holding the old file keeps seeing a whole old file.
        let old_text = fs::read_to_string(store.session_path()).unwrap();
        let mut next = sample();
        next.refresh_token = RefreshToken::new("rotated".into());
        store.save(&next).unwrap();
        let after = fs::metadata(store.session_path()).unwrap().ino();
        assert_ne!(before, after, "the file was rewritten in place");
        assert!(old_text.contains("refresh-secret"));
        assert_eq!(
            store.load().unwrap().unwrap().refresh_token,
            next.refresh_token
        );
        assert_eq!(mode(&store.session_path()), 0o600);
    }

    #[test]
    fn loose_permissions_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let store = FileStore::new(dir.clone());
        store.save(&sample()).unwrap();
        fs::set_permissions(store.session_path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            store.load(),
            Err(ConfigError::Permissions { want: 0o600, .. })
        ));
        fs::set_permissions(store.session_path(), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            store.load(),
            Err(ConfigError::Permissions { want: 0o700, .. })
        ));
        assert!(store.save(&sample()).is_err());
    }

    #[test]
    fn no_secret_in_debug_and_damaged_file_is_reported() {
        let shown = format!("{:?}", sample());
        assert!(!shown.contains("refresh-secret"));
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("c"));
        store.save(&sample()).unwrap();
        fs::write(store.session_path(), b"{not json").unwrap();
        assert!(matches!(store.load(), Err(ConfigError::Damaged { .. })));
    }

    #[test]
    fn lock_is_exclusive_between_handles() {
        let tmp = tempfile::tempdir().unwrap();
        let a = FileStore::new(tmp.path().join("c"));
        let b = FileStore::new(tmp.path().join("c"));
        let held = a.try_lock().unwrap();
        assert!(held.is_some());
        assert!(b.try_lock().unwrap().is_none());
        drop(held);
        assert!(b.try_lock().unwrap().is_some());
    }
}
