//! `/api/admin/sources`: sources (one connector instance each) and their tables.
//!
//! - `GET|POST /api/admin/sources`, `GET|PATCH|DELETE /api/admin/sources/{s}`
//! - `POST /api/admin/sources/{s}/discover`: the connector's tables with their schemas
//! - `POST /api/admin/sources/{s}/sync` `{full_refresh}`: 202 with the run
//! - `GET|POST /api/admin/sources/{s}/tables`, `PATCH|DELETE /api/admin/sources/{s}/tables/{t}`
//! - `GET /api/admin/tables[?source=]`: tables of every source
//!
//! A source is checked before it is stored: its connector loads (signature; request ∩
//! grant) and its config satisfies the connector's `spec().config-schema`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::changed;
use crate::auth::AdminUser;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::store::{Source, SourceSpec, TableSpec};
use crate::sync::Target;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/sources", get(list).post(create))
        .route(
            "/api/admin/sources/{source}",
            get(show).patch(update).delete(remove),
        )
        .route("/api/admin/sources/{source}/discover", post(discover))
        .route("/api/admin/sources/{source}/sync", post(sync))
        .route(
            "/api/admin/sources/{source}/tables",
            get(list_tables).post(add_tables),
        )
        .route(
            "/api/admin/sources/{source}/tables/{table}",
            patch(update_table).delete(remove_table),
        )
        .route("/api/admin/tables", get(all_tables))
}

pub(crate) async fn require_source(state: &AppState, name: &str) -> ApiResult<Source> {
    state.store.get_source(name).await?.ok_or_else(|| {
        ApiError::NotFound(format!("no source `{name}`; see `agnes admin source list`"))
    })
}

/// Validates and checks a source against its connector, then stores it (create or update).
pub(crate) async fn store_source(
    state: &AppState,
    spec: &SourceSpec,
    create: bool,
) -> ApiResult<Source> {
    spec.validate()?;
    if create && state.store.get_source(&spec.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "source `{}` exists; change it with `agnes admin source update` (PATCH)",
            spec.name
        )));
    }
    crate::connector::check(state, spec).await?;
    if create {
        state.store.create_source(spec).await
    } else {
        state.store.update_source(spec).await
    }
}

async fn create(
    State(state): State<AppState>,
    admin: AdminUser,
    ApiJson(spec): ApiJson<SourceSpec>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let source = store_source(&state, &spec, true).await?;
    let detail = Some(source.spec.connector.clone());
    let body = json!({"source": source});
    let body = changed(
        &state,
        &admin,
        false,
        "source.create",
        spec.name,
        detail,
        body,
    )
    .await;
    Ok((StatusCode::CREATED, body))
}

async fn list(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    let sources = state.store.list_sources().await?;
    let tables = state.store.list_tables(None).await?;
    let running: std::collections::BTreeMap<String, crate::sync::Running> =
        crate::sync::Running::all(&state)
            .await?
            .into_iter()
            .map(|r| (r.source.clone(), r))
            .collect();
    let latest = state.store.latest_runs().await?;
    let mut out = Vec::with_capacity(sources.len());
    for s in sources {
        let last: Vec<&crate::store::RunInfo> =
            latest.iter().filter(|r| r.source == s.spec.name).collect();
        let names: Vec<&str> = tables
            .iter()
            .filter(|t| t.source == s.spec.name)
            .map(|t| t.spec.name.as_str())
            .collect();
        let mut v = serde_json::to_value(&s).map_err(ApiError::internal)?;
        v["tables"] = json!(names);
        v["running"] = json!(running.get(&s.spec.name));
        v["last_run"] = json!(last.first());
        out.push(v);
    }
    Ok(Json(json!({"sources": out})))
}

