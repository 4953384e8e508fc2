//! Sync history: one row per run of one source, one per table outcome.

use super::now;
use super::sql::{Sql, Val, p};
use crate::error::{ApiError, ApiResult};
use crate::store::{PublishedVersion, RunInfo, TableOutcome};

/// Starts a run of `source` owned by process `owner`, or queues it for a worker (`None`)
/// (call in a transaction): claims the source, so no other run of it starts or queues in any
/// process until this one finishes or is abandoned.
pub fn start(
    conn: &dyn Sql,
    source: &str,
    trigger: &str,
    full_refresh: bool,
    owner: Option<&str>,
) -> ApiResult<i64> {
    let id: i64 = conn.value("SELECT nextval('source_run_ids')", p![])?;
    // one statement: PostgreSQL locks the row, a concurrent claim waits, then finds it taken
    let claimed = conn.execute(
        "UPDATE sources SET running_run = ? WHERE name = ? AND running_run IS NULL",
        p![id, source],
    )?;
    if claimed == 0 {
        let holder = conn
            .row(
                "SELECT r.id, CAST(r.started_at AS VARCHAR) FROM sources s JOIN source_runs r ON r.id = s.running_run \
                 WHERE s.name = ?",
                p![source],
            )?
            .ok_or_else(|| ApiError::NotFound(format!("no source `{source}`")))?;
        let (run, started): (i64, String) = (holder.get(0)?, holder.get(1)?);
        return Err(ApiError::Conflict(format!(
            "source `{source}` is syncing (run {run}, started {started}); wait for it"
        )));
    }
    let at = now();
    let status = if owner.is_some() { "running" } else { "queued" };
    conn.execute(
        "INSERT INTO source_runs (id, source, trigger, full_refresh, started_at, finished_at, status, error, \
         owner, heartbeat_at, attempts) \
         VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMP), NULL, ?, NULL, ?, CAST(? AS TIMESTAMP), 0)",
        p![id, source, trigger, full_refresh, &at, status, owner, owner.map(|_| at.as_str())],
    )?;
    Ok(id)
}

/// A queued run handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub run: i64,
    pub source: String,
    pub full_refresh: bool,
}

/// Takes the oldest queued run that is due, for process `owner` (call in a transaction).
/// On PostgreSQL, workers polling at once skip each other's row (`FOR UPDATE SKIP LOCKED`).
pub fn take_queued(conn: &dyn Sql, owner: &str) -> ApiResult<Option<Taken>> {
    let at = now();
    let lock = if conn.postgres() {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let Some(row) = conn.row(
        &format!(
            "SELECT id, source, full_refresh FROM source_runs WHERE status = 'queued' \
             AND (run_after IS NULL OR run_after <= CAST(? AS TIMESTAMP)) ORDER BY id LIMIT 1{lock}"
        ),
        p![&at],
    )?
    else {
        return Ok(None);
    };
    let taken = Taken {
        run: row.get(0)?,
        source: row.get(1)?,
        full_refresh: row.get(2)?,
    };
    conn.execute(
        "UPDATE source_runs SET status = 'running', owner = ?, heartbeat_at = CAST(? AS TIMESTAMP), \
         started_at = CAST(? AS TIMESTAMP) WHERE id = ? AND status = 'queued'",
        p![owner, &at, &at, taken.run],
    )?;
    Ok(Some(taken))
}

/// Runs whose worker stopped beating before `stale_before` go back to the queue, due at
/// `retry_at`, unless they were tried `max_attempts` times: then they fail and release their
/// source (call in a transaction). Returns `(requeued, failed)`.
pub fn requeue_stale(
    conn: &dyn Sql,
    stale_before: &str,
    retry_at: &str,
    max_attempts: u32,
) -> ApiResult<(u64, u64)> {
    let stale = conn.query(
        "SELECT id, coalesce(attempts, 0) FROM source_runs WHERE status = 'running' \
         AND (heartbeat_at IS NULL OR heartbeat_at < CAST(? AS TIMESTAMP))",
        p![stale_before],
    )?;
    let (mut requeued, mut failed) = (0, 0);
    for r in &stale {
        let (id, attempts): (i64, i64) = (r.get(0)?, r.get(1)?);
        if attempts + 1 < i64::from(max_attempts) {
            conn.execute(
                "UPDATE source_runs SET status = 'queued', owner = NULL, heartbeat_at = NULL, \
                 attempts = ?, run_after = CAST(? AS TIMESTAMP) WHERE id = ? AND status = 'running'",
                p![attempts + 1, retry_at, id],
            )?;
            requeued += 1;
        } else {
            conn.execute(
                "UPDATE source_runs SET status = 'failed', finished_at = CAST(? AS TIMESTAMP), \
                 error = ? WHERE id = ? AND status = 'running'",
                p![
                    now(),
                    format!("the worker running it stopped, {max_attempts} times: given up"),
                    id
                ],
            )?;
            conn.execute(
                "UPDATE sources SET running_run = NULL WHERE running_run = ?",
                p![id],
            )?;
            failed += 1;
        }
    }
    Ok((requeued, failed))
}

/// Runs queued or in progress, oldest first.
pub fn active(conn: &dyn Sql) -> ApiResult<Vec<RunInfo>> {
    runs_where(conn, "status IN ('queued', 'running') ORDER BY id", p![])
}

/// Records that process `owner` is alive: its running runs are not abandoned.
pub fn heartbeat(conn: &dyn Sql, owner: &str) -> ApiResult<()> {
    conn.execute(
        "UPDATE source_runs SET heartbeat_at = CAST(? AS TIMESTAMP) WHERE owner = ? AND status = 'running'",
        p![now(), owner],
    )?;
    Ok(())
}

pub fn record(conn: &dyn Sql, run: i64, o: &TableOutcome) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO run_tables VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
        p![
            run,
            &o.table,
            &o.status,
            &o.rows,
            &o.size_bytes,
            &o.error,
            &o.finished_at
        ],
    )?;
    Ok(())
}

