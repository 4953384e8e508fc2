//! `agnes snapshot create|list|refresh|prune|drop`: server-side filtered extracts saved as
//! parquet in `user/snapshots/`, each with a view of its name in the local database and its
//! request beside it (`<name>.json`: table, select, where, order_by, limit, when, ttl), so
//! it can be refreshed and expire.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::ServerArgs;
use crate::output::{Output, bytes, count};
use crate::workspace::Workspace;

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Save a filtered slice of a table locally (the filter runs on the server).
    Create(CreateArgs),
    /// List saved snapshots.
    List(WsArgs),
    /// Cut a snapshot again with the request it was made with.
    Refresh {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        ws: WsArgs,
    },
    /// Delete the snapshots whose --ttl has passed.
    Prune(WsArgs),
    /// Delete a snapshot and its view.
    Drop {
        name: String,
        #[command(flatten)]
        ws: WsArgs,
    },
}

#[derive(Debug, Args)]
pub struct WsArgs {
    #[arg(long)]
    workspace: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The table to slice.
    table: String,
    /// Columns to keep, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// A SQL predicate, e.g. "region = 'EMEA' AND amount > 100".
    #[arg(long = "where")]
    predicate: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<u64>,
    /// Sort, comma-separated: `amount DESC,order_id`.
    #[arg(long, value_delimiter = ',')]
    order_by: Vec<String>,
    /// How long it stays before `agnes snapshot prune` deletes it: `30m`, `12h`, `7d`.
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<u64>,
    /// Name of the snapshot (and its view). Default: the table's name, or
    /// `<table>_snapshot` when the table itself is pulled here.
    #[arg(long = "as")]
    name: Option<String>,
    /// Only print how many rows and bytes it would be.
    #[arg(long)]
    estimate: bool,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    ws: WsArgs,
}

/// `30m`, `12h`, `7d` (or seconds) → seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let err = || format!("ttl `{s}`: use <n>m, <n>h or <n>d, e.g. 7d");
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let (num, mult) = match unit {
        "s" => (num, 1),
        "m" => (num, 60),
        "h" => (num, 3600),
        "d" => (num, 86_400),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    if n == 0 {
        return Err(err());
    }
    Ok(n.saturating_mul(mult))
}

/// What a snapshot was cut with, kept beside it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    table: String,
    #[serde(default)]
    select: Vec<String>,
    #[serde(rename = "where")]
    predicate: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
    limit: Option<u64>,
    /// Unix seconds.
    created_at: i64,
    ttl_secs: Option<u64>,
}

impl Meta {
    fn request(&self) -> Value {
        json!({"table_id": self.table, "select": self.select, "where": self.predicate,
               "order_by": self.order_by, "limit": self.limit})
    }
    fn expires_at(&self) -> Option<i64> {
        self.ttl_secs
            .map(|t| self.created_at.saturating_add(t as i64))
    }
}

fn meta_path(ws: &Workspace, name: &str) -> PathBuf {
    ws.snapshots_dir().join(format!("{name}.json"))
}

fn read_meta(ws: &Workspace, name: &str) -> Option<Meta> {
    serde_json::from_str(&std::fs::read_to_string(meta_path(ws, name)).ok()?).ok()
}

pub fn run(cmd: SnapshotCmd, out: &Output) -> Result<()> {
    match cmd {
        SnapshotCmd::Create(a) => create(a, out),
        SnapshotCmd::List(a) => list(a, out),
        SnapshotCmd::Refresh { name, server, ws } => refresh(&name, server, ws, out),
        SnapshotCmd::Prune(a) => prune(a, out),
        SnapshotCmd::Drop { name, ws } => drop_snapshot(&name, ws, out),
    }
}

fn refresh(name: &str, server: ServerArgs, args: WsArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    agnes_runtime::names::validate_name("table", name)?;
    let Some(mut meta) = read_meta(&ws, name) else {
        bail!("no snapshot `{name}` with a saved request; see `agnes snapshot list`");
    };
    meta.created_at = chrono::Utc::now().timestamp();
    fetch(&ws, &server.client()?, name, &meta, out)
}

fn prune(args: WsArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    let now = chrono::Utc::now().timestamp();
    let mut dropped = Vec::new();
    for (name, _, _) in snapshots(&ws)? {
        if read_meta(&ws, &name)
            .and_then(|m| m.expires_at())
            .is_some_and(|at| at <= now)
        {
            remove(&ws, &name)?;
            dropped.push(name);
        }
    }
    out.print(
        || {
            if dropped.is_empty() {
                "no snapshot has expired".into()
            } else {
                format!("dropped expired snapshots: {}", dropped.join(", "))
            }
        },
        || json!({"dropped": dropped}),
    );
    Ok(())
}

