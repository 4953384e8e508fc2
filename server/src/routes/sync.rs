//! `/api/sync/...`: trigger, status, history, and the analyst's manifest.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::AuthUser;
use crate::db::history;
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sync/trigger", post(trigger))
        .route("/api/sync/status", get(status))
        .route("/api/sync/history", get(history_list))
        .route("/api/sync/manifest", get(manifest))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerReq {
    sources: Option<Vec<String>>,
    /// Start without the committed cursor state (incremental tables are rebuilt).
    #[serde(default)]
    full_refresh: bool,
}

async fn trigger(
    State(state): State<AppState>,
    user: AuthUser,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    user.0.require_admin()?;
    let req: TriggerReq = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerReq::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid trigger body: {e}")))?
    };
    let id = crate::sync::trigger(
        &state,
        format!("manual:{}", user.0.name),
        req.sources.clone(),
        req.full_refresh,
    )
    .await?;
    super::audit(
        &state,
        &user,
        "sync.trigger",
        req.sources.map(|s| s.join(",")),
        Some(id.to_string()),
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(json!({"sync_id": id}))))
}

async fn status(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let running = state
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let last = state.db.call(|c| history::list(c, 1)).await?;
    let catalog = state.catalog();
    Ok(Json(json!({
        "running": running,
        "last": last.into_iter().next(),
        "tables": catalog.tables.len(),
        "conflicts": catalog.conflicts,
        "broken_sources": catalog.broken_sources,
    })))
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history_list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    user.0.require_admin()?;
    let limit = q.limit.unwrap_or(20).min(1000);
    let runs = state.db.call(move |c| history::list(c, limit)).await?;
    Ok(Json(json!({"runs": runs})))
}

/// `{tables: {name: {hash, updated, size_bytes, rows, query_mode, source, description}}, server_time}`,
/// only the tables the caller may read.
async fn manifest(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    let catalog = state.catalog();
    let mut tables = Map::new();
    for t in catalog
        .tables
        .values()
        .filter(|t| user.0.can_read(&t.name, &t.source))
    {
        tables.insert(
            t.name.clone(),
            json!({"hash": t.md5, "updated": t.updated, "size_bytes": t.size_bytes, "rows": t.rows,
                   "query_mode": t.query_mode, "source": t.source, "description": t.description}),
        );
    }
    Ok(Json(
        json!({"tables": tables, "server_time": chrono::Utc::now().to_rfc3339()}),
    ))
}
