//! `/api/sync/...`: trigger, status, history, one run, and the analyst's manifest.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::admin::changed;
use super::sources::optional_body;
use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::sync::Target;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sync/trigger", post(trigger))
        .route("/api/sync/status", get(status))
        .route("/api/sync/history", get(history_list))
        .route("/api/sync/runs/{id}", get(run))
        .route("/api/sync/manifest", get(manifest))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerReq {
    /// Sources to sync; absent: every enabled source with tables.
    sources: Option<Vec<String>>,
    /// Start without the committed cursor state (incremental tables are rebuilt).
    #[serde(default)]
    full_refresh: bool,
}

/// 202 `{sync_id, runs: [{run_id, source, ...}]}`; `sync_id` is the first run's id.
async fn trigger(
    State(state): State<AppState>,
    admin: AdminUser,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req: TriggerReq = optional_body(&body)?;
    let target = match req.sources.clone() {
        Some(s) => Target::Only(s),
        None => Target::All,
    };
    let runs = crate::sync::trigger(
        &state,
        format!("manual:{}", admin.0.name),
        target,
        req.full_refresh,
    )
    .await?;
    let ids: Vec<String> = runs.iter().map(|r| r.run_id.to_string()).collect();
    let resource = runs
        .iter()
        .map(|r| r.source.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let body = json!({"sync_id": runs.first().map(|r| r.run_id), "runs": runs});
    let body = changed(
        &state,
        &admin,
        false,
        "sync.trigger",
        resource,
        Some(ids.join(",")),
        body,
    )
    .await;
    Ok((StatusCode::ACCEPTED, body))
}

async fn status(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    let running = crate::sync::Running::all(&state).await?;
    let last = state.store.list_runs(None, 1).await?;
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
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
    source: Option<String>,
}

async fn history_list(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(20).min(1000);
    let runs = state.store.list_runs(q.source.as_deref(), limit).await?;
    Ok(Json(json!({"runs": runs})))
}

/// One run with its table outcomes (`status` is `running` until it finishes).
async fn run(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("run id `{id}` is not a number")))?;
    let run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no sync run {id}")))?;
    Ok(Json(json!({"run": run})))
}

/// `{tables: {name: {hash, updated, size_bytes, rows, query_mode, source, description
/// [, signed_url, signed_url_expires_at]}}, server_time}`, only the tables the caller may
/// read; with a bucket, a presigned GET of each table's parquet file.
async fn manifest(State(state): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    let catalog = state.catalog();
    let mut bits = catalog.readable(|t| user.0.can_read(&t.name, &t.source));
    let bucket = state.bucket();
    if let Some(b) = bucket {
        // a cached answer's presigned URLs are signed again every third of their lifetime
        bits.push(b.signing_epoch());
    }
    let extracts = state.config.extracts_dir();
    let tables = catalog.rendered("manifest", bits, |bits| {
        let versions = bucket.and_then(|_| crate::storage::versions_root(&extracts));
        let mut tables = Map::new();
        for t in catalog.tables_in(bits) {
            let mut entry = json!({"hash": t.md5, "updated": t.updated, "size_bytes": t.size_bytes, "rows": t.rows,
                       "query_mode": t.query_mode, "source": t.source, "description": t.description});
            // only tables the caller may read are here: a URL is never signed for another
            if let Some((url, expires)) = bucket
                .zip(versions.as_deref())
                .and_then(|(b, root)| Some((b, crate::storage::key_of(root, &t.path)?)))
                .and_then(|(b, key)| b.presign_now(&key))
            {
                entry["signed_url"] = json!(url);
                entry["signed_url_expires_at"] = json!(expires);
            }
            tables.insert(t.name.clone(), entry);
        }
        Value::Object(tables).to_string()
    });
    Ok(super::json_with_server_time("tables", &tables))
}
