//! The HTTP surface: the router with its layers (body limit, panic
//! catching, request metrics and tracing), the operator endpoints, and the
//! JSON 404 for everything unknown.

pub mod client_ip;
pub mod health;
pub mod json;
pub mod openapi;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole application.
pub fn router(state: AppState, max_body: usize) -> Router {
    let (routes, spec) = api(&state).split_for_parts();
    let spec = openapi::SpecJson::new(&spec);
    routes
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(spec))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn(record_request))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::Internal("a handler panicked".into()).into_response()
            },
        ))
        .with_state(state)
}

/// Every route of the server with its OpenAPI operation: each is
/// registered with [`routes!`] from its handler's `#[utoipa::path]`, so the
/// document ([`OpenApiRouter::split_for_parts`]) is the route table. Never
/// add a route here (or in the modules' `routes()`) with plain `.route()`:
/// it would be served without being described.
pub fn api(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi_json))
        .merge(crate::auth::routes(state))
        .merge(crate::objects::routes())
        .merge(crate::tree::routes())
}

/// Counts requests and their latency per route and status.
async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed().as_secs_f64();
    tracing::debug!(%method, %route, %status, elapsed, "request");
    metrics::counter!("vault_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("vault_http_request_seconds", "route" => route).record(elapsed);
    response
}
