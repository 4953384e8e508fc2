//! `POST /api/query {sql, limit}` → `{columns, rows, row_count, truncated}`, in the query
//! sandbox over exactly the tables the caller may read.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::query::Sandbox;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/query", post(query))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryReq {
    sql: String,
    limit: Option<usize>,
}

async fn query(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<QueryReq>,
) -> ApiResult<Json<Value>> {
    let limits = state.config.query.clone();
    let limit = req.limit.unwrap_or(1000).min(limits.max_rows);
    let catalog = state.catalog();
    let mut tables: Vec<_> = catalog
        .tables
        .values()
        .filter(|t| t.query_mode != "remote" && user.0.can_read(&t.name, &t.source))
        .map(|t| (t.name.clone(), t.path.clone()))
        .collect();
    // a remote table the query uses is fetched from its source first: only the columns
    // the query mentions, pre-filtered by the WHERE conditions that concern it alone
    let mut fetched = Vec::new();
    let lower = req.sql.to_ascii_lowercase();
    for t in catalog.tables.values().filter(|t| {
        t.query_mode == "remote" && user.0.can_read(&t.name, &t.source) && lower.contains(&t.name)
    }) {
        let source = super::sources::require_source(&state, &t.source).await?;
        let columns = crate::connector::table_columns(&state, &source.spec, &t.name).await?;
        let Some(request) = crate::remote::pushdown(&req.sql, &t.name, &columns)
            .map_err(ApiError::QueryRejected)?
        else {
            continue;
        };
        let (dir, report) = crate::remote::fetch(&state, &user, t, request).await?;
        tables.push((t.name.clone(), report.path.clone()));
        fetched.push(dir);
    }
    let sql = req.sql.clone();
    let result =
        tokio::task::spawn_blocking(move || Sandbox::open(&tables, &limits)?.query(&sql, limit))
            .await
            .map_err(ApiError::internal)?;
    drop(fetched);
    let detail: String = req.sql.chars().take(500).collect();
    super::audit(
        &state,
        &user.0,
        if result.is_ok() {
            "query.run"
        } else {
            "query.rejected"
        },
        None,
        Some(detail),
    )
    .await;
    Ok(Json(
        serde_json::to_value(result?).map_err(ApiError::internal)?,
    ))
}
