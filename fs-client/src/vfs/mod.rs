//! The filesystem logic of a mounted vault, with no FUSE in it.
//!
//! [`Vfs`] answers POSIX-shaped calls (`lookup`, `read`, `write`, `rename`,
//! ...) in terms of inode numbers and plaintext names, and turns them into
//! calls on a [`VaultApi`] with everything encrypted on the way out and
//! verified on the way in. The fuser adapter (`crate::mount::fuse`) only
//! translates; tests drive `Vfs` directly against the in-memory
//! [`crate::api::fake_tree::FakeVault`].
//!
//! Every method takes `&self` and may run concurrently with any other.

mod background;
mod batch;
mod commit;
mod content;
mod core;
mod dirs;
mod error;
mod feed;
mod file;
mod held;
mod journal;
mod local;
mod names;
mod records;
mod recycle;
mod remote;
mod seal;
mod slots;
mod table;
mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dirs;
#[cfg(test)]
mod tests_local;
#[cfg(test)]
mod tests_records;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use common::NodeId;
use common::api::ErrorCode;
use common::api::tree::{CreateNodeRequest, EntrySpec, LinkRequest, RenameMode, RenameRequest};
use common::crypto::attrs::{
    MAX_SYMLINK_TARGET, MAX_XATTR_NAME, MAX_XATTR_VALUE, NodeAttributes, NodeKind, Timestamp,
};
use common::crypto::subkeys::VaultSubkeys;
use tokio::sync::Notify;

pub use error::{FsError, FsResult};
pub use types::*;

use self::core::{Core, Handle, attr_of, lock};
use self::file::{FileInner, FileState};
use self::names::NameState;
use self::remote::{Budget, Remote};
use crate::api::{ListQuery, TokenSource, VaultApi};
use crate::cache::{DiskCache, SegmentCache};

/// The journal's stock of empty files for a mount: as many as a burst of
/// new small files (an untar, `cp -r`) has pending before the uploads
/// catch up, at the cost of one empty inode each.
pub const JOURNAL_SPARE_FILES: usize = 4096;

/// How a mount behaves.
#[derive(Debug, Clone)]
pub struct VfsConfig {
    /// The write-back journal (ciphertext only); one per account and
    /// machine, replayed at the next start.
    pub journal_dir: PathBuf,
    /// The on-disk ciphertext cache.
    pub cache_dir: PathBuf,
    /// Bound of the on-disk cache in bytes (0: no disk cache).
    pub cache_bytes: u64,
    /// Bound of the in-memory cache of decrypted data in bytes.
    pub memory_cache_bytes: u64,
    /// Refuse every change.
    pub read_only: bool,
    /// Uploads running at once.
    pub upload_parallelism: usize,
    /// Empty files the journal keeps made ahead, so that a new file's
    /// manifest allocates no inode on the `close` path (0: none; see
    /// [`JOURNAL_SPARE_FILES`]).
    pub journal_spare_files: usize,
}

/// A mounted vault's filesystem logic.
pub struct Vfs<A: VaultApi + 'static> {
    core: Arc<Core<A>>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl<A: VaultApi + 'static> std::fmt::Debug for Vfs<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vfs").finish_non_exhaustive()
    }
}

fn apply_set(attrs: &mut NodeAttributes, set: &SetAttr) {
    records::RecordChange::of(set).apply(attrs);
}

fn new_attrs(kind: NodeKind, mode: u32, caller: Caller) -> NodeAttributes {
    NodeAttributes::new(kind, mode, caller.uid, caller.gid, Timestamp::now())
}

/// Extended attributes this filesystem does not keep: `system.*` (POSIX
/// ACLs would need enforcing; without them the kernel's mode checks apply,
/// as on a filesystem mounted without `acl`) and the SELinux label (on FUSE
/// it comes from the local policy, never from the files). Getting, setting
/// or removing one fails with `EOPNOTSUPP`, as on a filesystem without that
/// support; `ls -l` then stops asking for the rest of the directory (it
/// caches "unsupported" per device) instead of making two requests per file.
fn unsupported_xattr(name: &[u8]) -> bool {
    name.starts_with(b"system.") || name == b"security.selinux"
}

fn check_xattr_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name.len() > MAX_XATTR_NAME {
        return Err(FsError::Range);
    }
    if unsupported_xattr(name) {
        return Err(FsError::NotSupported);
    }
    Ok(())
}

/// The value of `name` in `attrs` (the callers refuse unsupported names
/// first, before they look for the attributes).
fn xattr_value(attrs: &NodeAttributes, name: &[u8]) -> FsResult<Vec<u8>> {
    attrs.xattrs.get(name).cloned().ok_or(FsError::NoAttribute)
}

/// Every name in `attrs`, each followed by a NUL (the unsupported ones
/// left out, should a record hold one).
fn xattr_list(attrs: &NodeAttributes) -> Vec<u8> {
    let mut out = Vec::new();
    for name in attrs.xattrs.keys().filter(|n| !unsupported_xattr(n)) {
        out.extend_from_slice(name);
        out.push(0);
    }
    out
}

