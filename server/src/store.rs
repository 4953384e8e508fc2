//! The state-store boundary: every piece of server state — users, tokens, groups, grants,
//! sources and their tables, sync history, the audit log, connector uploads — is reached
//! through [`Store`], whose methods are use cases with plain Rust types in their
//! signatures (no driver types). Handlers, the sync orchestrator and the scheduler hold an
//! `Arc<dyn Store>` and never see SQL.
//!
//! The embedded implementation is [`crate::db::Db`] (one DuckDB file, migrated by
//! [`crate::db::migrations`]); a PostgreSQL implementation plugs in behind the same trait.

use std::path::PathBuf;

use agnes_runtime::{Grant, Limits};
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
pub use crate::marketplace::{Marketplace, Plugin, PluginReview, ReviewerInfo};

/// Resource types a grant can name.
pub const RESOURCE_TYPES: [&str; 3] = ["table", "source", "marketplace_plugin"];

/// An authenticated caller, with everything the access check needs.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
    /// `(resource_type, resource_id)` granted through any of the groups.
    pub grants: Vec<(String, String)>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "Admin")
    }

    /// The one access check for data: may this caller read `table` of `source`?
    pub fn can_read(&self, table: &str, source: &str) -> bool {
        self.is_admin()
            || self.grants.iter().any(|(t, id)| {
                (t == "table" && (id == table || id == "*")) || (t == "source" && id == source)
            })
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(crate::error::ApiError::Forbidden(
                "this needs membership of the Admin group".into(),
            ))
        }
    }
}

/// A user, as an admin lists them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// Set when the user was disabled: their tokens stop working.
    pub disabled_at: Option<String>,
    pub groups: Vec<String>,
}

/// A token's metadata (never its secret).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The owner's name (set in the admin-wide listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// One group with its members and grants.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub members: Vec<String>,
    pub grants: Vec<(String, String)>,
}

/// One grant, with whether it names something that exists.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GrantInfo {
    pub group: String,
    pub resource_type: String,
    pub resource_id: String,
    pub created_at: String,
    /// True when no registered source or table has this name (`*` never dangles).
    pub dangling: bool,
}

/// What an admin sends to create a source; also its stored form.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    /// `<name>@<version>` of an uploaded connector, or (development) the absolute path of a
    /// component file on the server.
    pub connector: String,
    /// With a path connector: its `connector.toml` (required when the server has trusted keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// With a path connector: its signature (default: `<connector>.sig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<PathBuf>,
    /// The connector's config: a JSON object, checked against the connector's
    /// `spec().config-schema`.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// What a run of this source is granted (intersected with what the connector requests).
    #[serde(default)]
    pub grant: Grant,
    #[serde(default)]
    pub limits: Limits,
    /// `every <n>s|m|h|d`, or absent for manual syncs only.
    #[serde(default)]
    pub schedule: Option<String>,
    /// A disabled source keeps its tables and extract but is never synced.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub description: Option<String>,
}

pub(crate) fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
fn yes() -> bool {
    true
}

/// A stored source.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Source {
    #[serde(flatten)]
    pub spec: SourceSpec,
    pub created_at: String,
    pub updated_at: String,
}

/// What an admin sends to add a table to a source.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    /// `local` (the connector's `read` copies it; parquet distributed).
    #[serde(default = "local")]
    pub query_mode: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Per-table options (a JSON object), kept for the connector and later query modes.
    #[serde(default = "empty_object")]
    pub options: serde_json::Value,
}

fn local() -> String {
    "local".into()
}

/// A stored table of a source.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableDef {
    pub source: String,
    #[serde(flatten)]
    pub spec: TableSpec,
    pub created_at: String,
    pub updated_at: String,
}

/// The outcome of one table in one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableOutcome {
    pub table: String,
    /// `ok` or `failed`.
    pub status: String,
    pub rows: Option<i64>,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
    pub finished_at: String,
}

