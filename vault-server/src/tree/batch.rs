//! `POST /v1/batch`: many creates, commits and record changes, with the
//! small objects they need inline, in one request, so that N new small
//! files cost about one database transaction instead of 3N (create, object
//! upload, commit), each with its own audit row, and the modes and times
//! tar and rsync set on N directories cost one request, not N. A new file and its contents take one operation:
//! a create that lists its objects (`CreateNodeRequest::objects`).
//!
//! Three phases, in this order:
//! 1. limits of the batch itself: at most [`BATCH_MAX_OPS`] operations and
//!    [`BATCH_MAX_OBJECTS`] objects (400 `bad_request`), no inline object
//!    over [`BATCH_MAX_INLINE_OBJECT`] and no more than
//!    [`BATCH_MAX_INLINE_BYTES`] in all (413 `payload_too_large`);
//! 2. the inline objects, all or none ([`crate::objects::inline`]): a
//!    failing object fails the whole request with that object's answer to
//!    `PUT /v1/objects/{id}`, and no operation runs;
//! 3. the operations in order, each checked by the same functions as its
//!    own endpoint (`nodes::new_node`, `nodes::new_version`,
//!    `nodes::take_record`) and run by
//!    [`TreeStore::batch`](crate::store::TreeStore::batch), in one
//!    transaction with a savepoint per operation. Each is answered with the
//!    status and error its endpoint would have answered; a refused one
//!    changes nothing and does not stop the next. A create without an entry
//!    (the root) is refused (400 `bad_request`): a batch only adds to a
//!    tree that exists.
//!
//! The answer is 200 with one outcome per operation unless the request
//! fails as a whole (phases 1 and 2, or the database). When the operations
//! fail as a whole after the objects were stored, the objects are abandoned
//! (best effort) so the request leaves nothing behind.
//!
//! One audit row per batch (`tree.batch`): counts of objects, bytes,
//! creates, commits, record changes, failures by code and released objects, never an id
//! list, a name or a byte of content.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use common::NodeId;
use common::api::tree::{
    BATCH_MAX_INLINE_BYTES, BATCH_MAX_INLINE_OBJECT, BATCH_MAX_OBJECTS, BATCH_MAX_OPS,
    BatchFailure, BatchOp, BatchOutcome, BatchRequest, BatchResponse,
};

use super::node_info;
use super::nodes::{new_node, new_version};
use super::take_record;
use crate::auth::audit;
use crate::auth::session::AuthSession;
use crate::error::{ApiError, ApiResult, code_name};
use crate::http::client_ip::ClientIp;
use crate::http::json::ApiJson;
use crate::http::openapi::{BearerErrors, ServerErrors};
use crate::objects::inline;
use crate::state::{AppState, now};
use crate::store::{NewRecord, TreeOp};

/// Body limit of `POST /v1/batch`: a full batch is 8 MiB of objects (10.7
/// MiB in base64), plus up to 1000 operations with their names and
/// records, and the JSON around them.
pub(super) const BODY_LIMIT: usize = 16 << 20;

