//! [`VaultApi`]: the encrypted tree and its objects (`common::api::tree`),
//! one method per endpoint, so the HTTP client ([`super::http::HttpApi`])
//! and the in-memory fake ([`super::fake_tree::FakeVault`]) are
//! interchangeable under the filesystem logic.
//!
//! Every call takes the bearer [`AccessToken`]; errors are [`ApiError`]s
//! whose [`ApiError::code`] is the server's stable code (`not_found`,
//! `exists`, `not_a_directory`, `is_a_directory`, `not_empty`,
//! `invalid_move`, `not_a_file`, `conflict`, `quota_exceeded`,
//! `digest_mismatch`, `range_not_satisfiable`, ...).

use std::future::Future;

use bytes::Bytes;
use common::api::tree::{
    BatchRequest, BatchResponse, ChangePage, CommitRequest, CreateNodeRequest, EntryInfo,
    EntryPage, LinkRequest, NameTags, NodeIds, NodeInfo, RenameRequest, StatFs,
    UpdateRecordRequest,
};
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};

use super::{AccessToken, ApiResult};

/// Where [`VaultApi::download_object_into`] hands an object's body.
pub trait ObjectSink: Send {
    /// The next `bytes` of the body; `false` stops the download (the sink
    /// keeps the reason).
    fn take(&mut self, bytes: &[u8]) -> bool;
}

/// One byte range of an object, as the `Range` header names it (inclusive
/// positions, like HTTP). The server resolves it: a range reaching past the
/// end is cut at the end; one starting at or after the end, a `last` before
/// `first`, or an empty suffix is `range_not_satisfiable` (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=FIRST-LAST`.
    Span {
        /// First byte.
        first: u64,
        /// Last byte (inclusive).
        last: u64,
    },
    /// `bytes=FIRST-`: from `first` to the end.
    From(u64),
    /// `bytes=-N`: the last `N` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range `start..end` (`end > start`), or `None` when it is
    /// empty (not expressible as a `Range` header).
    pub fn from_range(r: std::ops::Range<u64>) -> Option<Self> {
        (r.end > r.start).then(|| Self::Span {
            first: r.start,
            last: r.end - 1,
        })
    }

    /// The `Range` header value.
    pub fn header(&self) -> String {
        match self {
            Self::Span { first, last } => format!("bytes={first}-{last}"),
            Self::From(first) => format!("bytes={first}-"),
            Self::Suffix(n) => format!("bytes=-{n}"),
        }
    }

    /// The bytes `start..end` it names in an object of `len` bytes, as the
    /// server resolves it, or `None` when it is unsatisfiable.
    pub fn resolve(&self, len: u64) -> Option<std::ops::Range<u64>> {
        match *self {
            Self::Suffix(n) if n > 0 && len > 0 => Some(len.saturating_sub(n)..len),
            Self::Suffix(_) => None,
            Self::From(a) if a < len => Some(a..len),
            Self::From(_) => None,
            Self::Span { first, last } if first <= last && first < len => {
                Some(first..last.saturating_add(1).min(len))
            }
            Self::Span { .. } => None,
        }
    }
}

/// Which page of a directory listing to read (`?after=TAG&limit=N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Entries with tags after this one (the previous page's `next`).
    pub after: Option<NameTag>,
    /// Page size, 1 to 1000 (500 when absent).
    pub limit: Option<u32>,
}

