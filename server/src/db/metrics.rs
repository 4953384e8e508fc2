//! Business metric definitions.

use super::now;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metric;

pub fn upsert(conn: &duckdb::Connection, m: &Metric) -> ApiResult<()> {
    let definition = serde_json::to_string(m).map_err(ApiError::internal)?;
    conn.execute("DELETE FROM metrics WHERE id = ?", [&m.id])?;
    conn.execute(
        "INSERT INTO metrics VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMP))",
        duckdb::params![m.id, m.category, m.name, definition, now()],
    )?;
    Ok(())
}

fn decode(definition: String, updated_at: String) -> ApiResult<Metric> {
    let mut m: Metric = serde_json::from_str(&definition).map_err(ApiError::internal)?;
    m.updated_at = Some(updated_at);
    Ok(m)
}

/// Every metric, by category then name.
pub fn list(conn: &duckdb::Connection) -> ApiResult<Vec<Metric>> {
    let mut stmt = conn.prepare(
        "SELECT definition, CAST(updated_at AS VARCHAR) FROM metrics ORDER BY category, name",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(String, String)>, _>>()?;
    rows.into_iter().map(|(d, u)| decode(d, u)).collect()
}

pub fn get(conn: &duckdb::Connection, id: &str) -> ApiResult<Option<Metric>> {
    let found = conn.query_row(
        "SELECT definition, CAST(updated_at AS VARCHAR) FROM metrics WHERE id = ?",
        [id],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    );
    match found {
        Ok((d, u)) => decode(d, u).map(Some),
        Err(duckdb::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn delete(conn: &duckdb::Connection, id: &str) -> ApiResult<()> {
    if conn.execute("DELETE FROM metrics WHERE id = ?", [id])? == 0 {
        return Err(ApiError::NotFound(format!("no metric `{id}`")));
    }
    Ok(())
}
