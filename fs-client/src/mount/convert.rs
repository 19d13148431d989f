//! The argument translations of the fuser adapter, kept apart so they are
//! unit-tested without a mount: open flags to [`OpenMode`], rename flags to
//! [`RenameHow`], xattr flags to [`XattrHow`], `setattr` arguments to
//! [`SetAttr`], [`Attr`] to `fuser::FileAttr`, and [`FsError`] to an errno
//! (through [`FsError::errno`], the one mapping).

use std::time::Duration;

use fuser::{Errno, FileAttr, FileType, INodeNo, OpenAccMode, OpenFlags, RenameFlags, TimeOrNow};

use crate::vfs::{Attr, FileKind, FsError, OpenMode, RenameHow, SetAttr, SetTime, XattrHow};

/// How long the kernel may cache attributes and entries.
pub const TTL: Duration = Duration::from_secs(1);

/// The errno for a failed operation.
pub fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// `open(2)` flags as the filesystem logic wants them.
pub fn open_mode(flags: i32) -> OpenMode {
    let write = !matches!(OpenFlags(flags).acc_mode(), OpenAccMode::O_RDONLY);
    OpenMode {
        write,
        truncate: flags & libc::O_TRUNC != 0,
        append: flags & libc::O_APPEND != 0,
    }
}

/// `renameat2(2)` flags; `RENAME_WHITEOUT` and contradictory combinations
/// are `EINVAL`.
pub fn rename_how(flags: RenameFlags) -> Result<RenameHow, Errno> {
    let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
    let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
    let known = RenameFlags::RENAME_NOREPLACE | RenameFlags::RENAME_EXCHANGE;
    if !known.contains(flags) {
        return Err(Errno::EINVAL);
    }
    match (noreplace, exchange) {
        (false, false) => Ok(RenameHow::Replace),
        (true, false) => Ok(RenameHow::NoReplace),
        (false, true) => Ok(RenameHow::Exchange),
        (true, true) => Err(Errno::EINVAL),
    }
}

/// `setxattr(2)` flags (`XATTR_CREATE`, `XATTR_REPLACE`).
pub fn xattr_how(flags: i32) -> Result<XattrHow, Errno> {
    let create = flags & libc::XATTR_CREATE != 0;
    let replace = flags & libc::XATTR_REPLACE != 0;
    if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    match (create, replace) {
        (false, false) => Ok(XattrHow::Set),
        (true, false) => Ok(XattrHow::Create),
        (false, true) => Ok(XattrHow::Replace),
        (true, true) => Err(Errno::EINVAL),
    }
}

/// A `setattr` time.
pub fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(at) => SetTime::At(at),
    })
}

/// The changes of one `setattr` (the mode loses its file-type bits).
pub fn set_attr(
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
) -> SetAttr {
    SetAttr {
        mode: mode.map(|m| m & 0o7777),
        uid,
        gid,
        size,
        atime: set_time(atime),
        mtime: set_time(mtime),
    }
}

/// The kernel's file type for a node kind.
pub fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

/// Attributes as the kernel gets them.
pub fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: crate::vfs::BLOCK_SIZE,
        flags: 0,
    }
}

/// A result for a caller's buffer of `size` bytes (xattr values and name
/// lists): with `size` 0 the caller asks only for the length.
#[derive(Debug, PartialEq, Eq)]
pub enum XattrReply {
    /// Reply with the length only.
    Length(u32),
    /// Reply with the bytes.
    Data,
}

/// Decides an xattr reply: the length, the data, or `ERANGE`.
pub fn xattr_reply(len: usize, size: u32) -> Result<XattrReply, Errno> {
    let len = u32::try_from(len).map_err(|_| Errno::E2BIG)?;
    if size == 0 {
        Ok(XattrReply::Length(len))
    } else if len > size {
        Err(Errno::ERANGE)
    } else {
        Ok(XattrReply::Data)
    }
}

