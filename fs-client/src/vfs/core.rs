//! [`Core`]: the state shared by the filesystem calls and the background
//! tasks (uploader, change feed): the server, the keys, the inode table,
//! open files and handles, the caches and the journal.
//!
//! Locks: the inode table, the file map and the handle map are
//! `std::sync::Mutex`es held for a few instructions and never across an
//! `.await`; a file's contents are behind its own async lock
//! ([`super::file::FileState::inner`]). Never take the table lock while
//! holding a file lock for long, and never the other way round across a
//! server call.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::NodeId;
use common::api::ErrorCode;
use common::api::tree::{Kind, NodeInfo, UpdateRecordRequest};
use common::crypto::attrs::{NodeAttributes, Timestamp};
use common::crypto::subkeys::VaultSubkeys;
use tokio::sync::Notify;

use super::VfsConfig;
use super::background::Background;
use super::content::Content;
use super::error::{FsError, FsResult};
use super::file::{FileState, Io};
use super::journal::Journal;
use super::remote::{Budget, Remote};
use super::seal;
use super::table::Table;
use super::types::{Attr, BLOCK_SIZE, DirEntry, Fh, FileKind, Ino, ROOT_INO};
use crate::api::VaultApi;

/// An open handle.
#[derive(Debug)]
pub(crate) enum Handle {
    File {
        ino: Ino,
        write: bool,
        keep_cache: bool,
        file: Arc<FileState>,
    },
    Dir {
        ino: Ino,
        /// Listed at the first `readdir` (`None` until then); later ones
        /// read this snapshot.
        entries: Option<Vec<DirEntry>>,
    },
}

/// Everything a mount shares.
pub(crate) struct Core<A> {
    pub remote: Arc<Remote<A>>,
    pub keys: VaultSubkeys,
    pub config: VfsConfig,
    pub table: std::sync::Mutex<Table>,
    pub files: std::sync::Mutex<HashMap<Ino, Arc<FileState>>>,
    pub handles: std::sync::Mutex<HashMap<Fh, Handle>>,
    pub next_fh: AtomicU64,
    pub content: Arc<Content<A>>,
    pub journal: Journal,
    /// Files with uncommitted changes and their staged bytes.
    pub dirty: std::sync::Mutex<HashMap<Ino, u64>>,
    /// Held while a record change is added or settled together with its
    /// journal file (see `records`), so the file always holds the newest;
    /// taken before the table's lock.
    pub records_io: std::sync::Mutex<()>,
    /// Wakes the uploader.
    pub upload_wake: Notify,
    /// Signals `sync_all` waiters that a commit finished.
    pub committed: Notify,
    /// The change feed's position.
    pub change_seq: AtomicI64,
    /// Files the next batch may take (`batch`: adapted to how long the
    /// server takes for one).
    pub batch_files: std::sync::atomic::AtomicUsize,
    pub stopping: std::sync::atomic::AtomicBool,
    /// Early uploads and read-ahead; stopped with the mount.
    pub background: Arc<Background>,
    /// Files unlinked while open (see `held`).
    pub held: std::sync::Mutex<super::held::Held>,
    /// This machine's id in held names.
    pub device_id: String,
    /// Directories made here that the server does not have yet, oldest
    /// first (see `dirs`).
    pub dirs: std::sync::Mutex<super::dirs::Queue>,
    /// Held while they are sent.
    pub dirs_send: tokio::sync::Mutex<()>,
}

impl<A> std::fmt::Debug for Core<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A record timestamp as a `SystemTime`.
pub(crate) fn system_time(t: Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nanos.min(999_999_999)));
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.secs.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.secs.unsigned_abs()))
            .map_or(UNIX_EPOCH, |t| t + nanos)
    }
}

/// A `SystemTime` as a record timestamp.
pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut nanos = d.subsec_nanos();
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            Timestamp { secs, nanos }
        }
    }
}

/// `stat` attributes of a node. A directory's times are its record's: the
/// server's own stamp of a change (`updated_at`, by the server's clock) is
/// never compared with them, or a time set here (utimens, as tar and rsync
/// do last) would lose to the stamp of the very request that carried it
/// whenever the server's clock is ahead or the request crossed a second.
pub(crate) fn attr_of(ino: Ino, attrs: &NodeAttributes, nlink: u32) -> Attr {
    let kind = seal::file_kind(attrs.kind);
    let size = match kind {
        FileKind::Directory => u64::from(BLOCK_SIZE),
        _ => attrs.size,
    };
    Attr {
        ino,
        kind,
        size,
        blocks: size.div_ceil(512),
        atime: system_time(attrs.atime),
        mtime: system_time(attrs.mtime),
        ctime: system_time(attrs.ctime),
        crtime: system_time(attrs.btime),
        perm: u16::try_from(attrs.mode & 0o7777).unwrap_or(0o644),
        // 0 is right for a file unlinked while open (fstat shows it).
        nlink: if kind == FileKind::Directory {
            nlink.max(2)
        } else {
            nlink
        },
        uid: attrs.uid,
        gid: attrs.gid,
    }
}

