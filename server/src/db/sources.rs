//! Sources and their tables. A table name is unique across every source (it is the view
//! name, the manifest key and the parquet file stem).

use std::path::PathBuf;

use agnes_runtime::{Grant, Limits};
use serde::{Deserialize, Serialize};

use super::now;
use super::sql::{Row, Sql, p};
use crate::error::{ApiError, ApiResult};
use crate::store::{GrantInfo, Source, SourceRemoval, SourceSpec, TableDef, TableSpec};

/// What `sources.spec` holds (the rest are columns).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    manifest: Option<PathBuf>,
    #[serde(default)]
    signature: Option<PathBuf>,
    config: serde_json::Value,
    grant: Grant,
    limits: Limits,
}

fn stored(s: &SourceSpec) -> ApiResult<String> {
    serde_json::to_string(&Stored {
        manifest: s.manifest.clone(),
        signature: s.signature.clone(),
        config: s.config.clone(),
        grant: s.grant.clone(),
        limits: s.limits.clone(),
    })
    .map_err(ApiError::internal)
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no source `{name}`; see `agnes admin source list`"))
}

pub fn insert(conn: &dyn Sql, s: &SourceSpec) -> ApiResult<Source> {
    s.validate()?;
    if get(conn, &s.name)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "source `{}` exists; change it with `agnes admin source update` (PATCH)",
            s.name
        )));
    }
    let stamp = now();
    conn.execute(
        "INSERT INTO sources (name, connector, spec, schedule, enabled, description, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP))",
        p![
            &s.name,
            &s.connector,
            stored(s)?,
            &s.schedule,
            s.enabled,
            &s.description,
            &stamp,
            &stamp
        ],
    )?;
    get(conn, &s.name)?.ok_or_else(|| ApiError::internal("source vanished after insert"))
}

pub fn update(conn: &dyn Sql, s: &SourceSpec) -> ApiResult<Source> {
    s.validate()?;
    let n = conn.execute(
        "UPDATE sources SET connector = ?, spec = ?, schedule = ?, enabled = ?, description = ?, \
         updated_at = CAST(? AS TIMESTAMP) WHERE name = ?",
        p![
            &s.connector,
            stored(s)?,
            &s.schedule,
            s.enabled,
            &s.description,
            now(),
            &s.name
        ],
    )?;
    if n == 0 {
        return Err(not_found(&s.name));
    }
    get(conn, &s.name)?.ok_or_else(|| not_found(&s.name))
}

const SELECT_SOURCE: &str = "SELECT name, connector, spec, schedule, enabled, description, \
     CAST(created_at AS VARCHAR), CAST(updated_at AS VARCHAR) FROM sources";

fn source_row(r: &Row) -> ApiResult<(Source, String)> {
    Ok((
        Source {
            spec: SourceSpec {
                name: r.get(0)?,
                connector: r.get(1)?,
                manifest: None,
                signature: None,
                config: serde_json::Value::Null,
                grant: Grant::default(),
                limits: Limits::default(),
                schedule: r.get(3)?,
                enabled: r.get(4)?,
                description: r.get(5)?,
            },
            created_at: r.get(6)?,
            updated_at: r.get(7)?,
        },
        r.get(2)?,
    ))
}

fn decode((mut source, spec): (Source, String)) -> ApiResult<Source> {
    let s: Stored = serde_json::from_str(&spec)
        .map_err(|e| ApiError::internal(format!("source row {}: {e}", source.spec.name)))?;
    source.spec.manifest = s.manifest;
    source.spec.signature = s.signature;
    source.spec.config = s.config;
    source.spec.grant = s.grant;
    source.spec.limits = s.limits;
    Ok(source)
}

pub fn get(conn: &dyn Sql, name: &str) -> ApiResult<Option<Source>> {
    conn.row(&format!("{SELECT_SOURCE} WHERE name = ?"), p![name])?
        .map(|r| decode(source_row(&r)?))
        .transpose()
}

/// Every source, by name.
pub fn list(conn: &dyn Sql) -> ApiResult<Vec<Source>> {
    conn.query(&format!("{SELECT_SOURCE} ORDER BY name"), p![])?
        .iter()
        .map(|r| decode(source_row(r)?))
        .collect()
}

