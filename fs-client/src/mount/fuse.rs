//! The fuser adapter: `fuser::Filesystem` over [`Vfs`], and nothing else.
//!
//! Every request is the future of a [`Vfs`] method followed by the reply
//! (fuser's replies are `Send`). The FUSE thread polls it once, inside the
//! runtime's context: most requests of tar, rsync or `cp -r` (a lookup or
//! create answered from memory, a write into a buffer, a `utimens` or
//! rename of a file made here, a close) finish in that poll and are
//! answered right there. One that has to wait (a server call, a lock held
//! by an upload) goes on as a tokio task on the daemon's runtime, so a
//! slow network call never holds up the FUSE threads and independent
//! requests run concurrently. A handoff to a task costs two thread
//! wake-ups; an rsync of 20k files makes about 300k requests, and with
//! every one handed off the daemon spent more CPU switching threads than
//! on any one function. Big writes always go to a task ([`INLINE_WRITE`]).
//! `getattr` and `getxattr` answered from memory
//! (the [`Vfs`]'s `*_cached` methods) need no future at all. Borrowed
//! arguments (names, write data) are copied into the future first.
//!
//! Polling the future once with a waker that does nothing, then handing
//! it to a task, is sound: a future re-registers its waker on every poll,
//! and the task polls it at once.
//!
//! This layer only translates ([`super::convert`]): `OsStr` names, flags to
//! [`crate::vfs::OpenMode`]/[`crate::vfs::RenameHow`]/[`crate::vfs::XattrHow`],
//! `setattr` arguments to [`crate::vfs::SetAttr`], attributes to
//! `fuser::FileAttr` with a one-second TTL, and errors to errno through
//! `FsError::errno`. It keeps no state and makes no decision of its own.
//!
//! `access` always succeeds: the mount uses `default_permissions`, so the
//! kernel checks permission bits itself. `batch_forget` keeps fuser's
//! default, which calls [`Filesystem::forget`] per node (its argument type
//! is not exported by fuser 0.18). Operations not listed here (locks,
//! ioctl, lseek, copy_file_range) keep fuser's `ENOSYS`, which the kernel
//! answers itself (local locks, generic seek, plain copies).

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use super::convert::{
    TTL, XattrReply, errno, file_attr, file_type, is_dot_or_dotdot, open_mode, rename_how,
    set_attr, xattr_how, xattr_reply,
};
use crate::api::VaultApi;
use crate::cache::buffers::{REQUEST_CAPACITY, REQUESTS};
use crate::vfs::{Attr, Caller, FsError, FsResult, Vfs};

/// Largest read and write the kernel is asked to send, and readahead.
pub const MAX_IO: u32 = 1 << 20;
const _: () = assert!(
    MAX_IO as usize <= REQUEST_CAPACITY,
    "a write request fits a pooled buffer"
);
/// Writes up to this size are tried on the FUSE thread first (see
/// [`FuseFs::spawn`]); bigger ones always go to a task, as every request
/// did before: a 1 MiB write copies into a chunk and may hand it to an
/// upload, work that should not keep a FUSE thread from the next request.
/// (Not measured apart: 1 GiB writes on the bench VM varied 4.5-7.4 s
/// from run to run either way.)
const INLINE_WRITE: usize = 128 * 1024;
/// Background requests (readahead, writeback) the kernel may queue.
pub const MAX_BACKGROUND: u16 = 64;

/// What the mount asks of the kernel; whatever it lacks is done without.
///
/// Not `FUSE_WRITEBACK_CACHE`: with it the kernel trusts its own idea of a
/// regular file's size and times over the daemon's for as long as the
/// inode is cached, so a file changed by another mount would keep its old
/// size here, breaking close-to-open.
pub const WANTED: [InitFlags; 5] = [
    InitFlags::FUSE_ASYNC_READ,
    InitFlags::FUSE_DO_READDIRPLUS,
    InitFlags::FUSE_READDIRPLUS_AUTO,
    InitFlags::FUSE_PARALLEL_DIROPS,
    InitFlags::FUSE_BIG_WRITES,
];

/// The adapter.
pub struct FuseFs<A: VaultApi + 'static> {
    vfs: Arc<Vfs<A>>,
    rt: Handle,
}

impl<A: VaultApi + 'static> std::fmt::Debug for FuseFs<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseFs").finish_non_exhaustive()
    }
}

impl<A: VaultApi + 'static> FuseFs<A> {
    /// An adapter answering from `vfs` on the runtime behind `rt`.
    pub fn new(vfs: Arc<Vfs<A>>, rt: Handle) -> Self {
        Self { vfs, rt }
    }

    /// Runs `work` with the filesystem as a task on the runtime.
    fn spawn_task<F, Fut>(&self, work: F)
    where
        F: FnOnce(Arc<Vfs<A>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        drop(self.rt.spawn(work(Arc::clone(&self.vfs))));
    }

    /// Runs `work` with the filesystem: here when it finishes without
    /// waiting, else as a task on the runtime.
    fn spawn<F, Fut>(&self, work: F)
    where
        F: FnOnce(Arc<Vfs<A>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let _context = self.rt.enter();
        let mut fut = Box::pin(work(Arc::clone(&self.vfs)));
        let mut cx = Context::from_waker(Waker::noop());
        if fut.as_mut().poll(&mut cx).is_pending() {
            drop(self.rt.spawn(fut));
        }
    }
}