async fn show(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let source = require_source(&state, &name).await?;
    let tables = state.store.list_tables(Some(&name)).await?;
    let runs = state.store.list_runs(Some(&name), 5).await?;
    let running = crate::sync::Running::all(&state)
        .await?
        .into_iter()
        .find(|r| r.source == name);
    Ok(Json(
        json!({"source": source, "tables": tables, "running": running, "runs": runs}),
    ))
}

/// A partial update: only the fields sent change; `null` clears `schedule` or
/// `description`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcePatch {
    connector: Option<String>,
    manifest: Option<Value>,
    signature: Option<Value>,
    config: Option<Value>,
    grant: Option<agnes_runtime::Grant>,
    limits: Option<agnes_runtime::Limits>,
    #[serde(default, deserialize_with = "present")]
    schedule: Option<Option<String>>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// A field that is present (`Some(None)` when `null`) or absent (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn path_field(v: Value, what: &str) -> ApiResult<Option<std::path::PathBuf>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.into())),
        _ => Err(ApiError::BadRequest(format!(
            "{what} must be a path or null"
        ))),
    }
}

async fn update(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
    ApiJson(p): ApiJson<SourcePatch>,
) -> ApiResult<Json<Value>> {
    let mut spec = require_source(&state, &name).await?.spec;
    let mut changed_fields = Vec::new();
    macro_rules! set {
        ($field:ident, $value:expr) => {
            if let Some(v) = $value {
                spec.$field = v;
                changed_fields.push(stringify!($field));
            }
        };
    }
    set!(connector, p.connector);
    set!(
        manifest,
        p.manifest.map(|v| path_field(v, "manifest")).transpose()?
    );
    set!(
        signature,
        p.signature
            .map(|v| path_field(v, "signature"))
            .transpose()?
    );
    set!(config, p.config);
    set!(grant, p.grant);
    set!(limits, p.limits);
    set!(schedule, p.schedule);
    set!(enabled, p.enabled);
    set!(description, p.description);
    let source = store_source(&state, &spec, false).await?;
    if changed_fields.contains(&"connector") {
        // the catalog shows each source's kind (`source_type`)
        state.rebuild_catalog().await.map_err(ApiError::internal)?;
    }
    let detail = Some(changed_fields.join(","));
    let body = json!({"source": source});
    Ok(changed(&state, &admin, false, "source.update", name, detail, body).await)
}

/// Runs `f` with `source` reserved: no sync of it can start meanwhile.
async fn while_idle<T>(
    state: &AppState,
    source: &str,
    f: impl AsyncFnOnce() -> ApiResult<T>,
) -> ApiResult<T> {
    let _held = crate::sync::reserve(state, source, "admin", false).map_err(|r| {
        ApiError::Conflict(format!(
            "source `{source}` is syncing (run {}); try again when it finishes",
            r.run_id
        ))
    })?;
    f().await
}

/// Deletes a source: its extract (under the source's run lock), its tables, and lists the
/// grants left pointing at nothing.
async fn remove(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require_source(&state, &name).await?;
    let removal = while_idle(&state, &name, async || {
        let extracts = state.config.extracts_dir();
        let source = name.clone();
        tokio::task::spawn_blocking(move || agnes_runtime::extract::remove(&extracts, &source))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| match e {
                agnes_runtime::Error::Busy { .. } => ApiError::Conflict(e.to_string()),
                e => ApiError::internal(e),
            })?;
        let removal = state.store.delete_source(&name).await?;
        state.rebuild_catalog().await.map_err(ApiError::internal)?;
        Ok(removal)
    })
    .await?;
    let detail = Some(format!("tables: {}", removal.tables.join(",")));
    let body = serde_json::to_value(&removal).map_err(ApiError::internal)?;
    Ok(changed(&state, &admin, false, "source.delete", name, detail, body).await)
}

