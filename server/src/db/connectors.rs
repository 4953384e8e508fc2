//! Uploaded connector versions (the files live under `<data_dir>/connectors/`).

use crate::error::ApiResult;
use crate::store::ConnectorInfo;

pub fn insert(conn: &duckdb::Connection, c: &ConnectorInfo) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO connectors VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), ?)",
        duckdb::params![
            c.name,
            c.version,
            c.digest,
            c.key_id,
            c.requests.to_string(),
            c.imports.to_string(),
            c.uploaded_at,
            c.uploaded_by
        ],
    )?;
    Ok(())
}

pub fn list(conn: &duckdb::Connection) -> ApiResult<Vec<ConnectorInfo>> {
    let mut stmt = conn.prepare(
        "SELECT name, version, digest, key_id, requests, imports, CAST(uploaded_at AS VARCHAR), uploaded_by \
         FROM connectors ORDER BY name, uploaded_at",
    )?;
    let rows = stmt.query_map([], |r| {
        let json = |s: String| serde_json::from_str(&s).unwrap_or_default();
        Ok(ConnectorInfo {
            name: r.get(0)?,
            version: r.get(1)?,
            digest: r.get(2)?,
            key_id: r.get(3)?,
            requests: json(r.get(4)?),
            imports: json(r.get(5)?),
            uploaded_at: r.get(6)?,
            uploaded_by: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
