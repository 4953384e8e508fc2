//! The query sandbox: SQL from analysts (and samples, schemas) runs in a fresh in-memory
//! DuckDB that can see only the parquet files of the tables the caller may read.
//!
//! - one query expression: the SQL is wrapped as `SELECT * FROM (<sql>) LIMIT n`, so a
//!   second statement, `COPY`, `ATTACH`, `INSTALL`, `SET`, `PRAGMA` ... cannot even parse;
//! - `allowed_paths` = the caller's files, then `enable_external_access = false` and
//!   `lock_configuration = true`: `read_csv('/etc/passwd')`, other parquet files, HTTP and
//!   extension loading are refused by DuckDB itself;
//! - memory and thread limits; a watchdog interrupts the query at its deadline;
//! - no server path in sight: each table's file is reached through a symlink in a fresh
//!   session directory (`<tmp>/agnes-query-<random>/<table>.parquet`), so view definitions,
//!   settings and `filename` columns show only that; and the catalog's introspection
//!   (`duckdb_settings()`, `current_setting`, `duckdb_views()`, `sqlite_master`,
//!   `information_schema`, `pg_catalog`, ...) is refused, found with DuckDB's own parser.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use agnes_runtime::sink::duckdb::sql_string;

use crate::config::QueryLimits;
use crate::error::{ApiError, ApiResult};

/// A query's answer, as `/api/query` returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: usize,
    pub truncated: bool,
}

/// A column as `/api/v2/schema` returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

const MAX_SQL: usize = 100_000;

/// A sandboxed session over `(view name, parquet file)` pairs.
pub struct Sandbox {
    conn: duckdb::Connection,
    limits: QueryLimits,
    /// The session directory of symlinks; removed with the sandbox.
    _files: tempfile::TempDir,
}

fn rejected(e: duckdb::Error) -> ApiError {
    let msg = e.to_string();
    let first = msg.lines().next().unwrap_or(&msg).to_string();
    if first.contains("Catalog Error") && first.contains("does not exist") {
        return ApiError::QueryRejected(format!(
            "{first} (or you may not read it; see /api/catalog/tables)"
        ));
    }
    ApiError::QueryRejected(first)
}

impl Sandbox {
    pub fn open(tables: &[(String, PathBuf)], limits: &QueryLimits) -> ApiResult<Sandbox> {
        let config = duckdb::Config::default()
            .threads(limits.threads as i64)
            .and_then(|c| c.max_memory(&format!("{}MB", limits.memory_mb)))
            .and_then(|c| c.enable_autoload_extension(false))
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .map_err(ApiError::internal)?;
        let conn =
            duckdb::Connection::open_in_memory_with_flags(config).map_err(ApiError::internal)?;
        let files = tempfile::Builder::new()
            .prefix("agnes-query-")
            .tempdir()
            .map_err(|e| ApiError::internal(format!("creating a query session directory: {e}")))?;
        let mut sql = String::new();
        let mut paths = Vec::new();
        for (name, path) in tables {
            agnes_runtime::names::validate_name("table", name).map_err(ApiError::internal)?;
            let link = files.path().join(format!("{name}.parquet"));
            std::os::unix::fs::symlink(path, &link)
                .map_err(|e| ApiError::internal(format!("linking {}: {e}", link.display())))?;
            let p = sql_string(&link.to_string_lossy());
            sql.push_str(&format!(
                "CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet({p});\n"
            ));
            paths.push(p);
        }
        sql.push_str(&format!("SET allowed_paths = [{}];\n", paths.join(", ")));
        sql.push_str("SET enable_external_access = false;\nSET lock_configuration = true;\n");
        conn.execute_batch(&sql).map_err(ApiError::internal)?;
        Ok(Sandbox {
            conn,
            limits: limits.clone(),
            _files: files,
        })
    }

