//! `AppState`: what every handler shares.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::Catalog;
use crate::config::ServerConfig;
use crate::store::Store;
use crate::sync::Running;

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    /// All server state (users, grants, sources, history, audit).
    pub store: Arc<dyn Store>,
    pub runtime: agnes_runtime::Runtime,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    /// Sources with a sync queued or in progress, by name.
    pub(crate) running: Arc<Mutex<BTreeMap<String, Running>>>,
    pub auth_cache: Arc<crate::auth::AuthCache>,
    /// One catalog rebuild at a time: two interleaved would race on the analytics file.
    rebuild: Arc<Mutex<()>>,
    /// Plugin marketplace syncs and git serving.
    pub(crate) marketplace: Arc<crate::marketplace::serve::MarketplaceState>,
    /// The PostgreSQL state other `agnes serve` processes share, when configured: changes
    /// to access and to the catalog are announced there (LISTEN/NOTIFY).
    shared: Option<crate::db::pg::Pg>,
    /// This process, among those sharing the state (random, per start).
    pub(crate) instance: Arc<str>,
    /// The bucket published extracts are shared through (`[storage] backend = "s3"`).
    pub(crate) bucket: Option<crate::storage::Bucket>,
    /// Wakes this process's worker loop: a run was queued.
    pub(crate) jobs: Arc<tokio::sync::Notify>,
}

/// The channel on which processes sharing a PostgreSQL state announce changes; the payload
/// is `<what>:<instance>` (`auth`, `catalog`).
const CHANGES: &str = "agnes_changes";

impl AppState {
    /// Opens the state store (the embedded file, or PostgreSQL; migrating it; runs a
    /// previous process left `running` are marked failed), creates the data directories and
    /// builds the catalog from what is already published.
    pub async fn open(config: ServerConfig) -> Result<AppState, String> {
        std::fs::create_dir_all(config.extracts_dir())
            .map_err(|e| format!("creating {}: {e}", config.extracts_dir().display()))?;
        let db = match config.state.postgres()? {
            Some(target) => crate::db::Db::connect(&target).await?,
            None => {
                let path = config.system_db();
                tokio::task::spawn_blocking(move || crate::db::Db::open(&path))
                    .await
                    .map_err(|e| e.to_string())??
            }
        };
        let shared = db.postgres().cloned();
        let bucket = crate::storage::Bucket::from_config(&config.storage)?;
        let store: Arc<dyn Store> = Arc::new(db);
        // the embedded store is this process's alone: whatever is running was left by a
        // previous one; a shared store's runs belong to whichever worker still beats (the
        // others go back to the queue, see `sync::keep_alive`)
        let abandoned = if shared.is_none() {
            store.abandon_running(None).await.map_err(|e| e.detail())?
        } else {
            0
        };
        // what a killed process left half-written: staging directories, unpublished versions
        let extracts = config.extracts_dir();
        let cleaned =
            tokio::task::spawn_blocking(move || agnes_runtime::extract::clean_stale(&extracts))
                .await
                .map_err(|e| e.to_string())?;
        if abandoned > 0 {
            tracing::warn!(runs = abandoned, sources = ?cleaned, "runs left in progress by a previous process were marked failed");
        }
        let runtime = agnes_runtime::Runtime::new(Some(&config.cache_dir()))
            .map_err(|e| e.to_string())?
            .with_resolve(config.resolve.clone());
        let state = AppState {
            config: Arc::new(config),
            store,
            runtime,
            catalog: Arc::new(RwLock::new(Arc::new(Catalog::default()))),
            running: Arc::default(),
            auth_cache: Arc::default(),
            rebuild: Arc::default(),
            marketplace: Arc::default(),
            shared,
            instance: crate::db::access::random_hex(8)
                .map_err(|e| e.detail())?
                .into(),
            bucket,
            jobs: Arc::default(),
        };
        state.rebuild_local_catalog().await?;
        Ok(state)
    }

