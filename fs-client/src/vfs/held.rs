//! Files unlinked while open: "silly rename" into a hidden directory.
//!
//! POSIX keeps an unlinked file readable and writable through descriptors
//! opened before the unlink. The server frees a node's objects as soon as
//! its last name goes, so removing the last name of a file this mount has
//! open would make its uncached parts unreadable. Instead such a name is
//! moved into `/.securevault-held` (a directory this client hides: `lookup`
//! and `readdir` of the root never show it, and no call may name it), as
//! `<device>-<node>`; the last `release` removes it there. The device id is
//! random, kept next to the journal, so that the next start of this
//! machine's mount removes what a crash left behind without touching files
//! another machine holds open.
//!
//! Invariants: only non-directories with one link left are held (with more
//! links the node stays reachable anyway); a held file's view shows
//! `nlink` 0, as `fstat` of an unlinked file does.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use common::crypto::attrs::NodeKind;

use super::core::{Handle, lock};
use super::error::{FsError, FsResult};
use super::seal;
use super::types::{FileKind, Ino, ROOT_INO};
use super::{RenameHow, Vfs, new_attrs};
use crate::api::VaultApi;

/// The hidden directory's name in the root.
pub(crate) const HELD_DIR: &[u8] = b".securevault-held";

/// True for the one name no call may use.
pub(crate) fn reserved(parent: Ino, name: &[u8]) -> bool {
    parent == ROOT_INO && name == HELD_DIR
}

/// Held files of a mount: inode → (held directory, name there).
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub files: HashMap<Ino, Vec<u8>>,
    pub dir: Option<Ino>,
}

/// This machine's id for held names (created on first use).
pub(crate) fn device_id(journal_dir: &Path) -> std::io::Result<String> {
    let path = journal_dir.join("device-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(s.to_owned());
        }
    }
    let random = common::ids::NodeId::random().map_err(std::io::Error::other)?;
    let id: String = random.as_bytes()[..8]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    std::fs::create_dir_all(journal_dir)?;
    let tmp = journal_dir.join("device-id.tmp");
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

impl<A: VaultApi + 'static> Vfs<A> {
    /// True if this mount has `ino` open as a file.
    pub(super) fn is_open(&self, ino: Ino) -> bool {
        lock(&self.core.handles)
            .values()
            .any(|h| matches!(h, Handle::File { ino: i, .. } if *i == ino))
    }

    /// The hidden directory's inode, made on first use.
    async fn held_dir(&self, create: bool) -> FsResult<Option<Ino>> {
        if let Some(ino) = lock(&self.core.held).dir {
            return Ok(Some(ino));
        }
        let name = OsStr::from_bytes(HELD_DIR);
        let ino = match self.lookup_inner(ROOT_INO, name).await {
            Ok(a) => a.ino,
            Err(FsError::NotFound) if create => {
                let attrs = new_attrs(
                    NodeKind::Directory,
                    0o700,
                    super::Caller {
                        uid: rustix::process::geteuid().as_raw(),
                        gid: rustix::process::getegid().as_raw(),
                    },
                );
                match self.make_inner(ROOT_INO, name, attrs).await {
                    Ok((ino, ..)) => ino,
                    // Made by another machine just now.
                    Err(FsError::Exists) => self.lookup_inner(ROOT_INO, name).await?.ino,
                    Err(e) => return Err(e),
                }
            }
            Err(FsError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        lock(&self.core.held).dir = Some(ino);
        Ok(Some(ino))
    }

    /// Before `parent/name` loses its last link: if it names a file this
    /// mount has open, moves it into the hidden directory instead and
    /// answers true (the caller is done).
    pub(crate) async fn hold_if_open(&self, parent: Ino, name: &[u8]) -> FsResult<bool> {
        let c = &self.core;
        let Some((ino, _)) = lock(&c.table).remembered(parent, name) else {
            return Ok(false);
        };
        // Cheap first: only files with state here can be open.
        let Some(file) = c.file(ino) else {
            return Ok(false);
        };
        if !self.is_open(ino) {
            return Ok(false);
        }
        let view = file.view();
        if view.nlink > 1 || seal::file_kind(view.attrs.kind) == FileKind::Directory {
            return Ok(false);
        }
        // The name must still be this file on the server.
        let current = self.lookup_inner(parent, OsStr::from_bytes(name)).await?;
        if current.ino != ino {
            return Ok(false);
        }
        let Some(dir) = self.held_dir(true).await? else {
            return Ok(false);
        };
        let held_name = format!("{}-{}", c.device_id, file.node).into_bytes();
        self.rename_inner(parent, name, dir, &held_name, RenameHow::NoReplace)
            .await?;
        {
            let mut v = file.view.lock().unwrap_or_else(|p| p.into_inner());
            v.nlink = 0;
            v.link_gen += 1;
        }
        lock(&c.held).files.insert(ino, held_name);
        Ok(true)
    }

    /// After a descriptor of `ino` closed: the last one removes a held
    /// file for good.
    pub(crate) async fn release_held(&self, ino: Ino) {
        // Every release passes here: look at the (almost always empty) held
        // map before scanning the open handles.
        if !lock(&self.core.held).files.contains_key(&ino) || self.is_open(ino) {
            return;
        }
        let (dir, name) = {
            let mut h = lock(&self.core.held);
            let Some(name) = h.files.remove(&ino) else {
                return;
            };
            let Some(dir) = h.dir else { return };
            (dir, name)
        };
        if let Err(e) = self.remove_inner(dir, &name, false).await {
            tracing::warn!(error = %e, "cannot remove a file unlinked while open; the next mount retries");
        }
    }

    /// At start: removes what this machine held when it stopped or crashed.
    pub(crate) async fn clean_held(&self) -> FsResult<()> {
        if self.core.config.read_only {
            return Ok(());
        }
        let Some(dir) = self.held_dir(false).await? else {
            return Ok(());
        };
        let fh = self.opendir(dir).await?;
        let entries = self.readdir(dir, fh, 0).await;
        self.releasedir(dir, fh);
        let prefix = format!("{}-", self.core.device_id);
        for e in entries? {
            if e.name.starts_with(prefix.as_bytes()) {
                match self.remove_inner(dir, &e.name, false).await {
                    Ok(()) => {}
                    Err(e) if e.errno() == libc::ENOENT => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
