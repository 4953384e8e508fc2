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
}

impl AppState {
    /// Opens the embedded state store (migrating it; runs a previous process left
    /// `running` are marked failed), creates the data directories and builds the catalog
    /// from what is already published.
    pub async fn open(config: ServerConfig) -> Result<AppState, String> {
        std::fs::create_dir_all(config.extracts_dir())
            .map_err(|e| format!("creating {}: {e}", config.extracts_dir().display()))?;
        let path = config.system_db();
        let db = tokio::task::spawn_blocking(move || crate::db::Db::open(&path))
            .await
            .map_err(|e| e.to_string())??;
        let store: Arc<dyn Store> = Arc::new(db);
        let abandoned = store.abandon_running().await.map_err(|e| e.detail())?;
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
        };
        state.rebuild_catalog().await?;
        Ok(state)
    }

    /// The current catalog (a consistent snapshot).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads every extract, serves the registered tables, rewrites
    /// `analytics/server.duckdb`, swaps the catalog.
    pub async fn rebuild_catalog(&self) -> Result<(), String> {
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
