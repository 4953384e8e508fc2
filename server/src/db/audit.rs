//! The audit log: admin actions and data access.

use super::sql::{Sql, p};
use crate::error::ApiResult;
use crate::store::{AuditEntry, AuditFilter};

/// Appends one entry.
pub fn record(
    conn: &dyn Sql,
    user: Option<&str>,
    action: &str,
    resource: Option<&str>,
    detail: Option<&str>,
) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO audit_log VALUES (CAST(? AS TIMESTAMP), ?, ?, ?, ?)",
        p![super::now(), user, action, resource, detail],
    )?;
    Ok(())
}

/// The newest entries matching `filter`, newest first.
pub fn list(conn: &dyn Sql, filter: &AuditFilter) -> ApiResult<Vec<AuditEntry>> {
    let (since, action) = (&filter.since, &filter.action);
    conn.query(
        "SELECT CAST(logged_at AS VARCHAR), user_name, action, resource, detail FROM audit_log \
         WHERE (?::VARCHAR IS NULL OR logged_at >= CAST(? AS TIMESTAMP)) \
           AND (?::VARCHAR IS NULL OR action = ? OR starts_with(action, ? || '.')) \
         ORDER BY logged_at DESC LIMIT ?",
        p![since, since, action, action, action, filter.limit as i64],
    )?
    .iter()
    .map(|r| {
        Ok(AuditEntry {
            at: r.get(0)?,
            user: r.get(1)?,
            action: r.get(2)?,
            resource: r.get(3)?,
            detail: r.get(4)?,
        })
    })
    .collect()
}
