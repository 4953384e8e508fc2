//! The state store behind [`crate::store::Store`]: the embedded `state/system.duckdb` (one
//! connection behind a mutex, the one writer) or, for several `agnes serve` processes, a
//! PostgreSQL database ([`pg`]). Both run the same use-case code, written once against
//! [`sql::Sql`] in the SQL both engines speak, on blocking threads (never on the async
//! executor), and the same [`migrations`] ladder. The rest of the server reaches the state
//! only through `Store`; the modules here hold the SQL.

pub mod access;
pub mod audit;
pub mod connectors;
pub mod copy;
pub mod history;
pub mod marketplace;
pub mod metrics;
pub mod migrations;
pub mod pg;
pub mod sources;
pub mod sql;
pub mod web;

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{ApiError, ApiResult};
use crate::store::*;
use marketplace::Docs;
use sql::Sql;

/// The system database.
#[derive(Clone)]
pub struct Db {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Embedded(Arc<Mutex<duckdb::Connection>>),
    Postgres(pg::Pg),
}

impl Db {
    /// Opens (creating if needed) the embedded database and migrates its schema to the
    /// newest version; refuses a database newer than this binary.
    pub fn open(path: &Path) -> Result<Db, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let conn = duckdb::Connection::open(path).map_err(|e| {
            let e = e.to_string();
            if e.contains("Could not set lock") {
                // DuckDB's own file lock: the embedded state is one process's
                format!(
                    "{} is in use by another process ({}): the embedded state store serves one \
                     `agnes serve` at a time; stop the other one, or give each its own data directory",
                    path.display(),
                    e.split("Conflicting lock is held in ")
                        .nth(1)
                        .and_then(|r| r.split(". See").next())
                        .unwrap_or("lock held")
                )
            } else {
                format!("opening {}: {e}", path.display())
            }
        })?;
        migrations::migrate(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Db {
            backend: Backend::Embedded(Arc::new(Mutex::new(conn))),
        })
    }

    /// Connects to a PostgreSQL state database and migrates its schema (once, whichever
    /// replica gets there first).
    pub async fn connect(target: &pg::PgTarget) -> Result<Db, String> {
        Ok(Db {
            backend: Backend::Postgres(pg::Pg::connect(target).await?),
        })
    }

    /// The PostgreSQL pool, when this is the PostgreSQL backend.
    pub fn postgres(&self) -> Option<&pg::Pg> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Embedded(_) => None,
        }
    }

    /// Runs `f` with a connection on a blocking thread.
    async fn call<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql) -> ApiResult<T> + Send + 'static,
    {
        match &self.backend {
            Backend::Embedded(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    f(&*conn)
                })
                .await
                .map_err(ApiError::internal)?
            }
            Backend::Postgres(pg) => pg.run(f).await,
        }
    }

    /// Runs `f` in one transaction on a blocking thread: all of it or none.
    async fn transaction<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql) -> ApiResult<T> + Send + 'static,
    {
        self.call(move |c| c.transaction(f)).await
    }

    /// Runs `f` with the embedded connection on the current thread (unit tests of the SQL
    /// modules).
    #[cfg(test)]
    pub(crate) fn blocking<T>(&self, f: impl FnOnce(&dyn Sql) -> ApiResult<T>) -> ApiResult<T> {
        match &self.backend {
            Backend::Embedded(conn) => f(&*conn.lock().unwrap_or_else(|p| p.into_inner())),
            Backend::Postgres(_) => unreachable!("unit tests use the embedded store"),
        }
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> ApiResult<u32> {
        self.call(|c| c.value("SELECT max(version) FROM schema_version", sql::p![]))
            .await
    }
}

/// Microseconds-precision "now" (UTC) as TIMESTAMP text: every timestamp the store writes
/// or compares against comes from here, never from the database's clock.
pub(crate) fn now() -> String {
    stamp(chrono::Duration::zero())
}

