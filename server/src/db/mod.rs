//! `state/system.duckdb`: users, tokens (hashed), groups, members, grants, the table
//! registry, sync history and the audit log. One connection behind a mutex is the one
//! writer; every call runs on a blocking thread, never on the async executor.

pub mod access;
pub mod audit;
pub mod history;
pub mod registry;

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{ApiError, ApiResult};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, created_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id VARCHAR PRIMARY KEY, user_id VARCHAR NOT NULL, name VARCHAR NOT NULL,
    prefix VARCHAR NOT NULL, hash VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP, revoked_at TIMESTAMP, last_used_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS groups (name VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    group_name VARCHAR NOT NULL, user_id VARCHAR NOT NULL, PRIMARY KEY (group_name, user_id));
CREATE TABLE IF NOT EXISTS grants (
    group_name VARCHAR NOT NULL, resource_type VARCHAR NOT NULL, resource_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL, PRIMARY KEY (group_name, resource_type, resource_id));
CREATE TABLE IF NOT EXISTS registry (
    name VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, connector VARCHAR NOT NULL,
    config VARCHAR NOT NULL, query_mode VARCHAR NOT NULL, schedule VARCHAR,
    description VARCHAR, registered_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE SEQUENCE IF NOT EXISTS sync_run_ids;
CREATE TABLE IF NOT EXISTS sync_runs (
    id BIGINT PRIMARY KEY, trigger VARCHAR NOT NULL, started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP, status VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS sync_tables (
    run_id BIGINT NOT NULL, source VARCHAR NOT NULL, table_name VARCHAR NOT NULL,
    status VARCHAR NOT NULL, rows BIGINT, size_bytes BIGINT, error VARCHAR,
    finished_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log (
    logged_at TIMESTAMP NOT NULL, user_name VARCHAR, action VARCHAR NOT NULL,
    resource VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS connectors (
    name VARCHAR NOT NULL, version VARCHAR NOT NULL, digest VARCHAR NOT NULL,
    key_id VARCHAR NOT NULL, requests VARCHAR NOT NULL, imports VARCHAR NOT NULL,
    uploaded_at TIMESTAMP NOT NULL, uploaded_by VARCHAR NOT NULL, PRIMARY KEY (name, version));
INSERT OR IGNORE INTO groups VALUES ('Admin', now()), ('Everyone', now());
";

/// The system database.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<duckdb::Connection>>,
}

impl Db {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let conn = duckdb::Connection::open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| format!("migrating {}: {e}", path.display()))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&duckdb::Connection) -> ApiResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Runs `f` on the current thread (start-up and CLI use only).
    pub fn blocking<T>(&self, f: impl FnOnce(&duckdb::Connection) -> ApiResult<T>) -> ApiResult<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// Seconds-precision "now" as DuckDB TIMESTAMP text.
pub(crate) fn now() -> String {
    chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}