async fn discover(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let source = require_source(&state, &name).await?;
    let registered = state.store.list_tables(Some(&name)).await?;
    let found = crate::connector::discover(&state, &source.spec).await?;
    let tables: Vec<Value> = found
        .into_iter()
        .map(|t| {
            let is = registered.iter().any(|r| r.spec.name == t.name);
            let mut v = serde_json::to_value(t).unwrap_or_default();
            v["registered"] = json!(is);
            v
        })
        .collect();
    Ok(Json(json!({"source": name, "tables": tables})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncReq {
    /// Start without the committed cursor state (incremental tables are rebuilt).
    #[serde(default)]
    pub full_refresh: bool,
}

/// Parses an optional JSON body (empty means the defaults).
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))
}

async fn sync(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req: SyncReq = optional_body(&body)?;
    let runs = crate::sync::trigger(
        &state,
        format!("manual:{}", admin.0.name),
        Target::Only(vec![name.clone()]),
        req.full_refresh,
    )
    .await?;
    let run = runs.into_iter().next();
    let detail = run.as_ref().map(|r| r.run_id.to_string());
    let body = json!({"run": run, "run_id": run.as_ref().map(|r| r.run_id)});
    let body = changed(&state, &admin, false, "sync.trigger", name, detail, body).await;
    Ok((StatusCode::ACCEPTED, body))
}

async fn list_tables(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"tables": state.store.list_tables(Some(&name)).await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TablesQuery {
    source: Option<String>,
}

async fn all_tables(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<TablesQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"tables": state.store.list_tables(q.source.as_deref()).await?}),
    ))
}

/// `{"tables": [TableSpec...]}`, or `{"all": true}`: every table `discover` finds that is
/// not a table of this source yet (`query_mode` and `description` apply to each).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddTables {
    #[serde(default)]
    tables: Vec<TableSpec>,
    #[serde(default)]
    all: bool,
}

async fn add_tables(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<AddTables>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let source = require_source(&state, &name).await?;
    let specs = match (req.all, req.tables.is_empty()) {
        (true, true) => {
            let registered = state.store.list_tables(Some(&name)).await?;
            crate::connector::discover(&state, &source.spec)
                .await?
                .into_iter()
                .filter(|t| !registered.iter().any(|r| r.spec.name == t.name))
                .map(|t| TableSpec {
                    name: t.name,
                    query_mode: "local".into(),
                    description: t.description,
                    options: crate::store::empty_object(),
                })
                .collect()
        }
        (false, false) => req.tables,
        (true, false) => {
            return Err(ApiError::BadRequest(
                "send either `tables` or `all: true`, not both".into(),
            ));
        }
        (false, true) => {
            return Err(ApiError::BadRequest(
                "send `tables: [{name, ...}]`, or `all: true` for every table the connector discovers".into(),
            ));
        }
    };
    let remote: Vec<&str> = specs
        .iter()
        .filter(|t| t.query_mode == "remote")
        .map(|t| t.name.as_str())
        .collect();
    check_remote(&state, &source.spec, &remote).await?;
    for t in &specs {
        check_sql_source(&state, &source.spec, t)?;
    }
    if specs.iter().any(|t| t.query_mode == "materialized") {
        check_queries(&state, &source.spec).await?;
    }
    let added = state.store.add_tables(&name, &specs).await?;
    state.rebuild_catalog().await.map_err(ApiError::internal)?;
    let names: Vec<&str> = added.iter().map(|t| t.spec.name.as_str()).collect();
    let detail = Some(names.join(","));
    let body = json!({"added": added});
    let body = changed(&state, &admin, false, "table.add", name, detail, body).await;
    Ok((StatusCode::CREATED, body))
}

/// An `agnes:sql` source has only materialized tables (its SQL is all it has), and their
/// SQL reads no remote table.
fn check_sql_source(
    state: &AppState,
    source: &crate::store::SourceSpec,
    table: &TableSpec,
) -> ApiResult<()> {
    if !crate::connector::is_sql(source) {
        return Ok(());
    }
    if table.query_mode != "materialized" {
        return Err(ApiError::BadRequest(format!(
            "table `{}`: source `{}` runs SQL over Agnes tables, so its tables are \
             materialized: query_mode = \"materialized\", options = {{\"sql\": \"SELECT ...\"}}",
            table.name, source.name
        )));
    }
    let sql = table.options["sql"].as_str().unwrap_or_default();
    crate::derived::check(&state.catalog(), &table.name, sql)
}

