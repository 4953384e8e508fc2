//! `/api/metrics`: business metric definitions, the original Agnes shapes.
//!
//! - `GET /api/metrics[?category=]` → `{metrics: [...], count}`: only metrics whose every
//!   table the caller may read (fail closed: a table that is not served hides the metric).
//! - `GET /api/metrics/{category}/{name}` → the metric; 404 unknown, 403 when a table is
//!   not readable.
//! - `POST /api/admin/metrics/import` `{metrics: [...], dry_run?}` → one outcome per metric:
//!   each is checked (names, its SQL parses, reads only tables that are served, and runs on
//!   the current data, variants too) and stored, or refused with the reason.
//! - `DELETE /api/admin/metrics/{category}/{name}`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::changed;
use crate::auth::{AdminUser, AuthUser};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::metrics::{ImportOutcome, Metric};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/metrics", get(list))
        .route("/api/metrics/{*id}", get(show))
        .route("/api/admin/metrics/import", post(import))
        .route("/api/admin/metrics/{*id}", axum::routing::delete(remove))
}

/// The first table of `metric` the caller may not read (or that is not served).
pub(super) fn unreadable(state: &AppState, user: &AuthUser, metric: &Metric) -> Option<String> {
    if user.0.is_admin() {
        return None;
    }
    let catalog = state.catalog();
    metric
        .tables
        .iter()
        .chain(metric.table_name.iter())
        .find(|t| {
            catalog
                .tables
                .get(t.as_str())
                .is_none_or(|entry| !user.0.can_read(&entry.name, &entry.source))
        })
        .cloned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    category: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let metrics: Vec<Metric> = state
        .store
        .list_metrics()
        .await?
        .into_iter()
        .filter(|m| q.category.as_ref().is_none_or(|c| &m.category == c))
        .filter(|m| unreadable(&state, &user, m).is_none())
        .collect();
    Ok(Json(json!({"count": metrics.len(), "metrics": metrics})))
}

async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let metric = state.store.get_metric(&id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no metric `{}`; see `agnes catalog --metrics`",
            agnes_runtime::names::shown(&id)
        ))
    })?;
    if let Some(table) = unreadable(&state, &user, &metric) {
        return Err(ApiError::Forbidden(format!(
            "metric `{id}` reads `{table}`, which you may not read; ask an admin to grant it to one of your groups"
        )));
    }
    Ok(Json(
        serde_json::to_value(metric).map_err(ApiError::internal)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportReq {
    metrics: Vec<Metric>,
    #[serde(default)]
    dry_run: bool,
}

/// Checks one metric against the served data: its SQL (and each variant) parses, reads
/// only served tables, and runs. Returns the tables it reads.
fn check(
    sandbox: &crate::query::Sandbox,
    served: &std::collections::BTreeSet<String>,
    metric: &mut Metric,
) -> ApiResult<Vec<String>> {
    metric.validate()?;
    let mut tables = std::collections::BTreeSet::new();
    if let Some(t) = &metric.table_name {
        tables.insert(t.clone());
    }
    for (label, sql) in metric.queries() {
        let read = sandbox
            .referenced_tables(sql)
            .map_err(|e| ApiError::BadRequest(format!("{label}: {e}")))?;
        tables.extend(read);
    }
    if let Some(missing) = tables.iter().find(|t| !served.contains(*t)) {
        return Err(ApiError::BadRequest(format!(
            "it reads `{missing}`, which is not a served table"
        )));
    }
    for (label, sql) in metric.queries() {
        sandbox.query(sql, 1).map_err(|e| {
            ApiError::BadRequest(format!("{label} does not run on the current data: {e}"))
        })?;
    }
    Ok(tables.into_iter().collect())
}

async fn import(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(req): ApiJson<ImportReq>,
) -> ApiResult<Json<Value>> {
    let catalog = state.catalog();
    let tables: Vec<(String, std::path::PathBuf)> = catalog
        .tables
        .values()
        .filter(|t| t.query_mode != "remote")
        .map(|t| (t.name.clone(), t.path.clone()))
        .collect();
    let served: std::collections::BTreeSet<String> =
        tables.iter().map(|(name, _)| name.clone()).collect();
    let limits = state.config.query.clone();
    let metrics = req.metrics;
    let checked =
        tokio::task::spawn_blocking(move || -> ApiResult<Vec<(Metric, Result<(), String>)>> {
            let sandbox = crate::query::Sandbox::open(&tables, &limits)?;
            Ok(metrics
                .into_iter()
                .map(|mut m| {
                    let outcome = check(&sandbox, &served, &mut m).map(|t| m.tables = t);
                    (m, outcome.map_err(|e| e.to_string()))
                })
                .collect())
        })
        .await
        .map_err(ApiError::internal)??;
    let mut outcomes = Vec::with_capacity(checked.len());
    for (mut metric, outcome) in checked {
        let id = if metric.id.is_empty() {
            format!("{}/{}", metric.category, metric.name)
        } else {
            metric.id.clone()
        };
        let status = match (&outcome, req.dry_run) {
            (Err(_), _) => "refused",
            (Ok(()), true) => "valid",
            (Ok(()), false) => {
                metric.source = Some(
                    metric
                        .source
                        .clone()
                        .unwrap_or_else(|| "yaml_import".into()),
                );
                state.store.upsert_metric(&metric).await?;
                "imported"
            }
        };
        outcomes.push(ImportOutcome {
            id: agnes_runtime::names::shown(&id),
            status: status.into(),
            error: outcome.err(),
            tables: metric.tables,
        });
    }
    let imported = outcomes.iter().filter(|o| o.status == "imported").count();
    let refused = outcomes.iter().filter(|o| o.status == "refused").count();
    let detail = Some(format!("{imported} imported, {refused} refused"));
    let body = json!({"imported": imported, "refused": refused, "dry_run": req.dry_run, "metrics": outcomes});
    Ok(changed(
        &state,
        &admin,
        false,
        "metrics.import",
        "metrics",
        detail,
        body,
    )
    .await)
}

async fn remove(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store.delete_metric(&id).await?;
    let body = json!({"deleted": id});
    Ok(changed(&state, &admin, false, "metrics.delete", id, None, body).await)
}
