//! `extract.duckdb`: the `_meta` table of the extract contract, one view per table, and
//! `_files` with the md5 of every served file.

use std::path::Path;

use chrono::NaiveDateTime;

use super::parquet::WrittenFile;
use crate::Error;

/// The `_meta` DDL of the extract contract: exactly these columns, in this order.
pub const META_DDL: &str = "CREATE TABLE _meta (table_name VARCHAR NOT NULL, description VARCHAR, \
     rows BIGINT, size_bytes BIGINT, extracted_at TIMESTAMP, query_mode VARCHAR)";

/// `_files`: one row per served file; `path` is relative to the extract directory.
pub const FILES_DDL: &str = "CREATE TABLE _files (table_name VARCHAR NOT NULL, path VARCHAR NOT NULL, \
     md5 VARCHAR NOT NULL, size_bytes BIGINT NOT NULL)";

/// One table of the extract.
pub(crate) struct ExtractTable<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub file: &'a WrittenFile,
    /// `local`, or `materialized` (the result of admin SQL at the source).
    pub query_mode: &'a str,
}

/// Quotes `s` as a SQL string literal (DuckDB).
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes `<dir>/extract.duckdb`. `dir` must already be the extract's final (versioned)
/// directory: views point at the parquet files by absolute path, and DuckDB checks that
/// they exist when a view is created.
pub(crate) fn write_extract(
    dir: &Path,
    tables: &[ExtractTable<'_>],
    extracted_at: NaiveDateTime,
) -> Result<(), Error> {
    let path = dir.join("extract.duckdb");
    let fail = |e: duckdb::Error| Error::DuckDb {
        path: path.clone(),
        reason: e.to_string(),
    };
    let conn = duckdb::Connection::open(&path).map_err(fail)?;
    let at = extracted_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let mut sql = String::from("BEGIN;\n");
    sql.push_str(META_DDL);
    sql.push_str(";\n");
    sql.push_str(FILES_DDL);
    sql.push_str(";\n");
    let root = dir.canonicalize().map_err(Error::io("resolving", dir))?;
    for t in tables {
        let file = t
            .file
            .path
            .canonicalize()
            .map_err(Error::io("resolving", &t.file.path))?;
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        sql.push_str(&format!(
            "INSERT INTO _meta VALUES ({}, {}, {}, {}, TIMESTAMP {}, {});\n",
            sql_string(t.name),
            t.description
                .map(sql_string)
                .unwrap_or_else(|| "NULL".into()),
            t.file.rows,
            t.file.size_bytes,
            sql_string(&at),
            sql_string(t.query_mode),
        ));
        sql.push_str(&format!(
            "INSERT INTO _files VALUES ({}, {}, {}, {});\n",
            sql_string(t.name),
            sql_string(&rel.to_string_lossy()),
            sql_string(&t.file.md5),
            t.file.size_bytes,
        ));
        sql.push_str(&format!(
            "CREATE VIEW \"{}\" AS SELECT * FROM read_parquet({});\n",
            t.name,
            sql_string(&file.to_string_lossy())
        ));
    }
    sql.push_str("COMMIT;\nCHECKPOINT;\n");
    conn.execute_batch(&sql).map_err(fail)?;
    conn.close().map_err(|(_, e)| fail(e))?;
    Ok(())
}
