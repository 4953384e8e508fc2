//! # agnes-server
//!
//! The Agnes server: it merges every published extract into one catalog and serves it over
//! REST to analysts, through personal access tokens and group-based grants.
//!
//! - [`ServerConfig`]: data dir, listen address, query limits (defaults → TOML → `AGNES_*`).
//! - [`AppState::open`] opens the state [`store`] (embedded: `state/system.duckdb`, [`db`],
//!   migrated at start-up) and builds the [`catalog`] of the registered tables.
//! - [`store::Store`] is the one interface to server state: sources and their tables,
//!   users, tokens, groups, grants, sync history, audit log, connector uploads.
//! - [`app`] is the axum router: [`routes`] has one module per resource; the one access
//!   check is `Principal::can_read`.
//! - [`sync`] runs registered connectors through `agnes-runtime`; [`query`] is the DuckDB
//!   sandbox for analyst SQL.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! let config = agnes_server::ServerConfig::load(None, |k| std::env::var(k).ok())?;
//! agnes_server::serve(config).await
//! # }
//! ```

pub mod app;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod connector;
pub mod db;
pub mod derived;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod marketplace;
pub mod metrics;
pub mod openapi;
pub mod password;
pub mod query;
pub mod remote;
pub mod routes;
pub mod state;
pub mod storage;
pub mod store;
pub mod sync;
pub mod tls;
pub mod web;

pub use app::app;
pub use config::ServerConfig;
pub use state::AppState;

/// Creates the first admin (user `name`, member of `Admin`) and returns its token, if the
/// server has no user yet. Returns `None` when users exist (bootstrap happens once).
pub async fn bootstrap(state: &AppState, name: &str) -> Result<Option<String>, String> {
    match state.store.bootstrap(name).await {
        Ok(token) => Ok(token),
        // servers starting together on an empty shared state: another one made the admin
        Err(error::ApiError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.detail()),
    }
}

/// Gives user `name` a generated password for the web UI; returns it (shown once).
pub async fn bootstrap_password(state: &AppState, name: &str) -> Result<String, String> {
    let password = password::generate().map_err(|e| e.detail())?;
    let hash = password::hash(&password).map_err(|e| e.detail())?;
    state
        .store
        .set_password(name, &hash)
        .await
        .map_err(|e| e.detail())?;
    Ok(password)
}

/// Starts what runs beside the router, for this process's role: following the other
/// processes' changes and beating (shared state), the scheduler (not on a worker), the worker loop
/// (on PostgreSQL state, not on an `api` process; on one machine a trigger runs its syncs
/// itself).
pub fn run_background(state: &AppState, tick: std::time::Duration) {
    let role = state.config.role.as_str();
    if state.shared().is_some() {
        tokio::spawn(state.clone().follow_changes());
        tokio::spawn(sync::keep_alive(state.clone()));
    }
    if role != "worker" {
        tokio::spawn(sync::scheduler(state.clone(), tick));
    }
    if role != "api" && state.shared().is_some() {
        tokio::spawn(sync::work(state.clone()));
    }
}

/// Serves until Ctrl-C: binds, starts the scheduler, runs the router.
pub async fn serve(config: ServerConfig) -> Result<(), String> {
    let listen = config.listen;
    if config.trusted_keys.is_none() {
        if config.allow_unsigned_connectors {
            tracing::warn!(
                "allow_unsigned_connectors is set: connectors run without signature checks (development only)"
            );
        } else {
            tracing::warn!(
                "no trusted_keys: every connector registration and sync will be refused until they are set"
            );
        }
    }
    let tick = std::time::Duration::from_secs(config.scheduler_tick_secs);
    let tls = match &config.tls {
        Some(t) => Some(tls::acceptor(&t.cert, &t.key)?),
        None => None,
    };
    let state = AppState::open(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    let role = state.config.role.clone();
    tracing::info!(%listen, tls = tls.is_some(), role, "agnes server listening");
    run_background(&state, tick);
    if let Some(acceptor) = tls {
        tls::serve(listener, acceptor, app(state), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        return Ok(());
    }
    use axum::serve::ListenerExt;
    // small answers go out at once, not after the client's delayed ACK (~40 ms each)
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| format!("serving: {e}"))
}
