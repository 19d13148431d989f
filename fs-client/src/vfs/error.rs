//! [`FsError`]: why a filesystem operation failed, and the one place where
//! that becomes an errno ([`FsError::errno`]).
//!
//! Anything that fails authentication or does not parse (a server that
//! tampers, a corrupted cache or journal) is `Integrity` and reads as `EIO`:
//! never wrong bytes.

use common::api::ErrorCode;
use common::crypto::CryptoError;

use crate::api::ApiError;

/// A failed filesystem operation.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No such entry or node (`ENOENT`).
    #[error("no such file or directory")]
    NotFound,
    /// The name exists (`EEXIST`).
    #[error("file exists")]
    Exists,
    /// Not a directory (`ENOTDIR`).
    #[error("not a directory")]
    NotADirectory,
    /// Is a directory (`EISDIR`).
    #[error("is a directory")]
    IsADirectory,
    /// Directory not empty (`ENOTEMPTY`).
    #[error("directory not empty")]
    NotEmpty,
    /// A move into its own subtree, or of the root (`EINVAL`).
    #[error("invalid argument")]
    Invalid,
    /// The name is not allowed (`ENAMETOOLONG` when too long, else `EINVAL`).
    #[error("name too long")]
    NameTooLong,
    /// The operation is not supported for this node (`EPERM`/`ENOTSUP`).
    #[error("operation not permitted")]
    NotPermitted,
    /// Not supported (`EOPNOTSUPP`).
    #[error("operation not supported")]
    NotSupported,
    /// No such extended attribute (`ENODATA`).
    #[error("no such attribute")]
    NoAttribute,
    /// A result does not fit the caller's buffer (`ERANGE`).
    #[error("result too large")]
    Range,
    /// Too big for the format (`EFBIG`).
    #[error("file too large")]
    TooBig,
    /// An argument is too large (`E2BIG`: an xattr value).
    #[error("argument too large")]
    TooLarge,
    /// No room left in a fixed-size structure (`ENOSPC`: xattrs of a node).
    #[error("no space left")]
    NoSpace,
    /// The account's quota is used up (`EDQUOT`).
    #[error("quota exceeded")]
    Quota,
    /// The mount is read-only (`EROFS`).
    #[error("read-only file system")]
    ReadOnly,
    /// Unknown inode or handle (`EBADF` for handles, `ENOENT` for inodes).
    #[error("bad file handle")]
    BadHandle,
    /// A record, name or content failed authentication or did not parse
    /// (`EIO`).
    #[error("integrity check failed: {0}")]
    Integrity(#[source] CryptoError),
    /// The server or the network failed (`EIO`, or `ENOTCONN` when
    /// unreachable).
    #[error("server error: {0}")]
    Api(#[source] ApiError),
    /// The local journal or cache failed (`EIO`).
    #[error("local storage error: {0}")]
    Local(#[source] std::io::Error),
    /// A background task failed (`EIO`).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// The errno the kernel gets.
    pub fn errno(&self) -> i32 {
        match self {
            Self::NotFound => libc::ENOENT,
            Self::Exists => libc::EEXIST,
            Self::NotADirectory => libc::ENOTDIR,
            Self::IsADirectory => libc::EISDIR,
            Self::NotEmpty => libc::ENOTEMPTY,
            Self::Invalid => libc::EINVAL,
            Self::NameTooLong => libc::ENAMETOOLONG,
            Self::NotPermitted => libc::EPERM,
            Self::NotSupported => libc::EOPNOTSUPP,
            Self::NoAttribute => libc::ENODATA,
            Self::Range => libc::ERANGE,
            Self::TooBig => libc::EFBIG,
            Self::TooLarge => libc::E2BIG,
            Self::NoSpace => libc::ENOSPC,
            Self::Quota => libc::EDQUOT,
            Self::ReadOnly => libc::EROFS,
            Self::BadHandle => libc::EBADF,
            Self::Integrity(_) | Self::Local(_) | Self::Internal(_) => libc::EIO,
            Self::Api(ApiError::Unreachable { .. } | ApiError::Timeout { .. }) => libc::EIO,
            Self::Api(ApiError::NotLoggedIn) => libc::EACCES,
            Self::Api(_) => libc::EIO,
        }
    }

    /// True when the server could not be reached (worth retrying later).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Api(e) if super::remote::is_transient(e))
    }
}

impl From<CryptoError> for FsError {
    fn from(e: CryptoError) -> Self {
        Self::Integrity(e)
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        Self::Local(e)
    }
}

impl From<ApiError> for FsError {
    /// The server's stable codes become their POSIX meaning; everything
    /// else stays an API error (`EIO`).
    fn from(e: ApiError) -> Self {
        match e.code() {
            Some(ErrorCode::NotFound) => Self::NotFound,
            Some(ErrorCode::Exists) => Self::Exists,
            Some(ErrorCode::NotADirectory) => Self::NotADirectory,
            Some(ErrorCode::IsADirectory) => Self::IsADirectory,
            Some(ErrorCode::NotEmpty) => Self::NotEmpty,
            Some(ErrorCode::InvalidMove) => Self::Invalid,
            Some(ErrorCode::QuotaExceeded) => Self::Quota,
            Some(ErrorCode::PayloadTooLarge) => Self::TooBig,
            _ => Self::Api(e),
        }
    }
}
