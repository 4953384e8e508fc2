//! Marketplace records: registered marketplaces, their plugins, reviewer components and the
//! reviews they wrote. Each row keeps its key columns plus the whole record as JSON (`doc`):
//! the records are small, read whole, and evolve by adding fields with defaults.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiResult;

/// The tables of this module, so that no SQL is built from a caller's string.
#[derive(Debug, Clone, Copy)]
pub enum Docs {
    /// key: name
    Marketplaces,
    /// key: marketplace, name
    Plugins,
    /// key: bundle digest, reviewer digest
    Reviews,
    /// key: name, version
    Reviewers,
}

impl Docs {
    fn table(self) -> &'static str {
        match self {
            Docs::Marketplaces => "marketplaces",
            Docs::Plugins => "marketplace_plugins",
            Docs::Reviews => "plugin_reviews",
            Docs::Reviewers => "reviewers",
        }
    }
    fn keys(self) -> usize {
        match self {
            Docs::Marketplaces => 1,
            _ => 2,
        }
    }
}

/// Inserts or replaces the record with these keys.
pub fn put<T: Serialize>(
    conn: &duckdb::Connection,
    docs: Docs,
    keys: &[&str],
    doc: &T,
) -> ApiResult<()> {
    assert_eq!(keys.len(), docs.keys(), "keys of {}", docs.table());
    let doc = serde_json::to_string(doc).map_err(crate::error::ApiError::internal)?;
    let sql = match docs.keys() {
        1 => format!("INSERT OR REPLACE INTO {} VALUES (?, ?)", docs.table()),
        _ => format!("INSERT OR REPLACE INTO {} VALUES (?, ?, ?)", docs.table()),
    };
    let mut params: Vec<&dyn duckdb::ToSql> =
        keys.iter().map(|k| k as &dyn duckdb::ToSql).collect();
    params.push(&doc);
    conn.execute(&sql, params.as_slice())?;
    Ok(())
}

/// Every record, in key order.
pub fn list<T: DeserializeOwned>(conn: &duckdb::Connection, docs: Docs) -> ApiResult<Vec<T>> {
    let mut stmt = conn.prepare(&format!("SELECT doc FROM {} ORDER BY ALL", docs.table()))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for doc in rows {
        out.push(serde_json::from_str(&doc?).map_err(crate::error::ApiError::internal)?);
    }
    Ok(out)
}

/// Deletes the records whose first key is `first` (and whose second is `second`, when
/// given); returns how many.
pub fn delete(
    conn: &duckdb::Connection,
    docs: Docs,
    first: &str,
    second: Option<&str>,
) -> ApiResult<usize> {
    let (k1, k2) = match docs {
        Docs::Marketplaces => ("name", ""),
        Docs::Plugins => ("marketplace", "name"),
        Docs::Reviews => ("bundle", "reviewer"),
        Docs::Reviewers => ("name", "version"),
    };
    Ok(match second {
        None => conn.execute(
            &format!("DELETE FROM {} WHERE {k1} = ?", docs.table()),
            [first],
        )?,
        Some(second) => conn.execute(
            &format!("DELETE FROM {} WHERE {k1} = ? AND {k2} = ?", docs.table()),
            [first, second],
        )?,
    })
}
