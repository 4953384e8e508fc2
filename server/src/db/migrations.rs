//! The state schema's ladder of numbered migrations.
//!
//! `schema_version` records every migration applied (number, name, when). At start-up each
//! migration above the recorded version runs in its own transaction, in order, and is
//! recorded in the same transaction: a failed migration leaves the database at the previous
//! version. A database whose version is newer than the newest migration this binary knows
//! is refused (an older binary must not write a newer schema).
//!
//! Never edit a released migration: add the next one.
//!
//! - 1: the schema of the releases before migrations existed (`CREATE ... IF NOT EXISTS`, so
//!   it is a no-op on their databases and merely records version 1).
//! - 2: sources as records (`sources`, `source_tables`), per-source run history
//!   (`source_runs`, `run_tables`), `users.disabled_at`; every table registration is
//!   converted (grouped by source) and the old history is split per source.
//! - 3: business metric definitions (`metrics`).
//! - 4: admin-editable settings (`settings`).
//! - 5: browser sign-in (`users.password_hash`, `web_sessions`) and connector review
//!   (`connectors.status`, `reviewed_at`, `reviewed_by`; versions uploaded before it are
//!   recorded as approved, since sources already use them).
//! - 6: plugin marketplaces (`marketplaces`, `marketplace_plugins`, `plugin_reviews`,
//!   `reviewers`; key columns plus the record as JSON).
//! - 7: several processes on one state: runs owned by a process and queued for workers
//!   (`source_runs.owner`, `heartbeat_at`, `attempts`, `run_after`; status `queued`), a
//!   source claimed by its run (`sources.running_run`: one run per source across all
//!   processes), and the versions of extracts in the object store (`published_extracts`).

use std::collections::BTreeMap;

use super::sql::{Sql, p};
use crate::error::{ApiError, ApiResult};

/// One step of the ladder.
pub(crate) enum Step {
    Sql(&'static str),
    Code(fn(&dyn Sql) -> ApiResult<()>),
}

/// Every migration, in order; the number is the index + 1.
pub(crate) const MIGRATIONS: &[(&str, Step)] = &[
    ("initial schema", Step::Sql(V1)),
    ("sources as records", Step::Code(v2_sources)),
    ("business metrics", Step::Sql(V3)),
    ("settings", Step::Sql(V4)),
    ("web sign-in and connector review", Step::Sql(V5)),
    ("plugin marketplaces", Step::Sql(V6)),
    ("several processes on one state", Step::Sql(V7)),
];

/// The schema version this binary writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`LATEST`]; returns the version it was at.
pub fn migrate(conn: &dyn Sql) -> Result<u32, String> {
    migrate_to(conn, LATEST)
}

/// Applies the migrations up to `target` (tests build older databases with it).
pub fn migrate_to(conn: &dyn Sql, target: u32) -> Result<u32, String> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)",
    )
    .map_err(|e| format!("creating schema_version: {}", e.detail()))?;
    let current: u32 = conn
        .value("SELECT coalesce(max(version), 0) FROM schema_version", p![])
        .map_err(|e| format!("reading schema_version: {}", e.detail()))?;
    if current > LATEST {
        return Err(format!(
            "the state database is at schema version {current}, newer than this agnes knows \
             (it knows up to {LATEST}); run the newer agnes release that wrote it, or restore a backup"
        ));
    }
    for (index, (name, step)) in MIGRATIONS.iter().enumerate() {
        let version = index as u32 + 1;
        if version <= current || version > target {
            continue;
        }
        apply(conn, version, name, step).map_err(|e| {
            format!(
                "migration {version} ({name}) failed, nothing of it applied: {}",
                e.detail()
            )
        })?;
        tracing::info!(version, name, "state schema migrated");
    }
    Ok(current)
}

fn apply(conn: &dyn Sql, version: u32, name: &str, step: &Step) -> ApiResult<()> {
    conn.transaction(|conn| {
        match step {
            Step::Sql(sql) => conn.batch(sql)?,
            Step::Code(f) => f(conn)?,
        }
        conn.execute(
            "INSERT INTO schema_version VALUES (?, ?, CAST(? AS TIMESTAMP))",
            p![version, name, super::now()],
        )?;
        Ok(())
    })
}

/// Migration 1: the schema as the releases before migrations created it.
pub(crate) const V1: &str = "
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
INSERT INTO groups VALUES ('Admin', now()), ('Everyone', now()) ON CONFLICT DO NOTHING;
";