    /// Installs the newest published version of every source from the bucket where this
    /// process serves another one. A failure is logged: the version here keeps serving.
    pub(crate) async fn install_published(
        &self,
        bucket: &crate::storage::Bucket,
        only: Option<&str>,
    ) {
        let versions = match self.store.published_versions().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e.detail(), "listing published versions failed");
                return;
            }
        };
        // the last of each source is the one served
        let mut newest: BTreeMap<String, String> = BTreeMap::new();
        for v in versions {
            if only.is_none_or(|s| s == v.source) {
                newest.insert(v.source, v.version);
            }
        }
        let extracts = self.config.extracts_dir();
        for (source, version) in newest {
            if let Err(e) = bucket.install(&extracts, &source, &version).await {
                tracing::warn!(%source, version, error = %e, "installing a published version failed; the previous one keeps serving");
            }
        }
    }

    /// The bucket published extracts are shared through, when configured.
    pub fn bucket(&self) -> Option<&crate::storage::Bucket> {
        self.bucket.as_ref()
    }

    /// The PostgreSQL state shared with other processes, when configured.
    pub fn shared(&self) -> Option<&crate::db::pg::Pg> {
        self.shared.as_ref()
    }

    /// Tokens, users, memberships or grants changed: forgets the resolved tokens here and
    /// in every process sharing the state, so the change applies to the next request.
    pub async fn access_changed(&self) {
        self.auth_cache.clear();
        self.announce("auth").await;
    }

    /// A run was queued: wakes the workers, here and in every process.
    pub(crate) async fn announce_jobs(&self) {
        self.jobs.notify_one();
        self.announce("jobs").await;
    }

    /// Tells the other processes sharing the state that `what` changed. Best effort: a
    /// failure is logged, and the others' caches expire on their own ([`crate::auth::AUTH_TTL`]).
    async fn announce(&self, what: &str) {
        let Some(pg) = &self.shared else { return };
        let payload = format!("{what}:{}", self.instance);
        let sent = pg
            .run(move |c| {
                c.execute(
                    "SELECT pg_notify(?, ?)",
                    crate::db::sql::p![CHANGES, payload],
                )
            })
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e.detail(), what, "announcing a change to the other processes failed");
        }
    }

    /// Applies what the other processes sharing the state announce, until the process
    /// ends. A lost connection is re-established; what may have been missed meanwhile is
    /// applied as if announced (caches cleared, catalog rebuilt).
    pub async fn follow_changes(self) {
        let Some(pg) = self.shared.clone() else {
            return;
        };
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(pg.pool()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for changes: retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANGES).await {
                tracing::warn!(error = %e, "listening for changes: retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            // whatever happened before we listened
            self.apply_change("auth").await;
            self.apply_change("catalog").await;
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let (what, from) = n.payload().split_once(':').unwrap_or((n.payload(), ""));
                        if from != &*self.instance {
                            self.apply_change(what).await;
                        }
                    }
                    // reconnected: notifications may have been missed
                    Ok(None) => {
                        self.apply_change("auth").await;
                        self.apply_change("catalog").await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for changes failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }

    async fn apply_change(&self, what: &str) {
        match what {
            "auth" => self.auth_cache.clear(),
            "jobs" => self.jobs.notify_one(),
            "catalog" => {
                if let Err(e) = self.rebuild_local_catalog().await {
                    tracing::warn!(error = %e, "rebuilding the catalog after a change elsewhere failed");
                }
            }
            other => tracing::debug!(change = other, "unknown change announced"),
        }
    }

    /// The current catalog (a consistent snapshot).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sources, tables or published extracts changed: rebuilds this process's catalog and
    /// has every process sharing the state rebuild theirs.
    pub async fn rebuild_catalog(&self) -> Result<(), String> {
        self.rebuild_local_catalog().await?;
        self.announce("catalog").await;
        Ok(())
    }

    /// Re-reads every extract, serves the registered tables, rewrites
    /// `analytics/server.duckdb`, swaps the catalog (this process only). With a bucket,
    /// first installs the versions other processes published.
    async fn rebuild_local_catalog(&self) -> Result<(), String> {
        if let Some(bucket) = &self.bucket {
            self.install_published(bucket, None).await;
        }
        let registered: crate::catalog::Registered = self
            .store
            .list_tables(None)
            .await
            .map_err(|e| format!("listing tables: {}", e.detail()))?
            .into_iter()
            .map(|t| {
                let reg = crate::catalog::RegisteredTable {
                    description: t.spec.description,
                    query_mode: t.spec.query_mode,
                    created_at: t.created_at,
                };
                ((t.source, t.spec.name), reg)
            })
            .collect();
        let source_types = self
            .store
            .list_sources()
            .await
            .map_err(|e| format!("listing sources: {}", e.detail()))?
            .into_iter()
            .map(|s| {
                (
                    s.spec.name,
                    crate::routes::catalog::source_type(&s.spec.connector),
                )
            })
            .collect();
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let _one = state.rebuild.lock().unwrap_or_else(|p| p.into_inner());
            let previous = state.catalog();
            let mut next =
                crate::catalog::build(&state.config.extracts_dir(), &previous, &registered);
            next.source_types = source_types;
            crate::catalog::write_analytics_db(&state.config.analytics_db(), &next)?;
            *state.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
