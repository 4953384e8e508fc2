//! Server configuration: defaults, then a TOML file, then `AGNES_*` environment variables;
//! validated once at start-up. Loading has no side effects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The validated configuration the rest of the server uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Root of everything the server stores: `state/system.duckdb`,
    /// `analytics/server.duckdb`, `extracts/`, `cache/`.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    pub query: QueryLimits,
    /// Seconds between scheduler checks for due tables.
    pub scheduler_tick_secs: u64,
    /// Directory of trusted signer keys (*.pub). When set, every connector must be signed
    /// by one of them: checked at registration and again before every sync compiles it.
    pub trusted_keys: Option<PathBuf>,
    /// Without `trusted_keys`, connectors are refused (registration and sync) unless this
    /// is set: development only; the server logs a warning at start-up.
    /// `AGNES_ALLOW_UNSIGNED=1` sets it.
    pub allow_unsigned_connectors: bool,
    /// Inbound webhooks from sources; none configured means none accepted.
    pub webhooks: Webhooks,
    /// This deployment's name, as analysts' workspace CLAUDE.md shows it.
    pub instance_name: String,
    /// Authentication limits.
    pub auth: AuthLimits,
    /// HTTPS: the certificate chain and key (PEM); absent means plain HTTP (behind a proxy).
    pub tls: Option<Tls>,
    /// Pinned addresses for connectors' outbound HTTP host names, used instead of DNS
    /// (split-horizon names); still checked like DNS answers (non-public needs
    /// `allow_private` in the grant).
    pub resolve: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// Guardrails of remote tables (queries pushed to the source).
    pub remote: RemoteLimits,
    /// The sandbox that runs SQL over Agnes tables (`agnes:sql` sources).
    pub sql: SqlEngine,
    /// The Claude Code plugin marketplace the server re-serves.
    pub marketplace: MarketplaceConfig,
    /// Where the server's state lives: the embedded DuckDB file, or PostgreSQL shared by
    /// several `agnes serve` processes.
    pub state: StateConfig,
    /// Where published extracts are shared between processes: each process's own disk
    /// only (`local`), or an S3-compatible bucket.
    pub storage: StorageConfig,
    /// What this process does: `all` (serve, schedule and run syncs), `api` (serve and
    /// schedule; syncs are queued for workers) or `worker` (run queued syncs; serves only
    /// `/healthz` and `/readyz`). `api` and `worker` need PostgreSQL state and a bucket.
    /// `agnes serve --role` sets it.
    pub role: String,
    /// Queued syncs on PostgreSQL: how a dead worker is noticed and its run retried.
    pub worker: WorkerConfig,
}

/// `[worker]`: the queue of syncs shared through PostgreSQL.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// A worker that has not beaten for this long is dead: its run goes back to the queue
    /// (it beats every quarter of it).
    pub lease_secs: u64,
    /// Tries of one run before it fails for good (a worker dying each time).
    pub max_attempts: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease_secs: 45,
            max_attempts: 3,
        }
    }
}

/// The roles of `agnes serve --role`.
pub const ROLES: [&str; 3] = ["all", "api", "worker"];

/// `[storage]`: the object store published extracts are shared through.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `local` (each process's `data_dir/extracts`, the single-machine default) or `s3`.
    pub backend: String,
    /// The S3 API as the servers reach it (`http://garage.internal:3900`).
    pub endpoint: Option<String>,
    /// The S3 API as analysts reach it: presigned URLs are signed for it (default: endpoint).
    pub public_endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    /// File holding the secret access key (read at start-up; never logged).
    pub secret_access_key_file: Option<PathBuf>,
    /// How long a presigned download URL in the manifest is valid.
    pub presign_ttl_secs: u64,
    /// How long a replaced version stays in the bucket (longer than `presign_ttl_secs`, so
    /// a URL handed out just before a sync still downloads).
    pub grace_secs: u64,
}

/// The storage backends of `[storage] backend`.
pub const STORAGE_BACKENDS: [&str; 2] = ["local", "s3"];

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: "local".into(),
            endpoint: None,
            public_endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key_file: None,
            presign_ttl_secs: 900,
            grace_secs: 3600,
        }
    }
}

