//! `agnes serve` and `agnes admin bootstrap`.

use std::path::PathBuf;

use agnes_server::{AppState, ServerConfig};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::output::Output;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Server config (TOML). Defaults: data dir ./agnes-data, listen 127.0.0.1:8420.
    /// AGNES_DATA_DIR and AGNES_LISTEN override.
    #[arg(long, env = "AGNES_SERVER_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create the first admin user and print its token (once; fails if users exist).
    Bootstrap {
        /// Name of the admin user.
        #[arg(long, default_value = "admin")]
        name: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

fn load(args: &ServeArgs) -> Result<ServerConfig> {
    ServerConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())
        .map_err(|e| anyhow!(e))
        .context("loading the server config")
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let config = load(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // First start: create the admin and print its token once.
    let state = AppState::open(config.clone()).map_err(|e| anyhow!(e))?;
    if let Some(token) = agnes_server::bootstrap(&state, "admin").map_err(|e| anyhow!(e))? {
        eprintln!(
            "first start: created user `admin` in group Admin. Its token (shown once):\n{token}"
        );
    }
    drop(state);
    eprintln!(
        "agnes serving {} on http://{}",
        config.data_dir.display(),
        config.listen
    );
    runtime
        .block_on(agnes_server::serve(config))
        .map_err(|e| anyhow!(e))
}

pub fn admin(cmd: AdminCmd, out: &Output) -> Result<()> {
    match cmd {
        AdminCmd::Bootstrap { name, serve } => {
            let config = load(&serve)?;
            let state = AppState::open(config).map_err(|e| anyhow!(e))?;
            let Some(token) = agnes_server::bootstrap(&state, &name).map_err(|e| anyhow!(e))?
            else {
                bail!(
                    "this server already has users; ask an admin for a token (POST /api/admin/users)"
                );
            };
            out.print(
                || format!("created admin `{name}`; its token (shown once):\n{token}"),
                || json!({"user": name, "token": token}),
            );
            Ok(())
        }
    }
}
