//! The table registry: which tables exist, which source and connector produce them, how
//! the connector is configured and granted, and when they sync.

use std::path::PathBuf;
use std::time::Duration;

use agnes_runtime::{Grant, Limits};
use serde::{Deserialize, Serialize};

use super::now;
use crate::error::{ApiError, ApiResult};

/// A registration, as sent by an admin.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableRegistration {
    pub name: String,
    pub source: String,
    /// Path of the connector component (.wasm) on the server.
    pub connector: PathBuf,
    /// Its `connector.toml` (required when the server has trusted keys).
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// Its signature (default: `<connector>.sig`).
    #[serde(default)]
    pub signature: Option<PathBuf>,
    /// The connector's config (a JSON object).
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// What the connector run is granted (host directories must be absolute).
    #[serde(default)]
    pub grant: Grant,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default = "local")]
    pub query_mode: String,
    /// `every <n>s|m|h|d`, or absent for manual syncs only.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
fn local() -> String {
    "local".into()
}

/// A registry row.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryEntry {
    #[serde(flatten)]
    pub table: TableRegistration,
    pub registered_at: String,
    pub updated_at: String,
}

/// Parses `every 30s|15m|1h|1d`.
pub fn parse_schedule(s: &str) -> Result<Duration, String> {
    let err = || format!("schedule `{s}`: use `every <n>s|m|h|d`, e.g. `every 1h`");
    let spec = s.trim().strip_prefix("every ").ok_or_else(err)?.trim();
    let (num, unit) = spec.split_at(spec.len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(err()),
    };
    if secs < 10 {
        return Err(format!(
            "schedule `{s}`: the shortest interval is 10 seconds"
        ));
    }
    Ok(Duration::from_secs(secs))
}

impl TableRegistration {
    /// Loads the connector for a run: verified against `trusted` (before it is compiled),
    /// with the grant and limits narrowed to what its connector.toml requests. Without
    /// trusted keys it is refused, unless `allow_unsigned` (development only).
    pub fn load(
        &self,
        runtime: &agnes_runtime::Runtime,
        trusted: Option<&std::path::Path>,
        allow_unsigned: bool,
    ) -> Result<(agnes_runtime::LoadedComponent, Grant, Limits), agnes_runtime::Error> {
        let Some(dir) = trusted else {
            if !allow_unsigned {
                return Err(agnes_runtime::Error::Signature {
                    reason:
                        "this server runs only signed connectors: set `trusted_keys` in its config \
                             (or `allow_unsigned_connectors = true`, for development only)"
                            .into(),
                });
            }
            // unverified (development only), but its connector.toml still narrows the grant
            let component = runtime.load_file(&self.connector)?;
            let Some(path) = &self.manifest else {
                return Ok((component, self.grant.clone(), self.limits.clone()));
            };
            let m = agnes_runtime::manifest::ConnectorManifest::from_file(path)?;
            let (grant, limits) = m.effective(&self.grant, &self.limits)?;
            return Ok((component, grant, limits));
        };
        let keys = agnes_runtime::signature::TrustedKeys::from_dir(dir)?;
        let manifest = self.manifest.clone().ok_or_else(|| agnes_runtime::Error::Signature {
            reason: format!("this server only runs signed connectors; register `{}` with its `manifest` (connector.toml)", self.name),
        })?;
        let signature = self
            .signature
            .clone()
            .unwrap_or_else(|| agnes_runtime::signature::default_path(&self.connector));
        let (component, m, _) =
            runtime.load_verified(&self.connector, &manifest, &signature, &keys)?;
        let (grant, limits) = m.effective(&self.grant, &self.limits)?;
        Ok((component, grant, limits))
    }

