//! The encrypted tree and its objects on the wire (`/v1`, bearer token).
//!
//! Every id is the client's: node and object ids are random, names travel
//! as a keyed tag (what the server indexes) plus an encrypted name, and
//! records and objects are opaque sealed bytes. The server enforces
//! ownership (another account's id answers 404), POSIX directory rules and
//! optimistic concurrency (`expected_version`, 409 with the current version).

use serde::{Deserialize, Serialize};

use super::Base64;
use crate::crypto::name::NameTag;
use crate::ids::{NodeId, ObjectId};

/// Paths of the tree endpoints.
pub mod paths {
    /// `POST` [`super::CreateNodeRequest`] → 201 [`super::NodeInfo`].
    pub const NODES: &str = "/v1/nodes";
    /// `POST` [`super::NodeIds`] → 200 `Vec<`[`super::NodeInfo`]`>` (missing ids left out).
    pub const NODES_BATCH: &str = "/v1/nodes/batch";
    /// `GET` → 200 [`super::NodeInfo`].
    pub const NODE: &str = "/v1/nodes/{id}";
    /// `PUT` [`super::UpdateRecordRequest`] → 200 [`super::NodeInfo`].
    pub const NODE_RECORD: &str = "/v1/nodes/{id}/record";
    /// `POST` [`super::CommitRequest`] → 200 [`super::NodeInfo`].
    pub const NODE_COMMIT: &str = "/v1/nodes/{id}/commit";
    /// `GET ?after=TAG&limit=N` → 200 [`super::EntryPage`].
    pub const ENTRIES: &str = "/v1/dirs/{id}/entries";
    /// `GET` → 200 [`super::EntryInfo`]; `DELETE ?dir=BOOL` → 204.
    pub const ENTRY: &str = "/v1/dirs/{id}/entries/{tag}";
    /// `POST` [`super::NameTags`] → 200 `Vec<`[`super::EntryInfo`]`>`.
    pub const LOOKUP_BATCH: &str = "/v1/dirs/{id}/lookup";
    /// `POST` [`super::LinkRequest`] → 201 [`super::NodeInfo`].
    pub const LINKS: &str = "/v1/links";
    /// `POST` [`super::RenameRequest`] → 204.
    pub const RENAME: &str = "/v1/rename";
    /// `PUT` (binary body, `X-Vault-Crc32c` or `X-Vault-Sha256` header) →
    /// 201; `GET` (optional
    /// `Range: bytes=A-B`) → 200 or 206 with the ciphertext.
    pub const OBJECT: &str = "/v1/objects/{id}";
    /// `GET` → 200 [`super::StatFs`].
    pub const STATFS: &str = "/v1/statfs";
    /// `GET ?since=SEQ&limit=N` → 200 [`super::ChangePage`].
    pub const CHANGES: &str = "/v1/changes";
    /// `POST` [`super::BatchRequest`] → 200 [`super::BatchResponse`].
    pub const BATCH: &str = "/v1/batch";
}

/// The header carrying an uploaded object's SHA-256 (64 hex digits).
pub const SHA256_HEADER: &str = "x-vault-sha256";
/// The header carrying an uploaded object's CRC-32C (Castagnoli), as 8 hex
/// digits of the big-endian value. An upload announces this or
/// [`SHA256_HEADER`], not both; either only guards the transfer (the client
/// authenticates what it reads back), and the CRC is much the cheaper.
pub const CRC32C_HEADER: &str = "x-vault-crc32c";

/// Node kinds as the server sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Kind {
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

/// A node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// Id.
    pub id: NodeId,
    /// Kind.
    pub kind: Kind,
    /// Version of the record.
    pub version: u64,
    /// The sealed attribute record (bound to id and version).
    pub record: Base64,
    /// Ciphertext bytes of the node's objects.
    pub size: u64,
    /// Entries naming the node.
    pub nlink: u32,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

/// Where a new node or link goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntrySpec {
    /// The directory.
    pub parent: NodeId,
    /// The name's tag.
    pub tag: NameTag,
    /// The encrypted name (bound to parent and child).
    pub encrypted_name: Base64,
}

