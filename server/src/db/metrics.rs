//! Business metric definitions.

use super::now;
use super::sql::{Sql, p};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metric;

pub fn upsert(conn: &dyn Sql, m: &Metric) -> ApiResult<()> {
    let definition = serde_json::to_string(m).map_err(ApiError::internal)?;
    conn.execute("DELETE FROM metrics WHERE id = ?", p![&m.id])?;
    conn.execute(
        "INSERT INTO metrics VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMP))",
        p![&m.id, &m.category, &m.name, definition, now()],
    )?;
    Ok(())
}

fn decode(definition: String, updated_at: String) -> ApiResult<Metric> {
    let mut m: Metric = serde_json::from_str(&definition).map_err(ApiError::internal)?;
    m.updated_at = Some(updated_at);
    Ok(m)
}

/// Every metric, by category then name.
pub fn list(conn: &dyn Sql) -> ApiResult<Vec<Metric>> {
    conn.query(
        "SELECT definition, CAST(updated_at AS VARCHAR) FROM metrics ORDER BY category, name",
        p![],
    )?
    .iter()
    .map(|r| decode(r.get(0)?, r.get(1)?))
    .collect()
}

pub fn get(conn: &dyn Sql, id: &str) -> ApiResult<Option<Metric>> {
    conn.row(
        "SELECT definition, CAST(updated_at AS VARCHAR) FROM metrics WHERE id = ?",
        p![id],
    )?
    .map(|r| decode(r.get(0)?, r.get(1)?))
    .transpose()
}

pub fn delete(conn: &dyn Sql, id: &str) -> ApiResult<()> {
    if conn.execute("DELETE FROM metrics WHERE id = ?", p![id])? == 0 {
        return Err(ApiError::NotFound(format!("no metric `{id}`")));
    }
    Ok(())
}
