//! The audit log: admin actions and data access.

use crate::error::ApiResult;

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

/// One audit entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub at: String,
    pub user: Option<String>,
    pub action: String,
    pub resource: Option<String>,
    pub detail: Option<String>,
}

/// The newest `limit` entries, newest first.
pub fn list(conn: &duckdb::Connection, limit: usize) -> ApiResult<Vec<Entry>> {
    let mut stmt = conn.prepare(
        "SELECT CAST(logged_at AS VARCHAR), user_name, action, resource, detail FROM audit_log ORDER BY logged_at DESC LIMIT ?",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(Entry {
            at: r.get(0)?,
            user: r.get(1)?,
            action: r.get(2)?,
            resource: r.get(3)?,
            detail: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
