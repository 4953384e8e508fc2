//! Sync history: one row per sync run, one per table outcome.

use serde::Serialize;

use super::now;
use crate::error::ApiResult;

/// The outcome of one table in one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableOutcome {
    pub source: String,
    pub table: String,
    /// `ok` or `failed`.
    pub status: String,
    pub rows: Option<i64>,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
    pub finished_at: String,
}

/// One sync run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub id: i64,
    /// `manual:<user>` or `schedule`.
    pub trigger: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `ok`, `partial` or `failed`.
    pub status: String,
    pub tables: Vec<TableOutcome>,
}

pub fn start(conn: &duckdb::Connection, trigger: &str) -> ApiResult<i64> {
    let id: i64 = conn.query_row("SELECT nextval('sync_run_ids')", [], |r| r.get(0))?;
    conn.execute(
        "INSERT INTO sync_runs VALUES (?, ?, CAST(? AS TIMESTAMP), NULL, 'running')",
        duckdb::params![id, trigger, now()],
    )?;
    Ok(id)
}

pub fn record(conn: &duckdb::Connection, run: i64, o: &TableOutcome) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO sync_tables VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
        duckdb::params![
            run,
            o.source,
            o.table,
            o.status,
            o.rows,
            o.size_bytes,
            o.error,
            o.finished_at
        ],
    )?;
    Ok(())
}

pub fn finish(conn: &duckdb::Connection, run: i64, status: &str) -> ApiResult<()> {
    conn.execute(
        "UPDATE sync_runs SET finished_at = CAST(? AS TIMESTAMP), status = ? WHERE id = ?",
        duckdb::params![now(), status, run],
    )?;
    Ok(())
}

/// Marks runs left `running` by a previous process as failed (start-up).
pub fn abandon_running(conn: &duckdb::Connection) -> ApiResult<()> {
    conn.execute(
        "UPDATE sync_runs SET status = 'failed', finished_at = now() WHERE status = 'running'",
        [],
    )?;
    Ok(())
}

/// The newest `limit` runs, newest first, with their table outcomes.
pub fn list(conn: &duckdb::Connection, limit: usize) -> ApiResult<Vec<RunInfo>> {
    let mut stmt = conn.prepare(
        "SELECT id, trigger, CAST(started_at AS VARCHAR), CAST(finished_at AS VARCHAR), status FROM sync_runs \
         ORDER BY id DESC LIMIT ?",
    )?;
    let runs = stmt
        .query_map([limit as i64], |r| {
            Ok(RunInfo {
                id: r.get(0)?,
                trigger: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                status: r.get(4)?,
                tables: vec![],
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(runs.len());
    for mut run in runs {
        let mut stmt = conn.prepare(
            "SELECT source, table_name, status, rows, size_bytes, error, CAST(finished_at AS VARCHAR) FROM sync_tables \
             WHERE run_id = ? ORDER BY source, table_name",
        )?;
        run.tables = stmt
            .query_map([run.id], |r| {
                Ok(TableOutcome {
                    source: r.get(0)?,
                    table: r.get(1)?,
                    status: r.get(2)?,
                    rows: r.get(3)?,
                    size_bytes: r.get(4)?,
                    error: r.get(5)?,
                    finished_at: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(run);
    }
    Ok(out)
}

/// When each table last synced successfully (`(table, epoch seconds)`), for the scheduler.
pub fn last_success(conn: &duckdb::Connection) -> ApiResult<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT table_name, CAST(epoch(max(finished_at)) AS BIGINT) FROM sync_tables WHERE status = 'ok' GROUP BY table_name",
    )?;
    Ok(stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}
