//! `agnes admin migrate-state --to postgres`: an embedded deployment's state copied into a
//! fresh PostgreSQL database, all of it in one transaction or none of it.
//!
//! Both sides are on the same schema version (each was migrated when opened), so every
//! table is copied column by column as it is; timestamps travel as text. The target must
//! be fresh: no users, sources, runs, audit entries or connector uploads of its own.

use super::Db;
use super::sql::{Row, Sql, Val, p};
use crate::error::{ApiError, ApiResult};

/// One table read off the embedded store.
struct TableRows {
    name: String,
    /// `(column, is_timestamp)`, in order.
    columns: Vec<(String, bool)>,
    rows: Vec<Row>,
}

/// Copies every table of `from` (embedded) into `to` (PostgreSQL); returns the rows copied
/// per table.
pub async fn embedded_to_postgres(from: &Db, to: &Db) -> Result<Vec<(String, usize)>, String> {
    if from.postgres().is_some() || to.postgres().is_none() {
        return Err("migrate-state copies an embedded state into PostgreSQL".into());
    }
    let (a, b) = (
        from.schema_version().await.map_err(|e| e.detail())?,
        to.schema_version().await.map_err(|e| e.detail())?,
    );
    if a != b {
        return Err(format!(
            "the embedded state is at schema version {a}, PostgreSQL at {b}: run the same agnes release on both"
        ));
    }
    let tables = from.call(read_all).await.map_err(|e| e.detail())?;
    to.transaction(move |c| write_all(c, &tables))
        .await
        .map_err(|e| e.detail())
}

fn read_all(c: &dyn Sql) -> ApiResult<Vec<TableRows>> {
    let names: Vec<String> = c.column(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' \
         AND table_type = 'BASE TABLE' AND table_name <> 'schema_version' ORDER BY table_name",
        p![],
    )?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let columns = columns(c, "main", &name)?;
        let select: Vec<String> = columns
            .iter()
            .map(|(col, ts)| {
                if *ts {
                    format!("CAST(\"{col}\" AS VARCHAR)")
                } else {
                    format!("\"{col}\"")
                }
            })
            .collect();
        let rows = c.query(
            &format!("SELECT {} FROM \"{name}\"", select.join(", ")),
            p![],
        )?;
        out.push(TableRows {
            name,
            columns,
            rows,
        });
    }
    Ok(out)
}

/// A table's `(column, is_timestamp)` in order.
fn columns(c: &dyn Sql, schema: &str, table: &str) -> ApiResult<Vec<(String, bool)>> {
    c.query(
        "SELECT CAST(column_name AS VARCHAR), CAST(data_type AS VARCHAR) FROM information_schema.columns \
         WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        p![schema, table],
    )?
    .iter()
    .map(|r| {
        let ty: String = r.get(1)?;
        Ok((r.get(0)?, ty.to_ascii_uppercase().starts_with("TIMESTAMP")))
    })
    .collect()
}

fn write_all(c: &dyn Sql, tables: &[TableRows]) -> ApiResult<Vec<(String, usize)>> {
    let schema: String = c.value("SELECT CAST(current_schema() AS VARCHAR)", p![])?;
    for t in ["users", "sources", "source_runs", "audit_log", "connectors"] {
        let n: i64 = c.value(&format!("SELECT count(*) FROM {t}"), p![])?;
        if n > 0 {
            return Err(ApiError::Conflict(format!(
                "the PostgreSQL state is not empty ({n} rows in {t}): migrate-state copies into a fresh database"
            )));
        }
    }
    // the built-in groups come from the copy, as they were
    c.execute("DELETE FROM groups", p![])?;
    let mut copied = Vec::with_capacity(tables.len());
    for t in tables {
        let theirs = columns(c, &schema, &t.name)?;
        if theirs != t.columns {
            return Err(ApiError::internal(format!(
                "table {} differs between the two stores: {:?} vs {:?}",
                t.name, t.columns, theirs
            )));
        }
        let names: Vec<String> = t.columns.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        let values: Vec<&str> = t
            .columns
            .iter()
            .map(|(_, ts)| if *ts { "CAST(? AS TIMESTAMP)" } else { "?" })
            .collect();
        let insert = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({})",
            t.name,
            names.join(", "),
            values.join(", ")
        );
        for row in &t.rows {
            c.execute(&insert, &row.0)?;
        }
        copied.push((t.name.clone(), t.rows.len()));
    }
    // new runs continue after the copied ones
    let next: i64 = c.value("SELECT coalesce(max(id), 0) + 1 FROM source_runs", p![])?;
    c.query(
        "SELECT CAST(setval('source_run_ids', ?, false) AS BIGINT)",
        &[Val::Int(next)],
    )?;
    Ok(copied)
}