    /// Resolves `"connector": "<name>@<version>"` to the uploaded component, its
    /// `connector.toml` and signature under `<data_dir>/connectors/`.
    pub fn resolve_uploaded(&mut self, data_dir: &std::path::Path) -> ApiResult<()> {
        if self.connector.is_absolute() {
            return Ok(());
        }
        let reference = self.connector.to_string_lossy().into_owned();
        let (name, version) = reference.split_once('@').ok_or_else(|| {
            ApiError::BadRequest(format!("connector `{reference}`: use an absolute component path or `<name>@<version>` of an upload"))
        })?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c))
        };
        let dir = data_dir.join("connectors").join(name).join(version);
        if !ok(name) || !ok(version) || !dir.join("component.wasm").is_file() {
            return Err(ApiError::BadRequest(format!(
                "no uploaded connector `{reference}`; see GET /api/admin/connectors"
            )));
        }
        self.connector = dir.join("component.wasm");
        self.manifest = Some(dir.join("connector.toml"));
        self.signature = Some(agnes_runtime::signature::default_path(&self.connector));
        Ok(())
    }

    /// Checks every field; returns a clear 400 on the first problem.
    pub fn validate(&self) -> ApiResult<()> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        agnes_runtime::names::validate_name("table", &self.name)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        agnes_runtime::names::validate_name("source", &self.source)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if self.query_mode != "local" {
            return bad(format!(
                "query_mode `{}` is not supported yet; only `local` (materialized and remote come later)",
                self.query_mode
            ));
        }
        if !self.config.is_object() {
            return bad("config must be a JSON object".into());
        }
        if !self.connector.is_absolute() || !self.connector.is_file() {
            return bad(format!(
                "connector {} must be the absolute path of a component file on the server",
                self.connector.display()
            ));
        }
        for d in &self.grant.dirs {
            if !d.host.is_absolute() {
                return bad(format!(
                    "grant.dirs host {} must be absolute",
                    d.host.display()
                ));
            }
        }
        self.grant
            .clone()
            .resolve(std::path::Path::new("/"))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if let Some(s) = &self.schedule {
            parse_schedule(s).map_err(ApiError::BadRequest)?;
        }
        Ok(())
    }

    /// What must agree between all tables of one source (they share one connector run).
    fn run_identity(&self) -> (PathBuf, String, String, String) {
        (
            self.connector.clone(),
            format!("{}{:?}{:?}", self.config, self.manifest, self.signature),
            serde_json::to_string(&self.grant).unwrap_or_default(),
            serde_json::to_string(&self.limits).unwrap_or_default(),
        )
    }
}

fn stored_config(t: &TableRegistration) -> String {
    serde_json::json!({"config": t.config, "grant": t.grant, "limits": t.limits, "manifest": t.manifest, "signature": t.signature})
        .to_string()
}

/// Inserts (`replace = false`) or updates (`replace = true`) a registration.
pub fn upsert(conn: &duckdb::Connection, t: &TableRegistration, replace: bool) -> ApiResult<()> {
    t.validate()?;
    let existing = get(conn, &t.name)?;
    match (&existing, replace) {
        (Some(_), false) => {
            return Err(ApiError::Conflict(format!(
                "table `{}` is registered; update it with PUT",
                t.name
            )));
        }
        (None, true) => {
            return Err(ApiError::NotFound(format!(
                "table `{}` is not registered",
                t.name
            )));
        }
        _ => {}
    }
    for other in list(conn)? {
        if other.table.source == t.source
            && other.table.name != t.name
            && other.table.run_identity() != t.run_identity()
        {
            return Err(ApiError::Conflict(format!(
                "source `{}` is registered (table `{}`) with another connector, config, grant or limits; \
                 all tables of a source share one connector run, so register them identically",
                t.source, other.table.name
            )));
        }
    }
    let stamp = now();
    let registered = existing
        .map(|e| e.registered_at)
        .unwrap_or_else(|| stamp.clone());
    conn.execute("DELETE FROM registry WHERE name = ?", [&t.name])?;
    conn.execute(
        "INSERT INTO registry VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP))",
        duckdb::params![
            t.name,
            t.source,
            t.connector.to_string_lossy(),
            stored_config(t),
            t.query_mode,
            t.schedule,
            t.description,
            registered,
            stamp
        ],
    )?;
    Ok(())
}

pub fn delete(conn: &duckdb::Connection, name: &str) -> ApiResult<()> {
    let n = conn.execute("DELETE FROM registry WHERE name = ?", [name])?;
    if n == 0 {
        return Err(ApiError::NotFound(format!(
            "table `{name}` is not registered"
        )));
    }
    Ok(())
}

