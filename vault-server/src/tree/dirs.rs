//! Directories: paged listing, lookup of one or many names, and removal of
//! an entry (`unlink` / `rmdir`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use common::api::tree::{EntryInfo, EntryPage, NameTags};
use common::crypto::attrs::NodeKind;
use serde::Deserialize;

use super::{EntryPath, NodePath, audit_outcome, check_batch, entry_info, page_limit, parse_tag};
use crate::auth::session::{AccessToken, AuthSession};
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::http::json::{ApiJson, ApiQuery};
use crate::http::openapi::{BearerErrors, PayloadTooLarge, ServerErrors};
use crate::state::{AppState, now};
use crate::store::TreeError;

/// `?after=TAG&limit=N`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The last tag of the previous page (64 hex digits).
    after: Option<String>,
    /// Page size, 1 to 1000 (500 when absent).
    limit: Option<u32>,
}

/// `GET /v1/dirs/{id}/entries`: one page of entries in tag order; `next` is
/// set exactly when more entries follow.
#[utoipa::path(
    get,
    operation_id = "list_entries",
    path = common::api::tree::paths::ENTRIES,
    tag = "tree",
    summary = "One page of a directory's entries in tag order",
    params(("id" = common::NodeId, Path, description = "The directory (32 hex digits)"), ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The page; `next` is set when more follow", body = EntryPage),
        (status = 400, description = "Invalid id or query (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such directory (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "Not a directory (`not_a_directory`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthSession,
    NodePath(dir): NodePath,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<EntryPage>> {
    let limit = page_limit(q.limit)?;
    let after = q.after.as_deref().map(parse_tag).transpose()?;
    // One more than asked tells whether another page follows.
    let mut rows = state
        .store
        .list(auth.account, dir, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|(e, _)| e.tag)
    } else {
        None
    };
    Ok(Json(EntryPage {
        entries: rows.into_iter().map(|(e, n)| entry_info(e, n)).collect(),
        next,
    }))
}

/// `GET /v1/dirs/{id}/entries/{tag}`.
#[utoipa::path(
    get,
    operation_id = "lookup_entry",
    path = common::api::tree::paths::ENTRY,
    tag = "tree",
    summary = "One entry of a directory with its node",
    params(("id" = common::NodeId, Path, description = "The directory (32 hex digits)"), ("tag" = common::crypto::name::NameTag, Path, description = "The name's tag (64 hex digits)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entry", body = EntryInfo),
        (status = 400, description = "Invalid id or tag (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such directory or name (`not_found`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn lookup(
    State(state): State<AppState>,
    token: AccessToken,
    EntryPath(dir, tag): EntryPath,
) -> ApiResult<Json<EntryInfo>> {
    // The session and the entry in one query: every step of a cold walk.
    let read = state
        .store
        .lookup_in_session(token.session_id(), dir, &tag)
        .await?;
    let (entry, node) = token.found(read)?.ok_or(ApiError::NotFound)?;
    Ok(Json(entry_info(entry, node)))
}

/// `POST /v1/dirs/{id}/lookup`: up to 1000 names of one directory, in the
/// order asked, each once; missing names left out (a missing directory is
/// 404).
#[utoipa::path(
    post,
    operation_id = "lookup_entries",
    path = common::api::tree::paths::LOOKUP_BATCH,
    tag = "tree",
    summary = "Up to 1000 names of one directory in the order asked; missing names left out",
    request_body = NameTags,
    params(("id" = common::NodeId, Path, description = "The directory (32 hex digits)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entries found", body = Vec<EntryInfo>),
        (status = 400, description = "Invalid id or body, or more than 1000 tags (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such directory (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "Not a directory (`not_a_directory`)", body = common::api::ErrorBody),
        BearerErrors, PayloadTooLarge, ServerErrors,
    )
)]
pub async fn lookup_batch(
    State(state): State<AppState>,
    auth: AuthSession,
    NodePath(dir): NodePath,
    ApiJson(req): ApiJson<NameTags>,
) -> ApiResult<Json<Vec<EntryInfo>>> {
    check_batch(req.tags.len())?;
    // A missing directory is 404, as for one lookup, not an empty answer.
    let parent = state
        .store
        .node(auth.account, dir)
        .await?
        .ok_or(ApiError::NotFound)?;
    if parent.kind != NodeKind::Directory {
        return Err(TreeError::NotADirectory.into());
    }
    let mut seen = std::collections::HashSet::with_capacity(req.tags.len());
    let mut out = Vec::with_capacity(req.tags.len());
    for tag in &req.tags {
        if !seen.insert(*tag) {
            continue;
        }
        if let Some((entry, node)) = state.store.lookup(auth.account, dir, tag).await? {
            out.push(entry_info(entry, node));
        }
    }
    Ok(Json(out))
}

/// `?dir=BOOL`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// `true` for `rmdir`, `false` (the default) for `unlink`.
    #[serde(default)]
    dir: bool,
}

/// `DELETE /v1/dirs/{id}/entries/{tag}?dir=BOOL`: `rmdir` (`not_empty`,
/// `not_a_directory`) or `unlink` (`is_a_directory`). A node whose last
/// entry goes is deleted with its objects.
#[utoipa::path(
    delete,
    operation_id = "remove_entry",
    path = common::api::tree::paths::ENTRY,
    tag = "tree",
    summary = "Removes an entry (`unlink`, or `rmdir` with `dir=true`); a node losing its last entry is deleted with its objects",
    params(("id" = common::NodeId, Path, description = "The directory (32 hex digits)"), ("tag" = common::crypto::name::NameTag, Path, description = "The name's tag (64 hex digits)"), RemoveQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid id, tag or query (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such directory or name (`not_found`)", body = common::api::ErrorBody),
        (status = 409, description = "`not_empty`, `not_a_directory` or `is_a_directory`", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    EntryPath(dir, tag): EntryPath,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<StatusCode> {
    let result = state
        .store
        .remove(auth.account, dir, &tag, q.dir, now())
        .await;
    let detail = match &result {
        Ok(released) => {
            let deleted: Vec<String> = released.nodes.iter().map(ToString::to_string).collect();
            format!("parent={dir} deleted=[{}]", deleted.join(","))
        }
        Err(_) => format!("parent={dir}"),
    };
    let event = if q.dir { "tree.rmdir" } else { "tree.unlink" };
    audit_outcome(&state, auth.account, event, ip, &result, detail).await;
    result?;
    Ok(StatusCode::NO_CONTENT)
}
