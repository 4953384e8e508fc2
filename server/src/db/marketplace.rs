//! Marketplace records: registered marketplaces, their plugins, reviewer components and the
//! reviews they wrote. Each row keeps its key columns plus the whole record as JSON (`doc`):
//! the records are small, read whole, and evolve by adding fields with defaults.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sql::{Sql, p};
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
    /// The key columns.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Docs::Marketplaces => &["name"],
            Docs::Plugins => &["marketplace", "name"],
            Docs::Reviews => &["bundle", "reviewer"],
            Docs::Reviewers => &["name", "version"],
        }
    }
}

/// Inserts or replaces the record with these keys.
pub fn put<T: Serialize>(conn: &dyn Sql, docs: Docs, keys: &[&str], doc: &T) -> ApiResult<()> {
    assert_eq!(keys.len(), docs.keys().len(), "keys of {}", docs.table());
    let doc = serde_json::to_string(doc).map_err(crate::error::ApiError::internal)?;
    let sql = format!(
        "INSERT INTO {} VALUES ({}?) ON CONFLICT ({}) DO UPDATE SET doc = excluded.doc",
        docs.table(),
        "?, ".repeat(keys.len()),
        docs.keys().join(", ")
    );
    let mut params: Vec<super::sql::Val> = keys.iter().map(|k| (*k).into()).collect();
    params.push(doc.into());
    conn.execute(&sql, &params)?;
    Ok(())
}

/// Every record, in key order.
pub fn list<T: DeserializeOwned>(conn: &dyn Sql, docs: Docs) -> ApiResult<Vec<T>> {
    let sql = format!(
        "SELECT doc FROM {} ORDER BY {}",
        docs.table(),
        docs.keys().join(", ")
    );
    let mut out = Vec::new();
    for doc in conn.column::<String>(&sql, p![])? {
        out.push(serde_json::from_str(&doc).map_err(crate::error::ApiError::internal)?);
    }
    Ok(out)
}

/// Deletes the records whose first key is `first` (and whose second is `second`, when
/// given); returns how many.
pub fn delete(conn: &dyn Sql, docs: Docs, first: &str, second: Option<&str>) -> ApiResult<usize> {
    let keys = docs.keys();
    Ok(match second {
        None => conn.execute(
            &format!("DELETE FROM {} WHERE {} = ?", docs.table(), keys[0]),
            p![first],
        )?,
        Some(second) => conn.execute(
            &format!(
                "DELETE FROM {} WHERE {} = ? AND {} = ?",
                docs.table(),
                keys[0],
                keys[1]
            ),
            p![first, second],
        )?,
    })
}