/// Every tree and object endpoint of the server.
pub trait VaultApi: Send + Sync {
    /// `POST /v1/nodes`: a node with its entry, or the root (id all zero, no
    /// entry, a directory, once).
    fn create_node(
        &self,
        token: &AccessToken,
        req: &CreateNodeRequest,
    ) -> impl Future<Output = ApiResult<NodeInfo>> + Send;
    /// `POST /v1/nodes/batch`: in the order asked, each once, missing ids
    /// left out.
    fn nodes(
        &self,
        token: &AccessToken,
        req: &NodeIds,
    ) -> impl Future<Output = ApiResult<Vec<NodeInfo>>> + Send;
    /// `GET /v1/nodes/{id}`.
    fn node(
        &self,
        token: &AccessToken,
        id: NodeId,
    ) -> impl Future<Output = ApiResult<NodeInfo>> + Send;
    /// `PUT /v1/nodes/{id}/record`.
    fn update_record(
        &self,
        token: &AccessToken,
        id: NodeId,
        req: &UpdateRecordRequest,
    ) -> impl Future<Output = ApiResult<NodeInfo>> + Send;
    /// `POST /v1/nodes/{id}/commit`.
    fn commit(
        &self,
        token: &AccessToken,
        id: NodeId,
        req: &CommitRequest,
    ) -> impl Future<Output = ApiResult<NodeInfo>> + Send;
    /// `GET /v1/dirs/{id}/entries?after=TAG&limit=N`: one page in tag order.
    fn list(
        &self,
        token: &AccessToken,
        dir: NodeId,
        query: ListQuery,
    ) -> impl Future<Output = ApiResult<EntryPage>> + Send;
    /// `GET /v1/dirs/{id}/entries/{tag}`.
    fn lookup(
        &self,
        token: &AccessToken,
        dir: NodeId,
        tag: &NameTag,
    ) -> impl Future<Output = ApiResult<EntryInfo>> + Send;
    /// `POST /v1/dirs/{id}/lookup`: in the order asked, each once, missing
    /// names left out.
    fn lookup_batch(
        &self,
        token: &AccessToken,
        dir: NodeId,
        req: &NameTags,
    ) -> impl Future<Output = ApiResult<Vec<EntryInfo>>> + Send;
    /// `DELETE /v1/dirs/{id}/entries/{tag}?dir=BOOL`: `rmdir` when
    /// `is_dir`, else `unlink`.
    fn remove(
        &self,
        token: &AccessToken,
        dir: NodeId,
        tag: &NameTag,
        is_dir: bool,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `POST /v1/links`: a hard link.
    fn link(
        &self,
        token: &AccessToken,
        req: &LinkRequest,
    ) -> impl Future<Output = ApiResult<NodeInfo>> + Send;
    /// `POST /v1/rename`.
    fn rename(
        &self,
        token: &AccessToken,
        req: &RenameRequest,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `PUT /v1/objects/{id}`: uploads `body` announced with its CRC-32C
    /// (a transfer check; the object list authenticates what is read back).
    fn upload_object(
        &self,
        token: &AccessToken,
        id: ObjectId,
        body: Bytes,
        crc32c: u32,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `GET /v1/objects/{id}`, whole or one range. The bytes are owned, so
    /// a reader can decrypt them in place; a chunk-sized buffer comes from
    /// the buffer pool (`cache::buffers::POOL`), where the reader gives it
    /// back when done.
    fn download_object(
        &self,
        token: &AccessToken,
        id: ObjectId,
        range: Option<ByteRange>,
    ) -> impl Future<Output = ApiResult<Vec<u8>>> + Send;
    /// `GET /v1/objects/{id}` of a whole object, handing its body to `sink`
    /// piece by piece as it arrives (the HTTP client: each read off the
    /// connection, not copied into one buffer first). Stops early, with
    /// `Ok`, when the sink refuses a piece; the sink knows why. By default
    /// a [`Self::download_object`] handed over in one piece.
    fn download_object_into<S: ObjectSink>(
        &self,
        token: &AccessToken,
        id: ObjectId,
        sink: &mut S,
    ) -> impl Future<Output = ApiResult<()>> + Send {
        async move {
            let body = self.download_object(token, id, None).await?;
            sink.take(&body);
            Ok(())
        }
    }
    /// `GET /v1/statfs`.
    fn statfs(&self, token: &AccessToken) -> impl Future<Output = ApiResult<StatFs>> + Send;
    /// `POST /v1/batch`: inline objects stored first (all or none), then
    /// each operation in order, each answered on its own.
    fn batch(
        &self,
        token: &AccessToken,
        req: &BatchRequest,
    ) -> impl Future<Output = ApiResult<BatchResponse>> + Send;
    /// `GET /v1/changes?since=SEQ&limit=N`.
    fn changes(
        &self,
        token: &AccessToken,
        since: i64,
        limit: Option<u32>,
    ) -> impl Future<Output = ApiResult<ChangePage>> + Send;
}

/// The CRC-32C (Castagnoli) of `bytes`, as [`VaultApi::upload_object`]
/// announces it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(bytes)
}

/// The SHA-256 of `bytes`, as an inline object of a batch announces it.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C (RFC 3720, B.4).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn ranges_resolve_as_the_server_does() {
        let len = 100;
        let span = |first, last| ByteRange::Span { first, last };
        assert_eq!(span(0, 0).resolve(len), Some(0..1));
        assert_eq!(span(10, 19).resolve(len), Some(10..20));
        assert_eq!(span(90, 200).resolve(len), Some(90..100));
        assert_eq!(span(0, u64::MAX).resolve(len), Some(0..100));
        assert_eq!(ByteRange::From(99).resolve(len), Some(99..100));
        assert_eq!(ByteRange::Suffix(10).resolve(len), Some(90..100));
        assert_eq!(ByteRange::Suffix(1000).resolve(len), Some(0..100));
        assert_eq!(ByteRange::From(100).resolve(len), None);
        assert_eq!(span(100, 200).resolve(len), None);
        assert_eq!(span(20, 10).resolve(len), None);
        assert_eq!(ByteRange::Suffix(0).resolve(len), None);
        assert_eq!(ByteRange::Suffix(1).resolve(0), None);
        assert_eq!(span(3, 4).header(), "bytes=3-4");
        assert_eq!(ByteRange::From(3).header(), "bytes=3-");
        assert_eq!(ByteRange::Suffix(3).header(), "bytes=-3");
        assert_eq!(ByteRange::from_range(2..5), Some(span(2, 4)));
        assert_eq!(ByteRange::from_range(5..5), None);
    }
}
