//! `GET /api/health` (no auth) and `GET /api/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi))
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Json<Value> {
    let catalog = state.catalog();
    Json(
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "tables": catalog.tables.len()}),
    )
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
