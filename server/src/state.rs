//! `AppState`: what every handler shares.

use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::Catalog;
use crate::config::ServerConfig;
use crate::db::Db;
use crate::sync::Running;

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub db: Db,
    pub runtime: agnes_runtime::Runtime,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    pub(crate) running: Arc<Mutex<Option<Running>>>,
    pub auth_cache: Arc<crate::auth::AuthCache>,
}

impl AppState {
    /// Opens the system database, creates the data directories and builds the catalog
    /// from what is already published.
    pub fn open(config: ServerConfig) -> Result<AppState, String> {
        std::fs::create_dir_all(config.extracts_dir())
            .map_err(|e| format!("creating {}: {e}", config.extracts_dir().display()))?;
        let db = Db::open(&config.system_db())?;
        db.blocking(crate::db::history::abandon_running)
            .map_err(|e| e.to_string())?;
        let runtime = agnes_runtime::Runtime::new(Some(&config.cache_dir()))
            .map_err(|e| e.to_string())?
            .with_resolve(config.resolve.clone());
        let state = AppState {
            config: Arc::new(config),
            db,
            runtime,
            catalog: Arc::new(RwLock::new(Arc::new(Catalog::default()))),
            running: Arc::new(Mutex::new(None)),
            auth_cache: Arc::default(),
        };
        state.rebuild_catalog()?;
        Ok(state)
    }

    /// The current catalog (a consistent snapshot).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads every extract, rewrites `analytics/server.duckdb`, swaps the catalog.
    /// Blocking: call from a blocking thread.
    pub fn rebuild_catalog(&self) -> Result<(), String> {
        let previous = self.catalog();
        let next = crate::catalog::build(&self.config.extracts_dir(), &previous);
        crate::catalog::write_analytics_db(&self.config.analytics_db(), &next)?;
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(())
    }
}