fn create(args: CreateArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.ws.workspace.as_deref())?;
    let pulled = ws.local_manifest()?.tables;
    let name = args.name.clone().unwrap_or_else(|| {
        if pulled.contains_key(&args.table) {
            format!("{}_snapshot", args.table)
        } else {
            args.table.clone()
        }
    });
    agnes_runtime::names::validate_name("table", &name)
        .map_err(|e| anyhow::anyhow!("--as: {e}"))?;
    if pulled.contains_key(&name) {
        bail!("`{name}` is a pulled table; choose another name with --as");
    }
    let client = args.server.client()?;
    let meta = Meta {
        table: args.table.clone(),
        select: args.select.clone(),
        predicate: args.predicate.clone(),
        order_by: args.order_by.clone(),
        limit: args.limit,
        created_at: chrono::Utc::now().timestamp(),
        ttl_secs: args.ttl,
    };
    let body = meta.request();
    let estimate: Value = client.post("/api/v2/scan/estimate", &body)?;
    let (rows, size) = (
        estimate["rows"].as_u64().unwrap_or(0),
        estimate["bytes"].as_u64().unwrap_or(0),
    );
    if args.estimate {
        out.print(
            || {
                let mut line = format!("{name}: about {} rows, {}", count(rows), bytes(size));
                // a remote table: what the source would scan, and whether it would refuse
                if estimate["engine"] == "remote" {
                    let scan = estimate["estimated_scan_bytes"].as_u64().unwrap_or(0);
                    line.push_str(&format!("; the source would scan about {}", bytes(scan)));
                    if let Some(why) = estimate["would_refuse"].as_str() {
                        line.push_str(&format!("\nrefused as asked: {why}"));
                    }
                }
                line
            },
            || estimate.clone(),
        );
        return Ok(());
    }
    fetch(&ws, &client, &name, &meta, out)
}

/// Cuts the snapshot on the server, writes it (atomically) with its view and its request.
fn fetch(
    ws: &Workspace,
    client: &crate::client::Client,
    name: &str,
    meta: &Meta,
    out: &Output,
) -> Result<()> {
    let ipc = client.post_bytes("/api/v2/scan", &meta.request())?;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .context("the server's scan is not an Arrow IPC stream")?;
    let path = ws.snapshots_dir().join(format!("{name}.parquet"));
    let tmp = ws.snapshots_dir().join(format!(".{name}.parquet.tmp"));
    let mut written = 0u64;
    {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, reader.schema(), None)?;
        for batch in reader {
            let batch = batch?;
            written += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
        writer.close()?;
    }
    std::fs::rename(&tmp, &path)?;
    let conn = duckdb::Connection::open(ws.duckdb_path())?;
    conn.execute_batch(&format!(
        "CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet({}); COMMENT ON VIEW \"{name}\" IS 'agnes-snapshot';",
        agnes_runtime::sink::duckdb::sql_string(&path.to_string_lossy())
    ))?;
    std::fs::write(meta_path(ws, name), serde_json::to_vec_pretty(meta)?)?;
    let size = std::fs::metadata(&path)?.len();
    out.print(
        || {
            format!(
                "{name}: {} rows, {} -> {} (query it as `{name}`)",
                count(written),
                bytes(size),
                path.display()
            )
        },
        || json!({"name": name, "rows": written, "size_bytes": size, "path": path, "expires_at": meta.expires_at()}),
    );
    Ok(())
}

fn snapshots(ws: &Workspace) -> Result<Vec<(String, u64, i64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(ws.snapshots_dir())?.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let Some(name) = f.strip_suffix(".parquet").filter(|n| !n.starts_with('.')) else {
            continue;
        };
        let size = e.metadata()?.len();
        let rows = parquet::file::reader::FileReader::metadata(
            &parquet::file::reader::SerializedFileReader::new(std::fs::File::open(e.path())?)?,
        )
        .file_metadata()
        .num_rows();
        out.push((name.to_string(), size, rows));
    }
    out.sort();
    Ok(out)
}

fn list(args: WsArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    let snaps = snapshots(&ws)?;
    out.print(
        || {
            if snaps.is_empty() {
                return "no snapshots; create one with `agnes snapshot create <table> --where ...`"
                    .into();
            }
            snaps
                .iter()
                .map(|(n, s, r)| {
                    let m = read_meta(&ws, n);
                    let from = m
                        .as_ref()
                        .map(|m| format!(" of {}", m.table))
                        .unwrap_or_default();
                    let expires = m
                        .and_then(|m| m.expires_at())
                        .and_then(|at| chrono::DateTime::from_timestamp(at, 0))
                        .map(|at| format!(", expires {}", at.format("%Y-%m-%d %H:%M UTC")))
                        .unwrap_or_default();
                    format!(
                        "{n:<30} {:>12} rows {:>10}{from}{expires}",
                        count(*r as u64),
                        bytes(*s)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
        || {
            json!(
                snaps
                    .iter()
                    .map(|(n, s, r)| {
                        let m = read_meta(&ws, n);
                        json!({"name": n, "size_bytes": s, "rows": r,
                               "table": m.as_ref().map(|m| m.table.clone()),
                               "expires_at": m.and_then(|m| m.expires_at())})
                    })
                    .collect::<Vec<_>>()
            )
        },
    );
    Ok(())
}

fn drop_snapshot(name: &str, args: WsArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    agnes_runtime::names::validate_name("table", name)?;
    if !ws.snapshots_dir().join(format!("{name}.parquet")).exists() {
        bail!("no snapshot `{name}`; see `agnes snapshot list`");
    }
    remove(&ws, name)?;
    out.print(
        || format!("dropped snapshot {name}"),
        || json!({"dropped": name}),
    );
    Ok(())
}

/// Deletes a snapshot's file, request and view.
fn remove(ws: &Workspace, name: &str) -> Result<()> {
    let conn = duckdb::Connection::open(ws.duckdb_path())?;
    conn.execute_batch(&format!("DROP VIEW IF EXISTS \"{name}\""))?;
    std::fs::remove_file(ws.snapshots_dir().join(format!("{name}.parquet")))?;
    let _ = std::fs::remove_file(meta_path(ws, name));
    Ok(())
}
