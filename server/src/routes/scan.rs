//! Server-side filtered extracts for `agnes snapshot`:
//! `POST /api/v2/scan/estimate` → `{rows, bytes}` and `POST /api/v2/scan` → an Arrow IPC
//! stream. Body: `{table (or table_id), select?: [columns], where?: "predicate",
//! order_by?: ["column [ASC|DESC]"], limit?}`. Runs in the
//! query sandbox with only that table: columns must exist (they are quoted), the predicate
//! is one SQL expression inside a single query.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;
use crate::catalog::TableEntry;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::query::Sandbox;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/scan/estimate", post(estimate))
        .route("/api/v2/scan", post(scan))
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ScanReq {
    /// The table (`table_id`, as the original client sends it).
    #[serde(alias = "table_id")]
    table: String,
    /// `column`, `column ASC` or `column DESC`.
    #[serde(default)]
    order_by: Vec<String>,
    #[serde(default)]
    select: Vec<String>,
    #[serde(default, rename = "where")]
    predicate: Option<String>,
    limit: Option<u64>,
}

/// What a scan runs: `SELECT {select} {from} {order}`.
struct Plan {
    select: String,
    /// `FROM ... [WHERE ...]`
    from: String,
    /// `[ORDER BY ...]`
    order: String,
    /// The table's column count.
    total: usize,
}

/// Builds the plan after checking the columns against the schema.
fn plan(sb: &Sandbox, table: &TableEntry, req: &ScanReq) -> ApiResult<Plan> {
    let columns = sb.schema(&table.name)?;
    let select = if req.select.is_empty() {
        "*".to_string()
    } else {
        let mut out = Vec::new();
        for c in &req.select {
            if !columns.iter().any(|col| &col.name == c) {
                let known: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                return Err(ApiError::BadRequest(format!(
                    "`{}` has no column `{c}`; columns: {}",
                    table.name,
                    known.join(", ")
                )));
            }
            out.push(format!("\"{}\"", c.replace('"', "\"\"")));
        }
        out.join(", ")
    };
    let mut from = format!("FROM \"{}\"", table.name);
    if let Some(p) = req
        .predicate
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if p.contains(';') {
            return Err(ApiError::BadRequest(
                "the where predicate must be one expression (no `;`)".into(),
            ));
        }
        from.push_str(&format!(" WHERE ({p}\n)"));
    }
    let mut order = Vec::new();
    for item in &req.order_by {
        let mut words = item.split_whitespace();
        let (column, direction) = (words.next().unwrap_or(""), words.next());
        let direction = match direction.map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => "ASC",
            Some("DESC") => "DESC",
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "order_by `{}`: the direction must be ASC or DESC, not `{}`",
                    agnes_runtime::names::shown(item),
                    agnes_runtime::names::shown(other)
                )));
            }
        };
        if words.next().is_some() || !columns.iter().any(|c| c.name == column) {
            return Err(ApiError::BadRequest(format!(
                "order_by `{}`: name a column of `{}`, optionally followed by ASC or DESC",
                agnes_runtime::names::shown(item),
                table.name
            )));
        }
        order.push(format!("\"{}\" {direction}", column.replace('"', "\"\"")));
    }
    let order = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order.join(", "))
    };
    Ok(Plan {
        select,
        from,
        order,
        total: columns.len(),
    })
}

fn open(state: &AppState, table: &TableEntry) -> ApiResult<Sandbox> {
    Sandbox::open(
        &[(table.name.clone(), table.path.clone())],
        &state.config.query,
    )
}

impl ScanReq {
    fn ask(&self) -> crate::remote::ScanAsk<'_> {
        crate::remote::ScanAsk {
            select: &self.select,
            predicate: self.predicate.as_deref(),
            order_by: &self.order_by,
            limit: self.limit,
        }
    }
}

/// A remote table's request, source and the connector's estimate.
async fn remote_estimate(
    state: &AppState,
    table: &TableEntry,
    req: &ScanReq,
) -> ApiResult<(
    crate::store::Source,
    agnes_runtime::query::QueryRequest,
    agnes_runtime::Estimate,
)> {
    let request = crate::remote::request(&table.name, &req.ask())
        .map_err(|m| ApiError::Refused("invalid_request", m))?;
    crate::remote::estimate(state, table, request).await
}