impl<A: VaultApi + 'static> Vfs<A> {
    /// Opens the vault: creates the root on first use, replays the journal
    /// (re-queuing uploads a previous run left), and starts the background
    /// uploader and change-feed poller on the current tokio runtime.
    pub async fn start(
        api: Arc<A>,
        tokens: Arc<dyn TokenSource>,
        keys: VaultSubkeys,
        config: VfsConfig,
    ) -> FsResult<Self> {
        let remote = Arc::new(Remote::new(api, tokens));
        let disk = if config.cache_bytes > 0 {
            Some(DiskCache::open(&config.cache_dir, config.cache_bytes)?)
        } else {
            None
        };
        let mem = SegmentCache::new(config.memory_cache_bytes);
        let background = Arc::new(background::Background::new());
        let content = Arc::new(content::Content::new(
            remote.clone(),
            keys.content.clone(),
            disk,
            mem,
            config.upload_parallelism.clamp(1, 16),
            background.clone(),
        ));
        let journal = journal::Journal::open(
            &config.journal_dir,
            keys.local.clone(),
            config.journal_spare_files,
        )?;
        let device_id = held::device_id(&config.journal_dir)?;
        let core = Arc::new(Core {
            remote,
            keys,
            config,
            table: std::sync::Mutex::new(table::Table::new()),
            files: std::sync::Mutex::new(HashMap::new()),
            handles: std::sync::Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            content,
            journal,
            dirty: std::sync::Mutex::new(HashMap::new()),
            records_io: std::sync::Mutex::new(()),
            upload_wake: Notify::new(),
            committed: Notify::new(),
            change_seq: AtomicI64::new(0),
            batch_files: std::sync::atomic::AtomicUsize::new(batch::FIRST_FILES),
            stopping: AtomicBool::new(false),
            background,
            held: std::sync::Mutex::new(held::Held::default()),
            device_id,
            dirs: std::sync::Mutex::new(dirs::Queue::new()),
            dirs_send: tokio::sync::Mutex::new(()),
        });
        let before: Arc<dyn remote::Before> = core.clone();
        core.remote.set_before(Arc::downgrade(&before));
        drop(before);
        // Directories a previous run made: sent before anything else.
        dirs::replay(&core)?;
        core.ensure_root(
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
        .await?;
        if let Ok(stats) = core
            .remote
            .call(
                Budget::Interactive,
                |api, t| async move { api.statfs(&t).await },
            )
            .await
        {
            core.change_seq.store(stats.seq, Ordering::Release);
        }
        commit::replay(&core).await?;
        records::replay(&core)?;
        let mut tasks = Vec::new();
        if !core.config.read_only {
            tasks.push(tokio::spawn(commit::uploader(core.clone())));
        }
        tasks.push(tokio::spawn(feed::watch_changes(core.clone())));
        let vfs = Self {
            core,
            tasks: std::sync::Mutex::new(tasks),
        };
        if let Err(e) = vfs.clean_held().await {
            tracing::warn!(error = %e, "cannot remove files a crashed mount held open");
        }
        Ok(vfs)
    }

    /// Looks `name` up in `parent`; counts one kernel reference on success.
    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        if held::reserved(parent, name.as_bytes()) {
            return Err(FsError::NotFound);
        }
        self.lookup_inner(parent, name).await
    }

    async fn lookup_inner(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let c = &self.core;
        let name = name.as_bytes();
        let dir = c.id_of(parent)?;
        let tag = seal::tag(&c.keys, dir, name)?;
        if let Some(attr) = local::lookup(c, parent, dir, &tag, name)? {
            lock(&c.table).remember(attr.ino);
            return Ok(attr);
        }
        let since = c.tick();
        let entry = match c
            .remote
            .call_for(Budget::Interactive, &[dir], |api, t| async move {
                api.lookup(&t, dir, &tag).await
            })
            .await
        {
            Ok(entry) => entry,
            Err(e) if remote::is_transient(&e) => {
                // Offline: answer from what this mount has seen.
                let mut t = lock(&c.table);
                let (ino, k) = t.remembered(parent, name).ok_or(FsError::from(e))?;
                let attr = attr_of(ino, &k.attrs, k.nlink);
                t.remember(ino);
                drop(t);
                return Ok(match c.file(ino) {
                    Some(f) => {
                        let v = f.view();
                        attr_of(ino, &v.attrs, v.nlink)
                    }
                    None => attr,
                });
            }
            Err(e) => return Err(e.into()),
        };
        if entry.tag != tag {
            return Err(FsError::Integrity(
                common::crypto::CryptoError::NameTagMismatch,
            ));
        }
        let (ino, attr, _) = c.admit(since, parent, dir, &entry, Some(name))?;
        lock(&c.table).remember(ino);
        Ok(attr)
    }

    /// The kernel dropped `nlookup` references to `ino`.
    pub fn forget(&self, ino: Ino, nlookup: u64) {
        // (A pending record change keeps the slot too: see `Table::forget`.)
        let keep = lock(&self.core.files).contains_key(&ino);
        lock(&self.core.table).forget(ino, nlookup, keep);
    }

    /// Attributes of `ino`.
    pub async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        self.core.attr(ino).await
    }

    /// [`Vfs::getattr`] when it can be answered from memory at once (an
    /// open file's own view, or a fresh verified record), else `None`. For
    /// the FUSE adapter to answer on its own thread, without a task.
    pub fn getattr_cached(&self, ino: Ino) -> Option<Attr> {
        self.core.attr_cached(ino)
    }

    /// [`Vfs::getxattr`] when it can be answered from memory at once, else
    /// `None`. `ls -l` asks two of these per file (an ACL and a security
    /// label), so they must not cost a task and a wake-up each.
    pub fn getxattr_cached(&self, ino: Ino, name: &OsStr) -> Option<FsResult<Vec<u8>>> {
        let name = name.as_bytes();
        if unsupported_xattr(name) {
            return Some(Err(FsError::NotSupported));
        }
        self.attrs_cached(ino, |a| xattr_value(a, name))
    }

    /// [`Vfs::listxattr`] when it can be answered from memory at once, else
    /// `None` (`cp -a`, `rsync -X` and `tar --xattrs` ask it per file).
    pub fn listxattr_cached(&self, ino: Ino) -> Option<FsResult<Vec<u8>>> {
        self.attrs_cached(ino, |a| Ok(xattr_list(a)))
    }

    fn attrs_cached<T>(&self, ino: Ino, pick: impl FnOnce(&NodeAttributes) -> T) -> Option<T> {
        if let Some(f) = self.core.file(ino) {
            return Some(pick(&f.view().attrs));
        }
        let t = lock(&self.core.table);
        t.fresh(ino).map(|k| pick(&k.attrs))
    }

    /// The open or changed state of file `ino`, created from its current
    /// version when there is none (`revalidate`: bring a clean state up to
    /// the current version: close-to-open). The current version is the
    /// verified state the change feed vouches for ([`Core::known`]: no
    /// change to it in a poll sent since it was verified, at most
    /// [`table::FEED_TTL`] ago), else the server's answer: an `open` then
    /// costs no request while the feed keeps up, and sees a change made
    /// elsewhere once the feed has. Counts one handle on it: the caller
    /// must [`Core::release_file`] it.
    async fn file_state(&self, ino: Ino, revalidate: bool) -> FsResult<Arc<FileState>> {
        let c = &self.core;
        if let Some(f) = c.acquire_file(ino) {
            if revalidate {
                let mut inner = f.inner.lock().await;
                if !inner.dirty && !inner.gone {
                    match c.known(ino).await {
                        // Never back to a version older than the one held.
                        Ok((version, attrs, _)) if version > inner.base_version => {
                            inner.rebase_clean(version, attrs);
                            f.publish(&inner);
                        }
                        Ok(_) => {}
                        // Offline: keep reading what we have.
                        Err(e) if e.is_transient() => {}
                        Err(e) => {
                            drop(inner);
                            c.release_file(&f);
                            return Err(e);
                        }
                    }
                }
            }
            return Ok(f);
        }
        let (id, parent) = {
            let t = lock(&c.table);
            let slot = t.slot(ino)?;
            (slot.id, t.id(slot.parent).unwrap_or(NodeId::ROOT))
        };
        let (version, attrs, nlink) = c.known(ino).await?;
        match attrs.kind {
            NodeKind::File => {}
            NodeKind::Directory => return Err(FsError::IsADirectory),
            _ => return Err(FsError::Invalid),
        }
        let name = lock(&c.table)
            .slot(ino)
            .map(|s| s.name.to_vec())
            .unwrap_or_default();
        let inner = FileInner::clean(id, version, attrs, parent, &name);
        let fresh = FileState::new(id, ino, inner, nlink);
        let mut files = lock(&c.files);
        let f = files.entry(ino).or_insert(fresh).clone();
        f.handles.fetch_add(1, Ordering::AcqRel);
        Ok(f)
    }

    /// Changes attributes (chmod, chown, truncate, utimens).
    pub async fn setattr(&self, ino: Ino, _fh: Option<Fh>, set: SetAttr) -> FsResult<Attr> {
        let c = &self.core;
        c.check_writable()?;
        let file = match set.size {
            Some(_) => Some(self.file_state(ino, false).await?),
            None => c.acquire_file(ino),
        };
        let Some(file) = file else {
            if let Some(attr) = records::set(c, ino, &set).await? {
                return Ok(attr);
            }
            return Ok(c
                .update_record(ino, |a| {
                    apply_set(a, &set);
                    Ok(())
                })
                .await?
                .2);
        };
        let res = self.setattr_file(ino, &file, &set).await;
        c.release_file(&file);
        res
    }

    async fn setattr_file(&self, ino: Ino, file: &Arc<FileState>, set: &SetAttr) -> FsResult<Attr> {
        let c = &self.core;
        let mut inner = file.inner.lock().await;
        if set.size.is_none() && !inner.dirty && !inner.gone {
            // A clean file: change its record now.
            drop(inner);
            let (version, attrs, attr) = c
                .update_record(ino, |a| {
                    apply_set(a, set);
                    Ok(())
                })
                .await?;
            let mut inner = file.inner.lock().await;
            if !inner.dirty {
                inner.rebase_clean(version, attrs);
                file.publish(&inner);
            }
            return Ok(attr);
        }
        if let Some(size) = set.size {
            inner.truncate(&c.io(), size).await?;
        }
        apply_set(&mut inner.attrs, set);
        inner.dirty = true;
        inner.mark_closed();
        // A file open here is saved when it is closed (tar sets owner and
        // mode before it closes each file): the journal is written then,
        // once, not per change. A truncation is saved at once (it changes
        // which staged slots count).
        if set.size.is_some() || !self.is_open(ino) {
            inner.save(&c.journal, false)?;
        }
        file.publish(&inner);
        c.mark_dirty(ino, staged_bytes(&inner));
        let v = file.view();
        Ok(attr_of(ino, &v.attrs, v.nlink))
    }

    /// A symlink's target.
    pub async fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let (_, attrs, _) = self.core.known(ino).await?;
        if attrs.kind != NodeKind::Symlink {
            return Err(FsError::Invalid);
        }
        Ok(attrs.symlink_target)
    }

    /// Creates a node with its entry on the server.
    async fn make(
        &self,
        parent: Ino,
        name: &OsStr,
        attrs: NodeAttributes,
    ) -> FsResult<(Ino, Attr, NodeId, u32)> {
        if held::reserved(parent, name.as_bytes()) {
            return Err(FsError::NotPermitted);
        }
        self.make_inner(parent, name, attrs).await
    }

    async fn make_inner(
        &self,
        parent: Ino,
        name: &OsStr,
        attrs: NodeAttributes,
    ) -> FsResult<(Ino, Attr, NodeId, u32)> {
        let c = &self.core;
        c.check_writable()?;
        let name = name.as_bytes();
        let dir = c.id_of(parent)?;
        let id = NodeId::random()?;
        let req = CreateNodeRequest {
            id,
            kind: seal::wire_kind(attrs.kind),
            record: seal::seal(&c.keys, id, 1, &attrs)?.into(),
            entry: Some(EntrySpec {
                parent: dir,
                tag: seal::tag(&c.keys, dir, name)?,
                encrypted_name: seal::encrypt(&c.keys, dir, id, name)?.into(),
            }),
            objects: Vec::new(),
        };
        let since = c.tick();
        let tag = seal::tag(&c.keys, dir, name)?;
        lock(&c.table).names.expect(id, dir);
        let res = c.create_node(Budget::Interactive, &req).await;
        if res.is_err() {
            lock(&c.table).names.unexpect(id, dir);
        }
        let info = match res {
            Ok(info) => info,
            Err(e) if e.code() == Some(ErrorCode::Exists) => {
                // Our own earlier try may have landed (the id is fresh).
                match c
                    .remote
                    .call(Budget::Interactive, |api, t| async move {
                        api.node(&t, id).await
                    })
                    .await
                {
                    Ok(info) => info,
                    Err(_) => return Err(FsError::Exists),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let mut t = lock(&c.table);
        let ino = t.ino_for(id, parent, name);
        t.observe(ino, &info, attrs.clone(), since)?;
        t.remember(ino);
        t.names.added(dir, tag, id);
        if attrs.kind == NodeKind::Directory {
            t.names.made_empty(id);
        }
        drop(t);
        Ok((ino, attr_of(ino, &attrs, info.nlink), dir, info.nlink))
    }

    /// A FIFO, socket or empty regular file (`mode` carries the type bits).
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFIFO => NodeKind::Fifo,
            libc::S_IFSOCK => NodeKind::Socket,
            libc::S_IFREG | 0 => NodeKind::File,
            _ => return Err(FsError::NotPermitted),
        };
        Ok(self
            .make(parent, name, new_attrs(kind, mode & !umask, caller))
            .await?
            .1)
    }

    /// A directory.
    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let attrs = new_attrs(NodeKind::Directory, mode & !umask, caller);
        if !held::reserved(parent, name.as_bytes()) {
            self.core.check_writable()?;
            if let Some(attr) = dirs::make(&self.core, parent, name.as_bytes(), &attrs)? {
                return Ok(attr);
            }
        }
        Ok(self.make(parent, name, attrs).await?.1)
    }

    async fn remove(&self, parent: Ino, name: &OsStr, dir: bool) -> FsResult<()> {
        let name = name.as_bytes();
        if held::reserved(parent, name) {
            return Err(FsError::NotPermitted);
        }
        self.core.check_writable()?;
        if !dir && local::unlink(&self.core, parent, name).await? {
            return Ok(());
        }
        if dir {
            // Files made in it here and not yet on the server count.
            let child = {
                let t = lock(&self.core.table);
                t.named(parent, name).and_then(|ino| t.id(ino).ok())
            };
            if let Some(child) = child {
                local::flush_dir(&self.core, child).await?;
            }
        }
        if !dir && self.hold_if_open(parent, name).await? {
            return Ok(());
        }
        self.remove_inner(parent, name, dir).await
    }

    async fn remove_inner(&self, parent: Ino, name: &[u8], dir: bool) -> FsResult<()> {
        let c = &self.core;
        c.check_writable()?;
        let pid = c.id_of(parent)?;
        let tag = seal::tag(&c.keys, pid, name)?;
        let child = match lock(&c.table).name_state(pid, &tag) {
            NameState::Present(id) => Some(id),
            _ => None,
        };
        if let Some(id) = child {
            lock(&c.table).names.expect(id, pid);
        }
        let res = c
            .remote
            .call(Budget::Interactive, |api, t| async move {
                api.remove(&t, pid, &tag, dir).await
            })
            .await;
        let mut t = lock(&c.table);
        match res {
            Ok(()) => t.names.removed(pid, &tag),
            Err(e) => {
                if let Some(id) = child {
                    t.names.unexpect(id, pid);
                }
                return Err(e.into());
            }
        }
        drop(t);
        c.unlinked(parent, name);
        Ok(())
    }

    /// Removes a non-directory entry (an open file stays readable).
    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, false).await
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, true).await
    }

    /// A symbolic link to `target`.
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Attr> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > MAX_SYMLINK_TARGET {
            return Err(FsError::NameTooLong);
        }
        let mut attrs = new_attrs(NodeKind::Symlink, 0o777, caller);
        attrs.symlink_target = target.to_vec();
        attrs.size = target.len() as u64;
        Ok(self.make(parent, name, attrs).await?.1)
    }

    /// Renames or moves an entry.
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        how: RenameHow,
    ) -> FsResult<()> {
        let (name, new_name) = (name.as_bytes(), new_name.as_bytes());
        if held::reserved(parent, name) || held::reserved(new_parent, new_name) {
            return Err(FsError::NotPermitted);
        }
        self.core.check_writable()?;
        if (parent, name) != (new_parent, new_name) {
            let c = &self.core;
            if how == RenameHow::Replace {
                // A target the server has not seen is simply replaced.
                local::unlink(c, new_parent, new_name).await?;
            } else if let Some(f) = local::pending(c, new_parent, new_name) {
                commit::commit_ino(Budget::Interactive, c, f.ino).await?;
            }
            let target = {
                let t = lock(&c.table);
                t.named(new_parent, new_name).and_then(|ino| t.id(ino).ok())
            };
            if let Some(target) = target {
                local::flush_dir(c, target).await?;
            }
            if how != RenameHow::Exchange
                && local::rename(c, parent, name, new_parent, new_name).await?
            {
                return Ok(());
            }
            if let Some(f) = local::pending(c, parent, name) {
                commit::commit_ino(Budget::Interactive, c, f.ino).await?;
            }
        }
        if how == RenameHow::Replace && (parent, name) != (new_parent, new_name) {
            // A file open here keeps its contents when replaced.
            self.hold_if_open(new_parent, new_name).await?;
        }
        self.rename_inner(parent, name, new_parent, new_name, how)
            .await
    }

    async fn rename_inner(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        how: RenameHow,
    ) -> FsResult<()> {
        let c = &self.core;
        c.check_writable()?;
        let src = c.id_of(parent)?;
        let dst = c.id_of(new_parent)?;
        let src_tag = seal::tag(&c.keys, src, name)?;
        let dst_tag = seal::tag(&c.keys, dst, new_name)?;
        let since = c.tick();
        let entry = c
            .remote
            .call(Budget::Interactive, |api, t| async move {
                api.lookup(&t, src, &src_tag).await
            })
            .await?;
        let (child_ino, _, _) = c.admit(since, parent, src, &entry, Some(name))?;
        let child = entry.node.id;
        let mut other = None;
        let src_encrypted_name = if how == RenameHow::Exchange {
            let target = c
                .remote
                .call(Budget::Interactive, |api, t| async move {
                    api.lookup(&t, dst, &dst_tag).await
                })
                .await?;
            let (ino, _, _) = c.admit(since, new_parent, dst, &target, Some(new_name))?;
            other = Some(ino);
            Some(seal::encrypt(&c.keys, src, target.node.id, name)?.into())
        } else {
            None
        };
        let req = RenameRequest {
            src_parent: src,
            src_tag,
            dst_parent: dst,
            dst_tag,
            dst_encrypted_name: seal::encrypt(&c.keys, dst, child, new_name)?.into(),
            src_encrypted_name,
            mode: match how {
                RenameHow::Replace => RenameMode::Replace,
                RenameHow::NoReplace => RenameMode::NoReplace,
                RenameHow::Exchange => RenameMode::Exchange,
            },
        };
        {
            let mut t = lock(&c.table);
            t.names.expect(child, src);
            if dst != src {
                t.names.expect(child, dst);
            }
        }
        let res = c
            .remote
            .call(Budget::Interactive, |api, t| {
                let req = req.clone();
                async move { api.rename(&t, &req).await }
            })
            .await;
        {
            let mut t = lock(&c.table);
            match &res {
                Ok(()) if how == RenameHow::Exchange => {
                    t.names.drop_dir(src);
                    t.names.drop_dir(dst);
                }
                Ok(()) => {
                    t.names.removed(src, &src_tag);
                    t.names.added(dst, dst_tag, child);
                }
                Err(_) => {
                    t.names.unexpect(child, src);
                    if dst != src {
                        t.names.unexpect(child, dst);
                    }
                }
            }
        }
        res?;
        if how == RenameHow::Replace {
            // A replaced target loses the link the name gave it.
            let replaced = lock(&c.table)
                .remembered(new_parent, new_name)
                .map(|(ino, _)| ino);
            if replaced.is_some_and(|r| r != child_ino) {
                c.unlinked(new_parent, new_name);
            }
        }
        self.moved(child_ino, child, new_parent, dst, new_name)
            .await;
        if let Some(ino) = other {
            let target = lock(&c.table).id(ino);
            if let Ok(target) = target {
                self.moved(ino, target, parent, src, name).await;
            }
        }
        Ok(())
    }

    /// Records a node's new place (for `..` and conflict copies).
    async fn moved(&self, ino: Ino, id: NodeId, parent: Ino, parent_id: NodeId, name: &[u8]) {
        lock(&self.core.table).ino_for(id, parent, name);
        if let Some(f) = self.core.file(ino) {
            let mut inner = f.inner.lock().await;
            inner.parent = parent_id;
            inner.name = zeroize::Zeroizing::new(name.to_vec());
        }
    }

    /// A hard link to `ino` as `new_parent/new_name`.
    pub async fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> FsResult<Attr> {
        let c = &self.core;
        c.check_writable()?;
        let name = new_name.as_bytes();
        if held::reserved(new_parent, name) {
            return Err(FsError::NotPermitted);
        }
        if c.file(ino).is_some_and(|f| f.local.load(Ordering::Acquire)) {
            commit::commit_ino(Budget::Interactive, c, ino).await?;
        }
        let child = c.id_of(ino)?;
        let dir = c.id_of(new_parent)?;
        let req = LinkRequest {
            entry: EntrySpec {
                parent: dir,
                tag: seal::tag(&c.keys, dir, name)?,
                encrypted_name: seal::encrypt(&c.keys, dir, child, name)?.into(),
            },
            child,
        };
        let since = c.tick();
        let tag = req.entry.tag;
        lock(&c.table).names.expect(child, dir);
        let res = c
            .remote
            .call(Budget::Interactive, |api, t| {
                let req = req.clone();
                async move { api.link(&t, &req).await }
            })
            .await;
        {
            let mut t = lock(&c.table);
            match &res {
                Ok(_) => t.names.added(dir, tag, child),
                Err(_) => t.names.unexpect(child, dir),
            }
        }
        let info = res?;
        let attrs = seal::open(&c.keys, &info)?;
        {
            let mut t = lock(&c.table);
            t.observe(ino, &info, attrs.clone(), since)?;
            t.remember(ino);
        }
        if let Some(f) = c.file(ino) {
            let mut v = f.view.lock().unwrap_or_else(|p| p.into_inner());
            v.nlink = info.nlink;
            v.link_gen += 1;
            let attrs = v.attrs.clone();
            drop(v);
            return Ok(attr_of(ino, &attrs, info.nlink));
        }
        Ok(attr_of(ino, &attrs, info.nlink))
    }

    /// Opens a file (revalidating it against the server: close-to-open).
    pub async fn open(&self, ino: Ino, mode: OpenMode) -> FsResult<Fh> {
        let c = &self.core;
        if mode.write || mode.truncate {
            c.check_writable()?;
        }
        let file = self.file_state(ino, true).await?;
        if mode.write && mode.truncate {
            let mut inner = file.inner.lock().await;
            if inner.size() > 0 {
                let res = inner
                    .truncate(&c.io(), 0)
                    .await
                    .and_then(|()| inner.save(&c.journal, false));
                if let Err(e) = res {
                    drop(inner);
                    c.release_file(&file);
                    return Err(e);
                }
                file.publish(&inner);
                c.mark_dirty(ino, 0);
            }
        }
        let version = file.inner.lock().await.base_version;
        let keep_cache = match lock(&c.table).slot_mut(ino) {
            Ok(slot) => {
                let keep = slot.kernel_version == version;
                slot.kernel_version = version;
                keep
            }
            Err(_) => false,
        };
        Ok(c.new_handle(Handle::File {
            ino,
            write: mode.write,
            keep_cache,
            file,
        }))
    }

    /// Whether the kernel may keep its cached pages of the file opened as
    /// `fh` (`FOPEN_KEEP_CACHE`): true when the version it cached is still
    /// the current one, so reads of an unchanged file stay in the page
    /// cache; false after a change from elsewhere (close-to-open).
    pub fn keep_cache(&self, fh: Fh) -> bool {
        matches!(
            lock(&self.core.handles).get(&fh),
            Some(Handle::File {
                keep_cache: true,
                ..
            })
        )
    }

    /// Creates and opens a file.
    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        open: OpenMode,
        caller: Caller,
    ) -> FsResult<(Attr, Fh)> {
        let c = &self.core;
        let attrs = new_attrs(NodeKind::File, mode & !umask, caller);
        if held::reserved(parent, name.as_bytes()) {
            return Err(FsError::NotPermitted);
        }
        c.check_writable()?;
        if let Some((ino, file, attr)) = local::create(c, parent, name.as_bytes(), attrs.clone())? {
            let fh = c.new_handle(Handle::File {
                ino,
                write: open.write,
                keep_cache: false,
                file,
            });
            return Ok((attr, fh));
        }
        let (ino, attr, dir, nlink) = self.make(parent, name, attrs.clone()).await?;
        let id = c.id_of(ino)?;
        let inner = FileInner::clean(id, 1, attrs, dir, name.as_bytes());
        let file = FileState::new(id, ino, inner, nlink);
        file.handles.fetch_add(1, Ordering::AcqRel);
        lock(&c.files).insert(ino, file.clone());
        if let Ok(slot) = lock(&c.table).slot_mut(ino) {
            slot.kernel_version = 1;
        }
        let fh = c.new_handle(Handle::File {
            ino,
            write: open.write,
            keep_cache: false,
            file,
        });
        Ok((attr, fh))
    }

    fn handle_file(&self, ino: Ino, fh: Fh) -> FsResult<(Arc<FileState>, bool)> {
        match lock(&self.core.handles).get(&fh) {
            Some(Handle::File {
                ino: i,
                write,
                file,
                ..
            }) if *i == ino => Ok((file.clone(), *write)),
            _ => Err(FsError::BadHandle),
        }
    }

    /// Reads up to `size` bytes at `offset` (fewer only at end of file).
    pub async fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> FsResult<bytes::Bytes> {
        let (file, _) = self.handle_file(ino, fh)?;
        let inner = file.inner.lock().await;
        let out = inner.read(&self.core.io(), offset, size).await?;
        let end = offset + out.len() as u64;
        // Sequential reading: fetch the next chunks' objects ahead, so the
        // downloads overlap this chunk's decryption and copying.
        let sequential = file.last_read_end.swap(end, Ordering::Relaxed) == offset;
        if sequential {
            for ahead in 1..=READ_AHEAD_CHUNKS {
                let next = (end / file::CHUNK + ahead) * file::CHUNK;
                if next >= inner.base_limit {
                    break;
                }
                let first = inner.base.partition_point(|o| o.offset < next);
                if let Some(obj) = inner.base.get(first).filter(|o| o.offset == next) {
                    self.core.content.prefetch(file.node, obj.clone());
                }
            }
        }
        Ok(out)
    }

    /// Writes `data` at `offset`; returns the bytes written.
    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> FsResult<u32> {
        let c = &self.core;
        c.check_writable()?;
        let (file, write) = self.handle_file(ino, fh)?;
        if !write {
            return Err(FsError::BadHandle);
        }
        let n = u32::try_from(data.len()).map_err(|_| FsError::TooBig)?;
        let mut inner = file.inner.lock().await;
        // The chunk the tail was in may be complete once the tail moves on.
        let left = inner.tail.as_ref().map(|(s, _)| s / file::SEGS_PER_CHUNK);
        inner.write(&c.io(), offset, data).await?;
        file.publish(&inner);
        let touched =
            offset / file::CHUNK..=(offset + u64::from(n)).saturating_sub(1) / file::CHUNK;
        let ready = inner.take_ready(left.into_iter().chain(touched));
        let bytes = staged_bytes(&inner);
        drop(inner);
        lock(&c.dirty).insert(ino, bytes);
        for k in ready {
            c.background
                .spawn(commit::upload_early(c.clone(), file.clone(), k));
        }
        Ok(n)
    }

    /// `close()` of one descriptor: hands the changes to the uploader
    /// (does not wait for the upload).
    pub async fn flush(&self, ino: Ino, fh: Fh) -> FsResult<()> {
        let Ok((file, _)) = self.handle_file(ino, fh) else {
            return Ok(());
        };
        let mut inner = file.inner.lock().await;
        if inner.dirty && !inner.gone {
            inner.save(&self.core.journal, false)?;
            inner.mark_closed();
            let bytes = staged_bytes(&inner);
            drop(inner);
            self.core.mark_dirty(ino, bytes);
        }
        Ok(())
    }

    /// The last descriptor of a handle closed.
    pub async fn release(&self, ino: Ino, fh: Fh) -> FsResult<()> {
        let handle = lock(&self.core.handles).remove(&fh);
        let Some(Handle::File { file, .. }) = handle else {
            return Ok(());
        };
        let mut inner = file.inner.lock().await;
        let res = if inner.dirty && !inner.gone {
            inner.mark_closed();
            let r = inner.save(&self.core.journal, false);
            self.core.mark_dirty(ino, staged_bytes(&inner));
            r
        } else {
            Ok(())
        };
        if inner.gone && file.handles.load(Ordering::Acquire) <= 1 {
            // The last descriptor of a deleted file: its stage goes too.
            inner.stage = None;
            inner.forget_saved();
            let _ = self.core.journal.remove(file.node, inner.epoch, false);
        }
        drop(inner);
        self.core.release_file(&file);
        self.release_held(ino).await;
        res
    }

    /// Returns once data and metadata of `ino` are committed on the server.
    pub async fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> FsResult<()> {
        if self.handle_file(ino, fh).is_err() && self.core.file(ino).is_none() {
            // Clean files: every change is already on the server.
            return Ok(());
        }
        commit::commit_ino(Budget::Background, &self.core, ino).await
    }

    /// Returns once the entries of directory `ino` are on the server: the
    /// files made in it here go there first (other metadata calls are
    /// synchronous).
    pub async fn fsyncdir(&self, ino: Ino) -> FsResult<()> {
        let dir = self.core.id_of(ino)?;
        dirs::send(&self.core, Budget::Background).await?;
        local::flush_dir(&self.core, dir).await?;
        records::commit(&self.core, Budget::Background, Some(ino), true)
            .await
            .map(|_| ())
    }

    /// Preallocates (mode 0: extend the size; `KEEP_SIZE`: nothing to do;
    /// other modes `EOPNOTSUPP`).
    pub async fn fallocate(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> FsResult<()> {
        let c = &self.core;
        c.check_writable()?;
        let (file, _) = self.handle_file(ino, fh)?;
        match mode {
            0 => {}
            libc::FALLOC_FL_KEEP_SIZE => return Ok(()),
            _ => return Err(FsError::NotSupported),
        }
        let end = offset.checked_add(length).ok_or(FsError::TooBig)?;
        let mut inner = file.inner.lock().await;
        if end > inner.size() {
            inner.truncate(&c.io(), end).await?;
            file.publish(&inner);
            let bytes = staged_bytes(&inner);
            drop(inner);
            lock(&c.dirty).insert(ino, bytes);
        }
        Ok(())
    }

    /// Opens a directory: takes a snapshot of its entries.
    pub async fn opendir(&self, ino: Ino) -> FsResult<Fh> {
        let c = &self.core;
        c.id_of(ino)?;
        if c.attr(ino).await?.kind != FileKind::Directory {
            return Err(FsError::NotADirectory);
        }
        // Listed at the first readdir: a program may open a directory only
        // to change it (rsync opens every directory it makes to set its
        // mode), and a listing costs the server a round trip.
        Ok(c.new_handle(Handle::Dir { ino, entries: None }))
    }

    /// Lists `ino` from the server, with `.` and `..`.
    async fn list_dir(&self, ino: Ino) -> FsResult<Vec<DirEntry>> {
        let c = &self.core;
        let dir = c.id_of(ino)?;
        let this = c.attr(ino).await?;
        // The server lists what it has: files made here go there first.
        local::flush_dir(c, dir).await?;
        let generation = lock(&c.table).names.generation(dir);
        let mut listed = HashMap::new();
        let parent_ino = lock(&c.table)
            .slot(ino)
            .map(|s| s.parent)
            .unwrap_or(ROOT_INO);
        let parent_attr = if parent_ino == ino {
            this
        } else {
            c.attr(parent_ino).await.unwrap_or(this)
        };
        let mut entries = vec![
            DirEntry {
                offset: 1,
                name: b".".to_vec(),
                attr: this,
            },
            DirEntry {
                offset: 2,
                name: b"..".to_vec(),
                attr: parent_attr,
            },
        ];
        // Pages are fetched one ahead: the next is on its way while this
        // one is decrypted and verified.
        let mut next = Some(self.list_page(dir, None));
        while let Some(fetch) = next.take() {
            let (since, page) = fetch
                .await
                .map_err(|e| FsError::Internal(e.to_string()))??;
            if let Some(n) = page.next
                && !page.entries.is_empty()
            {
                next = Some(self.list_page(dir, Some(n)));
            }
            for e in &page.entries {
                let (_, attr, name) = c.admit(since, ino, dir, e, None)?;
                listed.insert(e.tag, e.node.id);
                if held::reserved(ino, &name) {
                    continue;
                }
                entries.push(DirEntry {
                    offset: i64::try_from(entries.len() + 1).unwrap_or(i64::MAX),
                    name: name.to_vec(),
                    attr,
                });
            }
        }
        lock(&c.table).names.listed(dir, generation, listed);
        Ok(entries)
    }

    /// Fetches one page of `dir`'s listing in its own task; answers the
    /// table tick noted before it was sent, and the page.
    fn list_page(
        &self,
        dir: NodeId,
        after: Option<common::crypto::name::NameTag>,
    ) -> tokio::task::JoinHandle<FsResult<(u64, common::api::tree::EntryPage)>> {
        let core = self.core.clone();
        tokio::spawn(async move {
            let since = core.tick();
            let query = ListQuery {
                after,
                limit: Some(feed::FEED_PAGE),
            };
            let page = core
                .remote
                .call_for(Budget::Interactive, &[dir], |api, t| async move {
                    api.list(&t, dir, query).await
                })
                .await?;
            Ok((since, page))
        })
    }

    /// Entries after `offset` (0 = from the start), including `.` and `..`.
    /// For readdirplus, call [`Vfs::remember`] for each entry other than
    /// `.` and `..` actually passed to the kernel.
    pub async fn readdir(&self, _ino: Ino, fh: Fh, offset: i64) -> FsResult<Vec<DirEntry>> {
        let ino = match lock(&self.core.handles).get(&fh) {
            Some(Handle::Dir {
                entries: Some(entries),
                ..
            }) => {
                return Ok(entries
                    .iter()
                    .filter(|e| e.offset > offset)
                    .cloned()
                    .collect());
            }
            Some(Handle::Dir { ino, entries: None }) => *ino,
            _ => return Err(FsError::BadHandle),
        };
        let entries = self.list_dir(ino).await?;
        let out = entries
            .iter()
            .filter(|e| e.offset > offset)
            .cloned()
            .collect();
        if let Some(Handle::Dir { entries: slot, .. }) = lock(&self.core.handles).get_mut(&fh) {
            *slot = Some(entries);
        }
        Ok(out)
    }

    /// Counts one kernel reference for an entry readdirplus returned.
    pub fn remember(&self, ino: Ino) {
        lock(&self.core.table).remember(ino);
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, _ino: Ino, fh: Fh) {
        lock(&self.core.handles).remove(&fh);
    }

    /// Filesystem totals.
    pub async fn statfs(&self) -> FsResult<FsStats> {
        let s = self
            .core
            .remote
            .call(
                Budget::Interactive,
                |api, t| async move { api.statfs(&t).await },
            )
            .await?;
        let bs = u64::from(BLOCK_SIZE);
        let blocks = s.quota_bytes / bs;
        let free = s.quota_bytes.saturating_sub(s.used_bytes) / bs;
        Ok(FsStats {
            blocks,
            bfree: free,
            bavail: free,
            files: s.nodes,
            ffree: u64::from(u32::MAX),
            bsize: BLOCK_SIZE,
            namelen: 255,
        })
    }

    /// Applies `change` to the attributes of `ino`: through the file's
    /// pending state when it has one, else straight to the server.
    async fn change_attrs<F>(&self, ino: Ino, change: F) -> FsResult<()>
    where
        F: Fn(&mut NodeAttributes) -> FsResult<()>,
    {
        let c = &self.core;
        c.check_writable()?;
        let Some(file) = c.acquire_file(ino) else {
            return c.update_record(ino, change).await.map(|_| ());
        };
        let res = self.change_file_attrs(ino, &file, change).await;
        c.release_file(&file);
        res
    }

    async fn change_file_attrs<F>(&self, ino: Ino, file: &Arc<FileState>, change: F) -> FsResult<()>
    where
        F: Fn(&mut NodeAttributes) -> FsResult<()>,
    {
        let c = &self.core;
        let mut inner = file.inner.lock().await;
        if inner.dirty && !inner.gone {
            change(&mut inner.attrs)?;
            inner.attrs.ctime = Timestamp::now();
            inner.save(&c.journal, false)?;
            file.publish(&inner);
            c.mark_dirty(ino, staged_bytes(&inner));
            return Ok(());
        }
        drop(inner);
        let (version, attrs, _) = c.update_record(ino, change).await?;
        let mut inner = file.inner.lock().await;
        if !inner.dirty {
            inner.rebase_clean(version, attrs);
            file.publish(&inner);
        }
        Ok(())
    }

    async fn current_attrs(&self, ino: Ino) -> FsResult<NodeAttributes> {
        if let Some(f) = self.core.file(ino) {
            return Ok(f.view().attrs);
        }
        Ok(self.core.known(ino).await?.1)
    }

    /// Sets an extended attribute.
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        how: XattrHow,
    ) -> FsResult<()> {
        let name = name.as_bytes().to_vec();
        check_xattr_name(&name)?;
        if value.len() > MAX_XATTR_VALUE {
            return Err(FsError::TooLarge);
        }
        let value = value.to_vec();
        self.change_attrs(ino, move |a| {
            match (how, a.xattrs.contains_key(&name)) {
                (XattrHow::Create, true) => return Err(FsError::Exists),
                (XattrHow::Replace, false) => return Err(FsError::NoAttribute),
                _ => {}
            }
            a.xattrs.insert(name.clone(), value.clone());
            if a.validate().is_err() {
                return Err(FsError::NoSpace);
            }
            Ok(())
        })
        .await
    }

    /// An extended attribute's value.
    pub async fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        if unsupported_xattr(name.as_bytes()) {
            return Err(FsError::NotSupported);
        }
        xattr_value(&self.current_attrs(ino).await?, name.as_bytes())
    }

    /// Every extended attribute name, each followed by a NUL.
    pub async fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        Ok(xattr_list(&self.current_attrs(ino).await?))
    }

    /// Removes an extended attribute.
    pub async fn removexattr(&self, ino: Ino, name: &OsStr) -> FsResult<()> {
        let name = name.as_bytes().to_vec();
        if unsupported_xattr(&name) {
            return Err(FsError::NotSupported);
        }
        self.change_attrs(ino, move |a| {
            a.xattrs
                .remove(&name)
                .map(|_| ())
                .ok_or(FsError::NoAttribute)
        })
        .await
    }

    /// Uploads and commits every pending change (unmount, `vault unmount`).
    pub async fn sync_all(&self) -> FsResult<()> {
        loop {
            let dirty: Vec<Ino> = lock(&self.core.dirty).keys().copied().collect();
            if dirty.is_empty() {
                dirs::send(&self.core, Budget::Background).await?;
                records::commit(&self.core, Budget::Background, None, true).await?;
                if lock(&self.core.table).pending_records() == 0 {
                    return Ok(());
                }
                continue;
            }
            let mut files = Vec::new();
            for ino in dirty {
                match self.core.file(ino) {
                    Some(f) => files.push(f),
                    None => self.core.forget_stateless(ino),
                }
            }
            batch::commit_files(&self.core, Budget::Background, files).await?;
        }
    }

    /// What is waiting to be uploaded.
    pub fn pending(&self) -> Pending {
        let records = (lock(&self.core.table).pending_records() + dirs::waiting(&self.core)) as u64;
        let d = lock(&self.core.dirty);
        Pending {
            files: d.len() as u64 + records,
            bytes: d.values().sum(),
        }
    }

    /// Bytes of ciphertext in the disk cache.
    pub fn cache_used(&self) -> u64 {
        self.core.content.disk_used()
    }

    /// Stops background work (the journal stays for the next mount). The
    /// keys are wiped when the `Vfs` is dropped.
    pub async fn shutdown(&self) {
        self.core.stopping.store(true, Ordering::Release);
        self.core.upload_wake.notify_waiters();
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.core.background.stop().await;
        // Tasks of an aborted JoinSet (the uploader's commits, a commit's
        // chunk uploads) are cancelled asynchronously, and the blocking
        // half of a download aborted above runs to its end: wait until
        // nothing but this handle holds the mount, so that its keys, cache
        // lock and journal are released when it is dropped and not by a
        // straggler.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.core) > 1
            || Arc::strong_count(&self.core.content) > 1
            || self.core.content.disk_in_use()
        {
            if std::time::Instant::now() >= deadline {
                tracing::warn!("background work still running after shutdown");
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl<A: VaultApi + 'static> Drop for Vfs<A> {
    fn drop(&mut self) {
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
    }
}

/// Staged bytes of a file (for `pending`).
fn staged_bytes(inner: &FileInner) -> u64 {
    inner.staged.len() as u64 * file::SEG
}

/// Chunks (4 MiB objects) fetched ahead of a sequential reader.
const READ_AHEAD_CHUNKS: u64 = 6;