pub fn finish(conn: &dyn Sql, run: i64, status: &str, error: Option<&str>) -> ApiResult<()> {
    conn.execute(
        "UPDATE source_runs SET finished_at = CAST(? AS TIMESTAMP), status = ?, error = ? WHERE id = ?",
        p![now(), status, error, run],
    )?;
    conn.execute(
        "UPDATE sources SET running_run = NULL WHERE running_run = ?",
        p![run],
    )?;
    Ok(())
}

/// Marks runs whose process stopped as failed and releases their sources (call in a
/// transaction): every running run (`stale_before` `None`: the embedded store at start-up,
/// the only process), or those whose process has not sent a heartbeat since `stale_before`.
pub fn abandon_running(conn: &dyn Sql, stale_before: Option<&str>) -> ApiResult<u64> {
    let ids: Vec<i64> = conn.column(
        "SELECT id FROM source_runs WHERE status = 'running' \
         AND (?::VARCHAR IS NULL OR heartbeat_at IS NULL OR heartbeat_at < CAST(? AS TIMESTAMP))",
        p![stale_before, stale_before],
    )?;
    for id in &ids {
        conn.execute(
            "UPDATE source_runs SET status = 'failed', finished_at = CAST(? AS TIMESTAMP), \
             error = 'the server stopped while this run was in progress' \
             WHERE id = ? AND status = 'running'",
            p![now(), id],
        )?;
        conn.execute(
            "UPDATE sources SET running_run = NULL WHERE running_run = ?",
            p![id],
        )?;
    }
    Ok(ids.len() as u64)
}

/// The newest `limit` runs (of `source`, or the one run `id`), newest first, with their
/// table outcomes.
pub fn list(
    conn: &dyn Sql,
    source: Option<&str>,
    id: Option<i64>,
    limit: usize,
) -> ApiResult<Vec<RunInfo>> {
    runs_where(
        conn,
        "(?::VARCHAR IS NULL OR source = ?) AND (?::BIGINT IS NULL OR id = ?) ORDER BY id DESC LIMIT ?",
        p![source, source, id, id, limit as i64],
    )
}

/// The newest run of every source that has run, with its table outcomes, in one query
/// (overviews of many sources).
pub fn latest_per_source(conn: &dyn Sql) -> ApiResult<Vec<RunInfo>> {
    runs_where(
        conn,
        "id IN (SELECT max(id) FROM source_runs GROUP BY source) ORDER BY source",
        p![],
    )
}

fn runs_where(conn: &dyn Sql, condition: &str, params: &[Val]) -> ApiResult<Vec<RunInfo>> {
    let mut runs = conn
        .query(
            &format!(
                "SELECT id, source, trigger, full_refresh, CAST(started_at AS VARCHAR), \
                 CAST(finished_at AS VARCHAR), status, error FROM source_runs WHERE {condition}"
            ),
            params,
        )?
        .iter()
        .map(|r| {
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
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if runs.is_empty() {
        return Ok(runs);
    }
    // every outcome of these runs in one query
    let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
    let outcomes = conn
        .query(
            &format!(
                "SELECT run_id, table_name, status, rows, size_bytes, error, CAST(finished_at AS VARCHAR) \
                 FROM run_tables WHERE run_id IN ({}) ORDER BY run_id, table_name",
                ids.join(", ")
            ),
            p![],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.get::<i64>(0)?,
                TableOutcome {
                    table: r.get(1)?,
                    status: r.get(2)?,
                    rows: r.get(3)?,
                    size_bytes: r.get(4)?,
                    error: r.get(5)?,
                    finished_at: r.get(6)?,
                },
            ))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    for (run_id, outcome) in outcomes {
        if let Some(run) = runs.iter_mut().find(|r| r.id == run_id) {
            run.tables.push(outcome);
        }
    }
    Ok(runs)
}

/// When each source last started a run, whatever its outcome (`(source, epoch seconds)`),
/// for the scheduler: a source is due one interval after its last attempt, so a failing
/// source is retried once per interval, not at every scheduler tick.
pub fn last_attempt(conn: &dyn Sql) -> ApiResult<Vec<(String, i64)>> {
    conn.query(
        "SELECT source, CAST(extract(epoch FROM max(started_at)) AS BIGINT) FROM source_runs GROUP BY source",
        p![],
    )?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .collect()
}

pub fn record_published(conn: &dyn Sql, source: &str, version: &str) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO published_extracts VALUES (?, ?, CAST(? AS TIMESTAMP)) ON CONFLICT DO NOTHING",
        p![source, version, now()],
    )?;
    Ok(())
}

pub fn published_versions(conn: &dyn Sql) -> ApiResult<Vec<PublishedVersion>> {
    conn.query(
        "SELECT source, version, CAST(published_at AS VARCHAR) FROM published_extracts \
         ORDER BY source, published_at, version",
        p![],
    )?
    .iter()
    .map(|r| {
        Ok(PublishedVersion {
            source: r.get(0)?,
            version: r.get(1)?,
            published_at: r.get(2)?,
        })
    })
    .collect()
}

pub fn forget_published(conn: &dyn Sql, source: &str, version: &str) -> ApiResult<()> {
    conn.execute(
        "DELETE FROM published_extracts WHERE source = ? AND version = ?",
        p![source, version],
    )?;
    Ok(())
}
