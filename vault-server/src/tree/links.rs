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
use crate::state::{AppState, now};
use crate::store::{Rename, RenameMode};

/// `POST /v1/links`: another entry for an existing non-directory node.
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
