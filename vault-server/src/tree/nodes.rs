//! Nodes: create (or the root), read one or many, replace the record, and
//! commit a new version of a file.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use common::NodeId;
use common::api::tree::{CommitRequest, CreateNodeRequest, NodeIds, NodeInfo, UpdateRecordRequest};

use super::{
    NodePath, audit_outcome, check_batch, check_objects, kind_from_wire, new_entry, node_info,
    take_record,
};
use crate::auth::session::{AccessToken, AuthSession};
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::http::json::ApiJson;
use crate::http::openapi::{BearerErrors, PayloadTooLarge, ServerErrors};
use crate::state::{AppState, now};
use crate::store::{NewNode, NewVersion};

/// `POST /v1/nodes`: a node and its entry, or the root (no entry, id all
/// zero, a directory, once); a file possibly with its first contents
/// (`objects`, uploaded before), as a commit would add them.
#[utoipa::path(
    post,
    operation_id = "create_node",
    path = common::api::tree::paths::NODES,
    tag = "tree",
    summary = "Creates a node with its entry, or the root (no entry, id all zero, a directory, once)",
    description = "A file may be created with its contents: `objects` lists every object of \
version 1 (uploaded before, by `PUT /v1/objects/{id}` or inline in `POST /v1/batch`), as \
`POST /v1/nodes/{id}/commit` takes them. Each must be pending (uploaded, in no node yet); an id \
listed twice counts once; the node's `size` is the sum of their sizes and they become its \
objects (their bytes were counted against the quota at upload). `objects` with any other kind \
is refused with 409 `not_a_file`, an object that is missing or not pending with 404 \
`not_found` (after the checks of the parent and the name); nothing is created then. Without \
`objects` (older clients omit it) the node has no contents and `size` 0.",
    request_body = CreateNodeRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The node at version 1", body = NodeInfo),
        (status = 400, description = "Invalid body, name or root, or too many objects (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such parent directory, or a listed object missing or not pending (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "The id or name exists (`exists`), the parent is not a directory (`not_a_directory`), or `objects` for a node that is not a file (`not_a_file`)", body = common::api::ErrorBody),
        (status = 413, description = "Body or record too large (`payload_too_large`)", body = common::api::ErrorBody),
        (status = 507, description = "The account's quota is full (`quota_exceeded`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    ApiJson(mut req): ApiJson<CreateNodeRequest>,
) -> ApiResult<(StatusCode, Json<NodeInfo>)> {
    let new = new_node(&mut req)?;
    let result = state.store.create_node(auth.account, &new, now()).await;
    let mut detail = match &new.entry {
        Some(e) => format!("node={} parent={}", new.id, e.parent),
        None => format!("node={}", new.id),
    };
    // As a commit counts them.
    if !new.objects.is_empty() {
        detail.push_str(&format!(" objects={}", new.objects.len()));
    }
    audit_outcome(&state, auth.account, "tree.create", ip, &result, detail).await;
    Ok((StatusCode::CREATED, Json(node_info(result?))))
}

/// The checks of `POST /v1/nodes` (also for each create of `POST
/// /v1/batch`): the root has no entry, every other node one; names,
/// records and the object list within their limits. Takes the bytes out of
/// the request.
pub(super) fn new_node(req: &mut CreateNodeRequest) -> Result<NewNode, ApiError> {
    let kind = kind_from_wire(req.kind);
    match (&req.entry, req.id == NodeId::ROOT) {
        (None, false) => {
            return Err(ApiError::BadRequest(
                "only the root (id all zero) has no entry".into(),
            ));
        }
        (Some(_), true) => {
            return Err(ApiError::BadRequest("the root has no entry".into()));
        }
        (None, true) if kind != common::crypto::attrs::NodeKind::Directory => {
            return Err(ApiError::BadRequest("the root is a directory".into()));
        }
        _ => {}
    }
    check_objects(&req.objects)?;
    let entry = req.entry.as_mut().map(new_entry).transpose()?;
    Ok(NewNode {
        id: req.id,
        kind,
        record: take_record(&mut req.record)?,
        entry,
        objects: std::mem::take(&mut req.objects),
    })
}

/// The checks of `POST /v1/nodes/{id}/commit` (also for each commit of
/// `POST /v1/batch`): the object list and the record within their limits.
/// Takes the bytes out of the request.
pub(super) fn new_version(id: NodeId, req: &mut CommitRequest) -> Result<NewVersion, ApiError> {
    check_objects(&req.objects)?;
    Ok(NewVersion {
        id,
        expected_version: req.expected_version,
        record: take_record(&mut req.record)?,
        objects: std::mem::take(&mut req.objects),
    })
}

/// `POST /v1/nodes/batch`: up to 1000 nodes, in the order asked, missing
/// (or another account's) ids left out.
#[utoipa::path(
    post,
    operation_id = "get_nodes",
    path = common::api::tree::paths::NODES_BATCH,
    tag = "tree",
    summary = "Up to 1000 nodes in the order asked; missing ids left out",
    request_body = NodeIds,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The nodes found", body = Vec<NodeInfo>),
        (status = 400, description = "Invalid body or more than 1000 ids (`bad_request`)", body = common::api::ErrorBody),
        BearerErrors, PayloadTooLarge, ServerErrors,
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    auth: AuthSession,
    ApiJson(req): ApiJson<NodeIds>,
) -> ApiResult<Json<Vec<NodeInfo>>> {
    check_batch(req.ids.len())?;
    let rows = state.store.nodes(auth.account, &req.ids).await?;
    Ok(Json(rows.into_iter().map(node_info).collect()))
}

