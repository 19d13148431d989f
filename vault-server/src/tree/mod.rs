//! The encrypted tree over HTTP (`/v1/nodes`, `/v1/dirs`, `/v1/links`,
//! `/v1/rename`, `/v1/statfs`, `/v1/changes`, `/v1/batch`): thin handlers that check the
//! caller (every route needs a live session; the owner is always the
//! session's account), check sizes and ids, call [`crate::store::TreeStore`]
//! and map its rows to the `common::api::tree` wire types. The rules
//! (ownership, POSIX directory semantics, versions, quota) live in the
//! store; errors become HTTP answers only in [`crate::error`].
//!
//! Every successful mutation, and every refused one that matters (a version
//! conflict, an existing name, a full account), writes an audit event with
//! node ids only: the server never has a name to log.

mod batch;
mod dirs;
mod feed;
mod links;
mod nodes;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path};
use axum::http::request::Parts;
use common::api::Base64;
use common::api::tree::{EntryInfo, EntrySpec, Kind, NodeInfo};
use common::crypto::attrs::NodeKind;
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::auth::audit;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AccountId, EntryRow, NewEntry, NodeRow, TreeError};

/// Largest encrypted name (the store's column holds 1 KiB).
pub const MAX_ENCRYPTED_NAME: usize = 1024;

/// Largest sealed attribute record.
pub const MAX_RECORD: usize = 4 << 20;

/// Largest object list of one commit.
pub const MAX_COMMIT_OBJECTS: usize = 50_000;

/// Most ids or tags in one batch request, and most rows in one page.
pub const MAX_BATCH: usize = 1000;

/// Page size when the request names none.
pub const DEFAULT_PAGE: u32 = 500;

/// Body limit of the routes carrying a record: a 4 MiB record in base64 is
/// 5.4 MiB, plus an object list.
const RECORD_BODY_LIMIT: usize = 8 << 20;

/// Body limit of the batch routes: 1000 tags in hex are 67 KB.
const BATCH_BODY_LIMIT: usize = 256 << 10;

/// The tree routes: each handler's `#[utoipa::path]` gives both its route
/// and its OpenAPI operation ([`routes!`]).
pub fn routes() -> OpenApiRouter<AppState> {
    let records = DefaultBodyLimit::max(RECORD_BODY_LIMIT);
    let batch = DefaultBodyLimit::max(BATCH_BODY_LIMIT);
    OpenApiRouter::new()
        .routes(limited(routes!(nodes::create), records))
        .routes(limited(routes!(nodes::batch), batch))
        .routes(routes!(nodes::get))
        .routes(limited(routes!(nodes::update_record), records))
        .routes(limited(routes!(nodes::commit), records))
        .routes(routes!(dirs::list))
        .routes(routes!(dirs::lookup, dirs::remove))
        .routes(limited(routes!(dirs::lookup_batch), batch))
        .routes(routes!(links::link))
        .routes(routes!(links::rename))
        .routes(routes!(feed::statfs))
        .routes(routes!(feed::changes))
        .routes(limited(
            routes!(batch::batch),
            DefaultBodyLimit::max(batch::BODY_LIMIT),
        ))
}

/// A route with its own body limit (a layer on its method router only).
fn limited(
    (schemas, paths, router): UtoipaMethodRouter<AppState>,
    limit: DefaultBodyLimit,
) -> UtoipaMethodRouter<AppState> {
    (schemas, paths, router.layer(limit))
}

// ---- path parameters ----

/// `{id}` of a node route, parsed (400 JSON when it is not 32 hex digits).
#[derive(Debug, Clone, Copy)]
pub struct NodePath(pub NodeId);

impl<S: Send + Sync> FromRequestParts<S> for NodePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("invalid path".into()))?;
        Ok(NodePath(parse_node_id(&id)?))
    }
}

/// `{id}` and `{tag}` of an entry route, parsed.
#[derive(Debug, Clone, Copy)]
pub struct EntryPath(pub NodeId, pub NameTag);

impl<S: Send + Sync> FromRequestParts<S> for EntryPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((id, tag)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("invalid path".into()))?;
        Ok(EntryPath(parse_node_id(&id)?, parse_tag(&tag)?))
    }
}

/// A node id from text.
pub fn parse_node_id(s: &str) -> Result<NodeId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::BadRequest("a node id is 32 hexadecimal digits".into()))
}

/// A name tag from text (64 hex digits, as the wire type serializes it).
pub fn parse_tag(s: &str) -> Result<NameTag, ApiError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(s, &mut bytes)
        .map_err(|_| ApiError::BadRequest("a name tag is 64 hexadecimal digits".into()))?;
    Ok(NameTag::from_bytes(bytes))
}

// ---- input checks ----

/// Takes an encrypted name out of the request: 1 to 1024 bytes.
fn take_name(name: &mut Base64) -> Result<Vec<u8>, ApiError> {
    let bytes = std::mem::take(&mut name.0);
    if bytes.is_empty() || bytes.len() > MAX_ENCRYPTED_NAME {
        return Err(ApiError::BadRequest(format!(
            "an encrypted name has 1 to {MAX_ENCRYPTED_NAME} bytes"
        )));
    }
    Ok(bytes)
}

