//! The original Agnes admin registry shape, kept as a compatibility layer over sources:
//!
//! - `POST /api/admin/register-table` — a registration names its table *and* its source's
//!   connector, config, grant, limits and schedule. The first registration of a source
//!   creates it; later ones must repeat the source exactly (409 otherwise: change a source
//!   with `PATCH /api/admin/sources/{s}`).
//! - `GET /api/admin/registry` — every table flattened with its source's fields.
//! - `PUT /api/admin/registry/{name}` — updates the table *and its source* (every table of
//!   that source sees the new connector, config, grant, limits, schedule).
//! - `DELETE /api/admin/registry/{name}` — removes the table (the source stays).

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::changed;
use super::sources::{require_source, store_source};
use crate::auth::AdminUser;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use crate::store::{SourceSpec, TableSpec};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/register-table", post(register))
        .route("/api/admin/registry", get(list))
        .route("/api/admin/registry/{name}", put(update).delete(unregister))
}

/// A registration, as the original admin API sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    name: String,
    source: String,
    connector: String,
    #[serde(default)]
    manifest: Option<PathBuf>,
    #[serde(default)]
    signature: Option<PathBuf>,
    #[serde(default = "crate::store::empty_object")]
    config: Value,
    #[serde(default)]
    grant: agnes_runtime::Grant,
    #[serde(default)]
    limits: agnes_runtime::Limits,
    #[serde(default = "local")]
    query_mode: String,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

fn local() -> String {
    "local".into()
}

impl Registration {
    fn source_spec(&self) -> SourceSpec {
        SourceSpec {
            name: self.source.clone(),
            connector: self.connector.clone(),
            manifest: self.manifest.clone(),
            signature: self.signature.clone(),
            config: self.config.clone(),
            grant: self.grant.clone(),
            limits: self.limits.clone(),
            schedule: self.schedule.clone(),
            enabled: true,
            description: None,
        }
    }

    fn table_spec(&self) -> TableSpec {
        TableSpec {
            name: self.name.clone(),
            query_mode: self.query_mode.clone(),
            description: self.description.clone(),
            options: crate::store::empty_object(),
        }
    }
}

/// Whether a registration repeats its source's run (everything but the name fields).
fn same_run(existing: &SourceSpec, wanted: &SourceSpec) -> bool {
    existing.connector == wanted.connector
        && existing.manifest == wanted.manifest
        && existing.signature == wanted.signature
        && existing.config == wanted.config
        && existing.grant == wanted.grant
        && existing.limits == wanted.limits
        && (wanted.schedule.is_none() || existing.schedule == wanted.schedule)
}

/// The table `name`, whichever source it belongs to.
async fn registered(state: &AppState, name: &str) -> ApiResult<crate::store::TableDef> {
    state
        .store
        .list_tables(None)
        .await?
        .into_iter()
        .find(|t| t.spec.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("table `{name}` is not registered")))
}

async fn register(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(r): ApiJson<Registration>,
) -> ApiResult<Json<Value>> {
    let table = r.table_spec();
    table.validate()?;
    let wanted = r.source_spec();
    wanted.validate()?;
    let created = match state.store.get_source(&r.source).await? {
        Some(existing) if same_run(&existing.spec, &wanted) => {
            // as before sources existed: every registration verifies the connector again
            crate::connector::check(&state, &existing.spec).await?;
            false
        }
        Some(_) => {
            return Err(ApiError::Conflict(format!(
                "source `{}` is registered with another connector, config, grant, limits or schedule; \
                 all tables of a source share one connector run: register them identically, or change \
                 the source with `agnes admin source update {}` (PATCH /api/admin/sources/{})",
                r.source, r.source, r.source
            )));
        }
        None => {
            store_source(&state, &wanted, true).await?;
            true
        }
    };
    if let Err(e) = state.store.add_tables(&r.source, &[table]).await {
        if created {
            // all or nothing: the source existed only for this registration
            let _ = state.store.delete_source(&r.source).await;
        }
        return Err(e);
    }
    state.rebuild_catalog().await.map_err(ApiError::internal)?;
    let body = json!({"registered": r.name, "source": r.source, "source_created": created});
    Ok(changed(
        &state,
        &admin,
        false,
        "registry.register",
        r.name,
        None,
        body,
    )
    .await)
}

/// Every table, flattened with its source's connector, config, grant, limits and schedule.
async fn list(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    let sources = state.store.list_sources().await?;
    let tables = state.store.list_tables(None).await?;
    let rows: Vec<Value> = tables
        .into_iter()
        .filter_map(|t| {
            let s = sources.iter().find(|s| s.spec.name == t.source)?;
            Some(json!({
                "name": t.spec.name, "source": t.source, "connector": s.spec.connector,
                "manifest": s.spec.manifest, "signature": s.spec.signature, "config": s.spec.config,
                "grant": s.spec.grant, "limits": s.spec.limits, "query_mode": t.spec.query_mode,
                "schedule": s.spec.schedule, "description": t.spec.description,
                "registered_at": t.created_at, "updated_at": t.updated_at,
            }))
        })
        .collect();
    Ok(Json(json!({"tables": rows})))
}

async fn update(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
    ApiJson(r): ApiJson<Registration>,
) -> ApiResult<Json<Value>> {
    if r.name != name {
        return Err(ApiError::BadRequest(format!(
            "body names `{}` but the path names `{name}`",
            r.name
        )));
    }
    let current = registered(&state, &name).await?;
    if current.source != r.source {
        return Err(ApiError::BadRequest(format!(
            "table `{name}` belongs to source `{}`; to move it, remove it and register it again",
            current.source
        )));
    }
    let table = r.table_spec();
    table.validate()?;
    let existing = require_source(&state, &r.source).await?.spec;
    let mut wanted = r.source_spec();
    wanted.enabled = existing.enabled;
    wanted.description = existing.description.clone();
    if wanted != existing {
        store_source(&state, &wanted, false).await?;
    }
    state.store.update_table(&r.source, &table).await?;
    state.rebuild_catalog().await.map_err(ApiError::internal)?;
    let body = json!({"updated": name});
    Ok(changed(&state, &admin, false, "registry.update", name, None, body).await)
}

async fn unregister(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let current = registered(&state, &name).await?;
    state.store.remove_table(&current.source, &name).await?;
    state.rebuild_catalog().await.map_err(ApiError::internal)?;
    let body = json!({"deleted": name});
    Ok(changed(&state, &admin, false, "registry.delete", name, None, body).await)
}