/// `GET /v1/nodes/{id}`.
#[utoipa::path(
    get,
    operation_id = "get_node",
    path = common::api::tree::paths::NODE,
    tag = "tree",
    summary = "One node",
    params(("id" = NodeId, Path, description = "The node (32 hex digits)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node", body = NodeInfo),
        (status = 400, description = "Invalid id (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such node of this account (`not_found`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    token: AccessToken,
    NodePath(id): NodePath,
) -> ApiResult<Json<NodeInfo>> {
    // The session and the node in one query: this is every file's open.
    let read = state.store.node_in_session(token.session_id(), id).await?;
    let node = token.found(read)?.ok_or(ApiError::NotFound)?;
    Ok(Json(node_info(node)))
}

/// `PUT /v1/nodes/{id}/record`: replaces the record if the node is at
/// `expected_version` (409 `conflict` naming the current version otherwise).
#[utoipa::path(
    put,
    operation_id = "update_record",
    path = common::api::tree::paths::NODE_RECORD,
    tag = "tree",
    summary = "Replaces the record of a node at `expected_version`",
    request_body = UpdateRecordRequest,
    params(("id" = NodeId, Path, description = "The node (32 hex digits)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node at its new version", body = NodeInfo),
        (status = 400, description = "Invalid id or body (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such node (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "The node is not at `expected_version` (`conflict`)", body = common::api::ErrorBody),
        (status = 413, description = "Body or record too large (`payload_too_large`)", body = common::api::ErrorBody),
        (status = 507, description = "The account's quota is full (`quota_exceeded`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn update_record(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    NodePath(id): NodePath,
    ApiJson(mut req): ApiJson<UpdateRecordRequest>,
) -> ApiResult<Json<NodeInfo>> {
    let record = take_record(&mut req.record)?;
    let result = state
        .store
        .update_record(auth.account, id, req.expected_version, &record, now())
        .await;
    let detail = format!("node={id}");
    audit_outcome(&state, auth.account, "tree.record", ip, &result, detail).await;
    Ok(Json(node_info(result?)))
}

/// `POST /v1/nodes/{id}/commit`: a new version of a file, its record and
/// exactly `objects` (uploaded before); objects it no longer names are
/// released for purge.
#[utoipa::path(
    post,
    operation_id = "commit_node",
    path = common::api::tree::paths::NODE_COMMIT,
    tag = "tree",
    summary = "Commits a new version of a file: its record and exactly its (uploaded) objects",
    request_body = CommitRequest,
    params(("id" = NodeId, Path, description = "The node (32 hex digits)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node at its new version", body = NodeInfo),
        (status = 400, description = "Invalid id or body, or too many objects (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such node or object (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "Version conflict (`conflict`) or not a regular file (`not_a_file`)", body = common::api::ErrorBody),
        (status = 413, description = "Body or record too large (`payload_too_large`)", body = common::api::ErrorBody),
        (status = 507, description = "The account's quota is full (`quota_exceeded`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn commit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    NodePath(id): NodePath,
    ApiJson(mut req): ApiJson<CommitRequest>,
) -> ApiResult<Json<NodeInfo>> {
    let v = new_version(id, &mut req)?;
    let result = state
        .store
        .commit_version(
            auth.account,
            id,
            v.expected_version,
            &v.record,
            &v.objects,
            now(),
        )
        .await;
    let detail = match &result {
        Ok((_, released)) => format!(
            "node={id} objects={} released={}",
            v.objects.len(),
            released.objects.len()
        ),
        Err(_) => format!("node={id}"),
    };
    audit_outcome(&state, auth.account, "tree.commit", ip, &result, detail).await;
    let (row, _released) = result?;
    Ok(Json(node_info(row)))
}