/// One sync run of one source.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunInfo {
    pub id: i64,
    /// The source it ran (empty for runs recorded before sources existed and without outcomes).
    pub source: String,
    /// `manual:<user>`, `schedule` or `webhook`.
    pub trigger: String,
    pub full_refresh: bool,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `ok`, `partial` or `failed`.
    pub status: String,
    /// Why the whole run failed, when it did before any table finished.
    pub error: Option<String>,
    pub tables: Vec<TableOutcome>,
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub at: String,
    pub user: Option<String>,
    pub action: String,
    pub resource: Option<String>,
    pub detail: Option<String>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries at or after this timestamp (`YYYY-MM-DD[ HH:MM:SS]`).
    pub since: Option<String>,
    /// Entries whose action equals this, or starts with it followed by `.` (`source` matches
    /// `source.create`).
    pub action: Option<String>,
    pub limit: usize,
}

/// An uploaded connector version, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnectorInfo {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub key_id: String,
    pub requests: serde_json::Value,
    pub imports: serde_json::Value,
    pub uploaded_at: String,
    pub uploaded_by: String,
    /// `pending` (uploaded, not reviewed), `approved` (sources may use it) or `revoked`.
    pub status: String,
    pub reviewed_at: Option<String>,
    pub reviewed_by: Option<String>,
}

/// The review states of an uploaded connector version.
pub const CONNECTOR_STATES: [&str; 3] = ["pending", "approved", "revoked"];

/// A live browser session (never its secret).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WebSession {
    /// The first 12 characters of the stored hash: enough to revoke it.
    pub id: String,
    pub user: String,
    pub created_at: String,
    pub expires_at: String,
    pub client: Option<String>,
}

/// An admin-set value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Setting {
    pub value: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// What deleting a source removed, and what it left pointing at nothing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceRemoval {
    pub source: String,
    pub tables: Vec<String>,
    /// Grants naming the source or one of its tables: kept (an admin decides), listed here.
    pub dangling_grants: Vec<GrantInfo>,
}

/// A version of a source's extract in the object store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublishedVersion {
    pub source: String,
    pub version: String,
    pub published_at: String,
}