/// Remote and materialized tables need a connector that answers queries.
async fn check_queries(state: &AppState, source: &crate::store::SourceSpec) -> ApiResult<()> {
    if crate::connector::is_sql(source) {
        return Ok(());
    }
    let spec = crate::connector::spec(state, source).await?;
    if !spec.capabilities.query {
        return Err(ApiError::BadRequest(format!(
            "source `{}`: its connector `{}` cannot answer queries (it supports: {}), so its \
             tables cannot be remote or materialized; those need an agnes:connector@0.2.0 \
             connector with query",
            source.name,
            spec.name,
            spec.capabilities.names().join(", ")
        )));
    }
    Ok(())
}

/// A remote table needs a connector that answers queries, and a table it offers.
async fn check_remote(
    state: &AppState,
    source: &crate::store::SourceSpec,
    tables: &[&str],
) -> ApiResult<()> {
    if tables.is_empty() {
        return Ok(());
    }
    if crate::connector::is_sql(source) {
        return Err(ApiError::BadRequest(format!(
            "source `{}` runs SQL over Agnes tables: its tables are materialized, never remote",
            source.name
        )));
    }
    check_queries(state, source).await?;
    let offered = crate::connector::discover(state, source).await?;
    for t in tables {
        if !offered.iter().any(|o| &o.name == t) {
            return Err(ApiError::BadRequest(format!(
                "source `{}` does not offer a table `{t}` to query remotely (offered: {})",
                source.name,
                offered
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TablePatch {
    query_mode: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    options: Option<Value>,
}

async fn update_table(
    State(state): State<AppState>,
    admin: AdminUser,
    Path((source, table)): Path<(String, String)>,
    ApiJson(p): ApiJson<TablePatch>,
) -> ApiResult<Json<Value>> {
    let current = state
        .store
        .list_tables(Some(&source))
        .await?
        .into_iter()
        .find(|t| t.spec.name == table)
        .ok_or_else(|| ApiError::NotFound(format!("source `{source}` has no table `{table}`")))?;
    let mut spec = current.spec;
    if let Some(m) = p.query_mode {
        spec.query_mode = m;
    }
    if let Some(d) = p.description {
        spec.description = d;
    }
    if let Some(o) = p.options {
        spec.options = o;
    }
    check_sql_source(&state, &require_source(&state, &source).await?.spec, &spec)?;
    if spec.query_mode == "remote" {
        let src = require_source(&state, &source).await?;
        check_remote(&state, &src.spec, &[spec.name.as_str()]).await?;
    }
    if spec.query_mode == "materialized" {
        let src = require_source(&state, &source).await?;
        check_queries(&state, &src.spec).await?;
    }
    let updated = state.store.update_table(&source, &spec).await?;
    state.rebuild_catalog().await.map_err(ApiError::internal)?;
    let body = json!({"table": updated});
    Ok(changed(
        &state,
        &admin,
        false,
        "table.update",
        format!("{source}.{table}"),
        None,
        body,
    )
    .await)
}

/// Removes a table: it stops being served at once (its file goes with the next sync).
async fn remove_table(
    State(state): State<AppState>,
    admin: AdminUser,
    Path((source, table)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.store.remove_table(&source, &table).await?;
    state.rebuild_catalog().await.map_err(ApiError::internal)?;
    let body = json!({"removed": table, "source": source});
    Ok(changed(
        &state,
        &admin,
        false,
        "table.remove",
        format!("{source}.{table}"),
        None,
        body,
    )
    .await)
}