impl<A: VaultApi + 'static> Core<A> {
    pub(crate) fn io(&self) -> Io<'_, A> {
        Io {
            content: &self.content,
            journal: &self.journal,
        }
    }

    pub(crate) fn check_writable(&self) -> FsResult<()> {
        if self.config.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The inode table's tick, noted before a request (see `Table::observe`).
    pub(crate) fn tick(&self) -> u64 {
        lock(&self.table).tick()
    }

    pub(crate) fn id_of(&self, ino: Ino) -> FsResult<NodeId> {
        lock(&self.table).id(ino)
    }

    pub(crate) fn file(&self, ino: Ino) -> Option<Arc<FileState>> {
        lock(&self.files).get(&ino).cloned()
    }

    /// Fetches `id` from the server, verifies it and records it for `ino`.
    pub(crate) async fn fetch(&self, ino: Ino, id: NodeId) -> FsResult<(NodeInfo, NodeAttributes)> {
        let since = self.tick();
        let info = self
            .remote
            .call_for(Budget::Interactive, &[id], |api, t| async move {
                api.node(&t, id).await
            })
            .await?;
        if info.id != id {
            return Err(FsError::Integrity(common::crypto::CryptoError::Malformed {
                what: "node",
                reason: "the server answered with another node",
            }));
        }
        let attrs = seal::open(&self.keys, &info)?;
        let attrs = lock(&self.table).observe(ino, &info, attrs, since)?;
        Ok((info, attrs))
    }

    /// Verified attributes of `ino` (cached for a moment, or fetched).
    pub(crate) async fn known(&self, ino: Ino) -> FsResult<(u64, NodeAttributes, u32)> {
        let (id, fresh) = {
            let t = lock(&self.table);
            let id = t.id(ino)?;
            (
                id,
                t.fresh(ino).map(|k| (k.version, k.attrs.clone(), k.nlink)),
            )
        };
        if let Some(k) = fresh {
            return Ok(k);
        }
        match self.fetch(ino, id).await {
            Ok((info, attrs)) => Ok((info.version, attrs, info.nlink)),
            // Offline: what was last verified is still the best answer.
            Err(e) if e.is_transient() => lock(&self.table)
                .stale(ino)
                .map(|k| (k.version, k.attrs.clone(), k.nlink))
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// `stat` of `ino`: an open or changed file's own view, else the
    /// verified record.
    pub(crate) async fn attr(&self, ino: Ino) -> FsResult<Attr> {
        if let Some(attr) = self.attr_cached(ino) {
            return Ok(attr);
        }
        let (_, attrs, nlink) = self.known(ino).await?;
        Ok(attr_of(ino, &attrs, nlink))
    }

    /// [`Core::attr`] when memory answers it at once (an open or changed
    /// file's view, or a fresh verified record).
    pub(crate) fn attr_cached(&self, ino: Ino) -> Option<Attr> {
        if let Some(f) = self.file(ino) {
            let v = f.view();
            return Some(attr_of(ino, &v.attrs, v.nlink));
        }
        lock(&self.table)
            .fresh(ino)
            .map(|k| attr_of(ino, &k.attrs, k.nlink))
    }

    /// Verifies an entry the server returned for `parent_ino`, gives its
    /// node an inode and records it. Checks the name decrypts, matches its
    /// tag and (when given) is the name asked for.
    pub(crate) fn admit(
        &self,
        since: u64,
        parent_ino: Ino,
        parent: NodeId,
        entry: &common::api::tree::EntryInfo,
        expect: Option<&[u8]>,
    ) -> FsResult<(Ino, Attr, zeroize::Zeroizing<Vec<u8>>)> {
        let name = seal::decrypt(&self.keys, parent, entry)?;
        if let Some(want) = expect
            && name.as_slice() != want
        {
            return Err(FsError::Integrity(
                common::crypto::CryptoError::NameTagMismatch,
            ));
        }
        let attrs = seal::open(&self.keys, &entry.node)?;
        let mut t = lock(&self.table);
        let ino = t.ino_for(entry.node.id, parent_ino, &name);
        let attrs = t.observe(ino, &entry.node, attrs, since)?;
        drop(t);
        let attr = match self.file(ino) {
            Some(f) => {
                let v = f.view();
                attr_of(ino, &v.attrs, entry.node.nlink)
            }
            None => attr_of(ino, &attrs, entry.node.nlink),
        };
        Ok((ino, attr, name))
    }

    /// Changes a node's record on the server (not a file with pending
    /// changes: those go through its commit), retrying on a concurrent
    /// change with the change applied to the newer record.
    pub(crate) async fn update_record<F>(
        &self,
        ino: Ino,
        change: F,
    ) -> FsResult<(u64, NodeAttributes, Attr)>
    where
        F: Fn(&mut NodeAttributes) -> FsResult<()>,
    {
        let id = self.id_of(ino)?;
        for _ in 0..8 {
            let since = self.tick();
            let (version, mut attrs, _) = self.known(ino).await?;
            change(&mut attrs)?;
            attrs.ctime = Timestamp::now();
            attrs.validate()?;
            let record = seal::seal(&self.keys, id, version + 1, &attrs)?;
            let req = UpdateRecordRequest {
                expected_version: version,
                record: record.into(),
            };
            let res = self
                .remote
                .call(Budget::Interactive, |api, t| {
                    let req = req.clone();
                    async move { api.update_record(&t, id, &req).await }
                })
                .await;
            match res {
                Ok(info) => {
                    lock(&self.table).observe(ino, &info, attrs.clone(), since)?;
                    let attr = attr_of(ino, &attrs, info.nlink);
                    return Ok((info.version, attrs, attr));
                }
                Err(e) if e.code() == Some(ErrorCode::Conflict) => {
                    lock(&self.table).invalidate(id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(FsError::Internal("the node kept changing".into()))
    }

    /// `POST /v1/batch` with `budget`.
    pub(crate) async fn batch(
        &self,
        budget: Budget,
        req: &common::api::tree::BatchRequest,
    ) -> crate::api::ApiResult<common::api::tree::BatchResponse> {
        self.remote
            .call(budget, |api, t| async move { api.batch(&t, req).await })
            .await
    }

    /// `POST /v1/nodes` with `budget`.
    pub(crate) async fn create_node(
        &self,
        budget: Budget,
        req: &common::api::tree::CreateNodeRequest,
    ) -> crate::api::ApiResult<NodeInfo> {
        self.remote
            .call(
                budget,
                |api, t| async move { api.create_node(&t, req).await },
            )
            .await
    }

    /// Makes sure the vault has its root directory.
    pub(crate) async fn ensure_root(&self, uid: u32, gid: u32) -> FsResult<()> {
        match self.fetch(ROOT_INO, NodeId::ROOT).await {
            Ok(_) => return Ok(()),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let attrs = NodeAttributes::new(
            common::crypto::attrs::NodeKind::Directory,
            0o755,
            uid,
            gid,
            Timestamp::now(),
        );
        let record = seal::seal(&self.keys, NodeId::ROOT, 1, &attrs)?;
        let req = common::api::tree::CreateNodeRequest {
            id: NodeId::ROOT,
            kind: Kind::Directory,
            record: record.into(),
            entry: None,
            objects: Vec::new(),
        };
        match self.create_node(Budget::Interactive, &req).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::Exists) => {}
            Err(e) => return Err(e.into()),
        }
        self.fetch(ROOT_INO, NodeId::ROOT).await.map(|_| ())
    }

    /// A new handle number.
    pub(crate) fn new_handle(&self, h: Handle) -> Fh {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, h);
        fh
    }

    /// Marks `ino` as having changes to upload and wakes the uploader.
    pub(crate) fn mark_dirty(&self, ino: Ino, bytes: u64) {
        lock(&self.dirty).insert(ino, bytes);
        self.upload_wake.notify_one();
    }

    /// After the entry `name` in `parent` went away: the node it named (if
    /// this mount knows it) has one link less.
    pub(crate) fn unlinked(&self, parent: Ino, name: &[u8]) {
        let ino = {
            let mut t = lock(&self.table);
            let Some((ino, _)) = t.remembered(parent, name) else {
                return;
            };
            if let Ok(id) = t.id(ino) {
                t.invalidate(id);
            }
            ino
        };
        if let Some(f) = self.file(ino) {
            let mut v = f.view.lock().unwrap_or_else(|p| p.into_inner());
            v.nlink = v.nlink.saturating_sub(1);
            v.link_gen += 1;
        }
    }

    /// The file state of `ino` with one more handle counted on it.
    pub(crate) fn acquire_file(&self, ino: Ino) -> Option<Arc<FileState>> {
        let files = lock(&self.files);
        let f = files.get(&ino)?.clone();
        f.handles.fetch_add(1, Ordering::AcqRel);
        Some(f)
    }

    /// Gives back a handle counted by `acquire_file`.
    pub(crate) fn release_file(&self, file: &Arc<FileState>) {
        file.handles.fetch_sub(1, Ordering::AcqRel);
        self.maybe_release(file.ino);
    }

    /// Takes `ino` out of the dirty set when it has no file state (so
    /// nothing to upload). Decided under the file map's lock: a state made
    /// after it marks the file dirty again with its first write.
    pub(crate) fn forget_stateless(&self, ino: Ino) {
        let files = lock(&self.files);
        if !files.contains_key(&ino) {
            lock(&self.dirty).remove(&ino);
        }
    }

    /// Drops the file state of `ino` when no handle uses it and nothing of
    /// it waits for upload (decided under the file map's lock, which
    /// `acquire_file` takes too).
    pub(crate) fn maybe_release(&self, ino: Ino) {
        let mut files = lock(&self.files);
        let idle = files
            .get(&ino)
            .is_some_and(|f| f.handles.load(Ordering::Acquire) == 0);
        if idle && !lock(&self.dirty).contains_key(&ino) {
            files.remove(&ino);
        }
    }
}
