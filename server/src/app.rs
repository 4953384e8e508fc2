//! `app(state)`: every router merged, plus the request-tracing layer.

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::routes;
use crate::state::AppState;

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::health::router())
        .merge(routes::tokens::router())
        .merge(routes::admin::router())
        .merge(routes::sources::router())
        .merge(routes::registry::router())
        .merge(routes::connectors::router())
        .merge(routes::sync::router())
        .merge(routes::data::router())
        .merge(routes::catalog::router())
        .merge(routes::query::router())
        .merge(routes::scan::router())
        .merge(routes::webhooks::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(trace))
        .with_state(state)
}

/// Every unknown route: JSON like every other error.
async fn not_found(uri: axum::http::Uri) -> crate::error::ApiError {
    crate::error::ApiError::NotFound(format!(
        "no route {}; see GET /api/openapi.json",
        uri.path()
    ))
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> crate::error::ApiError {
    crate::error::ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; see GET /api/openapi.json",
        uri.path()
    ))
}

/// One event per request: method, route template (not the raw URI), status, latency.
async fn trace(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(target: "agnes_server::http", %method, route, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    response
}