fn row(r: &duckdb::Row<'_>) -> duckdb::Result<(RegistryEntry, String)> {
    let stored: String = r.get(3)?;
    let entry = RegistryEntry {
        table: TableRegistration {
            name: r.get(0)?,
            source: r.get(1)?,
            connector: PathBuf::from(r.get::<_, String>(2)?),
            manifest: None,
            signature: None,
            config: serde_json::Value::Null,
            grant: Grant::default(),
            limits: Limits::default(),
            query_mode: r.get(4)?,
            schedule: r.get(5)?,
            description: r.get(6)?,
        },
        registered_at: r.get(7)?,
        updated_at: r.get(8)?,
    };
    Ok((entry, stored))
}

fn decode((mut entry, stored): (RegistryEntry, String)) -> ApiResult<RegistryEntry> {
    #[derive(Deserialize)]
    struct Stored {
        config: serde_json::Value,
        grant: Grant,
        limits: Limits,
        #[serde(default)]
        manifest: Option<PathBuf>,
        #[serde(default)]
        signature: Option<PathBuf>,
    }
    let s: Stored = serde_json::from_str(&stored)
        .map_err(|e| ApiError::internal(format!("registry row {}: {e}", entry.table.name)))?;
    entry.table.config = s.config;
    entry.table.grant = s.grant;
    entry.table.limits = s.limits;
    entry.table.manifest = s.manifest;
    entry.table.signature = s.signature;
    Ok(entry)
}

const SELECT: &str = "SELECT name, source, connector, config, query_mode, schedule, description, \
     CAST(registered_at AS VARCHAR), CAST(updated_at AS VARCHAR) FROM registry";

pub fn get(conn: &duckdb::Connection, name: &str) -> ApiResult<Option<RegistryEntry>> {
    let mut stmt = conn.prepare(&format!("{SELECT} WHERE name = ?"))?;
    let mut rows = stmt.query_map([name], row)?;
    match rows.next() {
        Some(r) => Ok(Some(decode(r?)?)),
        None => Ok(None),
    }
}

/// Every registration, in registration order.
pub fn list(conn: &duckdb::Connection) -> ApiResult<Vec<RegistryEntry>> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY registered_at, name"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("every 15m").unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            parse_schedule("every 1d").unwrap(),
            Duration::from_secs(86_400)
        );
        for bad in [
            "daily",
            "every",
            "every 5",
            "every 1w",
            "every 1s",
            "every -1h",
        ] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registrations_round_trip_and_sources_stay_consistent() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&tmp.path().join("s.duckdb")).unwrap();
        let wasm = tmp.path().join("c.wasm");
        std::fs::write(&wasm, b"\0asm").unwrap();
        let t = TableRegistration {
            name: "orders".into(),
            source: "demo".into(),
            connector: wasm.clone(),
            manifest: None,
            signature: None,
            config: serde_json::json!({"dir": "/data"}),
            grant: Grant {
                dirs: vec![agnes_runtime::DirGrant {
                    host: tmp.path().to_path_buf(),
                    guest: "/data".into(),
                }],
                ..Grant::default()
            },
            limits: Limits {
                timeout_secs: 60,
                ..Limits::default()
            },
            query_mode: "local".into(),
            schedule: Some("every 1h".into()),
            description: Some("orders".into()),
        };
        db.blocking(|c| {
            upsert(c, &t, false)?;
            let back = get(c, "orders")?.unwrap();
            assert_eq!(back.table, t);
            assert!(matches!(upsert(c, &t, false), Err(ApiError::Conflict(_))));
            let mut other = t.clone();
            other.name = "customers".into();
            other.config = serde_json::json!({"dir": "/elsewhere"});
            assert!(
                matches!(upsert(c, &other, false), Err(ApiError::Conflict(_))),
                "same source, other config"
            );
            let mut bad = t.clone();
            bad.name = "Bad Name".into();
            assert!(matches!(
                upsert(c, &bad, false),
                Err(ApiError::BadRequest(_))
            ));
            let mut bad = t.clone();
            bad.name = "x".into();
            bad.query_mode = "remote".into();
            assert!(matches!(
                upsert(c, &bad, false),
                Err(ApiError::BadRequest(_))
            ));
            delete(c, "orders")?;
            assert!(get(c, "orders")?.is_none());
            Ok(())
        })
        .unwrap();
    }
}
