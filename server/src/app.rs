//! `app(state)`: every router merged, plus the request-tracing layer.

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::routes;
use crate::state::AppState;

/// The router for this process's `role`: everything, or (a worker) only the probes.
pub fn app(state: AppState) -> Router {
    let router = if state.config.role == "worker" {
        Router::new().merge(routes::health::router())
    } else {
        api()
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn(routes::compat::version_headers))
        .layer(middleware::from_fn(trace))
        .with_state(state)
}

fn api() -> Router<AppState> {
    Router::new()
        .merge(routes::health::router())
        .merge(routes::tokens::router())
        .merge(routes::admin::router())
        .merge(routes::sources::router())
        .merge(routes::registry::router())
        .merge(routes::metrics::router())
        .merge(routes::welcome::router())
        .merge(routes::compat::router())
        .merge(routes::uploads::router())
        .merge(routes::connectors::router())
        .merge(routes::marketplace::router())
        .merge(routes::sync::router())
        .merge(routes::data::router())
        .merge(routes::catalog::router())
        .merge(routes::query::router())
        .merge(routes::scan::router())
        .merge(routes::webhooks::router())
        .merge(crate::web::router())
}

/// Any error answer that is not JSON yet (an extractor's rejection: a body over its limit,
/// a path that does not parse) becomes `{code, message}` like every other error.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 << 10)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let code = match status {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        axum::http::StatusCode::NOT_FOUND => "not_found",
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let mut response = axum::response::IntoResponse::into_response((
        status,
        axum::Json(serde_json::json!({"code": code, "message": message, "detail": message})),
    ));
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
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
