//! Sync history: one row per run of one source, one per table outcome.

use super::now;
use crate::error::ApiResult;
use crate::store::{RunInfo, TableOutcome};

pub fn start(
    conn: &duckdb::Connection,
    source: &str,
    trigger: &str,
    full_refresh: bool,
) -> ApiResult<i64> {
    let id: i64 = conn.query_row("SELECT nextval('source_run_ids')", [], |r| r.get(0))?;
    conn.execute(
        "INSERT INTO source_runs VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMP), NULL, 'running', NULL)",
        duckdb::params![id, source, trigger, full_refresh, now()],
    )?;
    Ok(id)
}

pub fn record(conn: &duckdb::Connection, run: i64, o: &TableOutcome) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO run_tables VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
        duckdb::params![
            run,
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

pub fn finish(
    conn: &duckdb::Connection,
    run: i64,
    status: &str,
    error: Option<&str>,
) -> ApiResult<()> {
    conn.execute(
        "UPDATE source_runs SET finished_at = CAST(? AS TIMESTAMP), status = ?, error = ? WHERE id = ?",
        duckdb::params![now(), status, error, run],
    )?;
    Ok(())
}

/// Marks runs left `running` by a previous process as failed (start-up).
pub fn abandon_running(conn: &duckdb::Connection) -> ApiResult<u64> {
    let n = conn.execute(
        "UPDATE source_runs SET status = 'failed', finished_at = now(), \
         error = 'the server stopped while this run was in progress' WHERE status = 'running'",
        [],
    )?;
    Ok(n as u64)
}

/// The newest `limit` runs (of `source`, or the one run `id`), newest first, with their
/// table outcomes.
pub fn list(
    conn: &duckdb::Connection,
    source: Option<&str>,
    id: Option<i64>,
    limit: usize,
) -> ApiResult<Vec<RunInfo>> {
    let mut stmt = conn.prepare(
        "SELECT id, source, trigger, full_refresh, CAST(started_at AS VARCHAR), CAST(finished_at AS VARCHAR), \
         status, error FROM source_runs WHERE (?::VARCHAR IS NULL OR source = ?) AND (?::BIGINT IS NULL OR id = ?) \
         ORDER BY id DESC LIMIT ?",
    )?;
    let runs = stmt
        .query_map(duckdb::params![source, source, id, id, limit as i64], |r| {
            Ok(RunInfo {
                id: r.get(0)?,
                source: r.get(1)?,
                trigger: r.get(2)?,
                full_refresh: r.get(3)?,
                started_at: r.get(4)?,
                finished_at: r.get(5)?,
                status: r.get(6)?,
                error: r.get(7)?,
                tables: vec![],
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT table_name, status, rows, size_bytes, error, CAST(finished_at AS VARCHAR) FROM run_tables \
         WHERE run_id = ? ORDER BY table_name",
    )?;
    let mut out = Vec::with_capacity(runs.len());
    for mut run in runs {
        run.tables = stmt
            .query_map([run.id], |r| {
                Ok(TableOutcome {
                    table: r.get(0)?,
                    status: r.get(1)?,
                    rows: r.get(2)?,
                    size_bytes: r.get(3)?,
                    error: r.get(4)?,
                    finished_at: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(run);
    }
    Ok(out)
}

/// When each source last started a run, whatever its outcome (`(source, epoch seconds)`),
/// for the scheduler: a source is due one interval after its last attempt, so a failing
/// source is retried once per interval, not at every scheduler tick.
pub fn last_attempt(conn: &duckdb::Connection) -> ApiResult<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT source, CAST(epoch(max(started_at)) AS BIGINT) FROM source_runs GROUP BY source",
    )?;
    Ok(stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}
