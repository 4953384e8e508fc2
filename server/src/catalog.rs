//! The orchestrator: merges every published extract into one catalog.
//!
//! After each sync (and at start-up) it reads `_meta` and `_files` of every
//! `extracts/<source>`, resolves each table to its versioned parquet file, and settles name
//! collisions first-come (a table keeps the source that owned it before; new names go to the
//! first source in name order; losers are logged and listed in the sync status). It then
//! rewrites `analytics/server.duckdb` (one master view per table) into a temporary file and
//! renames it into place. The in-memory [`Catalog`] is swapped in one step, so a request
//! sees the old catalog or the new one, never a mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One table as served.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableEntry {
    pub name: String,
    pub source: String,
    pub description: Option<String>,
    /// The versioned parquet file (never changes once published).
    #[serde(skip)]
    pub path: PathBuf,
    pub md5: String,
    pub size_bytes: i64,
    pub rows: i64,
    /// `extracted_at` of the extract, UTC.
    pub updated: String,
    pub query_mode: String,
}

/// A table name two sources both publish; the second one is not served.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Conflict {
    pub table: String,
    pub served_from: String,
    pub ignored_source: String,
}

/// The merged catalog.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    pub tables: BTreeMap<String, TableEntry>,
    pub conflicts: Vec<Conflict>,
    /// Sources whose extract could not be read, with the reason.
    pub broken_sources: Vec<(String, String)>,
}

/// A registered table as the catalog needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredTable {
    /// The admin's description, if any.
    pub description: Option<String>,
    pub query_mode: String,
    /// When it was registered (a remote table's `updated`).
    pub created_at: String,
}

/// The registered tables, by `(source, table)`.
pub type Registered = BTreeMap<(String, String), RegisteredTable>;

/// Builds the catalog from `extracts_dir`, keeping owners from `previous`. Only the
/// `(source, table)` pairs in `registered` are served: a removed table or a deleted source
/// stops being served at once, and an extract nobody registered is never served. An
/// admin's table description replaces the connector's. A `remote` table has no extract: it
/// is served (listed, described, scanned at its source) as soon as it is registered.
pub fn build(extracts_dir: &Path, previous: &Catalog, registered: &Registered) -> Catalog {
    let mut sources: Vec<String> = std::fs::read_dir(extracts_dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_symlink()).unwrap_or(false))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| agnes_runtime::names::validate_name("source", n).is_ok())
                .collect()
        })
        .unwrap_or_default();
    sources.sort();
    let mut candidates: BTreeMap<String, Vec<TableEntry>> = BTreeMap::new();
    let mut catalog = Catalog::default();
    for source in sources {
        let Some(dir) = agnes_runtime::extract::published(extracts_dir, &source) else {
            continue;
        };
        match agnes_runtime::extract::read_meta(&dir) {
            Ok(rows) => {
                for m in rows {
                    let (Some(md5), Some(rel)) = (m.md5, m.path) else {
                        continue;
                    };
                    let Some(reg) = registered.get(&(source.clone(), m.table_name.clone())) else {
                        continue;
                    };
                    if reg.query_mode == "remote" {
                        continue;
                    }
                    let entry = TableEntry {
                        name: m.table_name.clone(),
                        source: source.clone(),
                        description: reg.description.clone().or(m.description),
                        path: dir.join(rel),
                        md5,
                        size_bytes: m.size_bytes,
                        rows: m.rows,
                        updated: m.extracted_at,
                        query_mode: m.query_mode,
                    };
                    candidates.entry(m.table_name).or_default().push(entry);
                }
            }
            Err(e) => {
                tracing::warn!("error.type" = "broken_extract", source = %source, error = %e, "extract not served");
                catalog.broken_sources.push((source, e.to_string()));
            }
        }
    }
    for ((source, name), reg) in registered {
        if reg.query_mode == "remote" {
            candidates
                .entry(name.clone())
                .or_default()
                .push(TableEntry {
                    name: name.clone(),
                    source: source.clone(),
                    description: reg.description.clone(),
                    path: PathBuf::new(),
                    md5: String::new(),
                    size_bytes: 0,
                    rows: 0,
                    updated: reg.created_at.clone(),
                    query_mode: "remote".into(),
                });
        }
    }
    for (name, mut entries) in candidates {
        let owner = previous.tables.get(&name).map(|t| t.source.clone());
        let pick = owner
            .and_then(|o| entries.iter().position(|e| e.source == o))
            .unwrap_or(0);
        let chosen = entries.remove(pick);
        for loser in entries {
            tracing::warn!("error.type" = "name_collision", table = %name, served_from = %chosen.source, ignored = %loser.source, "table name published by two sources");
            catalog.conflicts.push(Conflict {
                table: name.clone(),
                served_from: chosen.source.clone(),
                ignored_source: loser.source,
            });
        }
        catalog.tables.insert(name, chosen);
    }
    catalog
}

/// Rewrites `analytics/server.duckdb` with one view per table, atomically.
pub fn write_analytics_db(path: &Path, catalog: &Catalog) -> Result<(), String> {
    let dir = path.parent().ok_or("analytics db has no parent")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".server.duckdb.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let conn = duckdb::Connection::open(&tmp).map_err(|e| e.to_string())?;
        let mut sql = String::from("BEGIN;\n");
        for t in catalog.tables.values().filter(|t| t.query_mode != "remote") {
            sql.push_str(&format!(
                "CREATE VIEW \"{}\" AS SELECT * FROM read_parquet({});\n",
                t.name,
                agnes_runtime::sink::duckdb::sql_string(&t.path.to_string_lossy())
            ));
        }
        sql.push_str("COMMIT;\nCHECKPOINT;\n");
        conn.execute_batch(&sql).map_err(|e| e.to_string())?;
        conn.close().map_err(|(_, e)| e.to_string())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", path.display()));
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("publishing {}: {e}", path.display()))
}