const V2: &str = "
CREATE TABLE sources (
    name VARCHAR PRIMARY KEY, connector VARCHAR NOT NULL, spec VARCHAR NOT NULL,
    schedule VARCHAR, enabled BOOLEAN NOT NULL, description VARCHAR,
    created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE TABLE source_tables (
    name VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, query_mode VARCHAR NOT NULL,
    description VARCHAR, options VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE TABLE source_runs (
    id BIGINT PRIMARY KEY, source VARCHAR NOT NULL, trigger VARCHAR NOT NULL,
    full_refresh BOOLEAN NOT NULL, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
    status VARCHAR NOT NULL, error VARCHAR);
CREATE TABLE run_tables (
    run_id BIGINT NOT NULL, table_name VARCHAR NOT NULL, status VARCHAR NOT NULL,
    rows BIGINT, size_bytes BIGINT, error VARCHAR, finished_at TIMESTAMP NOT NULL);
CREATE TABLE user_status (user_id VARCHAR PRIMARY KEY, disabled_at TIMESTAMP NOT NULL);
";

/// Migration 3: business metric definitions (the definition is JSON; id, category, name
/// are columns for lookups).
const V3: &str = "
CREATE TABLE metrics (
    id VARCHAR PRIMARY KEY, category VARCHAR NOT NULL, name VARCHAR NOT NULL,
    definition VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL);
";

/// Migration 5: browser sign-in and connector review.
const V5: &str = "
ALTER TABLE users ADD COLUMN password_hash VARCHAR;
CREATE TABLE web_sessions (
    id_hash VARCHAR PRIMARY KEY, user_id VARCHAR NOT NULL, csrf VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL, expires_at TIMESTAMP NOT NULL, revoked_at TIMESTAMP,
    client VARCHAR);
ALTER TABLE connectors ADD COLUMN status VARCHAR;
ALTER TABLE connectors ADD COLUMN reviewed_at TIMESTAMP;
ALTER TABLE connectors ADD COLUMN reviewed_by VARCHAR;
UPDATE connectors SET status = 'approved', reviewed_at = now(), reviewed_by = 'migration 5';
";

/// Migration 6: plugin marketplaces, their plugins, reviewer components and reviews.
const V6: &str = "
CREATE TABLE marketplaces (name VARCHAR PRIMARY KEY, doc VARCHAR NOT NULL);
CREATE TABLE marketplace_plugins (
    marketplace VARCHAR NOT NULL, name VARCHAR NOT NULL, doc VARCHAR NOT NULL,
    PRIMARY KEY (marketplace, name));
CREATE TABLE plugin_reviews (
    bundle VARCHAR NOT NULL, reviewer VARCHAR NOT NULL, doc VARCHAR NOT NULL,
    PRIMARY KEY (bundle, reviewer));
CREATE TABLE reviewers (
    name VARCHAR NOT NULL, version VARCHAR NOT NULL, doc VARCHAR NOT NULL,
    PRIMARY KEY (name, version));
";

/// Migration 7: runs owned by processes and queued for workers, a source claimed by its
/// run, versions in the object store.
const V7: &str = "
ALTER TABLE source_runs ADD COLUMN owner VARCHAR;
ALTER TABLE source_runs ADD COLUMN heartbeat_at TIMESTAMP;
ALTER TABLE source_runs ADD COLUMN attempts INTEGER;
ALTER TABLE source_runs ADD COLUMN run_after TIMESTAMP;
ALTER TABLE sources ADD COLUMN running_run BIGINT;
CREATE TABLE published_extracts (
    source VARCHAR NOT NULL, version VARCHAR NOT NULL, published_at TIMESTAMP NOT NULL,
    PRIMARY KEY (source, version));
";

/// Migration 4: admin-editable settings (the workspace CLAUDE.md template, ...).
const V4: &str = "
CREATE TABLE settings (
    key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL,
    updated_by VARCHAR NOT NULL);
";

/// Migration 2: sources as records; registrations converted, history split per source.
fn v2_sources(conn: &dyn Sql) -> ApiResult<()> {
    conn.batch(V2)?;

    // registrations -> sources + tables (a source's tables shared one run config, enforced
    // by the old registry; the oldest registration's config wins, the shortest schedule too)
    #[derive(serde::Deserialize)]
    struct Stored {
        config: serde_json::Value,
        grant: serde_json::Value,
        limits: serde_json::Value,
        #[serde(default)]
        manifest: Option<String>,
        #[serde(default)]
        signature: Option<String>,
    }
    type Row = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        String,
    );
    let rows: Vec<Row> = conn
        .query(
            "SELECT name, source, connector, config, query_mode, schedule, description, \
             CAST(registered_at AS VARCHAR), CAST(updated_at AS VARCHAR) FROM registry ORDER BY registered_at, name",
            p![],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .collect::<ApiResult<_>>()?;
    let mut sources: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for row in rows {
        sources.entry(row.1.clone()).or_default().push(row);
    }
    for (source, tables) in &sources {
        let first = &tables[0];
        let stored: Stored = serde_json::from_str(&first.3).map_err(|e| {
            ApiError::internal(format!(
                "registration `{}` has an unreadable config: {e}",
                first.0
            ))
        })?;
        let (connector, manifest, signature) = upload_reference(
            &first.2,
            stored.manifest.as_deref(),
            stored.signature.as_deref(),
        );
        let schedule = tables.iter().filter_map(|t| t.5.clone()).min_by_key(|s| {
            crate::store::parse_schedule(s)
                .map(|d| d.as_secs())
                .unwrap_or(u64::MAX)
        });
        let spec = serde_json::json!({
            "manifest": manifest, "signature": signature, "config": stored.config,
            "grant": stored.grant, "limits": stored.limits,
        });
        let updated = tables
            .iter()
            .map(|t| t.8.clone())
            .max()
            .unwrap_or_else(|| first.8.clone());
        conn.execute(
            "INSERT INTO sources VALUES (?, ?, ?, ?, true, NULL, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP))",
            p![source, connector, spec.to_string(), schedule, &first.7, updated],
        )?;
        for t in tables {
            conn.execute(
                "INSERT INTO source_tables VALUES (?, ?, ?, ?, '{}', CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP))",
                p![&t.0, source, &t.4, &t.6, &t.7, &t.8],
            )?;
        }
    }

    // one run per (old run, source); runs with no outcome keep an empty source
    type Old = (i64, String, String, Option<String>, String);
    let runs: Vec<Old> = conn
        .query(
            "SELECT id, trigger, CAST(started_at AS VARCHAR), CAST(finished_at AS VARCHAR), status FROM sync_runs ORDER BY id",
            p![],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .collect::<ApiResult<_>>()?;
    let mut next = 1i64;
    for (id, trigger, started, finished, status) in runs {
        let run_sources: Vec<String> = conn.column(
            "SELECT DISTINCT source FROM sync_tables WHERE run_id = ? ORDER BY source",
            p![id],
        )?;
        if run_sources.is_empty() {
            conn.execute(
                "INSERT INTO source_runs VALUES (?, '', ?, false, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), ?, NULL)",
                p![next, &trigger, &started, &finished, &status],
            )?;
            next += 1;
            continue;
        }
        for source in run_sources {
            let counts = conn
                .row(
                    "SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status <> 'ok') \
                     FROM sync_tables WHERE run_id = ? AND source = ?",
                    p![id, &source],
                )?
                .ok_or_else(|| ApiError::internal("no counts"))?;
            let (ok, failed): (i64, i64) = (counts.get(0)?, counts.get(1)?);
            let status = match (ok, failed) {
                _ if status == "running" => "running",
                (_, 0) => "ok",
                (0, _) => "failed",
                _ => "partial",
            };
            conn.execute(
                "INSERT INTO source_runs VALUES (?, ?, ?, false, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), ?, NULL)",
                p![next, &source, &trigger, &started, &finished, status],
            )?;
            conn.execute(
                "INSERT INTO run_tables SELECT ?, table_name, status, rows, size_bytes, error, finished_at \
                 FROM sync_tables WHERE run_id = ? AND source = ?",
                p![next, id, &source],
            )?;
            next += 1;
        }
    }
    conn.batch(&format!(
        "CREATE SEQUENCE source_run_ids START {next};
         DROP TABLE registry; DROP TABLE sync_tables; DROP TABLE sync_runs; DROP SEQUENCE sync_run_ids;"
    ))?;
    Ok(())
}

/// An old registration stored an upload as its absolute path
/// (`<data_dir>/connectors/<name>/<version>/component.wasm` with the `connector.toml` and
/// `.sig` next to it); a source names it `<name>@<version>`, so the data dir can move.
fn upload_reference(
    connector: &str,
    manifest: Option<&str>,
    signature: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    let path = std::path::Path::new(connector);
    let parts: Vec<&str> = path
        .iter()
        .rev()
        .take(4)
        .map(|p| p.to_str().unwrap_or(""))
        .collect();
    let dir = path.parent().map(|d| d.to_string_lossy().into_owned());
    if let ([file, version, name, "connectors"], Some(dir)) = (parts.as_slice(), dir)
        && *file == "component.wasm"
        && manifest == Some(format!("{dir}/connector.toml").as_str())
        && signature.is_none_or(|s| s == format!("{connector}.sig"))
    {
        return (format!("{name}@{version}"), None, None);
    }
    (
        connector.to_string(),
        manifest.map(str::to_string),
        signature.map(str::to_string),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, access};
    use crate::store::Store;

    /// A database as the release before migrations left it: schema 1 without a
    /// `schema_version` row, rows written the way that release wrote them.
    fn previous_release_db(path: &std::path::Path, registry_config: &str) -> String {
        let conn = duckdb::Connection::open(path).unwrap();
        conn.execute_batch(V1).unwrap();
        let ana = access::create_user(&conn, "ana").unwrap();
        let (_, token) = access::create_token(&conn, &ana, "laptop", None).unwrap();
        access::create_group(&conn, "finance").unwrap();
        access::add_member(&conn, "finance", "ana").unwrap();
        access::grant(&conn, "finance", "table", "orders").unwrap();
        access::grant(&conn, "finance", "source", "crm").unwrap();
        conn.batch(&format!(
            "INSERT INTO registry VALUES
               ('orders', 'demo', '/srv/agnes/connectors/csv/0.3.1/component.wasm', '{registry_config}', 'local',
                'every 1h', 'Orders', TIMESTAMP '2026-01-01 10:00:00', TIMESTAMP '2026-01-02 10:00:00'),
               ('customers', 'demo', '/srv/agnes/connectors/csv/0.3.1/component.wasm', '{registry_config}', 'local',
                'every 15m', NULL, TIMESTAMP '2026-01-01 11:00:00', TIMESTAMP '2026-01-01 11:00:00'),
               ('contacts', 'crm', '/opt/hj.wasm', '{{\"config\": {{}}, \"grant\": {{}}, \"limits\": {{}}, \"manifest\": \"/opt/connector.toml\", \"signature\": null}}',
                'local', NULL, NULL, TIMESTAMP '2026-01-03 10:00:00', TIMESTAMP '2026-01-03 10:00:00');
             SELECT nextval('sync_run_ids'); SELECT nextval('sync_run_ids');
             INSERT INTO sync_runs VALUES
               (1, 'manual:admin', TIMESTAMP '2026-01-04 10:00:00', TIMESTAMP '2026-01-04 10:01:00', 'partial'),
               (2, 'schedule', TIMESTAMP '2026-01-05 10:00:00', NULL, 'running');
             INSERT INTO sync_tables VALUES
               (1, 'demo', 'orders', 'ok', 2500, 9000, NULL, TIMESTAMP '2026-01-04 10:00:30'),
               (1, 'demo', 'customers', 'ok', 100, 900, NULL, TIMESTAMP '2026-01-04 10:00:30'),
               (1, 'crm', 'contacts', 'failed', NULL, NULL, 'connector failed', TIMESTAMP '2026-01-04 10:00:40');
             INSERT INTO audit_log VALUES (TIMESTAMP '2026-01-01 09:00:00', 'admin', 'registry.register', 'orders', NULL);"
        ))
        .unwrap();
        token
    }

    const DEMO_CONFIG: &str = r#"{"config": {"dir": "/data"}, "grant": {"dirs": [{"host": "/srv/data", "guest": "/data"}]}, "limits": {"timeout_secs": 60}, "manifest": "/srv/agnes/connectors/csv/0.3.1/connector.toml", "signature": "/srv/agnes/connectors/csv/0.3.1/component.wasm.sig"}"#;

    #[tokio::test]
    async fn a_previous_release_database_keeps_its_state_and_becomes_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("system.duckdb");
        let token = previous_release_db(&path, DEMO_CONFIG);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().await.unwrap(), LATEST);

        // users, tokens, groups, grants and the audit log are kept
        let ana = db
            .authenticate(&token)
            .await
            .unwrap()
            .expect("the old token still works");
        assert_eq!(ana.name, "ana");
        assert!(ana.can_read("orders", "demo") && ana.can_read("contacts", "crm"));
        let grants = db.list_grants().await.unwrap();
        assert_eq!(grants.len(), 2);
        assert!(grants.iter().all(|g| !g.dangling), "{grants:?}");
        let audit = db
            .list_audit(&crate::store::AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(audit[0].action, "registry.register");

        // registrations became two sources with their tables
        let sources = db.list_sources().await.unwrap();
        assert_eq!(sources.len(), 2);
        let demo = &sources.iter().find(|s| s.spec.name == "demo").unwrap().spec;
        assert_eq!(
            demo.connector, "csv@0.3.1",
            "an upload path becomes its reference"
        );
        assert_eq!(
            (demo.manifest.as_ref(), demo.signature.as_ref()),
            (None, None)
        );
        assert_eq!(demo.config, serde_json::json!({"dir": "/data"}));
        assert_eq!(demo.grant.dirs[0].guest, "/data");
        assert_eq!(demo.limits.timeout_secs, 60);
        assert_eq!(
            demo.schedule.as_deref(),
            Some("every 15m"),
            "the shortest table schedule"
        );
        assert!(demo.enabled);
        let crm = &sources.iter().find(|s| s.spec.name == "crm").unwrap().spec;
        assert_eq!(crm.connector, "/opt/hj.wasm");
        assert_eq!(
            crm.manifest.as_deref(),
            Some(std::path::Path::new("/opt/connector.toml"))
        );
        let tables = db.list_tables(Some("demo")).await.unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t.spec.name.as_str()).collect();
        assert_eq!(names, ["orders", "customers"]);
        assert_eq!(tables[0].spec.description.as_deref(), Some("Orders"));
        assert_eq!(tables[0].created_at, "2026-01-01 10:00:00");

        // the history is split per source; a run left running is failed at start-up
        let runs = db.list_runs(None, 10).await.unwrap();
        let shape: Vec<(&str, &str, usize)> = runs
            .iter()
            .map(|r| (r.source.as_str(), r.status.as_str(), r.tables.len()))
            .collect();
        assert_eq!(
            shape,
            [("", "running", 0), ("demo", "ok", 2), ("crm", "failed", 1)]
        );
        assert_eq!(db.abandon_running(None).await.unwrap(), 1);
        assert_eq!(
            db.list_runs(Some("demo"), 10).await.unwrap()[0].tables[0].rows,
            Some(100)
        );
        // new runs get fresh ids
        let id = db
            .start_run("demo", "manual:admin", false, "test")
            .await
            .unwrap();
        assert!(id > runs[0].id, "{id}");

        // the old tables are gone; opening again changes nothing
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.list_sources().await.unwrap().len(), 2);
    }

    #[test]
    fn a_failed_migration_leaves_the_previous_version() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("system.duckdb");
        previous_release_db(&path, "not json");
        let err = Db::open(&path).err().unwrap();
        assert!(
            err.contains("migration 2 (sources as records) failed"),
            "{err}"
        );
        assert!(
            err.contains("registration `orders` has an unreadable config"),
            "{err}"
        );
        let conn = duckdb::Connection::open(&path).unwrap();
        let version: u32 = conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM registry", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 3, "nothing of migration 2 applied");
    }

    #[test]
    fn a_newer_database_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("system.duckdb");
        drop(Db::open(&path).unwrap());
        let conn = duckdb::Connection::open(&path).unwrap();
        conn.execute_batch("INSERT INTO schema_version VALUES (99, 'from the future', now())")
            .unwrap();
        drop(conn);
        let err = Db::open(&path).err().unwrap();
        assert!(
            err.contains("schema version 99, newer than this agnes knows"),
            "{err}"
        );
    }

    #[test]
    fn uploads_become_references_and_paths_stay() {
        let c = "/srv/agnes/connectors/csv/0.3.1/component.wasm";
        assert_eq!(
            upload_reference(
                c,
                Some("/srv/agnes/connectors/csv/0.3.1/connector.toml"),
                Some(&format!("{c}.sig"))
            ),
            ("csv@0.3.1".into(), None, None)
        );
        assert_eq!(
            upload_reference("/opt/c.wasm", Some("/opt/connector.toml"), None),
            (
                "/opt/c.wasm".into(),
                Some("/opt/connector.toml".into()),
                None
            )
        );
        // a manifest elsewhere is kept as it was
        assert_eq!(
            upload_reference(c, Some("/elsewhere/connector.toml"), None).0,
            c.to_string()
        );
    }
}
