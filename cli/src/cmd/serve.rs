//! `agnes serve` and `agnes admin bootstrap`.

use std::path::PathBuf;

use agnes_server::{AppState, ServerConfig};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::json;

use crate::output::Output;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Server config (TOML). Defaults: data dir ./agnes-data, listen 127.0.0.1:8420.
    /// AGNES_DATA_DIR and AGNES_LISTEN override.
    #[arg(long, env = "AGNES_SERVER_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeCmd {
    #[command(flatten)]
    serve: ServeArgs,
    /// `all` (default): serve, schedule and run syncs. With PostgreSQL state and an S3
    /// bucket, `api` serves and schedules (syncs are queued) and `worker` runs queued syncs
    /// (serving only /healthz and /readyz). AGNES_ROLE sets it too.
    #[arg(long, value_parser = ["all", "api", "worker"])]
    role: Option<String>,
}

fn load(args: &ServeArgs) -> Result<ServerConfig> {
    ServerConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())
        .map_err(|e| anyhow!(e))
        .context("loading the server config")
}

pub fn serve(args: ServeCmd) -> Result<()> {
    let mut config = load(&args.serve)?;
    if let Some(role) = args.role {
        config.role = role;
        config
            .validate()
            .map_err(|e| anyhow!(e))
            .context("loading the server config")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // First start: create the admin and print its token once.
    runtime.block_on(async {
        let state = AppState::open(config.clone())
            .await
            .map_err(|e| anyhow!(e))?;
        if let Some(token) = agnes_server::bootstrap(&state, "admin")
            .await
            .map_err(|e| anyhow!(e))?
        {
            eprintln!(
                "first start: created user `admin` in group Admin. Its token (shown once):\n{token}"
            );
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "agnes serving {} on http://{}",
        config.data_dir.display(),
        config.listen
    );
    runtime
        .block_on(agnes_server::serve(config))
        .map_err(|e| anyhow!(e))
}

/// `agnes admin bootstrap`: the first admin, on the server's own data dir (no server needed).
pub fn bootstrap(name: String, password: bool, serve: ServeArgs, out: &Output) -> Result<()> {
    let config = load(&serve)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (token, password) = runtime.block_on(async {
        let state = AppState::open(config).await.map_err(|e| anyhow!(e))?;
        let token = agnes_server::bootstrap(&state, &name)
            .await
            .map_err(|e| anyhow!(e))?;
        let password = match (&token, password) {
            (Some(_), true) => Some(
                agnes_server::bootstrap_password(&state, &name)
                    .await
                    .map_err(|e| anyhow!(e))?,
            ),
            _ => None,
        };
        anyhow::Ok((token, password))
    })?;
    let Some(token) = token else {
        bail!("this server already has users; ask an admin for a token (`agnes admin user add`)");
    };
    out.print(
        || {
            let mut text = format!("created admin `{name}`; its token (shown once):\n{token}");
            if let Some(p) = &password {
                text.push_str(&format!("\nits password for the web UI (shown once):\n{p}"));
            }
            text
        },
        || json!({"user": name, "token": token, "password": password}),
    );
    Ok(())
}

/// `agnes admin migrate-state --to postgres`: the embedded state (the server stopped: its
/// file lock says so otherwise) copied into a fresh PostgreSQL database in one transaction.
pub fn migrate_state(
    url: Option<String>,
    password_file: Option<PathBuf>,
    serve: ServeArgs,
    out: &Output,
) -> Result<()> {
    let config = load(&serve)?;
    let mut state = config.state.clone();
    state.backend = "postgres".into();
    if url.is_some() {
        state.url = url;
    }
    if password_file.is_some() {
        state.password_file = password_file;
    }
    let target = state
        .postgres()
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| anyhow!("no PostgreSQL target"))?;
    if target.url.is_empty() {
        bail!("name the PostgreSQL database: --url postgres://user@host:port/database");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let path = config.system_db();
    if !path.exists() {
        bail!(
            "no embedded state at {}: check --config / AGNES_DATA_DIR",
            path.display()
        );
    }
    let copied = runtime.block_on(async {
        let from = agnes_server::db::Db::open(&path).map_err(|e| anyhow!(e))?;
        let to = agnes_server::db::Db::connect(&target)
            .await
            .map_err(|e| anyhow!(e))?;
        agnes_server::db::copy::embedded_to_postgres(&from, &to)
            .await
            .map_err(|e| anyhow!(e))
    })?;
    let total: usize = copied.iter().map(|(_, n)| n).sum();
    out.print(
        || {
            let mut text = format!(
                "copied {total} rows of {} into PostgreSQL:\n",
                path.display()
            );
            for (table, n) in &copied {
                text.push_str(&format!("  {table:<20} {n}\n"));
            }
            text.push_str(
                "next: set [state] backend = \"postgres\" and url in the server config \
                 (the extracts stay in the data directory)",
            );
            text
        },
        || json!({"copied": copied.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(), "rows": total}),
    );
    Ok(())
}