    /// Runs `f` with a watchdog that interrupts the connection at the deadline.
    fn with_deadline<T>(
        &self,
        f: impl FnOnce(&duckdb::Connection) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let handle = self.conn.interrupt_handle();
        let (done, wait) = mpsc::channel::<()>();
        let timeout = Duration::from_secs(self.limits.timeout_secs);
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                handle.interrupt();
                return true;
            }
            false
        });
        let result = f(&self.conn);
        let _ = done.send(());
        let fired = watchdog.join().unwrap_or(false);
        match result {
            Err(_) if fired => Err(ApiError::QueryTimeout(self.limits.timeout_secs)),
            other => other,
        }
    }

    /// Runs one analyst query, at most `limit` rows.
    pub fn query(&self, sql: &str, limit: usize) -> ApiResult<QueryResult> {
        let sql = check_sql(sql)?;
        self.refuse_introspection(sql)?;
        let inner = format!("(\n{sql}\n) AS agnes_q");
        self.with_deadline(|conn| {
            let columns = describe_query(conn, &format!("SELECT * FROM {inner}"))?;
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT to_json(agnes_q)::VARCHAR FROM {inner} LIMIT {}",
                    limit + 1
                ))
                .map_err(rejected)?;
            let objects = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(rejected)?;
            let mut rows = Vec::new();
            for object in objects {
                let object = object.map_err(rejected)?;
                let value: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&object).map_err(ApiError::internal)?;
                rows.push(
                    columns
                        .iter()
                        .map(|c| {
                            value
                                .get(&c.name)
                                .cloned()
                                .unwrap_or(serde_json::Value::Null)
                        })
                        .collect(),
                );
            }
            let truncated = rows.len() > limit;
            rows.truncate(limit);
            Ok(QueryResult {
                columns: columns.into_iter().map(|c| c.name).collect(),
                row_count: rows.len(),
                rows,
                truncated,
            })
        })
    }

    /// DuckDB's own parse tree of `sql` (`json_serialize_sql`), or `None` when it is not
    /// one statement DuckDB can serialise (running it will say why).
    fn parse_tree(&self, sql: &str) -> ApiResult<Option<serde_json::Value>> {
        let tree: String = self
            .conn
            .query_row(
                &format!("SELECT json_serialize_sql({})", sql_string(sql)),
                [],
                |r| r.get(0),
            )
            .map_err(rejected)?;
        let tree: serde_json::Value = serde_json::from_str(&tree).map_err(ApiError::internal)?;
        Ok((tree["error"] != true).then_some(tree))
    }

    /// Refuses SQL that reads the catalog's own description of the session (settings,
    /// views, system tables), found in the parse tree DuckDB itself produces.
    fn refuse_introspection(&self, sql: &str) -> ApiResult<()> {
        let Some(tree) = self.parse_tree(sql)? else {
            return Ok(());
        };
        let mut found = None;
        introspection(&tree, &mut found);
        match found {
            Some(name) => Err(ApiError::QueryRejected(format!(
                "`{name}` describes the server's session and is not available in /api/query; \
                 use /api/catalog/tables and /api/v2/schema/{{table}}"
            ))),
            None => Ok(()),
        }
    }

    /// The tables `sql` reads (base tables, not the names of its own CTEs), sorted; a
    /// statement DuckDB cannot parse is refused with its message.
    pub fn referenced_tables(&self, sql: &str) -> ApiResult<Vec<String>> {
        let sql = check_sql(sql)?;
        let Some(tree) = self.parse_tree(sql)? else {
            // let DuckDB say what is wrong with it
            self.conn.prepare(sql).map_err(rejected)?;
            return Err(ApiError::QueryRejected("the SQL does not parse".into()));
        };
        let (mut tables, mut ctes) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        collect_tables(&tree, &mut tables, &mut ctes);
        Ok(tables.difference(&ctes).cloned().collect())
    }

    /// Runs a query the server built (around an analyst's predicate: introspection is
    /// refused here too) and returns Arrow batches.
    pub fn arrow(
        &self,
        sql: &str,
    ) -> ApiResult<(
        duckdb::arrow::datatypes::SchemaRef,
        Vec<duckdb::arrow::record_batch::RecordBatch>,
    )> {
        self.refuse_introspection(sql)?;
        self.with_deadline(|conn| {
            let mut stmt = conn.prepare(sql).map_err(rejected)?;
            let arrow = stmt.query_arrow([]).map_err(rejected)?;
            let schema = arrow.get_schema();
            Ok((schema, arrow.collect()))
        })
    }

    /// The columns of `table`.
    pub fn schema(&self, table: &str) -> ApiResult<Vec<Column>> {
        agnes_runtime::names::validate_name("table", table)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.with_deadline(|conn| describe_query(conn, &format!("SELECT * FROM \"{table}\"")))
    }
}