/// The errno for a failed request, logged (operation and error only,
/// never a name) at debug level.
fn failed(op: &'static str, e: &FsError) -> Errno {
    tracing::debug!(op, error = %e, "request failed");
    errno(e)
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn reply_entry(op: &'static str, reply: ReplyEntry, result: FsResult<Attr>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
        Err(e) => reply.error(failed(op, &e)),
    }
}

fn reply_attr(op: &'static str, reply: ReplyAttr, result: FsResult<Attr>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
        Err(e) => reply.error(failed(op, &e)),
    }
}

fn reply_empty(op: &'static str, reply: ReplyEmpty, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(failed(op, &e)),
    }
}

/// `FOPEN_KEEP_CACHE` when the filesystem says the kernel's cached pages
/// of the file are still current.
fn open_flags<A: VaultApi + 'static>(vfs: &Vfs<A>, fh: u64) -> FopenFlags {
    if vfs.keep_cache(fh) {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

fn reply_open(op: &'static str, reply: ReplyOpen, result: FsResult<(u64, FopenFlags)>) {
    match result {
        Ok((fh, flags)) => reply.opened(FileHandle(fh), flags),
        Err(e) => reply.error(failed(op, &e)),
    }
}

fn reply_xattr(op: &'static str, reply: ReplyXattr, size: u32, result: FsResult<Vec<u8>>) {
    match result {
        Ok(value) => match xattr_reply(value.len(), size) {
            Ok(XattrReply::Length(n)) => reply.size(n),
            Ok(XattrReply::Data) => reply.data(&value),
            Err(e) => reply.error(e),
        },
        Err(e) => reply.error(failed(op, &e)),
    }
}

fn readdir_offset(offset: u64) -> Result<i64, Errno> {
    i64::try_from(offset).map_err(|_| Errno::EINVAL)
}

fn entry_offset(offset: i64) -> u64 {
    u64::try_from(offset).unwrap_or(0)
}

impl<A: VaultApi + 'static> Filesystem for FuseFs<A> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for flag in WANTED {
            if let Err(missing) = config.add_capabilities(flag) {
                tracing::debug!(?missing, "the kernel lacks a FUSE capability");
            }
        }
        if let Err(max) = config.set_max_write(MAX_IO) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_IO) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        tracing::debug!(abi = %config.kernel_abi(), "FUSE session initialised");
        Ok(())
    }

    fn destroy(&mut self) {
        tracing::debug!("FUSE session ended");
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.spawn(
            |vfs| async move { reply_entry("lookup", reply, vfs.lookup(parent.0, &name).await) },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(attr) = self.vfs.getattr_cached(ino.0) {
            return reply.attr(&TTL, &file_attr(&attr));
        }
        self.spawn(|vfs| async move { reply_attr("getattr", reply, vfs.getattr(ino.0).await) });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = set_attr(mode, uid, gid, size, atime, mtime);
        let fh = fh.map(|f| f.0);
        self.spawn(
            |vfs| async move { reply_attr("setattr", reply, vfs.setattr(ino.0, fh, set).await) },
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn(|vfs| async move {
            match vfs.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(failed("readlink", &e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let (name, who) = (name.to_owned(), caller(req));
        self.spawn(|vfs| async move {
            reply_entry(
                "mknod",
                reply,
                vfs.mknod(parent.0, &name, mode, umask, who).await,
            );
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, who) = (name.to_owned(), caller(req));
        self.spawn(|vfs| async move {
            reply_entry(
                "mkdir",
                reply,
                vfs.mkdir(parent.0, &name, mode, umask, who).await,
            );
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(
            |vfs| async move { reply_empty("unlink", reply, vfs.unlink(parent.0, &name).await) },
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(
            |vfs| async move { reply_empty("rmdir", reply, vfs.rmdir(parent.0, &name).await) },
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, who) = (link_name.to_owned(), caller(req));
        let target = target.as_os_str().as_bytes().to_vec();
        self.spawn(|vfs| async move {
            reply_entry(
                "symlink",
                reply,
                vfs.symlink(parent.0, &name, &target, who).await,
            );
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let how = match rename_how(flags) {
            Ok(how) => how,
            Err(e) => return reply.error(e),
        };
        let (name, newname): (OsString, OsString) = (name.to_owned(), newname.to_owned());
        self.spawn(|vfs| async move {
            let result = vfs
                .rename(parent.0, &name, newparent.0, &newname, how)
                .await;
            reply_empty("rename", reply, result);
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = newname.to_owned();
        self.spawn(|vfs| async move {
            reply_entry("link", reply, vfs.link(ino.0, newparent.0, &newname).await);
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mode = open_mode(flags.0);
        self.spawn(|vfs| async move {
            let result = vfs.open(ino.0, mode).await;
            reply_open("open", reply, result.map(|fh| (fh, open_flags(&vfs, fh))));
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(|vfs| async move {
            match vfs.read(ino.0, fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(failed("read", &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let inline = data.len() <= INLINE_WRITE;
        // The request's bytes outlive this call: copied into a pooled
        // buffer (plaintext, so wiped when given back). A fresh `Vec` of a
        // 1 MiB write is mapped and zero-filled by the kernel page by page
        // and unmapped again: that page-fault path was about 8% of a
        // sequential write's profile.
        let mut owned = REQUESTS.plaintext(data.len());
        owned.extend_from_slice(data);
        let work = |vfs: Arc<Vfs<A>>| async move {
            let result = vfs.write(ino.0, fh.0, offset, &owned).await;
            REQUESTS.recycle(owned);
            match result {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(failed("write", &e)),
            }
        };
        if inline {
            self.spawn(work);
        } else {
            self.spawn_task(work);
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.spawn(|vfs| async move { reply_empty("flush", reply, vfs.flush(ino.0, fh.0).await) });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            |vfs| async move { reply_empty("release", reply, vfs.release(ino.0, fh.0).await) },
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(|vfs| async move {
            reply_empty("fsync", reply, vfs.fsync(ino.0, fh.0, datasync).await)
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(|vfs| async move { reply_empty("fsyncdir", reply, vfs.fsyncdir(ino.0).await) });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(|vfs| async move {
            let result = vfs.opendir(ino.0).await;
            reply_open("opendir", reply, result.map(|fh| (fh, FopenFlags::empty())));
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let offset = match readdir_offset(offset) {
            Ok(o) => o,
            Err(e) => return reply.error(e),
        };
        self.spawn(|vfs| async move {
            match vfs.readdir(ino.0, fh.0, offset).await {
                Ok(entries) => {
                    for e in entries {
                        let name = OsStr::from_bytes(&e.name);
                        let kind = file_type(e.attr.kind);
                        if reply.add(INodeNo(e.attr.ino), entry_offset(e.offset), kind, name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(failed("readdir", &e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let offset = match readdir_offset(offset) {
            Ok(o) => o,
            Err(e) => return reply.error(e),
        };
        self.spawn(|vfs| async move {
            match vfs.readdir(ino.0, fh.0, offset).await {
                Ok(entries) => {
                    for e in entries {
                        let name = OsStr::from_bytes(&e.name);
                        let attr = file_attr(&e.attr);
                        let full = reply.add(
                            INodeNo(e.attr.ino),
                            entry_offset(e.offset),
                            name,
                            &TTL,
                            &attr,
                            Generation(0),
                        );
                        if full {
                            break;
                        }
                        // The kernel now holds a reference to every entry
                        // sent, except `.` and `..`.
                        if !is_dot_or_dotdot(&e.name) {
                            vfs.remember(e.attr.ino);
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(failed("readdirplus", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vfs.releasedir(ino.0, fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.spawn(|vfs| async move {
            match vfs.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
                ),
                Err(e) => reply.error(failed("statfs", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let how = match xattr_how(flags) {
            Ok(how) if position == 0 => how,
            Ok(_) => return reply.error(Errno::EINVAL),
            Err(e) => return reply.error(e),
        };
        let (name, value) = (name.to_owned(), value.to_vec());
        self.spawn(|vfs| async move {
            reply_empty(
                "setxattr",
                reply,
                vfs.setxattr(ino.0, &name, &value, how).await,
            );
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if let Some(res) = self.vfs.getxattr_cached(ino.0, name) {
            return reply_xattr("getxattr", reply, size, res);
        }
        let name = name.to_owned();
        self.spawn(|vfs| async move {
            reply_xattr("getxattr", reply, size, vfs.getxattr(ino.0, &name).await);
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if let Some(res) = self.vfs.listxattr_cached(ino.0) {
            return reply_xattr("listxattr", reply, size, res);
        }
        self.spawn(|vfs| async move {
            reply_xattr("listxattr", reply, size, vfs.listxattr(ino.0).await)
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(|vfs| async move {
            reply_empty("removexattr", reply, vfs.removexattr(ino.0, &name).await)
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, who, open) = (name.to_owned(), caller(req), open_mode(flags));
        self.spawn(|vfs| async move {
            match vfs.create(parent.0, &name, mode, umask, open, who).await {
                Ok((attr, fh)) => reply.created(
                    &TTL,
                    &file_attr(&attr),
                    Generation(0),
                    FileHandle(fh),
                    open_flags(&vfs, fh),
                ),
                Err(e) => reply.error(failed("create", &e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.spawn(|vfs| async move {
            let result = vfs.fallocate(ino.0, fh.0, offset, length, mode).await;
            reply_empty("fallocate", reply, result);
        });
    }
}
