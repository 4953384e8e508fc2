//! Discovery: `/api/catalog/tables`, `/api/v2/catalog`, `/api/v2/schema/{name}`,
//! `/api/v2/sample/{name}?n=`. All filtered by the one access check.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::query::Sandbox;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/catalog/tables", get(tables))
        .route("/api/v2/catalog", get(tables))
        .route("/api/v2/schema/{name}", get(schema))
        .route("/api/v2/sample/{name}", get(sample))
}

async fn tables(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    let catalog = state.catalog();
    let tables: Vec<_> = catalog
        .tables
        .values()
        .filter(|t| user.0.can_read(&t.name, &t.source))
        .collect();
    Ok(Json(json!({"tables": tables})))
}

async fn schema(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let table = super::readable_table(&state, &user, &name)?;
    let limits = state.config.query.clone();
    let columns = tokio::task::spawn_blocking(move || {
        Sandbox::open(&[(table.name.clone(), table.path.clone())], &limits)?.schema(&table.name)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({"table": name, "columns": columns})))
}

#[derive(Deserialize)]
struct SampleQuery {
    n: Option<usize>,
}

async fn sample(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<SampleQuery>,
) -> ApiResult<Json<Value>> {
    let table = super::readable_table(&state, &user, &name)?;
    let n = q.n.unwrap_or(5).min(1000);
    let limits = state.config.query.clone();
    let result = tokio::task::spawn_blocking(move || {
        Sandbox::open(&[(table.name.clone(), table.path.clone())], &limits)?
            .query(&format!("SELECT * FROM \"{}\"", table.name), n)
    })
    .await
    .map_err(ApiError::internal)??;
    super::audit(&state, &user.0, "data.sample", Some(name), None).await;
    Ok(Json(
        serde_json::to_value(result).map_err(ApiError::internal)?,
    ))
}