/// Creates a node (the root: no entry, id all zero, once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateNodeRequest {
    /// Client-chosen id.
    pub id: NodeId,
    /// Kind.
    pub kind: Kind,
    /// Sealed record for version 1 (for a file with `objects`, its object
    /// list names exactly those, as a commit's record does).
    pub record: Base64,
    /// Its entry; absent only for the root.
    pub entry: Option<EntrySpec>,
    /// For a file: every object of version 1 (uploaded before), so that a
    /// new file and its contents take one request instead of a create and
    /// a commit. As [`CommitRequest::objects`]: each must be the caller's
    /// and pending (uploaded, in no node yet), an id listed twice counts
    /// once, the node's `size` is the sum of their sizes and they become
    /// the node's (their bytes were counted against the quota when they
    /// were uploaded). Refused as a commit would refuse them, and then
    /// nothing is created: `not_a_file` (409) for any other kind (before
    /// the parent is checked), `not_found` (404) for an object that is
    /// missing or not pending (after the parent and the name are). Empty
    /// (or absent, as older clients send it): a node without contents,
    /// `size` 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectId>,
}

/// Ids for a batch read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeIds {
    /// At most 1000.
    pub ids: Vec<NodeId>,
}

/// Tags for a batch lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NameTags {
    /// At most 1000.
    pub tags: Vec<NameTag>,
}

/// Replaces a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateRecordRequest {
    /// The version the change is based on.
    pub expected_version: u64,
    /// The record sealed for `expected_version + 1`.
    pub record: Base64,
}

/// Commits a new version of a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitRequest {
    /// The version the change is based on.
    pub expected_version: u64,
    /// The record sealed for `expected_version + 1` (its object list names
    /// exactly `objects`, with their digests).
    pub record: Base64,
    /// Every object of the new version (uploaded before).
    pub objects: Vec<ObjectId>,
}

/// A hard link.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkRequest {
    /// The new entry.
    pub entry: EntrySpec,
    /// The existing non-directory node.
    pub child: NodeId,
}

/// How a rename treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RenameMode {
    /// Replace it (POSIX rename).
    Replace,
    /// Fail if it exists.
    NoReplace,
    /// Swap the two.
    Exchange,
}

/// A rename or move.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenameRequest {
    /// Source directory.
    pub src_parent: NodeId,
    /// Source tag.
    pub src_tag: NameTag,
    /// Target directory.
    pub dst_parent: NodeId,
    /// Target tag.
    pub dst_tag: NameTag,
    /// The source node's name encrypted for the target directory.
    pub dst_encrypted_name: Base64,
    /// For exchange: the target node's name encrypted for the source directory.
    pub src_encrypted_name: Option<Base64>,
    /// Replace, no-replace or exchange.
    pub mode: RenameMode,
}

/// One directory entry with its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryInfo {
    /// The name's tag.
    pub tag: NameTag,
    /// The encrypted name.
    pub encrypted_name: Base64,
    /// The node.
    pub node: NodeInfo,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryPage {
    /// Entries in tag order.
    pub entries: Vec<EntryInfo>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<NameTag>,
}

/// Usage and quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatFs {
    /// Bytes stored.
    pub used_bytes: u64,
    /// Bytes allowed.
    pub quota_bytes: u64,
    /// Nodes.
    pub nodes: u64,
    /// The latest change sequence number.
    pub seq: i64,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// Sequence number.
    pub seq: i64,
    /// The node that changed.
    pub node: NodeId,
    /// The directory whose listing changed, if any.
    pub parent: Option<NodeId>,
}

/// One page of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePage {
    /// Changes after `since`, oldest first.
    pub changes: Vec<Change>,
    /// The latest sequence number (poll from here when `changes` is short).
    pub latest: i64,
}

/// Most operations in one [`BatchRequest`].
pub const BATCH_MAX_OPS: usize = 1000;
/// Most inline objects in one [`BatchRequest`].
pub const BATCH_MAX_OBJECTS: usize = 1000;
/// Largest inline object (bytes of ciphertext); bigger ones go through
/// `PUT /v1/objects/{id}`.
pub const BATCH_MAX_INLINE_OBJECT: usize = 256 * 1024;
/// Most ciphertext bytes inline in one [`BatchRequest`].
pub const BATCH_MAX_INLINE_BYTES: usize = 8 * 1024 * 1024;

/// A small object uploaded inside a [`BatchRequest`], as `PUT
/// /v1/objects/{id}` would (the server checks the SHA-256 of `data`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InlineObject {
    /// Client-chosen id.
    pub id: ObjectId,
    /// The ciphertext.
    pub data: Base64,
    /// SHA-256 of `data`.
    pub sha256: Base64,
}