fn describe_query(conn: &duckdb::Connection, select: &str) -> ApiResult<Vec<Column>> {
    let mut stmt = conn
        .prepare(&format!("DESCRIBE {select}"))
        .map_err(rejected)?;
    let cols = stmt
        .query_map([], |r| {
            Ok(Column {
                name: r.get(0)?,
                data_type: r.get(1)?,
                nullable: r.get::<_, String>(2)? == "YES",
            })
        })
        .map_err(rejected)?;
    cols.collect::<Result<Vec<_>, _>>().map_err(rejected)
}

/// Catalog and settings introspection: function and table names, and schemas.
fn is_introspection(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("duckdb_")
        || n.starts_with("pragma_")
        || n.starts_with("sqlite_")
        || matches!(
            n.as_str(),
            "current_setting"
                | "getvariable"
                | "information_schema"
                | "pg_catalog"
                | "which_secret"
        )
}

/// Finds the first function, table or schema in a `json_serialize_sql` tree that is
/// introspection.
fn introspection(node: &serde_json::Value, found: &mut Option<String>) {
    if found.is_some() {
        return;
    }
    match node {
        serde_json::Value::Object(map) => {
            for key in ["function_name", "table_name", "schema_name", "catalog_name"] {
                if let Some(name) = map.get(key).and_then(serde_json::Value::as_str)
                    && is_introspection(name)
                {
                    *found = Some(name.to_string());
                    return;
                }
            }
            for v in map.values() {
                introspection(v, found);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                introspection(v, found);
            }
        }
        _ => {}
    }
}

/// Base-table names and CTE names anywhere in a `json_serialize_sql` tree.
fn collect_tables(
    node: &serde_json::Value,
    tables: &mut std::collections::BTreeSet<String>,
    ctes: &mut std::collections::BTreeSet<String>,
) {
    match node {
        serde_json::Value::Object(map) => {
            if map.get("type").and_then(serde_json::Value::as_str) == Some("BASE_TABLE")
                && let Some(name) = map.get("table_name").and_then(serde_json::Value::as_str)
            {
                tables.insert(name.to_ascii_lowercase());
            }
            if let Some(entries) = map
                .get("cte_map")
                .and_then(|m| m.get("map"))
                .and_then(serde_json::Value::as_array)
            {
                for entry in entries {
                    if let Some(name) = entry.get("key").and_then(serde_json::Value::as_str) {
                        ctes.insert(name.to_ascii_lowercase());
                    }
                }
            }
            for v in map.values() {
                collect_tables(v, tables, ctes);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_tables(v, tables, ctes);
            }
        }
        _ => {}
    }
}