/// The server's state. Every method is one use case, atomic on its own.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // users and tokens
    async fn count_users(&self) -> ApiResult<i64>;
    /// Creates the first admin and its token, if there is no user yet.
    async fn bootstrap(&self, name: &str) -> ApiResult<Option<String>>;
    /// Creates a user (member of `Everyone` and of `groups`) with a first token.
    async fn create_user(
        &self,
        name: &str,
        groups: &[String],
        expires_in_days: Option<u32>,
    ) -> ApiResult<(String, TokenInfo, String)>;
    async fn list_users(&self) -> ApiResult<Vec<UserInfo>>;
    /// Disables a user: their tokens stop authenticating (kept for the audit trail).
    async fn disable_user(&self, name: &str) -> ApiResult<()>;
    async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        expires_in_days: Option<u32>,
    ) -> ApiResult<(TokenInfo, String)>;
    /// The tokens of one user, or of everyone (`None`, with the owner's name).
    async fn list_tokens(&self, user_id: Option<&str>) -> ApiResult<Vec<TokenInfo>>;
    /// Revokes a token; `by` may revoke only their own unless an admin.
    async fn revoke_token(&self, token_id: &str, by: &Principal) -> ApiResult<()>;
    /// Resolves a bearer token, or `None` when unknown, revoked, expired or its user disabled.
    async fn authenticate(&self, token: &str) -> ApiResult<Option<Principal>>;

    // groups and grants
    async fn create_group(&self, name: &str) -> ApiResult<()>;
    async fn delete_group(&self, name: &str) -> ApiResult<()>;
    async fn list_groups(&self) -> ApiResult<Vec<GroupInfo>>;
    async fn add_member(&self, group: &str, user: &str) -> ApiResult<()>;
    async fn remove_member(&self, group: &str, user: &str) -> ApiResult<()>;
    async fn grant(&self, group: &str, resource_type: &str, resource_id: &str) -> ApiResult<()>;
    async fn revoke_grant(
        &self,
        group: &str,
        resource_type: &str,
        resource_id: &str,
    ) -> ApiResult<()>;
    async fn list_grants(&self) -> ApiResult<Vec<GrantInfo>>;

    // sources and tables
    async fn create_source(&self, spec: &SourceSpec) -> ApiResult<Source>;
    async fn update_source(&self, spec: &SourceSpec) -> ApiResult<Source>;
    async fn get_source(&self, name: &str) -> ApiResult<Option<Source>>;
    async fn list_sources(&self) -> ApiResult<Vec<Source>>;
    /// Deletes a source and its tables; the caller removes its extract.
    async fn delete_source(&self, name: &str) -> ApiResult<SourceRemoval>;
    /// Adds tables to a source, all or none: a name taken by any source is a conflict that
    /// names the owner.
    async fn add_tables(&self, source: &str, tables: &[TableSpec]) -> ApiResult<Vec<TableDef>>;
    async fn update_table(&self, source: &str, table: &TableSpec) -> ApiResult<TableDef>;
    async fn remove_table(&self, source: &str, table: &str) -> ApiResult<()>;
    /// The tables of one source, or of every source.
    async fn list_tables(&self, source: Option<&str>) -> ApiResult<Vec<TableDef>>;

    // sync history
    /// Starts a run of `source` owned by process `owner`; `Conflict` while another run of
    /// it (in any process sharing the state) is in progress.
    async fn start_run(
        &self,
        source: &str,
        trigger: &str,
        full_refresh: bool,
        owner: &str,
    ) -> ApiResult<i64>;
    async fn record_outcome(&self, run: i64, outcome: &TableOutcome) -> ApiResult<()>;
    async fn finish_run(&self, run: i64, status: &str, error: Option<&str>) -> ApiResult<()>;
    /// Marks runs whose process stopped as failed, releasing their sources: all running
    /// runs (`None`; the embedded store at start-up), or those without a heartbeat since
    /// `stale_before` (`YYYY-MM-DD HH:MM:SS`).
    async fn abandon_running(&self, stale_before: Option<&str>) -> ApiResult<u64>;
    /// Process `owner` is alive: keeps its running runs from being abandoned.
    async fn heartbeat(&self, owner: &str) -> ApiResult<()>;
    /// Queues a run of `source` for a worker (claiming the source like `start_run`).
    async fn queue_run(&self, source: &str, trigger: &str, full_refresh: bool) -> ApiResult<i64>;
    /// Takes the oldest due queued run for process `owner`; `None` when there is none.
    async fn take_queued(&self, owner: &str) -> ApiResult<Option<crate::db::history::Taken>>;
    /// Puts runs whose worker stopped beating before `stale_before` back in the queue (due
    /// at `retry_at`), or fails them after `max_attempts`. Returns `(requeued, failed)`.
    async fn requeue_stale(
        &self,
        stale_before: &str,
        retry_at: &str,
        max_attempts: u32,
    ) -> ApiResult<(u64, u64)>;
    /// Runs queued or in progress in any process, oldest first.
    async fn active_runs(&self) -> ApiResult<Vec<RunInfo>>;
    /// Whether run `run` is still running as process `owner`'s (not given to another worker
    /// after `owner` was silent past its lease).
    async fn owns_run(&self, run: i64, owner: &str) -> ApiResult<bool>;
    /// The newest `limit` runs (of one source), newest first, with their table outcomes.
    async fn list_runs(&self, source: Option<&str>, limit: usize) -> ApiResult<Vec<RunInfo>>;
    async fn get_run(&self, id: i64) -> ApiResult<Option<RunInfo>>;
    /// The newest run of every source that has run (one query).
    async fn latest_runs(&self) -> ApiResult<Vec<RunInfo>>;
    /// When each source last started a run, whatever its outcome (epoch seconds).
    async fn last_attempt(&self) -> ApiResult<Vec<(String, i64)>>;

    // versions in the object store
    /// Records that `version` of `source` is in the object store: from now on the one served.
    async fn record_published(&self, source: &str, version: &str) -> ApiResult<()>;
    /// Every recorded version, by source then publication (the last of a source is served).
    async fn published_versions(&self) -> ApiResult<Vec<PublishedVersion>>;
    async fn forget_published(&self, source: &str, version: &str) -> ApiResult<()>;

    // audit log
    async fn audit(
        &self,
        user: Option<&str>,
        action: &str,
        resource: Option<&str>,
        detail: Option<&str>,
    ) -> ApiResult<()>;
    async fn list_audit(&self, filter: &AuditFilter) -> ApiResult<Vec<AuditEntry>>;

    // business metrics
    /// Creates or replaces a metric definition (by `id`).
    async fn upsert_metric(&self, metric: &crate::metrics::Metric) -> ApiResult<()>;
    /// Every metric, by category then name.
    async fn list_metrics(&self) -> ApiResult<Vec<crate::metrics::Metric>>;
    async fn get_metric(&self, id: &str) -> ApiResult<Option<crate::metrics::Metric>>;
    async fn delete_metric(&self, id: &str) -> ApiResult<()>;

    // settings
    async fn get_setting(&self, key: &str) -> ApiResult<Option<Setting>>;
    /// Sets `key` to `value`, or removes it (`None`: back to the default).
    async fn put_setting(&self, key: &str, value: Option<&str>, by: &str) -> ApiResult<()>;

    // connector uploads
    async fn record_connector(&self, info: &ConnectorInfo) -> ApiResult<()>;
    async fn list_connectors(&self) -> ApiResult<Vec<ConnectorInfo>>;
    /// Approves or revokes an uploaded version.
    async fn review_connector(
        &self,
        name: &str,
        version: &str,
        status: &str,
        by: &str,
    ) -> ApiResult<()>;

    // browser sign-in
    async fn set_password(&self, user: &str, hash: &str) -> ApiResult<()>;
    /// `(user id, password hash)` of an enabled user who has a password.
    async fn password_of(&self, user: &str) -> ApiResult<Option<(String, String)>>;
    async fn create_session(
        &self,
        id_hash: &str,
        user_id: &str,
        csrf: &str,
        ttl_secs: u64,
        client: &str,
    ) -> ApiResult<()>;
    /// The user and CSRF token of a live session.
    async fn session(&self, id_hash: &str) -> ApiResult<Option<(Principal, String)>>;
    async fn list_sessions(&self) -> ApiResult<Vec<WebSession>>;
    async fn revoke_session(&self, id: &str) -> ApiResult<usize>;

    // plugin marketplaces (see `crate::marketplace`)
    async fn put_marketplace(&self, m: &Marketplace) -> ApiResult<()>;
    async fn list_marketplaces(&self) -> ApiResult<Vec<Marketplace>>;
    /// Removes a marketplace and its plugins (reviews stay: they are keyed by bundle).
    async fn delete_marketplace(&self, name: &str) -> ApiResult<usize>;
    async fn put_plugin(&self, p: &Plugin) -> ApiResult<()>;
    async fn list_plugins(&self) -> ApiResult<Vec<Plugin>>;
    async fn delete_plugin(&self, marketplace: &str, name: &str) -> ApiResult<()>;
    async fn put_review(&self, r: &PluginReview) -> ApiResult<()>;
    async fn list_reviews(&self) -> ApiResult<Vec<PluginReview>>;
    async fn put_reviewer(&self, r: &ReviewerInfo) -> ApiResult<()>;
    async fn list_reviewers(&self) -> ApiResult<Vec<ReviewerInfo>>;
}

