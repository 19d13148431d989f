//! Usage and quota, and the change feed.

use axum::Json;
use axum::extract::State;
use common::api::tree::{Change, ChangePage, StatFs};
use serde::Deserialize;

use super::page_limit;
use crate::auth::session::AuthSession;
use crate::error::{ApiError, ApiResult};
use crate::http::json::ApiQuery;
use crate::http::openapi::{BearerErrors, ServerErrors};
use crate::state::AppState;

/// `GET /v1/statfs`.
#[utoipa::path(
    get,
    operation_id = "statfs",
    path = common::api::tree::paths::STATFS,
    tag = "tree",
    summary = "Usage and quota",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Usage", body = StatFs),
        BearerErrors, ServerErrors,
    )
)]
pub async fn statfs(State(state): State<AppState>, auth: AuthSession) -> ApiResult<Json<StatFs>> {
    let u = state.store.usage(auth.account, state.quota_bytes).await?;
    Ok(Json(StatFs {
        used_bytes: u.used_bytes,
        quota_bytes: u.quota_bytes,
        nodes: u.nodes,
        seq: u.seq,
    }))
}

/// `?since=SEQ&limit=N`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Changes after this sequence number (0 when absent: all).
    #[serde(default)]
    since: i64,
    /// Page size, 1 to 1000 (500 when absent).
    limit: Option<u32>,
}

/// `GET /v1/changes?since=SEQ&limit=N`: changes after `since`, oldest
/// first, and the latest sequence number. `latest` is read before the
/// changes, so polling from it never skips a change (it may repeat one).
#[utoipa::path(
    get,
    operation_id = "get_changes",
    path = common::api::tree::paths::CHANGES,
    tag = "tree",
    summary = "The change feed after `since`, oldest first",
    params(ChangesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changes and the latest sequence number", body = ChangePage),
        (status = 400, description = "Invalid query (`bad_request`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn changes(
    State(state): State<AppState>,
    auth: AuthSession,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult<Json<ChangePage>> {
    if q.since < 0 {
        return Err(ApiError::BadRequest("since is 0 or more".into()));
    }
    let limit = page_limit(q.limit)?;
    let before = state.store.usage(auth.account, state.quota_bytes).await?;
    let rows = state.store.changes(auth.account, q.since, limit).await?;
    let latest = rows.last().map_or(before.seq, |c| c.seq.max(before.seq));
    Ok(Json(ChangePage {
        changes: rows
            .into_iter()
            .map(|c| Change {
                seq: c.seq,
                node: c.node,
                parent: c.parent,
            })
            .collect(),
        latest,
    }))
}