/// `[state]`: the state store's backend.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `duckdb` (`<data_dir>/state/system.duckdb`, one process) or `postgres`.
    pub backend: String,
    /// With `postgres`: `postgres://user@host:port/database[?sslmode=require]`. Keep the
    /// password out of it: `password_file`. `AGNES_STATE_URL` sets it (and the backend).
    pub url: Option<String>,
    /// File holding the database password (read at start-up; never logged).
    pub password_file: Option<PathBuf>,
    /// Connections this process keeps to the database at most.
    pub max_connections: u32,
}

/// The state backends of `[state] backend`.
pub const STATE_BACKENDS: [&str; 2] = ["duckdb", "postgres"];

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: "duckdb".into(),
            url: None,
            password_file: None,
            max_connections: 16,
        }
    }
}

impl StateConfig {
    /// The PostgreSQL target, when the backend is `postgres` (reads the password file).
    pub fn postgres(&self) -> Result<Option<crate::db::pg::PgTarget>, String> {
        if self.backend != "postgres" {
            return Ok(None);
        }
        let url = self
            .url
            .clone()
            .ok_or("[state] backend = \"postgres\" needs url")?;
        let password = match &self.password_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("[state] password_file {}: {e}", f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            None => None,
        };
        Ok(Some(crate::db::pg::PgTarget {
            url,
            password,
            max_connections: self.max_connections,
        }))
    }
}

/// `[marketplace]`: how registered plugin marketplaces are fetched, reviewed and served.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MarketplaceConfig {
    /// The served marketplace's name (what analysts install plugins `@` from).
    pub name: String,
    /// Allow `file://` marketplace URLs (a repository on the server's own disk): off, since
    /// an admin could otherwise read any repository the server can.
    /// `AGNES_MARKETPLACE_FILE_URLS=1` sets it.
    pub allow_file_urls: bool,
    /// Hosts marketplaces may be fetched from (`github.com`, `*.example.com`); empty: any
    /// public host. The operator's grant, as `[grant.http]` is for connectors.
    pub allowed_hosts: Vec<String>,
    /// Limits of one reviewer run.
    pub review_limits: agnes_runtime::hook::ReviewLimits,
}

impl Default for MarketplaceConfig {
    fn default() -> Self {
        MarketplaceConfig {
            name: "agnes".into(),
            allow_file_urls: false,
            allowed_hosts: Vec::new(),
            review_limits: Default::default(),
        }
    }
}

/// `[sql]`: what runs the SQL of `agnes:sql` sources' tables (memory, CPU and time limits
/// are the source's `limits`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqlEngine {
    /// `datafusion`: the `agnes-sql` WebAssembly component (Apache DataFusion), run by the
    /// connector runtime; `process`: DuckDB in the OS-confined `agnes-sqlbox` process.
    pub engine: String,
    /// The `agnes-sql` component (`datafusion`); unset: `agnes-sql.wasm` beside `agnes`.
    pub component: Option<PathBuf>,
    /// The `agnes-sqlbox` executable (`process`); unset: the one installed beside `agnes`.
    pub program: Option<PathBuf>,
    /// DuckDB threads inside `agnes-sqlbox` (the component runs on one thread).
    pub threads: u64,
}

/// The SQL engines of `[sql] engine`.
pub const SQL_ENGINES: [&str; 2] = ["datafusion", "process"];

impl Default for SqlEngine {
    fn default() -> Self {
        SqlEngine {
            engine: "datafusion".into(),
            component: None,
            program: None,
            threads: 2,
        }
    }
}

/// `[remote]`: what a scan of a remote table may cost.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteLimits {
    /// A scan whose estimated scanned bytes exceed this is refused
    /// (`remote_scan_too_large`); a table's option `max_scan_bytes` overrides it. 0 = off.
    pub max_scan_bytes: u64,
    /// Estimated bytes scanned per user per UTC day, over all remote scans; 0 = off.
    pub daily_scan_bytes_per_user: u64,
    /// A materialized table's SQL is not run when the source estimates it scans more
    /// (recorded as the table's error, the previous version kept); a table's option
    /// `max_bytes_per_materialize` overrides it. 0 = off.
    pub max_bytes_per_materialize: u64,
}

impl Default for RemoteLimits {
    fn default() -> Self {
        RemoteLimits {
            max_scan_bytes: 5 << 30,
            daily_scan_bytes_per_user: 100 << 30,
            max_bytes_per_materialize: 10 << 30,
        }
    }
}