/// Deletes a source and its tables (call in a transaction); lists the grants left naming
/// them.
pub fn delete(conn: &dyn Sql, name: &str) -> ApiResult<SourceRemoval> {
    if get(conn, name)?.is_none() {
        return Err(not_found(name));
    }
    // a run queued or in progress anywhere holds the source
    let running: Option<i64> =
        conn.value("SELECT running_run FROM sources WHERE name = ?", p![name])?;
    if let Some(run) = running {
        return Err(ApiError::Conflict(format!(
            "source `{name}` is syncing (run {run}); wait for it, then delete"
        )));
    }
    let tables: Vec<String> = list_tables(conn, Some(name))?
        .into_iter()
        .map(|t| t.spec.name)
        .collect();
    conn.execute("DELETE FROM source_tables WHERE source = ?", p![name])?;
    conn.execute("DELETE FROM sources WHERE name = ?", p![name])?;
    let dangling_grants: Vec<GrantInfo> = super::access::list_grants(conn)?
        .into_iter()
        .filter(|g| {
            g.dangling
                && ((g.resource_type == "source" && g.resource_id == name)
                    || (g.resource_type == "table" && tables.contains(&g.resource_id)))
        })
        .collect();
    Ok(SourceRemoval {
        source: name.to_string(),
        tables,
        dangling_grants,
    })
}

/// Adds tables to `source` (call in a transaction: all or none).
pub fn add_tables(conn: &dyn Sql, source: &str, tables: &[TableSpec]) -> ApiResult<Vec<TableDef>> {
    if get(conn, source)?.is_none() {
        return Err(not_found(source));
    }
    let stamp = now();
    let mut added = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        t.validate()?;
        if tables[..i].iter().any(|o| o.name == t.name) {
            return Err(ApiError::BadRequest(format!(
                "table `{}` is listed twice",
                t.name
            )));
        }
        let owner: Option<String> = conn
            .row(
                "SELECT source FROM source_tables WHERE name = ?",
                p![&t.name],
            )?
            .map(|r| r.get(0))
            .transpose()?;
        if let Some(owner) = owner {
            return Err(ApiError::Conflict(if owner == source {
                format!("table `{}` is already a table of source `{source}`", t.name)
            } else {
                format!(
                    "table `{}` belongs to source `{owner}`; table names are unique across sources \
                     (they are view names and manifest keys): pick another name",
                    t.name
                )
            }));
        }
        conn.execute(
            "INSERT INTO source_tables VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP))",
            p![
                &t.name,
                source,
                &t.query_mode,
                &t.description,
                t.options.to_string(),
                &stamp,
                &stamp
            ],
        )?;
        added.push(TableDef {
            source: source.to_string(),
            spec: t.clone(),
            created_at: stamp.clone(),
            updated_at: stamp.clone(),
        });
    }
    Ok(added)
}

fn table_not_found(source: &str, table: &str) -> ApiError {
    ApiError::NotFound(format!("source `{source}` has no table `{table}`"))
}

pub fn update_table(conn: &dyn Sql, source: &str, t: &TableSpec) -> ApiResult<TableDef> {
    t.validate()?;
    let n = conn.execute(
        "UPDATE source_tables SET query_mode = ?, description = ?, options = ?, updated_at = CAST(? AS TIMESTAMP) \
         WHERE source = ? AND name = ?",
        p![
            &t.query_mode,
            &t.description,
            t.options.to_string(),
            now(),
            source,
            &t.name
        ],
    )?;
    if n == 0 {
        return Err(table_not_found(source, &t.name));
    }
    list_tables(conn, Some(source))?
        .into_iter()
        .find(|d| d.spec.name == t.name)
        .ok_or_else(|| table_not_found(source, &t.name))
}

pub fn remove_table(conn: &dyn Sql, source: &str, table: &str) -> ApiResult<()> {
    let n = conn.execute(
        "DELETE FROM source_tables WHERE source = ? AND name = ?",
        p![source, table],
    )?;
    if n == 0 {
        return Err(table_not_found(source, table));
    }
    Ok(())
}

/// The tables of `source` (404 when it does not exist), or of every source; by source, then
/// by when they were added.
pub fn list_tables(conn: &dyn Sql, source: Option<&str>) -> ApiResult<Vec<TableDef>> {
    if let Some(s) = source
        && get(conn, s)?.is_none()
    {
        return Err(not_found(s));
    }
    conn.query(
        "SELECT source, name, query_mode, description, options, CAST(created_at AS VARCHAR), \
         CAST(updated_at AS VARCHAR) FROM source_tables WHERE ?::VARCHAR IS NULL OR source = ? \
         ORDER BY source, created_at, name",
        p![source, source],
    )?
    .iter()
    .map(|r| {
        let options: String = r.get(4)?;
        Ok(TableDef {
            source: r.get(0)?,
            spec: TableSpec {
                name: r.get(1)?,
                query_mode: r.get(2)?,
                description: r.get(3)?,
                options: serde_json::from_str(&options).unwrap_or_else(|_| serde_json::json!({})),
            },
            created_at: r.get(5)?,
            updated_at: r.get(6)?,
        })
    })
    .collect()
}