/// True for the `.` and `..` entries, which the kernel does not count.
pub fn is_dot_or_dotdot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use crate::api::ApiError;

    #[test]
    fn open_flags_become_an_open_mode() {
        assert_eq!(open_mode(libc::O_RDONLY), OpenMode::default());
        assert_eq!(
            open_mode(libc::O_WRONLY | libc::O_TRUNC),
            OpenMode {
                write: true,
                truncate: true,
                append: false
            }
        );
        assert_eq!(
            open_mode(libc::O_RDWR | libc::O_APPEND | libc::O_CLOEXEC),
            OpenMode {
                write: true,
                truncate: false,
                append: true
            }
        );
        assert!(!open_mode(libc::O_RDONLY | libc::O_NONBLOCK).write);
    }

    #[test]
    fn rename_flags_become_a_rename_how() {
        assert_eq!(rename_how(RenameFlags::empty()), Ok(RenameHow::Replace));
        assert_eq!(
            rename_how(RenameFlags::RENAME_NOREPLACE),
            Ok(RenameHow::NoReplace)
        );
        assert_eq!(
            rename_how(RenameFlags::RENAME_EXCHANGE),
            Ok(RenameHow::Exchange)
        );
        assert_eq!(
            rename_how(RenameFlags::RENAME_NOREPLACE | RenameFlags::RENAME_EXCHANGE),
            Err(Errno::EINVAL)
        );
        assert_eq!(rename_how(RenameFlags::RENAME_WHITEOUT), Err(Errno::EINVAL));
    }

    #[test]
    fn xattr_flags_become_an_xattr_how() {
        assert_eq!(xattr_how(0), Ok(XattrHow::Set));
        assert_eq!(xattr_how(libc::XATTR_CREATE), Ok(XattrHow::Create));
        assert_eq!(xattr_how(libc::XATTR_REPLACE), Ok(XattrHow::Replace));
        assert_eq!(
            xattr_how(libc::XATTR_CREATE | libc::XATTR_REPLACE),
            Err(Errno::EINVAL)
        );
        assert_eq!(xattr_how(0x100), Err(Errno::EINVAL));
    }

    #[test]
    fn xattr_replies_honour_the_callers_buffer() {
        assert_eq!(xattr_reply(10, 0), Ok(XattrReply::Length(10)));
        assert_eq!(xattr_reply(10, 10), Ok(XattrReply::Data));
        assert_eq!(xattr_reply(10, 64), Ok(XattrReply::Data));
        assert_eq!(xattr_reply(10, 9), Err(Errno::ERANGE));
        assert_eq!(xattr_reply(0, 0), Ok(XattrReply::Length(0)));
    }

    #[test]
    fn setattr_arguments_translate() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        let s = set_attr(
            Some(0o100644),
            None,
            Some(7),
            Some(0),
            Some(TimeOrNow::Now),
            Some(TimeOrNow::SpecificTime(at)),
        );
        assert_eq!(s.mode, Some(0o644));
        assert_eq!(s.uid, None);
        assert_eq!(s.gid, Some(7));
        assert_eq!(s.size, Some(0));
        assert_eq!(s.atime, Some(SetTime::Now));
        assert_eq!(s.mtime, Some(SetTime::At(at)));
        assert_eq!(
            set_attr(None, None, None, None, None, None),
            SetAttr::default()
        );
    }

    #[test]
    fn attributes_translate_with_their_kind() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = Attr {
            ino: 42,
            kind: FileKind::Symlink,
            size: 11,
            blocks: 1,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            perm: 0o777,
            nlink: 1,
            uid: 1000,
            gid: 100,
        };
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(42));
        assert_eq!(f.kind, FileType::Symlink);
        assert_eq!((f.size, f.blocks, f.perm, f.nlink), (11, 1, 0o777, 1));
        assert_eq!((f.uid, f.gid, f.rdev), (1000, 100, 0));
        assert_eq!(f.blksize, 4096);
        assert_eq!(file_type(FileKind::File), FileType::RegularFile);
        assert_eq!(file_type(FileKind::Directory), FileType::Directory);
        assert_eq!(file_type(FileKind::Fifo), FileType::NamedPipe);
        assert_eq!(file_type(FileKind::Socket), FileType::Socket);
    }

    #[test]
    fn errors_map_through_the_one_errno_table() {
        assert_eq!(errno(&FsError::NotFound), Errno::ENOENT);
        assert_eq!(errno(&FsError::NotSupported).code(), libc::EOPNOTSUPP);
        assert_eq!(errno(&FsError::ReadOnly).code(), libc::EROFS);
        assert_eq!(errno(&FsError::Range), Errno::ERANGE);
        assert_eq!(errno(&FsError::Api(ApiError::NotLoggedIn)), Errno::EACCES);
        assert_eq!(errno(&FsError::Internal("x".into())), Errno::EIO);
    }

    #[test]
    fn dot_entries_are_recognised() {
        assert!(is_dot_or_dotdot(b"."));
        assert!(is_dot_or_dotdot(b".."));
        assert!(!is_dot_or_dotdot(b"..."));
        assert!(!is_dot_or_dotdot(b".hidden"));
    }
}
