//! The plain types the filesystem logic speaks: inode numbers, attributes,
//! directory entries and requests, independent of fuser (the adapter in
//! `crate::mount::fuse` converts them).

use std::time::SystemTime;

/// An inode number as the kernel sees it. `ROOT_INO` is the vault's root;
/// the others are handed out on first sight of a node and stay fixed for
/// the life of the mount.
pub type Ino = u64;
/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;
/// An open-file or open-directory handle.
pub type Fh = u64;
/// Block size reported in `stat` and `statfs`.
pub const BLOCK_SIZE: u32 = 4096;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// The attributes of one node, as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes (a symlink's target length; a directory's entry count
    /// times a nominal size).
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Last access.
    pub atime: SystemTime,
    /// Last content change.
    pub mtime: SystemTime,
    /// Last attribute change.
    pub ctime: SystemTime,
    /// Creation.
    pub crtime: SystemTime,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The caller of an operation, for the owner of new nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caller {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// A time given to `setattr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The current time.
    Now,
    /// This time.
    At(SystemTime),
}

/// What `setattr` changes (each `None` is left alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate up or down).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
}

/// How `open` and `create` open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenMode {
    /// Opened for writing (`O_WRONLY` or `O_RDWR`).
    pub write: bool,
    /// `O_TRUNC`.
    pub truncate: bool,
    /// `O_APPEND` (the kernel passes end-of-file offsets; kept for clarity).
    pub append: bool,
}

/// How `rename` treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenameHow {
    /// Replace it (POSIX `rename`).
    #[default]
    Replace,
    /// Fail with `EEXIST` (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap the two (`RENAME_EXCHANGE`).
    Exchange,
}

/// How `setxattr` treats an existing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrHow {
    /// Create or replace.
    #[default]
    Set,
    /// Fail with `EEXIST` if it exists (`XATTR_CREATE`).
    Create,
    /// Fail with `ENODATA` if it does not (`XATTR_REPLACE`).
    Replace,
}

/// One directory entry for `readdir`/`readdirplus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The offset to pass to continue after this entry.
    pub offset: i64,
    /// The entry's name (plaintext, never logged).
    pub name: Vec<u8>,
    /// The entry's attributes (with its inode number and kind).
    pub attr: Attr,
}

/// Filesystem totals for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Total blocks of [`BLOCK_SIZE`].
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Nodes stored.
    pub files: u64,
    /// Free nodes (not limited: a large number).
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
}

/// What is waiting to be uploaded, for `vault status` and unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pending {
    /// Files (and directories or symlinks with a mode, owner or time
    /// change) with changes not yet committed on the server.
    pub files: u64,
    /// Bytes of those changes (staged plaintext-equivalent bytes).
    pub bytes: u64,
}
