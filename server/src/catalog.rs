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
use std::sync::Arc;

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
    /// The kind of each source (its connector's name), as the original API's `source_type`.
    #[serde(skip)]
    pub source_types: std::collections::HashMap<String, String>,
    /// Rendered answers per view of this catalog (see [`Catalog::rendered`]).
    #[serde(skip)]
    pub rendered: Rendered,
}

/// Answers rendered once per (what, readable tables) for one catalog version: a thousand
/// analysts with the same grants polling the manifest cost one serialization. A rebuilt
/// catalog starts empty (cloning gives an empty cache), so nothing stale is ever served.
#[derive(Debug, Default)]
pub struct Rendered(std::sync::Mutex<std::collections::HashMap<ViewKey, Arc<str>>>);

/// What was rendered and for which readable tables (a bitset over the catalog's tables).
type ViewKey = (&'static str, Vec<u64>);

impl Clone for Rendered {
    fn clone(&self) -> Self {
        Rendered::default()
    }
}

/// Distinct views cached per catalog version; past it the cache starts over.
const MAX_RENDERED: usize = 256;

impl Catalog {
    /// The tables `can_read` allows, as a bitset over the catalog's (sorted) tables.
    pub fn readable(&self, can_read: impl Fn(&TableEntry) -> bool) -> Vec<u64> {
        let mut bits = vec![0u64; self.tables.len().div_ceil(64)];
        for (i, t) in self.tables.values().enumerate() {
            if can_read(t) {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        bits
    }

    /// The readable tables of `bits`, in name order.
    pub fn tables_in<'a>(&'a self, bits: &'a [u64]) -> impl Iterator<Item = &'a TableEntry> {
        self.tables
            .values()
            .enumerate()
            .filter(|(i, _)| bits[i / 64] & (1 << (i % 64)) != 0)
            .map(|(_, t)| t)
    }

    /// `render()` for (`what`, `bits`), computed once per catalog version.
    pub fn rendered(
        &self,
        what: &'static str,
        bits: Vec<u64>,
        render: impl FnOnce(&[u64]) -> String,
    ) -> Arc<str> {
        let key = (what, bits);
        if let Some(hit) = self
            .rendered
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return hit.clone();
        }
        let body: Arc<str> = render(&key.1).into();
        let mut cache = self.rendered.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_RENDERED {
            cache.clear();
        }
        cache.insert(key, body.clone());
        body
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(names: &[&str]) -> Catalog {
        let mut c = Catalog::default();
        for n in names {
            c.tables.insert(
                n.to_string(),
                TableEntry {
                    name: n.to_string(),
                    source: "s".into(),
                    description: None,
                    path: PathBuf::new(),
                    md5: String::new(),
                    size_bytes: 0,
                    rows: 0,
                    updated: String::new(),
                    query_mode: "local".into(),
                },
            );
        }
        c
    }

    #[test]
    fn renderings_are_per_view_and_never_outlive_their_catalog() {
        let names: Vec<String> = (0..130).map(|i| format!("t{i:03}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let c = catalog(&refs);
        let odd = c.readable(|t| t.name.ends_with(['1', '3', '5', '7', '9']));
        let listed: Vec<&str> = c.tables_in(&odd).map(|t| t.name.as_str()).collect();
        assert_eq!(listed.len(), 65);
        assert!(listed.contains(&"t129") && !listed.contains(&"t128"));
        let mut renders = 0;
        let mut render = |bits: &[u64]| {
            renders += 1;
            format!("{}", c.tables_in(bits).count())
        };
        assert_eq!(&*c.rendered("m", odd.clone(), &mut render), "65");
        assert_eq!(&*c.rendered("m", odd.clone(), &mut render), "65");
        let all = c.readable(|_| true);
        assert_eq!(&*c.rendered("m", all.clone(), &mut render), "130");
        assert_eq!(&*c.rendered("other", all, &mut render), "130");
        assert_eq!(renders, 3, "the same view is rendered once");
        // a rebuilt (cloned) catalog renders again
        let next = c.clone();
        let mut again = 0;
        next.rendered("m", odd, |_| {
            again += 1;
            String::new()
        });
        assert_eq!(again, 1);
    }
}
