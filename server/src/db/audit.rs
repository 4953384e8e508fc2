//! The audit log: admin actions and data access.

use crate::error::ApiResult;
use crate::store::{AuditEntry, AuditFilter};

/// Appends one entry.
pub fn record(
    conn: &duckdb::Connection,
    user: Option<&str>,
    action: &str,
    resource: Option<&str>,
    detail: Option<&str>,
) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO audit_log VALUES (CAST(? AS TIMESTAMP), ?, ?, ?, ?)",
        duckdb::params![super::now(), user, action, resource, detail],
    )?;
    Ok(())
}

/// The newest entries matching `filter`, newest first.
pub fn list(conn: &duckdb::Connection, filter: &AuditFilter) -> ApiResult<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(
        "SELECT CAST(logged_at AS VARCHAR), user_name, action, resource, detail FROM audit_log \
         WHERE (?::VARCHAR IS NULL OR logged_at >= CAST(? AS TIMESTAMP)) \
           AND (?::VARCHAR IS NULL OR action = ? OR starts_with(action, ? || '.')) \
         ORDER BY logged_at DESC LIMIT ?",
    )?;
    let (since, action) = (&filter.since, &filter.action);
    let rows = stmt.query_map(
        duckdb::params![since, since, action, action, action, filter.limit as i64],
        |r| {
            Ok(AuditEntry {
                at: r.get(0)?,
                user: r.get(1)?,
                action: r.get(2)?,
                resource: r.get(3)?,
                detail: r.get(4)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
