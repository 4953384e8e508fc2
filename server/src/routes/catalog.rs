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

/// The kind of source a connector reference makes, as the original API's `source_type`: the
/// connector's name (`csv@0.1.0` → `csv`; a development path → its file stem).
pub(crate) fn source_type(connector: &str) -> String {
    match connector.split_once('@') {
        Some((name, _)) if !connector.starts_with('/') => name.to_string(),
        _ => std::path::Path::new(connector)
            .file_stem()
            .map(|f| {
                f.to_string_lossy()
                    .trim_start_matches("agnes_connector_")
                    .to_string()
            })
            .unwrap_or_default(),
    }
}

/// `{tables: [...], server_time}`. Each row has ours (`name`, `source`, `md5`, `rows`,
/// `size_bytes`, `updated`, `query_mode`, `description`) and the original API's `id`,
/// `source_type`, `sql_flavor` (`duckdb`: what `/api/query` and local queries speak) and
/// `server_only` (a remote table is queried on the server only).
async fn tables(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::response::Response> {
    // the in-memory catalog, rendered once per view of it: no state-store query per request
    let catalog = state.catalog();
    let bits = catalog.readable(|t| user.0.can_read(&t.name, &t.source));
    let tables = catalog.rendered("catalog", bits, |bits| {
        let kinds = &catalog.source_types;
        let tables: Vec<Value> = catalog
            .tables_in(bits)
            .map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or_default();
                v["id"] = json!(t.name);
                v["source_type"] = json!(kinds.get(&t.source).cloned().unwrap_or_default());
                v["sql_flavor"] = json!("duckdb");
                v["server_only"] = json!(t.query_mode == "remote");
                v
            })
            .collect();
        Value::from(tables).to_string()
    });
    Ok(super::json_with_server_time("tables", &tables))
}

async fn schema(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let table = super::readable_table(&state, &user, &name)?;
    let source = table.source.clone();
    let remote = table.query_mode == "remote";
    let columns: Vec<(String, String, bool)> = if remote {
        // the data stays at the source: its connector says what the table is
        let src = super::sources::require_source(&state, &source).await?;
        crate::connector::discover(&state, &src.spec)
            .await?
            .into_iter()
            .find(|t| t.name == table.name)
            .ok_or_else(|| {
                ApiError::NotFound(format!("the source no longer offers `{}`", table.name))
            })?
            .columns
            .into_iter()
            .map(|c| (c.name, c.data_type, c.nullable))
            .collect()
    } else {
        let limits = state.config.query.clone();
        tokio::task::spawn_blocking(move || {
            Sandbox::open(&[(table.name.clone(), table.path.clone())], &limits)?.schema(&table.name)
        })
        .await
        .map_err(ApiError::internal)??
        .into_iter()
        .map(|c| (c.name, c.data_type, c.nullable))
        .collect()
    };
    let kind = state
        .store
        .get_source(&source)
        .await?
        .map(|s| source_type(&s.spec.connector))
        .unwrap_or_default();
    let columns: Vec<Value> = columns
        .into_iter()
        .map(|(name, ty, nullable)| json!({"name": name, "type": ty, "nullable": nullable, "description": ""}))
        .collect();
    Ok(Json(json!({
        "table": name,
        "table_id": name,
        "source": source,
        "source_type": kind,
        "query_mode": if remote { "remote" } else { "local" },
        // local tables are queried with DuckDB; a remote table's where is the portable
        // subset the server parses and pushes to the source
        "sql_flavor": if remote { "remote" } else { "duckdb" },
        "where_syntax": if remote { Some(crate::remote::WHERE_SYNTAX) } else { None },
        "partition_by": null,
        "clustered_by": [],
        "columns": columns,
    })))
}

#[derive(Deserialize)]
struct SampleQuery {
    n: Option<usize>,
    /// `objects` (default: rows as `{column: value}`, what the original client reads) or
    /// `arrays` (rows as arrays in `columns` order).
    format: Option<String>,
}

async fn sample(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<SampleQuery>,
) -> ApiResult<Json<Value>> {
    let table = super::readable_table(&state, &user, &name)?;
    let source = table.source.clone();
    let arrays = match q.format.as_deref() {
        None | Some("objects") => false,
        Some("arrays") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format `{}`: use objects or arrays",
                agnes_runtime::names::shown(other)
            )));
        }
    };
    let n = q.n.unwrap_or(5).min(1000);
    let limits = state.config.query.clone();
    // a remote table's sample is a query at the source with the limit pushed down
    let out = tempfile::tempdir().map_err(ApiError::internal)?;
    let path = if table.query_mode == "remote" {
        let src = super::sources::require_source(&state, &source).await?;
        let request = agnes_runtime::query::QueryRequest::Structured(agnes_query::Request {
            table: table.name.clone(),
            limit: Some(n as u64),
            ..Default::default()
        });
        crate::connector::query(
            &state,
            &src.spec,
            &table.name,
            request,
            out.path().to_path_buf(),
        )
        .await?
        .path
    } else {
        table.path.clone()
    };
    let result = tokio::task::spawn_blocking(move || {
        Sandbox::open(&[(table.name.clone(), path)], &limits)?
            .query(&format!("SELECT * FROM \"{}\"", table.name), n)
    })
    .await
    .map_err(ApiError::internal)??;
    drop(out);
    super::audit(&state, &user.0, "data.sample", Some(name.clone()), None).await;
    let mut body = serde_json::to_value(&result).map_err(ApiError::internal)?;
    if !arrays {
        body["rows"] = result
            .rows
            .iter()
            .map(|r| {
                Value::Object(
                    result
                        .columns
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned())
                        .collect(),
                )
            })
            .collect();
    }
    body["table_id"] = json!(name);
    body["source"] = json!(source);
    Ok(Json(body))
}