/// "now" plus `offset` (negative: in the past), as TIMESTAMP text.
pub(crate) fn stamp(offset: chrono::Duration) -> String {
    (chrono::Utc::now() + offset)
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// Owned copies of the arguments a blocking closure needs.
macro_rules! owned {
    ($($v:ident),*) => { $(let $v = $v.to_owned();)* };
}

#[async_trait::async_trait]
impl Store for Db {
    async fn count_users(&self) -> ApiResult<i64> {
        self.call(access::count_users).await
    }

    async fn bootstrap(&self, name: &str) -> ApiResult<Option<String>> {
        owned!(name);
        self.transaction(move |c| {
            if access::count_users(c)? > 0 {
                return Ok(None);
            }
            let id = access::create_user(c, &name)?;
            access::add_member(c, "Admin", &name)?;
            let (_, token) = access::create_token(c, &id, "bootstrap", None)?;
            audit::record(c, Some(&name), "admin.bootstrap", Some(&name), None)?;
            Ok(Some(token))
        })
        .await
    }

    async fn create_user(
        &self,
        name: &str,
        groups: &[String],
        expires_in_days: Option<u32>,
    ) -> ApiResult<(String, TokenInfo, String)> {
        owned!(name, groups);
        self.transaction(move |c| {
            let id = access::create_user(c, &name)?;
            for g in &groups {
                access::add_member(c, g, &name)?;
            }
            let (info, token) = access::create_token(c, &id, "default", expires_in_days)?;
            Ok((id, info, token))
        })
        .await
    }

    async fn list_users(&self) -> ApiResult<Vec<UserInfo>> {
        self.call(access::list_users).await
    }

    async fn disable_user(&self, name: &str) -> ApiResult<()> {
        owned!(name);
        self.call(move |c| access::disable_user(c, &name)).await
    }

    async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        expires_in_days: Option<u32>,
    ) -> ApiResult<(TokenInfo, String)> {
        owned!(user_id, name);
        self.call(move |c| access::create_token(c, &user_id, &name, expires_in_days))
            .await
    }

    async fn list_tokens(&self, user_id: Option<&str>) -> ApiResult<Vec<TokenInfo>> {
        let user_id = user_id.map(str::to_owned);
        self.call(move |c| access::list_tokens(c, user_id.as_deref()))
            .await
    }

    async fn revoke_token(&self, token_id: &str, by: &Principal) -> ApiResult<()> {
        let (token_id, by) = (token_id.to_owned(), by.clone());
        self.call(move |c| access::revoke_token(c, &token_id, &by))
            .await
    }

    async fn authenticate(&self, token: &str) -> ApiResult<Option<Principal>> {
        owned!(token);
        self.call(move |c| access::authenticate(c, &token)).await
    }

    async fn create_group(&self, name: &str) -> ApiResult<()> {
        owned!(name);
        self.call(move |c| access::create_group(c, &name)).await
    }

    async fn delete_group(&self, name: &str) -> ApiResult<()> {
        owned!(name);
        self.transaction(move |c| access::delete_group(c, &name))
            .await
    }

    async fn list_groups(&self) -> ApiResult<Vec<GroupInfo>> {
        self.call(access::list_groups).await
    }

    async fn add_member(&self, group: &str, user: &str) -> ApiResult<()> {
        owned!(group, user);
        self.call(move |c| access::add_member(c, &group, &user))
            .await
    }

    async fn remove_member(&self, group: &str, user: &str) -> ApiResult<()> {
        owned!(group, user);
        self.call(move |c| access::remove_member(c, &group, &user))
            .await
    }

    async fn grant(&self, group: &str, resource_type: &str, resource_id: &str) -> ApiResult<()> {
        owned!(group, resource_type, resource_id);
        self.call(move |c| access::grant(c, &group, &resource_type, &resource_id))
            .await
    }

    async fn revoke_grant(
        &self,
        group: &str,
        resource_type: &str,
        resource_id: &str,
    ) -> ApiResult<()> {
        owned!(group, resource_type, resource_id);
        self.call(move |c| access::revoke_grant(c, &group, &resource_type, &resource_id))
            .await
    }

    async fn list_grants(&self) -> ApiResult<Vec<GrantInfo>> {
        self.call(access::list_grants).await
    }

    async fn create_source(&self, spec: &SourceSpec) -> ApiResult<Source> {
        owned!(spec);
        self.call(move |c| sources::insert(c, &spec)).await
    }

    async fn update_source(&self, spec: &SourceSpec) -> ApiResult<Source> {
        owned!(spec);
        self.call(move |c| sources::update(c, &spec)).await
    }

    async fn get_source(&self, name: &str) -> ApiResult<Option<Source>> {
        owned!(name);
        self.call(move |c| sources::get(c, &name)).await
    }

    async fn list_sources(&self) -> ApiResult<Vec<Source>> {
        self.call(sources::list).await
    }

    async fn delete_source(&self, name: &str) -> ApiResult<SourceRemoval> {
        owned!(name);
        self.transaction(move |c| sources::delete(c, &name)).await
    }

    async fn add_tables(&self, source: &str, tables: &[TableSpec]) -> ApiResult<Vec<TableDef>> {
        owned!(source, tables);
        self.transaction(move |c| sources::add_tables(c, &source, &tables))
            .await
    }

    async fn update_table(&self, source: &str, table: &TableSpec) -> ApiResult<TableDef> {
        owned!(source, table);
        self.call(move |c| sources::update_table(c, &source, &table))
            .await
    }

    async fn remove_table(&self, source: &str, table: &str) -> ApiResult<()> {
        owned!(source, table);
        self.call(move |c| sources::remove_table(c, &source, &table))
            .await
    }

    async fn list_tables(&self, source: Option<&str>) -> ApiResult<Vec<TableDef>> {
        let source = source.map(str::to_owned);
        self.call(move |c| sources::list_tables(c, source.as_deref()))
            .await
    }

    async fn start_run(
        &self,
        source: &str,
        trigger: &str,
        full_refresh: bool,
        owner: &str,
    ) -> ApiResult<i64> {
        owned!(source, trigger, owner);
        self.transaction(move |c| history::start(c, &source, &trigger, full_refresh, Some(&owner)))
            .await
    }

    async fn record_outcome(&self, run: i64, outcome: &TableOutcome) -> ApiResult<()> {
        owned!(outcome);
        self.call(move |c| history::record(c, run, &outcome)).await
    }

    async fn finish_run(&self, run: i64, status: &str, error: Option<&str>) -> ApiResult<()> {
        let (status, error) = (status.to_owned(), error.map(str::to_owned));
        self.transaction(move |c| history::finish(c, run, &status, error.as_deref()))
            .await
    }

    async fn abandon_running(&self, stale_before: Option<&str>) -> ApiResult<u64> {
        let stale_before = stale_before.map(str::to_owned);
        self.transaction(move |c| history::abandon_running(c, stale_before.as_deref()))
            .await
    }

    async fn queue_run(&self, source: &str, trigger: &str, full_refresh: bool) -> ApiResult<i64> {
        owned!(source, trigger);
        self.transaction(move |c| history::start(c, &source, &trigger, full_refresh, None))
            .await
    }

    async fn take_queued(&self, owner: &str) -> ApiResult<Option<history::Taken>> {
        owned!(owner);
        self.transaction(move |c| history::take_queued(c, &owner))
            .await
    }

    async fn requeue_stale(
        &self,
        stale_before: &str,
        retry_at: &str,
        max_attempts: u32,
    ) -> ApiResult<(u64, u64)> {
        owned!(stale_before, retry_at);
        self.transaction(move |c| history::requeue_stale(c, &stale_before, &retry_at, max_attempts))
            .await
    }

    async fn active_runs(&self) -> ApiResult<Vec<RunInfo>> {
        self.call(history::active).await
    }

    async fn owns_run(&self, run: i64, owner: &str) -> ApiResult<bool> {
        owned!(owner);
        self.call(move |c| {
            let n: i64 = c.value(
                "SELECT count(*) FROM source_runs WHERE id = ? AND owner = ? AND status = 'running'",
                sql::p![run, &owner],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn heartbeat(&self, owner: &str) -> ApiResult<()> {
        owned!(owner);
        self.call(move |c| history::heartbeat(c, &owner)).await
    }

    async fn list_runs(&self, source: Option<&str>, limit: usize) -> ApiResult<Vec<RunInfo>> {
        let source = source.map(str::to_owned);
        self.call(move |c| history::list(c, source.as_deref(), None, limit))
            .await
    }

    async fn latest_runs(&self) -> ApiResult<Vec<RunInfo>> {
        self.call(history::latest_per_source).await
    }

    async fn get_run(&self, id: i64) -> ApiResult<Option<RunInfo>> {
        self.call(move |c| Ok(history::list(c, None, Some(id), 1)?.into_iter().next()))
            .await
    }

    async fn last_attempt(&self) -> ApiResult<Vec<(String, i64)>> {
        self.call(history::last_attempt).await
    }

    async fn record_published(&self, source: &str, version: &str) -> ApiResult<()> {
        owned!(source, version);
        self.call(move |c| history::record_published(c, &source, &version))
            .await
    }

    async fn published_versions(&self) -> ApiResult<Vec<PublishedVersion>> {
        self.call(history::published_versions).await
    }

    async fn forget_published(&self, source: &str, version: &str) -> ApiResult<()> {
        owned!(source, version);
        self.call(move |c| history::forget_published(c, &source, &version))
            .await
    }

    async fn audit(
        &self,
        user: Option<&str>,
        action: &str,
        resource: Option<&str>,
        detail: Option<&str>,
    ) -> ApiResult<()> {
        let (user, action) = (user.map(str::to_owned), action.to_owned());
        let (resource, detail) = (resource.map(str::to_owned), detail.map(str::to_owned));
        self.call(move |c| {
            audit::record(
                c,
                user.as_deref(),
                &action,
                resource.as_deref(),
                detail.as_deref(),
            )
        })
        .await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> ApiResult<Vec<AuditEntry>> {
        owned!(filter);
        self.call(move |c| audit::list(c, &filter)).await
    }

    async fn upsert_metric(&self, metric: &crate::metrics::Metric) -> ApiResult<()> {
        owned!(metric);
        self.call(move |c| metrics::upsert(c, &metric)).await
    }

    async fn list_metrics(&self) -> ApiResult<Vec<crate::metrics::Metric>> {
        self.call(metrics::list).await
    }

    async fn get_metric(&self, id: &str) -> ApiResult<Option<crate::metrics::Metric>> {
        owned!(id);
        self.call(move |c| metrics::get(c, &id)).await
    }

    async fn delete_metric(&self, id: &str) -> ApiResult<()> {
        owned!(id);
        self.call(move |c| metrics::delete(c, &id)).await
    }

    async fn get_setting(&self, key: &str) -> ApiResult<Option<Setting>> {
        owned!(key);
        self.call(move |c| {
            c.row(
                "SELECT value, CAST(updated_at AS VARCHAR), updated_by FROM settings WHERE key = ?",
                sql::p![&key],
            )?
            .map(|r| {
                Ok(Setting {
                    value: r.get(0)?,
                    updated_at: r.get(1)?,
                    updated_by: r.get(2)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: Option<&str>, by: &str) -> ApiResult<()> {
        let (key, value, by) = (key.to_owned(), value.map(str::to_owned), by.to_owned());
        self.transaction(move |c| {
            c.execute("DELETE FROM settings WHERE key = ?", sql::p![&key])?;
            if let Some(value) = value {
                c.execute(
                    "INSERT INTO settings VALUES (?, ?, CAST(? AS TIMESTAMP), ?)",
                    sql::p![&key, value, now(), &by],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn put_marketplace(&self, m: &Marketplace) -> ApiResult<()> {
        owned!(m);
        self.call(move |c| marketplace::put(c, Docs::Marketplaces, &[&m.spec.name], &m))
            .await
    }

    async fn list_marketplaces(&self) -> ApiResult<Vec<Marketplace>> {
        self.call(|c| marketplace::list(c, Docs::Marketplaces))
            .await
    }

    async fn delete_marketplace(&self, name: &str) -> ApiResult<usize> {
        owned!(name);
        self.transaction(move |c| {
            marketplace::delete(c, Docs::Plugins, &name, None)?;
            marketplace::delete(c, Docs::Marketplaces, &name, None)
        })
        .await
    }

    async fn put_plugin(&self, p: &Plugin) -> ApiResult<()> {
        owned!(p);
        self.call(move |c| marketplace::put(c, Docs::Plugins, &[&p.marketplace, &p.name], &p))
            .await
    }

    async fn list_plugins(&self) -> ApiResult<Vec<Plugin>> {
        self.call(|c| marketplace::list(c, Docs::Plugins)).await
    }

    async fn delete_plugin(&self, mp: &str, name: &str) -> ApiResult<()> {
        owned!(mp, name);
        self.call(move |c| marketplace::delete(c, Docs::Plugins, &mp, Some(&name)).map(drop))
            .await
    }

    async fn put_review(&self, r: &PluginReview) -> ApiResult<()> {
        owned!(r);
        self.call(move |c| marketplace::put(c, Docs::Reviews, &[&r.bundle, &r.reviewer_digest], &r))
            .await
    }

    async fn list_reviews(&self) -> ApiResult<Vec<PluginReview>> {
        self.call(|c| marketplace::list(c, Docs::Reviews)).await
    }

    async fn put_reviewer(&self, r: &ReviewerInfo) -> ApiResult<()> {
        owned!(r);
        self.call(move |c| marketplace::put(c, Docs::Reviewers, &[&r.name, &r.version], &r))
            .await
    }

    async fn list_reviewers(&self) -> ApiResult<Vec<ReviewerInfo>> {
        self.call(|c| marketplace::list(c, Docs::Reviewers)).await
    }

    async fn record_connector(&self, info: &ConnectorInfo) -> ApiResult<()> {
        owned!(info);
        self.call(move |c| connectors::insert(c, &info)).await
    }

    async fn list_connectors(&self) -> ApiResult<Vec<ConnectorInfo>> {
        self.call(connectors::list).await
    }

    async fn review_connector(
        &self,
        name: &str,
        version: &str,
        status: &str,
        by: &str,
    ) -> ApiResult<()> {
        let (name, version, status, by) = (
            name.to_string(),
            version.to_string(),
            status.to_string(),
            by.to_string(),
        );
        self.call(move |c| connectors::review(c, &name, &version, &status, &by))
            .await
    }

    async fn set_password(&self, user: &str, hash: &str) -> ApiResult<()> {
        let (user, hash) = (user.to_string(), hash.to_string());
        self.call(move |c| web::set_password(c, &user, &hash)).await
    }

    async fn password_of(&self, user: &str) -> ApiResult<Option<(String, String)>> {
        let user = user.to_string();
        self.call(move |c| web::password_of(c, &user)).await
    }

    async fn create_session(
        &self,
        id_hash: &str,
        user_id: &str,
        csrf: &str,
        ttl_secs: u64,
        client: &str,
    ) -> ApiResult<()> {
        let (id_hash, user_id, csrf, client) = (
            id_hash.to_string(),
            user_id.to_string(),
            csrf.to_string(),
            client.to_string(),
        );
        self.call(move |c| web::create_session(c, &id_hash, &user_id, &csrf, ttl_secs, &client))
            .await
    }

    async fn session(&self, id_hash: &str) -> ApiResult<Option<(Principal, String)>> {
        let id_hash = id_hash.to_string();
        self.call(move |c| web::session(c, &id_hash)).await
    }

    async fn list_sessions(&self) -> ApiResult<Vec<WebSession>> {
        self.call(web::list_sessions).await
    }

    async fn revoke_session(&self, id: &str) -> ApiResult<usize> {
        let id = id.to_string();
        self.call(move |c| web::revoke_session(c, &id)).await
    }
}