/// Parses `every 30s|15m|1h|1d`.
pub fn parse_schedule(s: &str) -> Result<std::time::Duration, String> {
    let err = || format!("schedule `{s}`: use `every <n>s|m|h|d`, e.g. `every 1h`");
    let spec = s.trim().strip_prefix("every ").ok_or_else(err)?.trim();
    let (num, unit) = spec.split_at(spec.len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(err()),
    };
    if secs < 10 {
        return Err(format!(
            "schedule `{s}`: the shortest interval is 10 seconds"
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// The longest description kept.
const MAX_DESCRIPTION: usize = 4096;

fn check_description(what: &str, d: &Option<String>) -> ApiResult<()> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION || d.chars().any(|c| c.is_control() && c != '\n') => {
            Err(crate::error::ApiError::BadRequest(format!(
                "{what} description must be at most {MAX_DESCRIPTION} bytes without control characters"
            )))
        }
        _ => Ok(()),
    }
}

fn bad_name(e: agnes_runtime::Error) -> crate::error::ApiError {
    crate::error::ApiError::BadRequest(e.to_string())
}

impl SourceSpec {
    /// Checks every field that can be checked without the connector; a clear 400 on the
    /// first problem. (The connector's own checks — signature, request ∩ grant, config
    /// schema — are [`crate::connector`]'s.)
    pub fn validate(&self) -> ApiResult<()> {
        use crate::error::ApiError::BadRequest;
        agnes_runtime::names::validate_name("source", &self.name).map_err(bad_name)?;
        if !self.config.is_object() {
            return Err(BadRequest("config must be a JSON object".into()));
        }
        if self.connector.is_empty() {
            return Err(BadRequest(
                "connector: name an upload as `<name>@<version>` (see `agnes admin connector list`)".into(),
            ));
        }
        let path = std::path::Path::new(&self.connector);
        if self.connector == crate::connector::SQL_ENGINE {
            let nothing = self.config.as_object().is_some_and(|c| c.is_empty())
                && self.grant == agnes_runtime::Grant::default()
                && self.manifest.is_none()
                && self.signature.is_none();
            if !nothing {
                return Err(BadRequest(format!(
                    "an `{}` source runs SQL over Agnes tables in the server's SQL sandbox: \
                     it takes no config, grant, manifest or signature",
                    self.connector
                )));
            }
        } else if path.is_absolute() {
            if !path.is_file() {
                return Err(BadRequest(format!(
                    "connector {}: no such component file on the server",
                    self.connector
                )));
            }
        } else if !self.connector.contains('@') {
            return Err(BadRequest(format!(
                "connector `{}`: use `<name>@<version>` of an upload, or an absolute component path",
                self.connector
            )));
        } else if self.manifest.is_some() || self.signature.is_some() {
            return Err(BadRequest(
                "manifest and signature come with an uploaded connector; set them only with a component path".into(),
            ));
        }
        for d in &self.grant.dirs {
            if !d.host.is_absolute() {
                return Err(BadRequest(format!(
                    "grant.dirs host {} must be absolute",
                    d.host.display()
                )));
            }
        }
        self.grant
            .clone()
            .resolve(std::path::Path::new("/"))
            .map_err(|e| BadRequest(e.to_string()))?;
        if let Some(s) = &self.schedule {
            parse_schedule(s).map_err(BadRequest)?;
        }
        check_description("source", &self.description)
    }
}

/// The query modes a table may have today.
pub const QUERY_MODES: [&str; 3] = ["local", "remote", "materialized"];

impl TableSpec {
    pub fn validate(&self) -> ApiResult<()> {
        use crate::error::ApiError::BadRequest;
        agnes_runtime::names::validate_name("table", &self.name).map_err(bad_name)?;
        if !QUERY_MODES.contains(&self.query_mode.as_str()) {
            return Err(BadRequest(format!(
                "table `{}`: query_mode `{}` is not supported; use one of {QUERY_MODES:?}",
                self.name, self.query_mode
            )));
        }
        if self.query_mode == "materialized"
            && self.options["sql"]
                .as_str()
                .is_none_or(|s| s.trim().is_empty())
        {
            return Err(BadRequest(format!(
                "table `{}`: a materialized table needs its SQL, in the source's dialect: \
                 options = {{\"sql\": \"SELECT ...\"}}",
                self.name
            )));
        }
        if !self.options.is_object() {
            return Err(BadRequest(format!(
                "table `{}`: options must be a JSON object",
                self.name
            )));
        }
        check_description("table", &self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("every 15m").unwrap(),
            std::time::Duration::from_secs(900)
        );
        assert_eq!(
            parse_schedule("every 1d").unwrap(),
            std::time::Duration::from_secs(86_400)
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
}
