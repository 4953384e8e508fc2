//! Uploaded connector versions (the files live under `<data_dir>/connectors/`).

use super::sql::{Sql, p};
use crate::error::ApiResult;
use crate::store::ConnectorInfo;

pub fn insert(conn: &dyn Sql, c: &ConnectorInfo) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO connectors (name, version, digest, key_id, requests, imports, uploaded_at, \
         uploaded_by, status) VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), ?, ?)",
        p![
            &c.name,
            &c.version,
            &c.digest,
            &c.key_id,
            c.requests.to_string(),
            c.imports.to_string(),
            &c.uploaded_at,
            &c.uploaded_by,
            &c.status
        ],
    )?;
    Ok(())
}

pub fn list(conn: &dyn Sql) -> ApiResult<Vec<ConnectorInfo>> {
    conn.query(
        "SELECT name, version, digest, key_id, requests, imports, CAST(uploaded_at AS VARCHAR), uploaded_by, \
         status, CAST(reviewed_at AS VARCHAR), reviewed_by FROM connectors ORDER BY name, uploaded_at",
        p![],
    )?
    .iter()
    .map(|r| {
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
            status: r.get(8)?,
            reviewed_at: r.get(9)?,
            reviewed_by: r.get(10)?,
        })
    })
    .collect()
}

/// Records a security reviewer's decision on `name@version`: `approved` or `revoked`.
pub fn review(conn: &dyn Sql, name: &str, version: &str, status: &str, by: &str) -> ApiResult<()> {
    let changed = conn.execute(
        "UPDATE connectors SET status = ?, reviewed_at = CAST(? AS TIMESTAMP), reviewed_by = ? \
         WHERE name = ? AND version = ?",
        p![status, super::now(), by, name, version],
    )?;
    if changed == 0 {
        return Err(crate::error::ApiError::NotFound(format!(
            "no uploaded connector `{name}@{version}`"
        )));
    }
    Ok(())
}