/// Takes a sealed record out of the request: at most 4 MiB.
pub(super) fn take_record(record: &mut Base64) -> Result<Vec<u8>, ApiError> {
    let bytes = std::mem::take(&mut record.0);
    if bytes.len() > MAX_RECORD {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(bytes)
}

/// The store's entry for a wire entry.
fn new_entry(spec: &mut EntrySpec) -> Result<NewEntry, ApiError> {
    Ok(NewEntry {
        parent: spec.parent,
        tag: spec.tag,
        encrypted_name: take_name(&mut spec.encrypted_name)?,
    })
}

/// A page size: `default` when absent, 1 to 1000 otherwise.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 1 && n as usize <= MAX_BATCH => Ok(n),
        Some(_) => Err(ApiError::BadRequest(format!("limit is 1 to {MAX_BATCH}"))),
    }
}

/// Refuses a batch of more than 1000 items.
fn check_batch(len: usize) -> Result<(), ApiError> {
    if len > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} items per batch"
        )));
    }
    Ok(())
}

/// Refuses an object list of more than [`MAX_COMMIT_OBJECTS`].
fn check_objects(objects: &[ObjectId]) -> Result<(), ApiError> {
    if objects.len() > MAX_COMMIT_OBJECTS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_COMMIT_OBJECTS} objects per version"
        )));
    }
    Ok(())
}

// ---- rows to wire types ----

/// The wire kind of a stored kind.
pub fn kind_to_wire(kind: NodeKind) -> Kind {
    match kind {
        NodeKind::File => Kind::File,
        NodeKind::Directory => Kind::Directory,
        NodeKind::Symlink => Kind::Symlink,
        NodeKind::Fifo => Kind::Fifo,
        NodeKind::Socket => Kind::Socket,
    }
}

/// The stored kind of a wire kind.
pub fn kind_from_wire(kind: Kind) -> NodeKind {
    match kind {
        Kind::File => NodeKind::File,
        Kind::Directory => NodeKind::Directory,
        Kind::Symlink => NodeKind::Symlink,
        Kind::Fifo => NodeKind::Fifo,
        Kind::Socket => NodeKind::Socket,
    }
}

/// A node on the wire.
pub fn node_info(row: NodeRow) -> NodeInfo {
    NodeInfo {
        id: row.id,
        kind: kind_to_wire(row.kind),
        version: row.version,
        record: Base64(row.record),
        size: row.size,
        nlink: row.nlink,
        updated_at: row.updated_at,
    }
}

/// An entry with its node on the wire.
pub fn entry_info(entry: EntryRow, node: NodeRow) -> EntryInfo {
    EntryInfo {
        tag: entry.tag,
        encrypted_name: Base64(entry.encrypted_name),
        node: node_info(node),
    }
}

// ---- audit ----

/// Writes the audit event of a mutation: success, or a refusal that matters
/// (conflicts, existing names, quota); other refusals (a missing id, bad
/// input) are not logged, so nobody can fill the log with them.
async fn audit_outcome<T>(
    state: &AppState,
    account: AccountId,
    event: &'static str,
    ip: std::net::IpAddr,
    result: &Result<T, TreeError>,
    detail: String,
) {
    let success = match result {
        Ok(_) => true,
        Err(
            TreeError::VersionConflict { .. }
            | TreeError::EntryExists
            | TreeError::QuotaExceeded
            | TreeError::NotEmpty
            | TreeError::InvalidMove,
        ) => false,
        Err(_) => return,
    };
    audit(state, Some(account), event, ip, success, Some(detail)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in [
            NodeKind::File,
            NodeKind::Directory,
            NodeKind::Symlink,
            NodeKind::Fifo,
            NodeKind::Socket,
        ] {
            assert_eq!(kind_from_wire(kind_to_wire(kind)), kind);
        }
    }

    #[test]
    fn tags_and_ids_parse_as_the_wire_writes_them() {
        let tag = NameTag::from_bytes([0xa5; 32]);
        let text = serde_json::to_value(tag).ok();
        let text = text.as_ref().and_then(|v| v.as_str()).unwrap_or_default();
        assert!(matches!(parse_tag(text), Ok(t) if t == tag));
        for bad in ["", "zz", &"a".repeat(63), &"a".repeat(65), &"g".repeat(64)] {
            assert!(matches!(parse_tag(bad), Err(ApiError::BadRequest(_))));
        }
        let id = NodeId::from_bytes([7; 16]);
        assert!(matches!(parse_node_id(&id.to_string()), Ok(i) if i == id));
        assert!(matches!(parse_node_id("7"), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn limits() {
        assert!(matches!(page_limit(None), Ok(DEFAULT_PAGE)));
        assert!(matches!(page_limit(Some(1000)), Ok(1000)));
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(1001)).is_err());
        assert!(check_batch(MAX_BATCH).is_ok());
        assert!(check_batch(MAX_BATCH + 1).is_err());
        let mut name = Base64(vec![1; MAX_ENCRYPTED_NAME]);
        assert!(take_name(&mut name).is_ok());
        let mut name = Base64(vec![1; MAX_ENCRYPTED_NAME + 1]);
        assert!(take_name(&mut name).is_err());
        let mut record = Base64(vec![0; MAX_RECORD + 1]);
        assert!(matches!(
            take_record(&mut record),
            Err(ApiError::PayloadTooLarge)
        ));
    }
}
