//! `GET /api/health`, `/healthz`, `/readyz` (no auth) and `GET /api/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/openapi.json", get(openapi))
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Json<Value> {
    let catalog = state.catalog();
    Json(
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "tables": catalog.tables.len()}),
    )
}

/// Ready to serve: the state store answers (within 2 s). 503 with the reason otherwise, so
/// a load balancer takes the process out of rotation while its state store is away.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, Json<Value>) {
    use axum::http::StatusCode;
    let probe = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.count_users());
    match probe.await {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "reason": format!("state store: {}", e.detail())}),
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "state store: no answer within 2 s"})),
        ),
    }
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
