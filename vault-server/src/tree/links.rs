//! Hard links and renames.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use common::api::tree::{LinkRequest, NodeInfo, RenameMode as WireMode, RenameRequest};

use super::{audit_outcome, new_entry, node_info, take_name};
use crate::auth::session::AuthSession;
use crate::error::ApiResult;
use crate::http::client_ip::ClientIp;
use crate::http::json::ApiJson;
use crate::http::openapi::{BearerErrors, PayloadTooLarge, ServerErrors};
use crate::state::{AppState, now};
use crate::store::{Rename, RenameMode};

/// `POST /v1/links`: another entry for an existing non-directory node.
#[utoipa::path(
    post,
    operation_id = "link",
    path = common::api::tree::paths::LINKS,
    tag = "tree",
    summary = "A hard link: another entry for an existing non-directory node",
    request_body = LinkRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The node with its new link count", body = NodeInfo),
        (status = 400, description = "Invalid body or name (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such node or directory (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "`exists`, `is_a_directory` or `not_a_directory`", body = common::api::ErrorBody),
        (status = 507, description = "The account's quota is full (`quota_exceeded`)", body = common::api::ErrorBody),
        BearerErrors, PayloadTooLarge, ServerErrors,
    )
)]
pub async fn link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    ApiJson(mut req): ApiJson<LinkRequest>,
) -> ApiResult<(StatusCode, Json<NodeInfo>)> {
    let entry = new_entry(&mut req.entry)?;
    let result = state
        .store
        .link(auth.account, &entry, req.child, now())
        .await;
    let detail = format!("node={} parent={}", req.child, entry.parent);
    audit_outcome(&state, auth.account, "tree.link", ip, &result, detail).await;
    Ok((StatusCode::CREATED, Json(node_info(result?))))
}

/// `POST /v1/rename`: an atomic rename or move (replace, no-replace or
/// exchange), with POSIX rules.
#[utoipa::path(
    post,
    path = common::api::tree::paths::RENAME,
    tag = "tree",
    summary = "An atomic rename or move (replace, no-replace or exchange) with POSIX rules",
    request_body = RenameRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Renamed"),
        (status = 400, description = "Invalid body or name (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such directory or name (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "`exists`, `not_empty`, `is_a_directory` or `not_a_directory`", body = common::api::ErrorBody),
        (status = 422, description = "A directory into its own subtree, or the root (`invalid_move`)", body = common::api::ErrorBody),
        (status = 507, description = "The account's quota is full (`quota_exceeded`)", body = common::api::ErrorBody),
        BearerErrors, PayloadTooLarge, ServerErrors,
    )
)]
pub async fn rename(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    ApiJson(mut req): ApiJson<RenameRequest>,
) -> ApiResult<StatusCode> {
    let op = Rename {
        src_parent: req.src_parent,
        src_tag: req.src_tag,
        dst_parent: req.dst_parent,
        dst_tag: req.dst_tag,
        dst_encrypted_name: take_name(&mut req.dst_encrypted_name)?,
        src_encrypted_name: req.src_encrypted_name.as_mut().map(take_name).transpose()?,
        mode: match req.mode {
            WireMode::Replace => RenameMode::Replace,
            WireMode::NoReplace => RenameMode::NoReplace,
            WireMode::Exchange => RenameMode::Exchange,
        },
    };
    let result = state.store.rename(auth.account, &op, now()).await;
    let detail = match &result {
        Ok(released) => {
            let deleted: Vec<String> = released.nodes.iter().map(ToString::to_string).collect();
            format!(
                "src_parent={} dst_parent={} deleted=[{}]",
                op.src_parent,
                op.dst_parent,
                deleted.join(",")
            )
        }
        Err(_) => format!("src_parent={} dst_parent={}", op.src_parent, op.dst_parent),
    };
    audit_outcome(&state, auth.account, "tree.rename", ip, &result, detail).await;
    result?;
    Ok(StatusCode::NO_CONTENT)
}