async fn estimate(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<ScanReq>,
) -> ApiResult<Json<Value>> {
    let table = super::readable_table(&state, &user, &req.table)?;
    if table.query_mode == "remote" {
        let (_, _, e) = remote_estimate(&state, &table, &req).await?;
        let guard =
            crate::remote::Guard::load(&state, &user.0.name, &table.source, &table.name).await?;
        let scan = e.scan_bytes.unwrap_or(0);
        let refused = guard.check(&table.name, scan).err().map(|r| r.to_string());
        return Ok(Json(json!({
            "rows": e.rows, "bytes": e.result_bytes, "exact": e.exact,
            "columns": if req.select.is_empty() { Value::Null } else { json!(req.select.len()) },
            "engine": "remote", "estimated_scan_bytes": scan,
            "estimated_result_rows": e.rows, "estimated_result_bytes": e.result_bytes,
            "max_scan_bytes": guard.cap, "daily_budget_bytes": guard.budget,
            "scanned_today_bytes": guard.used_today, "would_refuse": refused,
        })));
    }
    let entry = table.clone();
    let st = state.clone();
    let (rows, selected, total) =
        tokio::task::spawn_blocking(move || -> ApiResult<(u64, usize, usize)> {
            let sb = open(&st, &table)?;
            let Plan {
                select,
                from,
                total,
                ..
            } = plan(&sb, &table, &req)?;
            let r = sb.query(&format!("SELECT count(*) AS n {from}"), 1)?;
            let n = r
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let n = req.limit.map_or(n, |l| n.min(l));
            let selected = if select == "*" {
                total
            } else {
                req.select.len()
            };
            Ok((n, selected, total))
        })
        .await
        .map_err(ApiError::internal)??;
    let per_row = if entry.rows > 0 {
        entry.size_bytes as f64 / entry.rows as f64
    } else {
        0.0
    };
    let bytes = (rows as f64 * per_row * selected as f64 / total.max(1) as f64) as u64;
    // ours, and the fields the original client prints (a local table scans no billable
    // bytes; the engine is DuckDB)
    Ok(Json(json!({
        "rows": rows, "bytes": bytes, "columns": selected,
        "engine": "duckdb", "estimated_scan_bytes": 0,
        "estimated_result_rows": rows, "estimated_result_bytes": bytes,
    })))
}

async fn scan(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<ScanReq>,
) -> ApiResult<Response> {
    let table = super::readable_table(&state, &user, &req.table)?;
    if table.query_mode == "remote" {
        return remote_scan(&state, &user, &table, &req).await;
    }
    let name = req.table.clone();
    let st = state.clone();
    let ipc = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let sb = open(&st, &table)?;
        let Plan {
            select,
            from,
            order,
            ..
        } = plan(&sb, &table, &req)?;
        let limit = req.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
        let (schema, batches) = sb.arrow(&format!("SELECT {select} {from}{order}{limit}"))?;
        ipc_stream(&schema, &batches)
    })
    .await
    .map_err(ApiError::internal)??;
    super::audit(
        &state,
        &user.0,
        "data.scan",
        Some(name),
        Some(format!("{} bytes", ipc.len())),
    )
    .await;
    Ok(arrow_response(ipc))
}

/// A scan of a remote table: estimated, checked against the scan cap and the caller's
/// daily budget, run at the source by its connector (projection, filter, order and limit
/// pushed down), answered as an Arrow IPC stream, audited with the bytes scanned.
async fn remote_scan(
    state: &AppState,
    user: &AuthUser,
    table: &TableEntry,
    req: &ScanReq,
) -> ApiResult<Response> {
    let request = crate::remote::request(&table.name, &req.ask())
        .map_err(|m| ApiError::Refused("invalid_request", m))?;
    let (out, report) = crate::remote::fetch(state, user, table, request).await?;
    let limits = state.config.query.clone();
    let (name, path) = (table.name.clone(), report.path.clone());
    let ipc = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let sb = Sandbox::open(&[(name.clone(), path)], &limits)?;
        let (schema, batches) = sb.arrow(&format!("SELECT * FROM \"{name}\""))?;
        ipc_stream(&schema, &batches)
    })
    .await
    .map_err(ApiError::internal)??;
    drop(out);
    Ok(arrow_response(ipc))
}

/// Batches as one Arrow IPC stream.
fn ipc_stream(
    schema: &duckdb::arrow::datatypes::SchemaRef,
    batches: &[duckdb::arrow::record_batch::RecordBatch],
) -> ApiResult<Vec<u8>> {
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema).map_err(ApiError::internal)?;
    for b in batches {
        w.write(b).map_err(ApiError::internal)?;
    }
    w.into_inner().map_err(ApiError::internal)
}

/// An Arrow IPC stream as the response body.
fn arrow_response(ipc: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
        Body::from(ipc),
    )
        .into_response()
}