/// `POST /v1/batch`: inline objects (all or none), then each operation on
/// its own, in order.
#[utoipa::path(
    post,
    operation_id = "batch",
    path = common::api::tree::paths::BATCH,
    tag = "tree",
    summary = "Creates nodes, commits files and replaces records in one request, with the small objects inline",
    description = "The inline objects are stored first, all or none, each as `PUT /v1/objects/{id}` \
would (a failing object fails the request and no operation runs). Then the operations run in \
order, each atomic on its own and answered in `results` with the status and error its own \
endpoint (`POST /v1/nodes`, `POST /v1/nodes/{id}/commit`, `PUT /v1/nodes/{id}/record`) would answer; a refused operation does \
not stop the next. A create without an entry (the root) is refused with 400. A new small file \
takes one operation: a create listing its objects (`objects`, e.g. inline in the same batch) \
makes it with its contents at version 1, as `POST /v1/nodes` does, instead of a create and a \
commit.",
    request_body = BatchRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One outcome per operation, in order", body = BatchResponse),
        (status = 400, description = "Invalid body, too many operations or objects, an object's `sha256` not 32 bytes (`bad_request`), or an object's data not matching its `sha256` (`digest_mismatch`); nothing applied", body = common::api::ErrorBody),
        (status = 409, description = "An object id is taken (`exists`); nothing applied", body = common::api::ErrorBody),
        (status = 413, description = "Body too large, or an inline object (or all of them) over the limits (`payload_too_large`); nothing applied", body = common::api::ErrorBody),
        (status = 507, description = "The objects do not fit in the account's quota (`quota_exceeded`); nothing applied", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    ApiJson(req): ApiJson<BatchRequest>,
) -> ApiResult<Json<BatchResponse>> {
    check_limits(&req)?;
    let owner = auth.account;
    let BatchRequest { objects, ops } = req;
    let count = objects.len();
    let started = std::time::Instant::now();
    let stored = match inline::check(&state, objects) {
        Ok(objects) => inline::store(&state, owner, &objects)
            .await
            .map(|bytes| (objects, bytes)),
        Err(e) => Err(e),
    };
    let (objects, bytes) = match stored {
        Ok(stored) => stored,
        // Audited like a refused `PUT /v1/objects/{id}`.
        Err(e) => {
            let detail = format!(
                "objects={count} ops={}: {}",
                ops.len(),
                crate::objects::failure_code(&e)
            );
            audit(&state, Some(owner), "tree.batch", ip, false, Some(detail)).await;
            return Err(e);
        }
    };
    let stored: Vec<_> = objects.iter().map(|o| o.id).collect();
    drop(objects);

    // Each operation checked as its endpoint checks it; the valid ones go
    // to the store together, the others are answered at once.
    let mut counts = Counts::default();
    let mut run = Vec::with_capacity(ops.len());
    let mut slots = Vec::with_capacity(ops.len());
    for op in ops {
        let kind = match &op {
            BatchOp::Create(_) => Kind::Create,
            BatchOp::Commit(_) => Kind::Commit,
            BatchOp::Record(_) => Kind::Record,
        };
        counts.count(kind);
        match prepare(op) {
            Ok(op) => {
                run.push(op);
                slots.push(Ok(kind));
            }
            Err(e) => slots.push(Err(e)),
        }
    }
    let objects_took = started.elapsed();
    let ran = match state.store.batch(owner, &run, now()).await {
        Ok(ran) => ran,
        Err(e) => {
            crate::objects::abandon(&state, owner, &stored).await;
            return Err(e.into());
        }
    };
    // Where a batch's time goes (no ids, names or sizes of single objects).
    tracing::debug!(
        objects = count,
        ops = run.len(),
        objects_ms = objects_took.as_millis(),
        ops_ms = (started.elapsed() - objects_took).as_millis(),
        "batch"
    );
    drop(run);

    let mut ran = ran.into_iter();
    let mut results = Vec::with_capacity(slots.len());
    for slot in slots {
        let outcome = match slot {
            Err(refused) => Err(refused),
            Ok(kind) => match ran.next() {
                Some(Ok((row, released))) => {
                    counts.released += released.objects.len();
                    counts.done(kind);
                    Ok(row)
                }
                Some(Err(e)) => Err(ApiError::from(e)),
                None => Err(ApiError::Internal(
                    "the store answered fewer operations than it was given".into(),
                )),
            },
        };
        results.push(match outcome {
            Ok(row) => BatchOutcome::Ok(node_info(row)),
            Err(e) => {
                let (status, error) = e.status_and_detail();
                *counts.failed.entry(code_name(error.code)).or_default() += 1;
                BatchOutcome::Err(BatchFailure {
                    status: status.as_u16(),
                    error,
                })
            }
        });
    }
    let detail = format!("objects={count} bytes={bytes} {}", counts.detail());
    audit(&state, Some(owner), "tree.batch", ip, true, Some(detail)).await;
    counts.record();
    Ok(Json(BatchResponse { results }))
}

