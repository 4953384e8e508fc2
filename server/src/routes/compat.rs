//! Routes the original Agnes client calls that this server answers honestly, so the client
//! works against it unchanged:
//!
//! - `GET /api/memory/bundle[?domain=]` → `{mandatory: [], approved: []}`: this server keeps
//!   no corporate memory (the client then writes no `.claude/rules/km_*.md`);
//! - `POST /api/sync/pull-confirm` → `{recorded: true}`: the client's pull summary, kept in
//!   the audit log;
//! - every `/api` answer carries `X-Agnes-Latest-Version` (this server's version) and
//!   `X-Agnes-Min-Version` (`0.0.0`: no client is refused for its version).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::{ApiJson, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/memory/bundle", get(memory_bundle))
        .route("/api/sync/pull-confirm", post(pull_confirm))
}

async fn memory_bundle(_user: AuthUser) -> Json<Value> {
    Json(json!({"mandatory": [], "approved": []}))
}

async fn pull_confirm(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(summary): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let detail = serde_json::to_string(&summary).unwrap_or_default();
    let detail = agnes_runtime::names::sanitized(&detail, 2048);
    super::audit(&state, &user.0, "sync.pull_confirm", None, Some(detail)).await;
    Ok(Json(json!({"recorded": true})))
}

/// The version headers the original client checks on every answer.
pub async fn version_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        "x-agnes-latest-version",
        axum::http::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    headers.insert(
        "x-agnes-min-version",
        axum::http::HeaderValue::from_static("0.0.0"),
    );
    // what the original client probes before gzip-compressing a session upload
    headers.insert(
        "x-agnes-accepts",
        axum::http::HeaderValue::from_static("session-gzip"),
    );
    response
}