/// Friendly first-line checks; the wrapping is what actually enforces one query.
fn check_sql(sql: &str) -> ApiResult<&str> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    if trimmed.is_empty() {
        return Err(ApiError::BadRequest("sql is empty".into()));
    }
    if trimmed.len() > MAX_SQL {
        return Err(ApiError::BadRequest(format!(
            "sql is longer than {MAX_SQL} bytes"
        )));
    }
    let mut body = trimmed;
    loop {
        body = body.trim_start();
        if let Some(rest) = body.strip_prefix("--") {
            body = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if let Some(rest) = body.strip_prefix("/*") {
            body = rest.split_once("*/").map(|(_, r)| r).unwrap_or("");
        } else {
            break;
        }
    }
    let first = body
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if !["SELECT", "WITH", "FROM", "VALUES", "TABLE", ""].contains(&first.as_str())
        || body.starts_with(';')
    {
        return Err(ApiError::QueryRejected(format!(
            "only a single read-only query (SELECT, WITH, FROM, VALUES) is allowed; `{first}` is not"
        )));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parquet(dir: &std::path::Path, name: &str, sql: &str) -> PathBuf {
        let path = dir.join(format!("{name}.parquet"));
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "COPY ({sql}) TO '{}' (FORMAT parquet)",
            path.display()
        ))
        .unwrap();
        path
    }

    fn sandbox(dir: &std::path::Path) -> Sandbox {
        let orders = parquet(
            dir,
            "orders",
            "SELECT range AS id, 'o' || range AS label FROM range(5)",
        );
        Sandbox::open(
            &[("orders".into(), orders)],
            &QueryLimits {
                timeout_secs: 2,
                ..QueryLimits::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn granted_tables_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let sb = sandbox(tmp.path());
        let r = sb
            .query("SELECT id, label FROM orders WHERE id < 3 ORDER BY id;", 2)
            .unwrap();
        assert_eq!(r.columns, ["id", "label"]);
        assert_eq!(
            r.rows,
            vec![
                vec![serde_json::json!(0), serde_json::json!("o0")],
                vec![serde_json::json!(1), serde_json::json!("o1")]
            ]
        );
        assert!(r.truncated);
        let r = sb
            .query(
                "-- comment\nWITH x AS (SELECT count(*) AS n FROM orders) SELECT n FROM x",
                10,
            )
            .unwrap();
        assert_eq!(r.rows, vec![vec![serde_json::json!(5)]]);
        assert_eq!(
            sb.schema("orders").unwrap()[0],
            Column {
                name: "id".into(),
                data_type: "BIGINT".into(),
                nullable: true
            }
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = parquet(tmp.path(), "secret", "SELECT 42 AS x");
        std::fs::write(tmp.path().join("x.csv"), "a\n1\n").unwrap();
        let sb = sandbox(tmp.path());
        let cases = [
            "SELECT * FROM read_csv('/etc/passwd')".to_string(),
            format!(
                "SELECT * FROM read_csv('{}')",
                tmp.path().join("x.csv").display()
            ),
            format!("SELECT * FROM read_parquet('{}')", secret.display()),
            format!("COPY orders TO '{}/out.csv'", tmp.path().display()),
            "ATTACH '/tmp/x.duckdb' AS x".into(),
            "INSTALL httpfs".into(),
            "LOAD httpfs".into(),
            "SET enable_external_access = true".into(),
            "PRAGMA database_list".into(),
            "SELECT 1; SELECT 2".into(),
            "SELECT 1; COPY orders TO '/tmp/x.csv'".into(),
            "SELECT * FROM secret".into(),
            "SELECT * FROM orders) UNION ALL (SELECT * FROM read_csv('/etc/passwd')".into(),
            "SELECT * FROM glob('/etc/*')".into(),
        ];
        for sql in &cases {
            let err = sb.query(sql, 10).expect_err(sql);
            assert!(
                matches!(err, ApiError::QueryRejected(_) | ApiError::BadRequest(_)),
                "{sql}: {err:?}"
            );
        }
        assert!(!tmp.path().join("out.csv").exists());
        let err = sb
            .query("SELECT * FROM secret", 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("may not read it"), "{err}");
    }

    #[test]
    fn no_server_path_is_revealed() {
        let tmp = tempfile::tempdir().unwrap();
        let sb = sandbox(tmp.path());
        let server_dir = tmp.path().to_string_lossy().into_owned();
        for sql in [
            "SELECT * FROM duckdb_settings()",
            "SELECT current_setting('allowed_paths')",
            "SELECT sql FROM duckdb_views()",
            "SELECT sql FROM sqlite_master",
            "SELECT view_definition FROM information_schema.views",
            "SELECT * FROM pg_catalog.pg_views",
            "WITH s AS (SELECT * FROM main.duckdb_settings()) SELECT * FROM s",
            "SELECT (SELECT value FROM DuckDB_Settings() LIMIT 1)",
        ] {
            let err = sb.query(sql, 100).expect_err(sql);
            assert!(matches!(err, ApiError::QueryRejected(_)), "{sql}: {err:?}");
            assert!(!err.to_string().contains(&server_dir), "{sql}: {err}");
        }
        // what is allowed shows no server path either
        let r = sb
            .query(
                "SELECT filename FROM read_parquet('x', filename = true)",
                10,
            )
            .map(|r| serde_json::to_string(&r.rows).unwrap())
            .unwrap_or_else(|e| e.to_string());
        assert!(!r.contains(&server_dir), "{r}");
        let r = sb.query("SELECT * FROM orders", 10).unwrap();
        assert!(!serde_json::to_string(&r).unwrap().contains(&server_dir));
    }

    #[test]
    fn referenced_tables_come_from_the_parse_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let sb = sandbox(tmp.path());
        assert_eq!(
            sb.referenced_tables(
                "WITH o AS (SELECT * FROM Orders) SELECT count(*) FROM o JOIN customers c ON true \
                 WHERE o.id IN (SELECT id FROM products)"
            )
            .unwrap(),
            ["customers", "orders", "products"]
        );
        assert!(sb.referenced_tables("SELEC broken").is_err());
    }

    #[test]
    fn a_runaway_query_is_interrupted() {
        let tmp = tempfile::tempdir().unwrap();
        let sb = sandbox(tmp.path());
        let err = sb
            .query(
                "SELECT count(*) FROM range(1000000000000) a, range(1000) b",
                1,
            )
            .unwrap_err();
        assert!(matches!(err, ApiError::QueryTimeout(2)), "{err:?}");
    }
}