/// The limits of the batch itself (before anything else is looked at).
fn check_limits(req: &BatchRequest) -> Result<(), ApiError> {
    if req.ops.len() > BATCH_MAX_OPS {
        return Err(ApiError::BadRequest(format!(
            "at most {BATCH_MAX_OPS} operations per batch"
        )));
    }
    if req.objects.len() > BATCH_MAX_OBJECTS {
        return Err(ApiError::BadRequest(format!(
            "at most {BATCH_MAX_OBJECTS} inline objects per batch"
        )));
    }
    let mut total = 0usize;
    for o in &req.objects {
        if o.data.0.len() > BATCH_MAX_INLINE_OBJECT {
            return Err(ApiError::PayloadTooLarge);
        }
        total = total.saturating_add(o.data.0.len());
    }
    if total > BATCH_MAX_INLINE_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(())
}

/// One operation, checked as its own endpoint checks it.
fn prepare(op: BatchOp) -> Result<TreeOp, ApiError> {
    match op {
        BatchOp::Create(mut c) => {
            if c.entry.is_none() && c.id == NodeId::ROOT {
                return Err(ApiError::BadRequest(
                    "a batch cannot create the root".into(),
                ));
            }
            Ok(TreeOp::Create(new_node(&mut c)?))
        }
        BatchOp::Commit(mut c) => Ok(TreeOp::Commit(new_version(c.id, &mut c.commit)?)),
        BatchOp::Record(mut r) => Ok(TreeOp::Record(NewRecord {
            id: r.id,
            expected_version: r.update.expected_version,
            record: take_record(&mut r.update.record)?,
        })),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Commit,
    Record,
}

/// What the audit row and the metrics say about a batch.
#[derive(Debug, Default)]
struct Counts {
    creates: usize,
    commits: usize,
    records: usize,
    created: usize,
    committed: usize,
    recorded: usize,
    released: usize,
    failed: BTreeMap<String, usize>,
}

impl Counts {
    fn count(&mut self, kind: Kind) {
        match kind {
            Kind::Create => self.creates += 1,
            Kind::Commit => self.commits += 1,
            Kind::Record => self.records += 1,
        }
    }

    fn done(&mut self, kind: Kind) {
        match kind {
            Kind::Create => self.created += 1,
            Kind::Commit => self.committed += 1,
            Kind::Record => self.recorded += 1,
        }
    }

    fn failures(&self) -> usize {
        self.failed.values().sum()
    }

    /// E.g. `creates=3 commits=3 records=0 failed=2 (exists=1
    /// conflict=1) released=0`.
    fn detail(&self) -> String {
        let mut s = format!(
            "creates={} commits={} records={} failed={}",
            self.creates,
            self.commits,
            self.records,
            self.failures()
        );
        if !self.failed.is_empty() {
            let codes: Vec<String> = self
                .failed
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect();
            s.push_str(&format!(" ({})", codes.join(" ")));
        }
        s.push_str(&format!(" released={}", self.released));
        s
    }

    fn record(&self) {
        let rows = [
            ("create", "ok", self.created),
            (
                "create",
                "refused",
                self.creates.saturating_sub(self.created),
            ),
            ("commit", "ok", self.committed),
            (
                "commit",
                "refused",
                self.commits.saturating_sub(self.committed),
            ),
            ("record", "ok", self.recorded),
            (
                "record",
                "refused",
                self.records.saturating_sub(self.recorded),
            ),
        ];
        for (op, outcome, n) in rows {
            if n > 0 {
                metrics::counter!("vault_batch_operations_total", "op" => op, "outcome" => outcome)
                    .increment(n as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests;