/// `[webhooks.*]`: which source an inbound webhook updates and how it is authenticated.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    pub jira: Option<JiraWebhook>,
}

/// `POST /api/webhooks/jira`: Jira Cloud's `X-Hub-Signature: sha256=<hmac>` of the body
/// with the shared secret; the payload is applied to `source` (a source registered with
/// the jira connector).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JiraWebhook {
    pub source: String,
    /// File holding the shared secret (read on every request, so it can be rotated).
    pub secret_file: PathBuf,
}

/// `[tls]`: serve HTTPS with this certificate chain and private key (PEM files).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[auth]`: how many failed authentications one client address may make per minute;
/// past it, its requests get 429 with `Retry-After` (tokens verified recently still pass).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthLimits {
    pub failures_per_minute: u32,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            failures_per_minute: 30,
        }
    }
}

/// Limits of one `/api/query` (and sample) session.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimits {
    pub memory_mb: u64,
    pub threads: u64,
    pub timeout_secs: u64,
    /// Upper bound on `limit` in a query request.
    pub max_rows: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_mb: 512,
            threads: 2,
            timeout_secs: 30,
            max_rows: 100_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./agnes-data"),
            listen: "127.0.0.1:8420".parse().expect("valid address"),
            query: QueryLimits::default(),
            scheduler_tick_secs: 30,
            trusted_keys: None,
            allow_unsigned_connectors: false,
            webhooks: Webhooks::default(),
            auth: AuthLimits::default(),
            instance_name: "Agnes".into(),
            tls: None,
            resolve: Default::default(),
            remote: RemoteLimits::default(),
            sql: SqlEngine::default(),
            marketplace: MarketplaceConfig::default(),
            state: StateConfig::default(),
            storage: StorageConfig::default(),
            role: "all".into(),
            worker: WorkerConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Defaults, then `file` (if given), then the environment (`AGNES_DATA_DIR`,
    /// `AGNES_LISTEN`).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, String> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => ServerConfig::default(),
        };
        if let Some(dir) = env("AGNES_DATA_DIR") {
            config.data_dir = PathBuf::from(dir);
        }
        if let Some(dir) = env("AGNES_TRUSTED_KEYS") {
            config.trusted_keys = Some(PathBuf::from(dir));
        }
        if let Some(path) = env("AGNES_SQL_COMPONENT") {
            config.sql.component = Some(PathBuf::from(path));
        }
        if let Some(v) = env("AGNES_MARKETPLACE_FILE_URLS") {
            config.marketplace.allow_file_urls = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("AGNES_ALLOW_UNSIGNED") {
            config.allow_unsigned_connectors = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(url) = env("AGNES_STATE_URL") {
            config.state.backend = "postgres".into();
            config.state.url = Some(url);
        }
        if let Some(role) = env("AGNES_ROLE") {
            config.role = role;
        }
        if let Some(listen) = env("AGNES_LISTEN") {
            config.listen = listen
                .parse()
                .map_err(|e| format!("AGNES_LISTEN={listen}: {e}"))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates a config file's text (no environment applied).
    pub fn from_toml(text: &str) -> Result<ServerConfig, String> {
        let config: ServerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting (after a caller changed one, e.g. `agnes serve --role`).
    pub fn validate(&self) -> Result<(), String> {
        let q = &self.query;
        if q.memory_mb == 0 || q.threads == 0 || q.timeout_secs == 0 || q.max_rows == 0 {
            return Err(
                "[query] memory_mb, threads, timeout_secs and max_rows must be at least 1".into(),
            );
        }
        if let Some(dir) = &self.trusted_keys {
            agnes_runtime::signature::TrustedKeys::from_dir(dir)
                .map_err(|e| format!("trusted_keys: {e}"))?;
        }
        if let Some(j) = &self.webhooks.jira {
            agnes_runtime::names::validate_name("source", &j.source)
                .map_err(|e| format!("[webhooks.jira] source: {e}"))?;
        }
        if !STATE_BACKENDS.contains(&self.state.backend.as_str()) {
            return Err(format!(
                "[state] backend `{}`: use one of {STATE_BACKENDS:?}",
                self.state.backend
            ));
        }
        match (&self.state.backend[..], &self.state.url) {
            ("postgres", None) => {
                return Err("[state] backend = \"postgres\" needs url (or AGNES_STATE_URL)".into());
            }
            ("postgres", Some(url))
                if !url.starts_with("postgres://") && !url.starts_with("postgresql://") =>
            {
                return Err("[state] url must be a postgres:// URL".into());
            }
            ("duckdb", Some(_)) => {
                return Err("[state] url is for backend = \"postgres\"".into());
            }
            _ => {}
        }
        let st = &self.storage;
        if !STORAGE_BACKENDS.contains(&st.backend.as_str()) {
            return Err(format!(
                "[storage] backend `{}`: use one of {STORAGE_BACKENDS:?}",
                st.backend
            ));
        }
        if st.backend == "s3" {
            if self.state.backend != "postgres" {
                return Err("[storage] backend = \"s3\" shares extracts between processes: it needs [state] backend = \"postgres\"".into());
            }
            for (key, v) in [
                ("endpoint", &st.endpoint),
                ("bucket", &st.bucket),
                ("access_key_id", &st.access_key_id),
            ] {
                if v.as_deref().is_none_or(str::is_empty) {
                    return Err(format!("[storage] backend = \"s3\" needs {key}"));
                }
            }
            if st.secret_access_key_file.is_none() {
                return Err("[storage] backend = \"s3\" needs secret_access_key_file".into());
            }
            for (key, v) in [
                ("endpoint", &st.endpoint),
                ("public_endpoint", &st.public_endpoint),
            ] {
                if let Some(url) = v
                    && !url.starts_with("http://")
                    && !url.starts_with("https://")
                {
                    return Err(format!("[storage] {key} must be an http(s):// URL"));
                }
            }
            if st.presign_ttl_secs == 0 || st.presign_ttl_secs > 7 * 86_400 {
                return Err(
                    "[storage] presign_ttl_secs must be 1 to 604800 (7 days, S3's limit)".into(),
                );
            }
            if st.grace_secs <= st.presign_ttl_secs {
                return Err("[storage] grace_secs must be longer than presign_ttl_secs".into());
            }
        }
        if !ROLES.contains(&self.role.as_str()) {
            return Err(format!("role `{}`: use one of {ROLES:?}", self.role));
        }
        if self.role != "all" && (self.state.backend != "postgres" || st.backend != "s3") {
            return Err(format!(
                "role `{}` splits serving from syncing across processes: it needs [state] backend = \"postgres\" \
                 and [storage] backend = \"s3\"",
                self.role
            ));
        }
        if self.worker.lease_secs < 2 || self.worker.max_attempts == 0 {
            return Err(
                "[worker] lease_secs must be at least 2 and max_attempts at least 1".into(),
            );
        }
        if self.state.max_connections < 2 {
            return Err("[state] max_connections must be at least 2".into());
        }
        if self.scheduler_tick_secs == 0 {
            return Err("scheduler_tick_secs must be at least 1".into());
        }
        if self.sql.threads == 0 {
            return Err("[sql] threads must be at least 1".into());
        }
        if !SQL_ENGINES.contains(&self.sql.engine.as_str()) {
            return Err(format!(
                "[sql] engine `{}`: use one of {SQL_ENGINES:?}",
                self.sql.engine
            ));
        }
        for p in [&self.sql.program, &self.sql.component]
            .into_iter()
            .flatten()
        {
            if !p.is_absolute() {
                return Err(format!("[sql] {} must be an absolute path", p.display()));
            }
        }
        Ok(())
    }

    /// The `agnes-sql` component: `[sql] component`, or `agnes-sql.wasm` beside this
    /// executable.
    pub fn sql_component(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.sql.component {
            return Ok(p.clone());
        }
        agnes_runtime::sqlbox::beside_current_exe("agnes-sql.wasm").ok_or_else(|| {
            "no `agnes-sql.wasm` beside this executable: install the sql component \
                 (`just sql-component`) next to `agnes` or set [sql] component"
                .to_string()
        })
    }

    /// The sandbox for SQL over Agnes tables: `[sql] program`, or `agnes-sqlbox` beside
    /// this executable.
    pub fn sqlbox(&self) -> Result<agnes_runtime::sqlbox::SqlBox, String> {
        let threads = self.sql.threads;
        match &self.sql.program {
            Some(program) => Ok(agnes_runtime::sqlbox::SqlBox {
                program: program.clone(),
                threads,
            }),
            None => agnes_runtime::sqlbox::SqlBox::beside_current_exe(threads).ok_or_else(|| {
                format!(
                    "no `{}` beside this executable: install it next to `agnes` or set [sql] program",
                    agnes_runtime::sqlbox::PROGRAM
                )
            }),
        }
    }

    pub fn extracts_dir(&self) -> PathBuf {
        self.data_dir.join("extracts")
    }
    pub fn system_db(&self) -> PathBuf {
        self.data_dir.join("state/system.duckdb")
    }
    pub fn analytics_db(&self) -> PathBuf {
        self.data_dir.join("analytics/server.duckdb")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache/components")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_defaults_file_env() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("agnes.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/agnes\"\n[query]\ntimeout_secs = 5\n",
        )
        .unwrap();
        let c = ServerConfig::load(Some(&file), |k| {
            (k == "AGNES_LISTEN").then(|| "0.0.0.0:9000".into())
        })
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/agnes"));
        assert_eq!(c.query.timeout_secs, 5);
        assert_eq!(c.query.threads, 2);
        assert_eq!(c.listen.port(), 9000);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("agnes.toml");
        std::fs::write(&file, "dta_dir = \"x\"\n").unwrap();
        assert!(
            ServerConfig::load(Some(&file), |_| None)
                .unwrap_err()
                .contains("unknown field `dta_dir`")
        );
        std::fs::write(&file, "[query]\nthreads = 0\n").unwrap();
        assert!(
            ServerConfig::load(Some(&file), |_| None)
                .unwrap_err()
                .contains("threads")
        );
        let err =
            ServerConfig::load(None, |k| (k == "AGNES_LISTEN").then(|| "nope".into())).unwrap_err();
        assert!(err.contains("AGNES_LISTEN=nope"), "{err}");
    }

    #[test]
    fn the_scale_out_settings_are_checked_together() {
        let s3 = "[storage]\nbackend = \"s3\"\nendpoint = \"http://s3:3900\"\nbucket = \"b\"\n\
                  access_key_id = \"GK1\"\nsecret_access_key_file = \"/run/s\"\n";
        let pg = "[state]\nbackend = \"postgres\"\nurl = \"postgres://agnes@db/agnes\"\n";
        for (text, wanted) in [
            ("[state]\nbackend = \"mysql\"\n", "[state] backend `mysql`"),
            ("[state]\nbackend = \"postgres\"\n", "needs url"),
            (
                "[state]\nbackend = \"postgres\"\nurl = \"mysql://x\"\n",
                "postgres:// URL",
            ),
            ("[state]\nurl = \"postgres://x/y\"\n", "url is for backend"),
            (s3, "it needs [state] backend = \"postgres\""),
            ("role = \"worker\"\n", "role `worker` splits"),
            ("role = \"boss\"\n", "role `boss`"),
            (
                &format!("{pg}[storage]\nbackend = \"s3\"\nendpoint = \"http://s3\"\n"),
                "needs bucket",
            ),
            (
                &format!("{pg}{s3}presign_ttl_secs = 7200\ngrace_secs = 3600\n"),
                "grace_secs must be longer",
            ),
            (
                &format!("{pg}{s3}endpoint_x = 1\n"),
                "unknown field `endpoint_x`",
            ),
        ] {
            let err = ServerConfig::from_toml(text).unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        let ok = ServerConfig::from_toml(&format!("role = \"api\"\n{pg}{s3}")).unwrap();
        assert_eq!(
            (ok.role.as_str(), ok.storage.presign_ttl_secs),
            ("api", 900)
        );
        // AGNES_STATE_URL picks the backend; AGNES_ROLE the role
        let env = |k: &str| match k {
            "AGNES_STATE_URL" => Some("postgres://agnes@db/agnes".to_string()),
            _ => None,
        };
        assert_eq!(
            ServerConfig::load(None, env).unwrap().state.backend,
            "postgres"
        );
    }

    #[test]
    fn a_state_target_never_shows_its_password() {
        let t = crate::db::pg::PgTarget {
            url: "postgres://agnes:hunter2@db:5432/agnes".into(),
            password: Some("s3cret".into()),
            max_connections: 4,
        };
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("db:5432/agnes"), "{shown}");
    }
}
