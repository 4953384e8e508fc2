//! `agnes connector run|discover`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agnes_runtime::{RunConfig, RunRequest, Runtime, extract};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::output::{Output, bytes, count};

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Run a connector component and publish its extract at --out.
    Run(RunArgs),
    /// List the tables a connector offers with a config, with their columns.
    Discover(DiscoverArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The connector component (.wasm).
    component: PathBuf,
    /// Run config (TOML or JSON): the connector's [config], the [grant] and [limits].
    #[arg(long)]
    config: PathBuf,
    /// Where to publish the extract: <extracts-dir>/<source>.
    #[arg(long)]
    out: PathBuf,
    /// Read only these tables (repeatable). Default: every table the connector offers.
    #[arg(long = "table", value_name = "TABLE")]
    tables: Vec<String>,
    /// Ignore the committed cursor state and read everything.
    #[arg(long)]
    full_refresh: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The connector component (.wasm).
    component: PathBuf,
    /// Run config (TOML or JSON).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
struct CacheArgs {
    /// Directory for compiled components. Default: $XDG_CACHE_HOME/agnes or ~/.cache/agnes.
    #[arg(long, env = "AGNES_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

impl CacheArgs {
    fn runtime(&self) -> Result<Runtime> {
        let dir = self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("agnes/components"))
        });
        Ok(Runtime::new(dir.as_deref())?)
    }
}

fn tokio() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("starting the async runtime")
}

pub fn run(cmd: ConnectorCmd, out: &Output) -> Result<()> {
    match cmd {
        ConnectorCmd::Run(args) => run_connector(args, out),
        ConnectorCmd::Discover(args) => discover(args, out),
    }
}

/// Splits `--out <extracts>/<source>` into its parts.
fn split_out(out: &Path) -> Result<(PathBuf, String)> {
    let source = out.file_name().and_then(|s| s.to_str()).with_context(|| {
        format!(
            "--out {} must end in the source name, e.g. ./agnes-data/extracts/demo",
            out.display()
        )
    })?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((parent.to_path_buf(), source.to_string()))
}

fn run_connector(args: RunArgs, out: &Output) -> Result<()> {
    let config = RunConfig::from_file(&args.config)?;
    let (extracts_dir, source) = split_out(&args.out)?;
    if let Some(declared) = &config.source
        && declared != &source
    {
        bail!(
            "{} declares source `{declared}` but --out names `{source}`; make them agree",
            args.config.display()
        );
    }
    std::fs::create_dir_all(&extracts_dir)
        .with_context(|| format!("creating {}", extracts_dir.display()))?;
    let state = if args.full_refresh {
        None
    } else {
        extract::published_state(&extracts_dir, &source)
    };
    let runtime = args.cache.runtime()?;
    let component = runtime.load_file(&args.component)?;

    let bar = if out.progress() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar.set_message(format!("{source}: starting {}", args.component.display()));
        Some(bar)
    } else {
        None
    };
    let on_progress = bar.clone().map(|bar| {
        Box::new(move |p: &agnes_runtime::Progress| {
            bar.set_message(format!(
                "{}: {} rows ({} total, {})",
                p.table,
                count(p.table_rows),
                count(p.rows),
                bytes(p.bytes)
            ));
        }) as agnes_runtime::ProgressFn
    });
    let request = RunRequest {
        source: source.clone(),
        extracts_dir,
        config: config.config,
        grant: config.grant,
        limits: config.limits,
        streams: if args.tables.is_empty() {
            None
        } else {
            Some(args.tables)
        },
        state,
    };
    let result = tokio()?.block_on(runtime.run(&component, request, on_progress));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result.with_context(|| {
        format!(
            "source `{source}`: nothing was published; the previous extract (if any) is unchanged"
        )
    })?;
    out.print(
        || {
            format!(
                "{}: {} tables, {} rows, {} in {:.2}s -> {}",
                report.source,
                report.tables.len(),
                count(report.rows),
                bytes(report.size_bytes()),
                report.elapsed.as_secs_f64(),
                args.out.display()
            )
        },
        || {
            json!({
                "source": report.source,
                "version": report.version,
                "path": report.dir,
                "component_digest": report.component_digest,
                "rows": report.rows,
                "size_bytes": report.size_bytes(),
                "bytes_emitted": report.bytes_emitted,
                "seconds": report.elapsed.as_secs_f64(),
                "tables": report.tables.iter().map(|t| json!({
                    "name": t.name, "rows": t.rows, "size_bytes": t.size_bytes, "md5": t.md5, "path": t.path,
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

fn discover(args: DiscoverArgs, out: &Output) -> Result<()> {
    let config = RunConfig::from_file(&args.config)?;
    let runtime = args.cache.runtime()?;
    let component = runtime.load_file(&args.component)?;
    let tables = tokio()?.block_on(runtime.discover(
        &component,
        &config.config,
        &config.grant,
        &config.limits,
    ))?;
    out.print(
        || {
            let mut s = String::new();
            for t in &tables {
                s.push_str(&format!("{}{}\n", t.name, t.description.as_ref().map(|d| format!("  -- {d}")).unwrap_or_default()));
                for f in t.schema.fields() {
                    s.push_str(&format!("  {} {}{}\n", f.name(), f.data_type(), if f.is_nullable() { "" } else { " NOT NULL" }));
                }
            }
            s.trim_end().to_string()
        },
        || {
            json!(tables.iter().map(|t| json!({
                "name": t.name,
                "description": t.description,
                "primary_key": t.primary_key,
                "cursor_field": t.cursor_field,
                "columns": t.schema.fields().iter().map(|f| json!({
                    "name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>())
        },
    );
    Ok(())
}