/// A commit inside a [`BatchRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCommit {
    /// The file.
    pub id: NodeId,
    /// As `POST /v1/nodes/{id}/commit`.
    #[serde(flatten)]
    pub commit: CommitRequest,
}

/// A record change inside a [`BatchRequest`] (a directory's or symlink's
/// mode, owner or times).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRecord {
    /// The node.
    pub id: NodeId,
    /// As `PUT /v1/nodes/{id}/record`.
    #[serde(flatten)]
    pub update: UpdateRecordRequest,
}

/// One operation of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BatchOp {
    /// As `POST /v1/nodes` (never the root).
    Create(CreateNodeRequest),
    /// As `POST /v1/nodes/{id}/commit`.
    Commit(BatchCommit),
    /// As `PUT /v1/nodes/{id}/record`.
    Record(BatchRecord),
}

/// Many tree changes in one request: the inline objects are stored first
/// (all or none: a failing object fails the whole request and applies no
/// operation), then the operations run in order, each atomic on its own
/// and each answered as its own endpoint would, so a failed operation does
/// not stop the ones after it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRequest {
    /// Small objects to store before the operations run.
    #[serde(default)]
    pub objects: Vec<InlineObject>,
    /// At most [`BATCH_MAX_OPS`].
    pub ops: Vec<BatchOp>,
}

/// The outcome of one [`BatchOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BatchOutcome {
    /// Done: the node as the endpoint would have returned it.
    Ok(NodeInfo),
    /// Refused, with the error the endpoint would have returned.
    Err(BatchFailure),
}

/// A refused [`BatchOp`]: the status and error its own endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchFailure {
    /// The HTTP status the endpoint would have answered.
    pub status: u16,
    /// The error.
    pub error: super::ErrorDetail,
}

/// The answer to a [`BatchRequest`]: one outcome per operation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchResponse {
    /// One per operation, in the order asked.
    pub results: Vec<BatchOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(objects: Vec<ObjectId>) -> CreateNodeRequest {
        CreateNodeRequest {
            id: NodeId::from_bytes([1; 16]),
            kind: Kind::File,
            record: Base64(vec![1, 2, 3]),
            entry: None,
            objects,
        }
    }

    #[test]
    fn create_objects_are_optional_on_the_wire() {
        // Without objects the request is what older clients send and
        // older servers accept: no `objects` key at all.
        let json = serde_json::to_value(create(Vec::new())).unwrap();
        assert!(json.get("objects").is_none(), "{json}");
        let old: CreateNodeRequest = serde_json::from_value(json).unwrap();
        assert!(old.objects.is_empty());

        let ids = vec![ObjectId::from_bytes([7; 16]), ObjectId::from_bytes([8; 16])];
        let json = serde_json::to_value(create(ids.clone())).unwrap();
        assert_eq!(json["objects"].as_array().map(Vec::len), Some(2));
        let back: CreateNodeRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.objects, ids);

        // Inside a batch (an internally tagged operation) too.
        let op = BatchOp::Create(create(ids.clone()));
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(json["op"], "create");
        match serde_json::from_value::<BatchOp>(json).unwrap() {
            BatchOp::Create(c) => assert_eq!(c.objects, ids),
            other => panic!("not a create: {other:?}"),
        }
        let mut json = serde_json::to_value(BatchOp::Create(create(Vec::new()))).unwrap();
        assert!(json.get("objects").is_none(), "{json}");
        json["objects"] = serde_json::Value::Array(Vec::new());
        match serde_json::from_value::<BatchOp>(json).unwrap() {
            BatchOp::Create(c) => assert!(c.objects.is_empty()),
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn a_record_change_in_a_batch_is_the_record_endpoint_body_with_its_id() {
        let id = NodeId::from_bytes([3; 16]);
        let op = BatchOp::Record(BatchRecord {
            id,
            update: UpdateRecordRequest {
                expected_version: 7,
                record: Base64(vec![1, 2, 3]),
            },
        });
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "op": "record",
                "id": id.to_string(),
                "expected_version": 7,
                "record": "AQID",
            })
        );
        match serde_json::from_value::<BatchOp>(json).unwrap() {
            BatchOp::Record(r) => {
                assert_eq!((r.id, r.update.expected_version), (id, 7));
                assert_eq!(r.update.record.0, [1, 2, 3]);
            }
            other => panic!("not a record change: {other:?}"),
        }
    }
}
